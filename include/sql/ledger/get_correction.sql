SELECT * FROM kbi_correction WHERE reference = :reference
