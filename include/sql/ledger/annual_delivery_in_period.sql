-- P3: the annual list that holds this municipality's period, if any.
SELECT * FROM kbi_delivery
WHERE nis_code = :nis_code AND period = :period AND kind = 'annual'
  AND state NOT IN ('withdrawn', 'failed')
