SELECT seq, hash, recorded_at, mac FROM kbi_chain_head WHERE id = 1
