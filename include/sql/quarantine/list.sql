-- The quality officer's view of the quarantine; every filter is optional (NULL = any).
SELECT id, run_id, check_name, detected_on, nis_code, insz, familienaam, voornamen,
       ingeschreven, contract_op, attest_op, overleden_op, resolved_on, resolution
FROM kbi_quarantine
WHERE (CAST(:run_id AS TEXT) IS NULL OR run_id = CAST(:run_id AS TEXT))
  AND (CAST(:nis_code AS TEXT) IS NULL OR nis_code = CAST(:nis_code AS TEXT))
  AND (CAST(:check_name AS TEXT) IS NULL OR check_name = CAST(:check_name AS TEXT))
  AND (:include_resolved = 1 OR resolved_on IS NULL)
ORDER BY detected_on, run_id, check_name, id
