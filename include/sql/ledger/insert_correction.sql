INSERT INTO kbi_correction (reference, nis_code, reported_on, due_on, reporter, description_sha256,
                            description_length, run_id, round, state, registered_at)
VALUES (:reference, :nis_code, :reported_on, :due_on, :reporter, :description_sha256,
        :description_length, :run_id, :round, 'open', :registered_at)
