UPDATE kbi_run SET state = :state, finished_at = :finished_at, summary = :summary WHERE run_id = :run_id
