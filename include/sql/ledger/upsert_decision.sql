INSERT INTO kbi_decision (run_id, nis_code, municipality, decision, rule, reason, decided_at)
VALUES (:run_id, :nis_code, :municipality, :decision, :rule, :reason, :decided_at)
ON CONFLICT (run_id, nis_code) DO UPDATE
SET decision = excluded.decision, rule = excluded.rule, reason = excluded.reason,
    decided_at = excluded.decided_at
