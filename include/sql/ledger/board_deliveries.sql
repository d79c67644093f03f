-- Status board (read-only): every delivery whose P3 period lies in the asked year ('2026'). The period is
-- the calendar year or, in rolling mode, the day of delivery: both start with the year. Counts,
-- file names, checksums and timestamps only; the run's DAG id makes the Airflow run link.
SELECT d.delivery_id, d.run_id, r.dag_id, d.nis_code, d.kind, d.period, d.correction_ref,
       d.reference_date, d.state, d.mode, d.file_name, d.row_count, d.size_bytes, d.sha256,
       d.attempt, d.planned_at, d.published_at, d.announced_at, d.withdrawn_at, d.picked_up_at,
       d.reminded_at, d.purged_at, d.delete_by
FROM kbi_delivery d
LEFT JOIN kbi_run r ON r.run_id = d.run_id
WHERE substr(d.period, 1, 4) = :year
ORDER BY d.nis_code, d.planned_at, d.delivery_id
