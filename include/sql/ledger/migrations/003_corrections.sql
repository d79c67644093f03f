-- Correction requests (P9): each report of a municipality, its 14-day clock, the quality
-- officer's decision and what was delivered. The description itself stays in the Airflow run
-- (it is free text); the ledger keeps its SHA-256 and length only.
CREATE TABLE kbi_correction (
    reference           TEXT PRIMARY KEY,
    nis_code            TEXT    NOT NULL,
    reported_on         TEXT    NOT NULL,
    due_on              TEXT    NOT NULL,
    reporter            TEXT,
    description_sha256  TEXT    NOT NULL,
    description_length  INTEGER NOT NULL,
    run_id              TEXT    NOT NULL,
    round               INTEGER NOT NULL DEFAULT 1,
    state               TEXT    NOT NULL
        CHECK (state IN ('open', 'extended', 'corrected', 'no_error', 'reopened')),
    extended_to         TEXT,
    decision            TEXT,
    decision_reason     TEXT,
    decided_by          TEXT,
    handled_on          TEXT,
    delivery_id         TEXT,
    rows_added          INTEGER,
    rows_removed        INTEGER,
    rows_changed        INTEGER,
    reminded_on         TEXT,
    escalated_on        TEXT,
    acknowledged_at     TEXT,
    registered_at       TEXT    NOT NULL
);
CREATE INDEX kbi_correction_by_state ON kbi_correction (state);

-- What a delivered list held, as keyed hashes only (HMAC with a secret kept outside the ledger):
-- one per person and one of the person's row. A correction compares lists by these (rows added,
-- removed, changed) without the ledger ever holding a national number or a name (P10, P13).
CREATE TABLE kbi_delivery_row (
    delivery_id  TEXT NOT NULL,
    person       TEXT NOT NULL,
    content      TEXT NOT NULL,
    PRIMARY KEY (delivery_id, person)
);
