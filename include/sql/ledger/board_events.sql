-- Status board (read-only): one municipality's ledger events recorded in the asked year, in chain order,
-- with the DAG id of the run each belongs to (for the link to the Airflow run).
SELECT e.seq, e.recorded_at, e.event_type, e.run_id, r.dag_id, e.delivery_id, e.detail
FROM kbi_event e
LEFT JOIN kbi_run r ON r.run_id = e.run_id
WHERE e.nis_code = :nis_code AND substr(e.recorded_at, 1, 4) = :year
ORDER BY e.seq
