-- The extract (interfaces.md §1): one read of the view kbi_inburgeraar, nothing else of KBI.
-- P2: only the target group inburgeraar, and only the columns that the selection rules (P1),
-- the quality checks (P11) and the files need. gewijzigd_op is not needed and not read.
SELECT insz,
       doelgroep,
       familienaam,
       voornamen,
       nis_code_hoofdverblijf,
       ingeschreven_rijksregister,
       contract_ondertekend_op,
       attest_behaald_op,
       overleden_op
FROM kbi_inburgeraar
WHERE doelgroep = 'inburgeraar'
