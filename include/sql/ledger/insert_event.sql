INSERT INTO kbi_event (seq, recorded_at, event_type, run_id, nis_code, delivery_id, detail, prev_hash, hash)
VALUES (:seq, :recorded_at, :event_type, :run_id, :nis_code, :delivery_id, :detail, :prev_hash, :hash)
