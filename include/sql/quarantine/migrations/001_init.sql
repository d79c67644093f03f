-- The quarantine (P11): rows that failed a blocking check, held for the quality officer. Besides
-- KBI this is the only place that may hold them; it lives behind its own connection
-- (kbi_quarantine) so that access to it is granted separately from the ledger.
CREATE TABLE kbi_quarantine (
    id             INTEGER PRIMARY KEY,
    run_id         TEXT NOT NULL,
    check_name     TEXT NOT NULL,
    detected_on    TEXT NOT NULL,
    nis_code       TEXT,
    insz           TEXT,
    familienaam    TEXT,
    voornamen      TEXT,
    ingeschreven   INTEGER,
    contract_op    TEXT,
    attest_op      TEXT,
    overleden_op   TEXT,
    resolved_on    TEXT,
    resolution     TEXT
);
CREATE INDEX kbi_quarantine_by_run ON kbi_quarantine (run_id);
CREATE INDEX kbi_quarantine_by_nis ON kbi_quarantine (nis_code);
