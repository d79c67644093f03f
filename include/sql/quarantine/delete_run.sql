-- A rerun of a run's quality step replaces that run's rows (idempotent).
DELETE FROM kbi_quarantine WHERE run_id = :run_id
