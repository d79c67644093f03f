-- The head of the event chain, written in the same transaction as every event. verify() requires
-- the chain to end exactly there, so deleting the newest events is noticed too (with the chain
-- secret, the head carries an HMAC that cannot be recomputed without it).
CREATE TABLE kbi_chain_head (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    seq          INTEGER NOT NULL,
    hash         TEXT    NOT NULL,
    recorded_at  TEXT    NOT NULL,
    mac          TEXT    NOT NULL
);
INSERT INTO kbi_chain_head (id, seq, hash, recorded_at, mac)
SELECT 1, seq, hash, recorded_at, '' FROM kbi_event WHERE seq = (SELECT MAX(seq) FROM kbi_event);
