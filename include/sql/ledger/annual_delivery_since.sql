-- P3 with a rolling period: the annual list this municipality received (or is receiving) since
-- the given moment, if any.
SELECT * FROM kbi_delivery
WHERE nis_code = :nis_code AND kind = 'annual' AND state NOT IN ('withdrawn', 'failed')
  AND planned_at >= :since
ORDER BY planned_at DESC
LIMIT 1
