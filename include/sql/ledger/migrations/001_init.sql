-- The ledger: the agency-side memory of every run, decision, delivery and event (P3, P10, P13, P14).
-- It never holds a name, a national number or a passphrase: counts, file names, checksums,
-- key fingerprints, inboxes, timestamps and run ids only. Timestamps are ISO 8601 UTC text and
-- booleans 0/1 so that the same rows (and their hashes) read alike on SQLite and PostgreSQL.

CREATE TABLE kbi_run (
    run_id            TEXT PRIMARY KEY,
    dag_id            TEXT    NOT NULL,
    kind              TEXT    NOT NULL CHECK (kind IN ('annual', 'correction')),
    reference_date    TEXT    NOT NULL,
    dry_run           INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    registry_version  TEXT,
    started_at        TEXT    NOT NULL,
    finished_at       TEXT,
    state             TEXT    NOT NULL CHECK (state IN ('running', 'success', 'failed', 'halted')),
    summary           TEXT
);

-- One row per municipality and run: deliver, or refused/skipped with the rule and the reason.
CREATE TABLE kbi_decision (
    run_id        TEXT NOT NULL REFERENCES kbi_run (run_id),
    nis_code      TEXT NOT NULL,
    municipality  TEXT NOT NULL,
    decision      TEXT NOT NULL CHECK (decision IN ('deliver', 'refused', 'skipped')),
    rule          TEXT,
    reason        TEXT,
    decided_at    TEXT NOT NULL,
    PRIMARY KEY (run_id, nis_code)
);

-- One row per list sent (or being sent) to one municipality; the delivery state machine.
CREATE TABLE kbi_delivery (
    delivery_id      TEXT PRIMARY KEY,
    run_id           TEXT    NOT NULL REFERENCES kbi_run (run_id),
    nis_code         TEXT    NOT NULL,
    kind             TEXT    NOT NULL CHECK (kind IN ('annual', 'correction')),
    period           TEXT    NOT NULL,
    correction_ref   TEXT,
    reference_date   TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    mode             TEXT    CHECK (mode IN ('pubkey', 'passphrase')),
    key_fingerprint  TEXT,
    file_name        TEXT,
    inbox            TEXT,
    row_count        INTEGER,
    size_bytes       INTEGER,
    sha256           TEXT,
    attempt          INTEGER NOT NULL DEFAULT 0,
    planned_at       TEXT    NOT NULL,
    encrypted_at     TEXT,
    uploaded_at      TEXT,
    passphrase_sent_at TEXT,
    published_at     TEXT,
    sms_sent_at      TEXT,
    mail_sent_at     TEXT,
    announced_at     TEXT,
    withdrawn_at     TEXT,
    picked_up_at     TEXT,
    reminded_at      TEXT,
    purged_at        TEXT,
    delete_by        TEXT,
    last_error       TEXT
);

-- P3: at most one annual list per municipality per period. A database constraint as well as a
-- check, so two concurrent runs cannot both deliver; a withdrawn or failed attempt (nothing left
-- on the server) does not hold the period.
CREATE UNIQUE INDEX kbi_delivery_one_annual_list_per_period
    ON kbi_delivery (nis_code, period)
    WHERE kind = 'annual' AND state NOT IN ('withdrawn', 'failed');

CREATE INDEX kbi_delivery_by_state ON kbi_delivery (state);

-- Every change, chained: hash = H(prev_hash, this event). Editing, deleting or reordering a row
-- breaks the chain from there on (P14).
CREATE TABLE kbi_event (
    seq          INTEGER PRIMARY KEY,
    recorded_at  TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    run_id       TEXT,
    nis_code     TEXT,
    delivery_id  TEXT,
    detail       TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE
);

CREATE INDEX kbi_event_by_delivery ON kbi_event (delivery_id);
CREATE INDEX kbi_event_by_nis ON kbi_event (nis_code);
