-- The row count of each municipality's most recent published list (annual or correction), for
-- the run-level check on lists that moved too much since (P11).
SELECT d.nis_code, d.row_count, d.published_at, d.file_name
FROM kbi_delivery d
WHERE d.published_at IS NOT NULL
  AND d.published_at = (
      SELECT MAX(x.published_at) FROM kbi_delivery x
      WHERE x.nis_code = d.nis_code AND x.published_at IS NOT NULL
  )
