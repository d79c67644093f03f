SELECT check_name, COUNT(*) AS n FROM kbi_quarantine WHERE run_id = :run_id GROUP BY check_name
