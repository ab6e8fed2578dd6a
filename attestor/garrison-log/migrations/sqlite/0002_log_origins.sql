-- Logs keyed by origin, and the Merkle tree over each log's records. SQLite flavour; keep in
-- step with migrations/postgres.
--
-- One database may hold several logs (a site holds its own; the hub holds every site's). Each
-- log has a small integer id, used as the first column of every key below, and an origin
-- (`garrison.<trust-domain>/site/<site>`), the name its signed checkpoints carry. A database
-- from before this migration becomes log 1 with no origin yet: the first process that opens
-- it with an origin claims it (see `origin.rs`), and the tree over its records is built then.
--
-- SQLite cannot change a primary key in place, so records, nodes and revocations are rebuilt:
-- new tables first, rows copied, then the old tables dropped children first (so that no
-- foreign key ever points at a missing row) and the new ones renamed into place (SQLite
-- rewrites the references in the other new tables as it renames).

CREATE TABLE logs (
    id            INTEGER PRIMARY KEY CHECK (id >= 1),
    origin        TEXT UNIQUE CHECK (origin IS NULL OR length(origin) > 0),
    -- Records appended so far: the next record's sequence.
    next_sequence INTEGER NOT NULL CHECK (next_sequence >= 0),
    -- Records covered by stored tree hashes; equal to next_sequence except between this
    -- migration and the first open that builds the tree.
    tree_size     INTEGER NOT NULL CHECK (tree_size >= 0 AND tree_size <= next_sequence)
);
INSERT INTO logs (id, origin, next_sequence, tree_size) SELECT 1, NULL, next_sequence, 0 FROM log_head;
DROP TABLE log_head;

CREATE TABLE records_v2 (
    log_id            INTEGER NOT NULL REFERENCES logs (id),
    sequence          INTEGER NOT NULL CHECK (sequence >= 0),
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
    cert_not_after_us INTEGER,
    PRIMARY KEY (log_id, sequence)
);
INSERT INTO records_v2
    SELECT 1, sequence, leaf_hash, time_us, site, kind, node_id, spiffe_id, decision, reasons,
           policy_digest, evidence_digest, cert_serial, cert_not_after_us
    FROM records ORDER BY sequence;

-- Node state and revocations are the operational state of the database's own (site) log;
-- log_id ties each row to the record that made it.
CREATE TABLE nodes_v2 (
    node_id        TEXT PRIMARY KEY,
    ak_name        BLOB NOT NULL,
    spiffe_id      TEXT NOT NULL,
    reset_count    INTEGER NOT NULL,
    restart_count  INTEGER NOT NULL,
    clock          INTEGER NOT NULL,
    current_serial TEXT,
    identity_json  TEXT NOT NULL,
    updated_us     INTEGER NOT NULL,
    log_id         INTEGER NOT NULL,
    last_sequence  INTEGER NOT NULL,
    FOREIGN KEY (log_id, last_sequence) REFERENCES records_v2 (log_id, sequence)
);
INSERT INTO nodes_v2
    SELECT node_id, ak_name, spiffe_id, reset_count, restart_count, clock, current_serial,
           identity_json, updated_us, 1, last_sequence
    FROM nodes;

CREATE TABLE revocations_v2 (
    log_id   INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    serial   TEXT,
    node_id  TEXT,
    time_us  INTEGER NOT NULL,
    CHECK ((serial IS NULL) <> (node_id IS NULL)),
    PRIMARY KEY (log_id, sequence),
    FOREIGN KEY (log_id, sequence) REFERENCES records_v2 (log_id, sequence)
);
INSERT INTO revocations_v2 SELECT 1, sequence, serial, node_id, time_us FROM revocations;

DROP TABLE revocations;
DROP TABLE nodes;
DROP TABLE records;
ALTER TABLE records_v2 RENAME TO records;
ALTER TABLE nodes_v2 RENAME TO nodes;
ALTER TABLE revocations_v2 RENAME TO revocations;

-- (log, key, sequence): a query by key returns its records in sequence order straight from
-- the index, so the planner never prefers walking the whole log in primary-key order.
CREATE INDEX records_node_id ON records (log_id, node_id, sequence);
CREATE INDEX records_time ON records (log_id, time_us);
CREATE INDEX records_kind ON records (log_id, kind, sequence);
CREATE INDEX records_spiffe_id ON records (log_id, spiffe_id, sequence);
CREATE INDEX records_policy_digest ON records (log_id, policy_digest, sequence);
CREATE INDEX records_cert_serial ON records (log_id, cert_serial, sequence);
CREATE INDEX nodes_current_serial ON nodes (current_serial);
CREATE INDEX revocations_serial ON revocations (serial);
CREATE INDEX revocations_node_id ON revocations (node_id);

CREATE TRIGGER records_append_only_update BEFORE UPDATE ON records
BEGIN
    SELECT RAISE(ABORT, 'attestation log records are append-only');
END;
CREATE TRIGGER records_append_only_delete BEFORE DELETE ON records
BEGIN
    SELECT RAISE(ABORT, 'attestation log records are append-only');
END;

-- The stored hashes of each log's Merkle tree (RFC 6962 / RFC 9162), at the dense indexes
-- of the tlog stored-hash layout: record n adds the hashes from index stored_hash_index(0, n)
-- on, its leaf hash first. Written in the same transaction as the records they cover.
CREATE TABLE tree_hashes (
    log_id INTEGER NOT NULL REFERENCES logs (id),
    idx    INTEGER NOT NULL CHECK (idx >= 0),
    hash   BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (log_id, idx)
) WITHOUT ROWID;
CREATE TRIGGER tree_hashes_append_only_update BEFORE UPDATE ON tree_hashes
BEGIN
    SELECT RAISE(ABORT, 'tree hashes are append-only');
END;
CREATE TRIGGER tree_hashes_append_only_delete BEFORE DELETE ON tree_hashes
BEGIN
    SELECT RAISE(ABORT, 'tree hashes are append-only');
END;

-- Every signed checkpoint (C2SP tlog-checkpoint in a signed note), one per tree size.
CREATE TABLE checkpoints (
    log_id    INTEGER NOT NULL REFERENCES logs (id),
    size      INTEGER NOT NULL CHECK (size >= 0),
    root_hash BLOB NOT NULL CHECK (length(root_hash) = 32),
    signed_us INTEGER NOT NULL,
    note      TEXT NOT NULL,
    PRIMARY KEY (log_id, size)
);
CREATE TRIGGER checkpoints_append_only_update BEFORE UPDATE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'signed checkpoints are kept as signed');
END;
CREATE TRIGGER checkpoints_append_only_delete BEFORE DELETE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'signed checkpoints are kept as signed');
END;

-- The certificates of the keys that sign a log's checkpoints (the site CA certifies each as
-- spiffe://<td>/site/<site>/log), every one kept: an auditor holding only the root
-- certificate checks old checkpoints with them. PEM, the key's certificate first, then the
-- CAs above it (not the root).
CREATE TABLE log_key_certificates (
    log_id     INTEGER NOT NULL REFERENCES logs (id),
    digest     TEXT NOT NULL CHECK (length(digest) = 64), -- SHA-256 of chain_pem, hex
    public_key BLOB NOT NULL CHECK (length(public_key) = 32),
    chain_pem  TEXT NOT NULL,
    added_us   INTEGER NOT NULL,
    PRIMARY KEY (log_id, digest)
);
