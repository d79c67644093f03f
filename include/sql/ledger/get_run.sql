SELECT run_id, dag_id, kind, reference_date, dry_run, registry_version, started_at, finished_at, state, summary
FROM kbi_run WHERE run_id = :run_id
