-- Attestation log schema, SQLite flavour. Keep in step with migrations/postgres: the same
-- tables, columns and constraints; only the type names differ (INTEGER/BLOB vs BIGINT/BYTEA).
-- Times are unix microseconds (UTC); hashes are lowercase hex text.

-- The one row that hands out sequence numbers. The writer bumps it as the first statement of
-- every batch transaction, which takes the write lock, so sequences are dense and in commit
-- order even if several processes write to the same database.
CREATE TABLE log_head (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    next_sequence INTEGER NOT NULL CHECK (next_sequence >= 0)
);
INSERT INTO log_head (id, next_sequence) VALUES (1, 0);

-- Raw evidence, content-addressed by SHA-256 (hex). Inserted if absent.
CREATE TABLE evidence (
    digest TEXT PRIMARY KEY CHECK (length(digest) = 64),
    bytes  BLOB NOT NULL
);

CREATE TABLE records (
    sequence          INTEGER PRIMARY KEY CHECK (sequence >= 0),
    leaf_hash         TEXT NOT NULL CHECK (length(leaf_hash) = 64),
    time_us           INTEGER NOT NULL,
    site              TEXT NOT NULL,
    kind              TEXT NOT NULL,
    node_id           TEXT,
    spiffe_id         TEXT,
    decision          TEXT NOT NULL,
    reasons           TEXT NOT NULL, -- JSON array of strings
    policy_digest     TEXT,
    evidence_digest   TEXT REFERENCES evidence (digest),
    cert_serial       TEXT,
    cert_not_after_us INTEGER
);
CREATE INDEX records_node_id ON records (node_id);
CREATE INDEX records_time ON records (time_us);
CREATE INDEX records_kind ON records (kind);
CREATE INDEX records_spiffe_id ON records (spiffe_id);
CREATE INDEX records_policy_digest ON records (policy_digest);
CREATE INDEX records_cert_serial ON records (cert_serial);

-- Records are leaves of a Merkle tree: never rewritten, never removed.
CREATE TRIGGER records_append_only_update BEFORE UPDATE ON records
BEGIN
    SELECT RAISE(ABORT, 'attestation log records are append-only');
END;
CREATE TRIGGER records_append_only_delete BEFORE DELETE ON records
BEGIN
    SELECT RAISE(ABORT, 'attestation log records are append-only');
END;

-- Latest known state per node, upserted in the same transaction as the record that changed it
-- (last_sequence).
CREATE TABLE nodes (
    node_id        TEXT PRIMARY KEY,
    ak_name        BLOB NOT NULL,
    spiffe_id      TEXT NOT NULL,
    reset_count    INTEGER NOT NULL,
    restart_count  INTEGER NOT NULL,
    clock          INTEGER NOT NULL,
    current_serial TEXT,
    identity_json  TEXT NOT NULL,
    updated_us     INTEGER NOT NULL,
    last_sequence  INTEGER NOT NULL REFERENCES records (sequence)
);
CREATE INDEX nodes_current_serial ON nodes (current_serial);

-- One row per revoke record: exactly one of serial / node_id.
CREATE TABLE revocations (
    sequence INTEGER PRIMARY KEY REFERENCES records (sequence),
    serial   TEXT,
    node_id  TEXT,
    time_us  INTEGER NOT NULL,
    CHECK ((serial IS NULL) <> (node_id IS NULL))
);
CREATE INDEX revocations_serial ON revocations (serial);
CREATE INDEX revocations_node_id ON revocations (node_id);
