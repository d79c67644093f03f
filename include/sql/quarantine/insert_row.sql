INSERT INTO kbi_quarantine (run_id, check_name, detected_on, nis_code, insz, familienaam, voornamen,
                            ingeschreven, contract_op, attest_op, overleden_op)
VALUES (:run_id, :check_name, :detected_on, :nis_code, :insz, :familienaam, :voornamen,
        :ingeschreven, :contract_op, :attest_op, :overleden_op)
