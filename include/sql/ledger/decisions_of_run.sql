SELECT nis_code, municipality, decision, rule, reason, decided_at
FROM kbi_decision WHERE run_id = :run_id ORDER BY nis_code
