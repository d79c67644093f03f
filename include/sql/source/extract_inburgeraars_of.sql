-- The extract for a correction (P9): one municipality's residents only, under its 2025 code and
-- the pre-2025 codes merged into it. {codes} is replaced by quoted five-digit NIS codes, each
-- checked against ^[0-9]{5}$ before it gets here (a COPY takes no bind parameters).
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
  AND nis_code_hoofdverblijf IN ({codes})
