SELECT run_id, dag_id, kind, reference_date, dry_run, registry_version, started_at, finished_at, state
FROM kbi_run WHERE started_at >= :since AND started_at < :until ORDER BY started_at
