SELECT * FROM kbi_delivery WHERE published_at >= :since ORDER BY nis_code, published_at
