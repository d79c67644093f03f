INSERT INTO kbi_run (run_id, dag_id, kind, reference_date, dry_run, registry_version, started_at, state)
VALUES (:run_id, :dag_id, :kind, :reference_date, :dry_run, :registry_version, :started_at, 'running')
