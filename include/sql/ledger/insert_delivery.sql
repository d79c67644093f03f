INSERT INTO kbi_delivery (delivery_id, run_id, nis_code, kind, period, correction_ref, reference_date,
                          state, planned_at)
VALUES (:delivery_id, :run_id, :nis_code, :kind, :period, :correction_ref, :reference_date,
        'planned', :planned_at)
