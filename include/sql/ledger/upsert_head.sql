INSERT INTO kbi_chain_head (id, seq, hash, recorded_at, mac) VALUES (1, :seq, :hash, :recorded_at, :mac)
ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,
    recorded_at = excluded.recorded_at, mac = excluded.mac
