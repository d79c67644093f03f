SELECT * FROM kbi_correction WHERE state IN ('open', 'extended', 'reopened') ORDER BY due_on, reference
