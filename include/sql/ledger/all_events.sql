SELECT seq, recorded_at, event_type, run_id, nis_code, delivery_id, detail, prev_hash, hash
FROM kbi_event ORDER BY seq
