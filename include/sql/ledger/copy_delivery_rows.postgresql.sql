-- The rows of one delivery in one stream (psycopg's COPY); SQLite uses insert_delivery_row.
COPY kbi_delivery_row (delivery_id, person, content) FROM STDIN
