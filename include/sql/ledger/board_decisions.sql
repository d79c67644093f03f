-- Status board (read-only): every run's decision per municipality made in the asked year, oldest first,
-- so that the last one per municipality is its current word (deliver, refused with rule, skipped).
SELECT d.run_id, r.dag_id, d.nis_code, d.decision, d.rule, d.reason, d.decided_at
FROM kbi_decision d
LEFT JOIN kbi_run r ON r.run_id = d.run_id
WHERE substr(d.decided_at, 1, 4) = :year
ORDER BY d.nis_code, d.decided_at, d.run_id
