-- A re-encrypted attempt replaces what an earlier attempt of the same delivery recorded.
DELETE FROM kbi_delivery_row WHERE delivery_id = :delivery_id
