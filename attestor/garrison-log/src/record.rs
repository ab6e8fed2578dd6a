//! What the log stores: records, node state, evidence references and queries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::LogError;

/// What happened. Stored and hashed by [`RecordKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordKind {
    Enroll,
    Renew,
    Reject,
    Revoke,
    Rotate,
    PolicyUpdate,
    /// An operator accepted a node's cleared TPM: see [`NodeReset`].
    NodeReset,
}

impl RecordKind {
    /// Every kind, in declaration order.
    pub const ALL: [RecordKind; 7] = [
        RecordKind::Enroll,
        RecordKind::Renew,
        RecordKind::Reject,
        RecordKind::Revoke,
        RecordKind::Rotate,
        RecordKind::PolicyUpdate,
        RecordKind::NodeReset,
    ];

    /// The stable lowercase name: `enroll`, `renew`, `reject`, `revoke`, `rotate`,
    /// `policy-update`, `node-reset`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Enroll => "enroll",
            RecordKind::Renew => "renew",
            RecordKind::Reject => "reject",
            RecordKind::Revoke => "revoke",
            RecordKind::Rotate => "rotate",
            RecordKind::PolicyUpdate => "policy-update",
            RecordKind::NodeReset => "node-reset",
        }
    }
}

impl FromStr for RecordKind {
    type Err = LogError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| LogError::UnknownName {
                what: "record kind",
                found: s.to_owned(),
            })
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The admission outcome a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

impl FromStr for Decision {
    type Err = LogError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Decision::Allow),
            "deny" => Ok(Decision::Deny),
            _ => Err(LogError::UnknownName {
                what: "decision",
                found: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attestation log record, as the attestor hands it in.
///
/// Times are stored (and hashed) with microsecond precision: sub-microsecond parts are
/// dropped by [`AttestationLog::append`](crate::AttestationLog::append), and records come
/// back in UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub site: String,
    pub kind: RecordKind,
    /// EK public key hash, hex.
    pub node_id: Option<String>,
    pub spiffe_id: Option<String>,
    pub decision: Decision,
    pub reasons: Vec<String>,
    pub policy_digest: Option<String>,
    /// SHA-256 (lowercase hex) of the evidence stored beside the record. Filled in by
    /// `append` from [`NewEntry::evidence`]; if the caller sets it, it must match.
    pub evidence_digest: Option<String>,
    /// Certificate serial, hex. Stored lowercase.
    pub cert_serial: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cert_not_after: Option<OffsetDateTime>,
}

/// What [`AttestationLog::append`](crate::AttestationLog::append) takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub record: Record,
    /// Raw evidence bytes, stored once per SHA-256 digest.
    pub evidence: Option<Vec<u8>>,
    /// Node state upserted in the same transaction as the record. Its `node_id` must equal
    /// the record's.
    pub node_update: Option<NodeState>,
}

/// A committed append: where the record sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Dense, starting at 0, in commit order.
    pub sequence: u64,
    /// `SHA-256(0x00 || canonical_bytes)`, see [`canonical_bytes`](crate::canonical_bytes).
    pub leaf_hash: [u8; 32],
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    pub sequence: u64,
    #[serde(with = "hex_bytes")]
    pub leaf_hash: [u8; 32],
    pub record: Record,
}

/// What the attestor remembers about a node between attestations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub node_id: String,
    /// TPM name of the AK bound at enrollment.
    #[serde(with = "hex_bytes")]
    pub ak_name: Vec<u8>,
    pub spiffe_id: String,
    /// Identity facts established at enrollment (a JSON object: EK certificate issuer and
    /// serial, TPM manufacturer), shown to policy again at every renewal.
    pub identity: String,
    pub reset_count: u32,
    pub restart_count: u32,
    /// TPM clock (milliseconds); must fit in an `i64`.
    pub clock: u64,
    /// Serial (hex) of the node's current certificate. Stored lowercase.
    pub current_serial: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated: OffsetDateTime,
}

/// A node's state and whether it may be issued to, read in one query: what the attestor needs
/// before every decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node's state, if it has enrolled.
    pub node: Option<NodeState>,
    /// True if the node is revoked (or, when looked up by serial, that certificate is).
    pub revoked: bool,
}

/// A filter over records. Every set field must match; results are in sequence order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub node_id: Option<String>,
    /// Inclusive lower bound on [`Record::time`].
    pub since: Option<OffsetDateTime>,
    /// Exclusive upper bound on [`Record::time`].
    pub until: Option<OffsetDateTime>,
    pub kind: Option<RecordKind>,
    pub decision: Option<Decision>,
    pub spiffe_id: Option<String>,
    pub policy_digest: Option<String>,
    /// Certificate serial (hex, any case).
    pub cert_serial: Option<String>,
    /// Only records after this sequence (paging: the last sequence of the previous page).
    pub after_sequence: Option<u64>,
    /// At most this many records (the lowest sequences that match).
    pub limit: Option<u32>,
}

/// What must still hold when a decision that admits a node is committed
/// ([`AttestationLog::append_if`](crate::AttestationLog::append_if)).
///
/// The attestor reads a node's revocation status before it decides, and the record is
/// committed milliseconds later. A revocation committed in between would otherwise let that
/// one decision through, and the log would show an allow after the revoke record. The writer
/// checks the precondition inside the batch's transaction, once it holds the log's write lock
/// (so no revocation can commit between the check and the record), against the committed
/// state and the entries queued before it in the same batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precondition {
    /// The node the decision admits: it must not be revoked.
    pub node_id: String,
    /// For a renewal, the serial of the certificate the node presented (hex, compared
    /// case-insensitively): it must not be revoked, and must still be the node's current
    /// serial (another renewal with the same certificate committed first, or a node reset,
    /// supersedes it).
    pub presented_serial: Option<String>,
}

/// Why a [`Precondition`] no longer held: nothing of that entry was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreconditionFailure {
    #[error("node {node_id} was revoked before the decision was committed")]
    NodeRevoked { node_id: String },
    #[error("certificate {serial} was revoked before the decision was committed")]
    SerialRevoked { serial: String },
    #[error("certificate {serial} is no longer the current certificate of node {node_id}")]
    SerialSuperseded { serial: String, node_id: String },
}

/// What a revocation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationTarget {
    /// One certificate, by serial (hex, compared case-insensitively).
    Serial(String),
    /// Every certificate ever issued to this node id.
    Node(String),
}

/// Input of [`AttestationLog::revoke`](crate::AttestationLog::revoke). It becomes a
/// [`RecordKind::Revoke`] record with decision [`Decision::Deny`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub time: OffsetDateTime,
    pub site: String,
    pub target: RevocationTarget,
    pub reasons: Vec<String>,
    pub policy_digest: Option<String>,
}

/// Input of [`AttestationLog::reset_node`](crate::AttestationLog::reset_node): an operator
/// accepts that a node's TPM was cleared (TPM2_Clear sets its resetCount and restartCount to
/// zero and restarts its clock, so every later quote looks like a rollback). It becomes a
/// [`RecordKind::NodeReset`] record with decision [`Decision::Allow`], and in the same
/// transaction the node's state forgets what the old TPM state reported: counters and clock
/// restart at zero, and the AK binding and current certificate serial are dropped (a cleared
/// TPM has lost its AK; the node's old SVID no longer renews). The node's next enrollment is
/// then checked against nothing older, and binds whatever AK and counters it brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReset {
    pub time: OffsetDateTime,
    pub site: String,
    /// The node (EK public key hash, hex), which must have enrolled.
    pub node_id: String,
    /// Why, for the record: who decided and on what grounds.
    pub reasons: Vec<String>,
}

/// Counters of the group-commit writer since [`AttestationLog::open`](crate::AttestationLog::open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Committed batch transactions.
    pub batches: u64,
    /// Records in committed batches.
    pub records: u64,
    /// Batch transactions that failed (every waiter got the error).
    pub failed_batches: u64,
    /// Records in failed batches.
    pub failed_records: u64,
    /// Size of the largest batch attempted.
    pub largest_batch: u64,
    /// Background WAL checkpoints run (SQLite only; see `wal_checkpoint.rs`). Not to be
    /// confused with the signed checkpoints of the log's Merkle tree.
    pub wal_checkpoints: u64,
    /// Background WAL checkpoints that failed (logged; the writer's own checkpoint is the
    /// backstop).
    pub failed_wal_checkpoints: u64,
    /// Batches held open for the commit window
    /// ([`set_commit_window`](crate::AttestationLog::set_commit_window)).
    pub commit_windows: u64,
    /// Of those, the windows that some other entry joined: the ones that paid off.
    pub commit_windows_gathered: u64,
    /// `node_status` and `node_status_by_serial` reads answered on the writer's own
    /// connection, between its batches (SQLite; other reads, and every read on PostgreSQL, go
    /// through the pool).
    pub status_reads_on_writer: u64,
    /// Entries left out of their batch because their [`Precondition`](crate::Precondition)
    /// no longer held (a revocation or another renewal committed first): each an allow the
    /// attestor then refused.
    pub precondition_failures: u64,
}

/// Serde for byte strings as lowercase hex.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: impl AsRef<[u8]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<Vec<u8>>,
    {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text).map_err(D::Error::custom)?;
        T::try_from(bytes).map_err(|_| D::Error::custom("byte string has the wrong length"))
    }
}

/// What a site's database keeps of a node's state that an auditor can check against the
/// log ([`AttestationLog::kept_node_states`](crate::AttestationLog::kept_node_states)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptNodeState {
    /// The state (the AK bound, the serial a renewal must present, the identity facts and
    /// counters renewals are decided against).
    pub state: NodeState,
    /// The record whose decision last wrote this state.
    pub last_sequence: u64,
    /// Whether the row belongs to this log (node states are keyed by node id alone: a row
    /// of another log in the same database is still what this log's attestor reads).
    pub this_log: bool,
    /// Whether the record it names (in its own log) exists.
    pub record_held: bool,
}

/// A signed checkpoint as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size it commits to.
    pub size: u64,
    /// RFC 9162 root hash of the tree of that size.
    pub root_hash: [u8; 32],
    /// When it was signed (the signer's clock; not part of the signed text).
    pub signed: OffsetDateTime,
    /// The signed note: C2SP tlog-checkpoint body and signature lines.
    pub note: String,
}
