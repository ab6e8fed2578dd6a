-- What a site and its hub exchange (store-and-forward sync). PostgreSQL flavour; keep in step
-- with migrations/sqlite, which explains the tables.

CREATE TABLE cosignatures (
    log_id      BIGINT NOT NULL REFERENCES logs (id),
    size        BIGINT NOT NULL,
    witness     TEXT NOT NULL CHECK (length(witness) > 0),
    line        TEXT NOT NULL,
    cosigned_us BIGINT NOT NULL,
    PRIMARY KEY (log_id, size, witness),
    FOREIGN KEY (log_id, size) REFERENCES checkpoints (log_id, size)
);
CREATE TRIGGER cosignatures_append_only_rows BEFORE UPDATE OR DELETE ON cosignatures
    FOR EACH ROW EXECUTE FUNCTION tree_append_only();
CREATE TRIGGER cosignatures_append_only_truncate BEFORE TRUNCATE ON cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION tree_append_only();

CREATE TABLE sync_events (
    origin     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    count      BIGINT NOT NULL CHECK (count >= 1),
    first_us   BIGINT NOT NULL,
    last_us    BIGINT NOT NULL,
    detail     TEXT NOT NULL,
    held_note  TEXT,
    other_note TEXT,
    PRIMARY KEY (origin, kind)
);

CREATE TABLE revocation_lists (
    sequence  BIGINT PRIMARY KEY CHECK (sequence >= 1),
    note      TEXT NOT NULL,
    stored_us BIGINT NOT NULL
);
CREATE TRIGGER revocation_lists_append_only_rows BEFORE UPDATE OR DELETE ON revocation_lists
    FOR EACH ROW EXECUTE FUNCTION tree_append_only();
CREATE TRIGGER revocation_lists_append_only_truncate BEFORE TRUNCATE ON revocation_lists
    FOR EACH STATEMENT EXECUTE FUNCTION tree_append_only();

CREATE TABLE policy_bundles (
    sequence  BIGINT PRIMARY KEY CHECK (sequence >= 1),
    digest    TEXT NOT NULL CHECK (length(digest) = 64),
    bundle    BYTEA NOT NULL,
    stored_us BIGINT NOT NULL
);
CREATE TRIGGER policy_bundles_append_only_rows BEFORE UPDATE OR DELETE ON policy_bundles
    FOR EACH ROW EXECUTE FUNCTION tree_append_only();
CREATE TRIGGER policy_bundles_append_only_truncate BEFORE TRUNCATE ON policy_bundles
    FOR EACH STATEMENT EXECUTE FUNCTION tree_append_only();

CREATE TABLE witness_certificates (
    digest    TEXT PRIMARY KEY CHECK (length(digest) = 64), -- SHA-256 of chain_pem, hex
    chain_pem TEXT NOT NULL,
    added_us  BIGINT NOT NULL
);
