SELECT d.run_id, d.nis_code, d.municipality, d.rule, d.reason, d.decided_at
FROM kbi_decision d
WHERE d.decision = 'refused' AND d.decided_at >= :since AND d.decided_at < :until
  AND (CAST(:nis_code AS TEXT) IS NULL OR d.nis_code = CAST(:nis_code AS TEXT))
ORDER BY d.nis_code, d.decided_at
