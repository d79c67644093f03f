-- A municipality's most recent published list (annual or correction), the one a correction
-- is compared with and supersedes.
SELECT * FROM kbi_delivery
WHERE nis_code = :nis_code AND published_at IS NOT NULL AND delivery_id <> :exclude
ORDER BY published_at DESC
LIMIT 1
