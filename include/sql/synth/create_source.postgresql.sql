-- The embedded KBI source on PostgreSQL (CI): same shape as the SQLite file, with real types.
DROP VIEW IF EXISTS kbi_inburgeraar;
DROP TABLE IF EXISTS kbi_dossier;
CREATE TABLE kbi_dossier (
    dossier_id                 BIGINT PRIMARY KEY,
    insz                       TEXT,
    doelgroep                  TEXT NOT NULL,
    familienaam                TEXT,
    voornamen                  TEXT,
    geboortedatum              DATE,
    nationaliteit              TEXT,
    adres                      TEXT,
    nis_code_hoofdverblijf     TEXT,
    ingeschreven_rijksregister BOOLEAN NOT NULL,
    contract_ondertekend_op    DATE,
    attest_behaald_op          DATE,
    overleden_op               DATE,
    gewijzigd_op               TIMESTAMP NOT NULL
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
