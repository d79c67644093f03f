-- Published lists still on the transfer server as far as the ledger knows (P8): announced or
-- reminded, not yet picked up or purged.
SELECT * FROM kbi_delivery WHERE state IN ('announced', 'reminded') ORDER BY published_at, nis_code
