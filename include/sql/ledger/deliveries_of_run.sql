SELECT * FROM kbi_delivery WHERE run_id = :run_id ORDER BY nis_code
