-- Logs keyed by origin, and the Merkle tree over each log's records. PostgreSQL flavour; keep
-- in step with migrations/sqlite, which explains the tables.

CREATE TABLE logs (
    id            BIGINT PRIMARY KEY CHECK (id >= 1),
    origin        TEXT UNIQUE CHECK (origin IS NULL OR length(origin) > 0),
    next_sequence BIGINT NOT NULL CHECK (next_sequence >= 0),
    tree_size     BIGINT NOT NULL CHECK (tree_size >= 0 AND tree_size <= next_sequence)
);
INSERT INTO logs (id, origin, next_sequence, tree_size) SELECT 1, NULL, next_sequence, 0 FROM log_head;
DROP TABLE log_head;

ALTER TABLE nodes DROP CONSTRAINT nodes_last_sequence_fkey;
ALTER TABLE revocations DROP CONSTRAINT revocations_sequence_fkey;
ALTER TABLE revocations DROP CONSTRAINT revocations_pkey;

-- A constant default is stored in the catalogue, not written into each row: no UPDATE runs
-- (the append-only trigger would refuse one).
ALTER TABLE records ADD COLUMN log_id BIGINT NOT NULL DEFAULT 1 REFERENCES logs (id);
ALTER TABLE records ALTER COLUMN log_id DROP DEFAULT;
ALTER TABLE records DROP CONSTRAINT records_pkey;
ALTER TABLE records ADD PRIMARY KEY (log_id, sequence);

ALTER TABLE nodes ADD COLUMN log_id BIGINT NOT NULL DEFAULT 1;
ALTER TABLE nodes ALTER COLUMN log_id DROP DEFAULT;
ALTER TABLE nodes ADD FOREIGN KEY (log_id, last_sequence) REFERENCES records (log_id, sequence);
ALTER TABLE revocations ADD COLUMN log_id BIGINT NOT NULL DEFAULT 1;
ALTER TABLE revocations ALTER COLUMN log_id DROP DEFAULT;
ALTER TABLE revocations ADD PRIMARY KEY (log_id, sequence);
ALTER TABLE revocations ADD FOREIGN KEY (log_id, sequence) REFERENCES records (log_id, sequence);

DROP INDEX records_node_id, records_time, records_kind, records_spiffe_id, records_policy_digest,
    records_cert_serial;
CREATE INDEX records_node_id ON records (log_id, node_id, sequence);
CREATE INDEX records_time ON records (log_id, time_us);
CREATE INDEX records_kind ON records (log_id, kind, sequence);
CREATE INDEX records_spiffe_id ON records (log_id, spiffe_id, sequence);
CREATE INDEX records_policy_digest ON records (log_id, policy_digest, sequence);
CREATE INDEX records_cert_serial ON records (log_id, cert_serial, sequence);

CREATE TABLE tree_hashes (
    log_id BIGINT NOT NULL REFERENCES logs (id),
    idx    BIGINT NOT NULL CHECK (idx >= 0),
    hash   BYTEA NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (log_id, idx)
);
CREATE FUNCTION tree_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END
$$;
CREATE TRIGGER tree_hashes_append_only_rows BEFORE UPDATE OR DELETE ON tree_hashes
    FOR EACH ROW EXECUTE FUNCTION tree_append_only();
CREATE TRIGGER tree_hashes_append_only_truncate BEFORE TRUNCATE ON tree_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION tree_append_only();

CREATE TABLE checkpoints (
    log_id    BIGINT NOT NULL REFERENCES logs (id),
    size      BIGINT NOT NULL CHECK (size >= 0),
    root_hash BYTEA NOT NULL CHECK (length(root_hash) = 32),
    signed_us BIGINT NOT NULL,
    note      TEXT NOT NULL,
    PRIMARY KEY (log_id, size)
);
CREATE TRIGGER checkpoints_append_only_rows BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION tree_append_only();
CREATE TRIGGER checkpoints_append_only_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION tree_append_only();

CREATE TABLE log_key_certificates (
    log_id     BIGINT NOT NULL REFERENCES logs (id),
    digest     TEXT NOT NULL CHECK (length(digest) = 64),
    public_key BYTEA NOT NULL CHECK (length(public_key) = 32),
    chain_pem  TEXT NOT NULL,
    added_us   BIGINT NOT NULL,
    PRIMARY KEY (log_id, digest)
);
