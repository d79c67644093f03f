-- The embedded KBI source of the demo and the tests: a base table that, like the real KBI, holds
-- more than the pipeline may read (birth date, nationality, address), and the read-only view
-- kbi_inburgeraar that the agency's DBA exposes (interfaces.md §1). The pipeline reads the view only.
-- SQLite has no boolean or date types: booleans are 0/1, dates ISO 'YYYY-MM-DD', timestamps ISO 8601.
DROP VIEW IF EXISTS kbi_inburgeraar;
DROP TABLE IF EXISTS kbi_dossier;
CREATE TABLE kbi_dossier (
    dossier_id                 INTEGER PRIMARY KEY,
    insz                       TEXT,
    doelgroep                  TEXT NOT NULL,
    familienaam                TEXT,
    voornamen                  TEXT,
    geboortedatum              TEXT,
    nationaliteit              TEXT,
    adres                      TEXT,
    nis_code_hoofdverblijf     TEXT,
    ingeschreven_rijksregister INTEGER NOT NULL CHECK (ingeschreven_rijksregister IN (0, 1)),
    contract_ondertekend_op    TEXT,
    attest_behaald_op          TEXT,
    overleden_op               TEXT,
    gewijzigd_op               TEXT NOT NULL
);
CREATE VIEW kbi_inburgeraar AS
SELECT insz,
       doelgroep,
       familienaam,
       voornamen,
       nis_code_hoofdverblijf,
       ingeschreven_rijksregister,
       contract_ondertekend_op,
       attest_behaald_op,
       overleden_op,
       gewijzigd_op
FROM kbi_dossier;
