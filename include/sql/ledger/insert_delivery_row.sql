INSERT INTO kbi_delivery_row (delivery_id, person, content) VALUES (:delivery_id, :person, :content)
