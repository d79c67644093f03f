SELECT person, content FROM kbi_delivery_row WHERE delivery_id = :delivery_id
