//! What the site knows of a node from its earlier decisions: the input that makes renewals
//! and re-enrollments depend on history (monotonic TPM counters, the bound AK, the stored EK
//! facts), and the state an allow leaves behind.

use time::OffsetDateTime;

/// A node's state after its last allow. Field for field the attestation log's node state
/// (`garrison_log::NodeState`), which this crate does not link (it does storage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHistory {
    /// EK public key hash, hex.
    pub node_id: String,
    /// TPM name of the AK bound at enrollment.
    pub ak_name: Vec<u8>,
    /// The SPIFFE ID of the node's current SVID.
    pub spiffe_id: String,
    /// Identity facts established at enrollment (a JSON object: `garrison_policy::EkFacts`
    /// plus `trust_basis`), shown to policy again at every renewal.
    pub identity: String,
    /// TPM resetCount of the last accepted quote.
    pub reset_count: u32,
    /// TPM restartCount of the last accepted quote.
    pub restart_count: u32,
    /// TPM clock (milliseconds) of the last accepted quote.
    pub clock: u64,
    /// Serial (lowercase hex) of the node's current certificate.
    pub current_serial: Option<String>,
    /// When the last allow was decided.
    pub updated: OffsetDateTime,
}
