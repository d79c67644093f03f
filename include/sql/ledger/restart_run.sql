UPDATE kbi_run SET state = 'running', finished_at = NULL, registry_version = :registry_version
WHERE run_id = :run_id
