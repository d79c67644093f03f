-- Which migrations of which component (ledger, quarantine) are applied to this database.
CREATE TABLE IF NOT EXISTS kbi_schema_version (
    component  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    checksum   TEXT    NOT NULL,
    applied_at TEXT    NOT NULL,
    PRIMARY KEY (component, version)
)
