UPDATE kbi_quarantine SET resolved_on = :resolved_on, resolution = :resolution
WHERE id = :id AND resolved_on IS NULL
