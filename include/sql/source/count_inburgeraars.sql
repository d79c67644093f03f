-- How many rows the extract must hold, read in the same transaction: a shorter extract was cut
-- off on the way (a dropped connection, a driver limit) and must not be delivered (P11).
SELECT COUNT(*) FROM kbi_inburgeraar WHERE doelgroep = 'inburgeraar'
