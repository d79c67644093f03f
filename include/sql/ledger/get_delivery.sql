SELECT * FROM kbi_delivery WHERE delivery_id = :delivery_id
