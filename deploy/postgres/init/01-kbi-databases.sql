-- The ledger and the quarantine live in their own databases, so access to each is granted
-- separately (the quarantine holds personal data; the ledger never does).
CREATE DATABASE kbi_ledger;
CREATE DATABASE kbi_quarantine;
