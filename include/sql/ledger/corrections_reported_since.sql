SELECT * FROM kbi_correction WHERE reported_on >= :since ORDER BY reported_on, reference
