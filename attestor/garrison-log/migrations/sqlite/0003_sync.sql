-- What a site and its hub exchange (store-and-forward sync). SQLite flavour; keep in step
-- with migrations/postgres.
--
-- * cosignatures: a witness's C2SP cosignature/v1 line on a kept checkpoint of a log. A site
--   keeps the hub's cosignatures on its own checkpoints; the hub keeps its own on every
--   site log it replicates. Append-only, like the checkpoints they sign.
-- * sync_events: what the hub refused or alarmed on, per log and kind, counted rather than
--   listed (a site that keeps sending bad batches updates one row, it cannot fill the
--   table). A fork alarm keeps the first pair of conflicting checkpoints it saw.
-- * revocation_lists: signed revocation lists (a signed note by the hub's witness key), by
--   sequence. The hub keeps every list it signed; a site keeps every list it accepted.
-- * policy_bundles: signed policy bundles published at the hub for its sites, by sequence.
-- * witness_certificates: the certificate chains (PEM, the witness key's certificate first)
--   of the hub witness keys whose cosignatures this database keeps, each once: an auditor
--   holding only the root certificate checks the cosignatures with them.

CREATE TABLE cosignatures (
    log_id      INTEGER NOT NULL REFERENCES logs (id),
    size        INTEGER NOT NULL,
    witness     TEXT NOT NULL CHECK (length(witness) > 0),
    line        TEXT NOT NULL,
    cosigned_us INTEGER NOT NULL,
    PRIMARY KEY (log_id, size, witness),
    FOREIGN KEY (log_id, size) REFERENCES checkpoints (log_id, size)
);
CREATE TRIGGER cosignatures_append_only_update BEFORE UPDATE ON cosignatures
BEGIN
    SELECT RAISE(ABORT, 'cosignatures are kept as signed');
END;
CREATE TRIGGER cosignatures_append_only_delete BEFORE DELETE ON cosignatures
BEGIN
    SELECT RAISE(ABORT, 'cosignatures are kept as signed');
END;

CREATE TABLE sync_events (
    origin     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    count      INTEGER NOT NULL CHECK (count >= 1),
    first_us   INTEGER NOT NULL,
    last_us    INTEGER NOT NULL,
    -- What the last one was (bounded by the writer to a few hundred characters).
    detail     TEXT NOT NULL,
    -- A fork: the checkpoint the hub had cosigned and the one that contradicts it.
    held_note  TEXT,
    other_note TEXT,
    PRIMARY KEY (origin, kind)
);

CREATE TABLE revocation_lists (
    sequence  INTEGER PRIMARY KEY CHECK (sequence >= 1),
    note      TEXT NOT NULL,
    stored_us INTEGER NOT NULL
);
CREATE TRIGGER revocation_lists_append_only_update BEFORE UPDATE ON revocation_lists
BEGIN
    SELECT RAISE(ABORT, 'revocation lists are kept as signed');
END;
CREATE TRIGGER revocation_lists_append_only_delete BEFORE DELETE ON revocation_lists
BEGIN
    SELECT RAISE(ABORT, 'revocation lists are kept as signed');
END;

CREATE TABLE policy_bundles (
    sequence  INTEGER PRIMARY KEY CHECK (sequence >= 1),
    digest    TEXT NOT NULL CHECK (length(digest) = 64),
    bundle    BLOB NOT NULL,
    stored_us INTEGER NOT NULL
);
CREATE TRIGGER policy_bundles_append_only_update BEFORE UPDATE ON policy_bundles
BEGIN
    SELECT RAISE(ABORT, 'published policy bundles are kept');
END;
CREATE TRIGGER policy_bundles_append_only_delete BEFORE DELETE ON policy_bundles
BEGIN
    SELECT RAISE(ABORT, 'published policy bundles are kept');
END;

CREATE TABLE witness_certificates (
    digest    TEXT PRIMARY KEY CHECK (length(digest) = 64), -- SHA-256 of chain_pem, hex
    chain_pem TEXT NOT NULL,
    added_us  INTEGER NOT NULL
);
