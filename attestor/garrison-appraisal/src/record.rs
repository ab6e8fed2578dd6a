//! The attestation-log record of a decision, as the appraisal produces it. Field for field
//! the log's `garrison_log::Record` (which this crate does not link: it does storage), so a
//! host converts it by moving fields, and an auditor's replay compares it with what was
//! logged.

use time::OffsetDateTime;

use crate::refusal::Refusal;

/// The kinds of record a decision produces (a subset of the log's kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// An enrollment was allowed.
    Enroll,
    /// A renewal was allowed.
    Renew,
    /// A request was refused.
    Reject,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A certificate was issued.
    Allow,
    /// Nothing was issued.
    Deny,
}

/// One decision's log record, without the evidence digest (the log computes it from the
/// evidence bytes stored beside the record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    /// When the decision was made.
    pub time: OffsetDateTime,
    /// The deciding site.
    pub site: String,
    /// What happened.
    pub kind: RecordKind,
    /// EK public key hash, hex.
    pub node_id: Option<String>,
    /// The SPIFFE ID decided (also on a refusal after policy chose one, e.g. the CA failed).
    pub spiffe_id: Option<String>,
    /// Allow or deny.
    pub decision: Decision,
    /// A refusal's reason code, then its detail; empty on allow.
    pub reasons: Vec<String>,
    /// Digest of the policy bundle that decided, once policy ran.
    pub policy_digest: Option<String>,
    /// Serial (lowercase hex) of the certificate issued.
    pub cert_serial: Option<String>,
    /// Expiry of the certificate issued.
    pub cert_not_after: Option<OffsetDateTime>,
}

/// What a refusal's record says about whom and what had been decided before it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefusalContext {
    /// The node, once known (its EK was bound to the request).
    pub node_id: Option<String>,
    /// The SPIFFE ID policy chose, if it got that far.
    pub spiffe_id: Option<String>,
    /// Digest of the policy bundle that ran, if it ran.
    pub policy_digest: Option<String>,
}

impl DecisionRecord {
    /// The record of `refusal`, with `detail` as the detail kept (the refusal's own, or a
    /// shortened one for a sender that proved nothing).
    pub fn refused(
        site: &str,
        time: OffsetDateTime,
        context: RefusalContext,
        refusal: &Refusal,
        detail: String,
    ) -> Self {
        DecisionRecord {
            time,
            site: site.to_owned(),
            kind: RecordKind::Reject,
            node_id: context.node_id,
            spiffe_id: context.spiffe_id,
            decision: Decision::Deny,
            reasons: vec![refusal.reason.code().to_owned(), detail],
            policy_digest: context.policy_digest,
            cert_serial: None,
            cert_not_after: None,
        }
    }
}
