//! `garrison audit prove`: a C2SP tlog-proof for one record.

use garrison_log::{AttestationLog, LogError, Query};
use garrison_transparency::InclusionProof;

/// What stops an audit operation (as opposed to a [`Problem`](crate::Problem) it finds).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Reading the log failed.
    #[error("reading the attestation log")]
    Log(#[source] LogError),
    /// The log has no origin: it has never been opened by an attestor with one.
    #[error("the log has no origin yet")]
    NoOrigin,
    /// The record asked for is not in the log.
    #[error("record #{sequence} is not in the log")]
    NoSuchRecord { sequence: u64 },
    /// No kept checkpoint covers the record yet.
    #[error(
        "no signed checkpoint covers record #{sequence} yet (the latest covers {covered} records)"
    )]
    NotCheckpointed { sequence: u64, covered: u64 },
    /// Recomputing the tree failed.
    #[error("recomputing the Merkle tree: {0}")]
    Tree(String),
    /// The Audit service failed or refused.
    #[error("the Audit service: {0}")]
    Remote(String),
    /// The roots given do not anchor policy bundles (no certificate, no trust domain).
    #[error("the roots given cannot verify policy bundles")]
    Roots(#[source] garrison_policy::PolicyError),
    /// The proposed policy bundle does not decode, verify against the roots or compile.
    #[error("the proposed policy bundle is refused")]
    WhatIfPolicy(#[source] garrison_policy::PolicyError),
    /// The log holds no decision (enroll, renew, reject, revoke) about the node asked for.
    #[error("the log holds no decision about {node}")]
    NoDecision { node: String },
    /// A node's latest record cannot be read as a decision (an unknown reason code).
    #[error("record #{sequence} cannot be read as a decision: {reason}")]
    UnreadableDecision { sequence: u64, reason: String },
    /// The policy bundle a decision names cannot be found in the log or does not verify.
    #[error("policy bundle {digest}: {reason}")]
    PolicyBundle { digest: String, reason: String },
    /// The identity facts kept with a node do not decode.
    #[error("the identity facts kept with node {node_id} do not decode: {reason}")]
    NodeIdentity { node_id: String, reason: String },
    /// The attestation result could not be made (e.g. a policy's `ear` declaration).
    #[error("the attestation result")]
    AttestationResult(#[source] garrison_ear::EarError),
    /// The proof made from the log's stored record and tree does not verify against its
    /// signed checkpoint: one of them was changed since it was signed.
    #[error(
        "the proof of record #{sequence} does not verify against the signed checkpoint ({reason}): \
         the record or the log's stored tree was changed; `garrison audit verify` names what"
    )]
    ProofDoesNotVerify { sequence: u64, reason: String },
    /// A checkpoint the auditor gave to verify against does not verify with the log's
    /// certified keys.
    #[error("checkpoint given #{index}: {reason}")]
    GivenCheckpoint { index: usize, reason: String },
}

/// The inclusion proof of record `sequence` in the latest signed checkpoint, with the
/// record's canonical bytes as the proof's `extra` data.
pub async fn prove(log: &AttestationLog, sequence: u64) -> Result<InclusionProof, AuditError> {
    // No log holds a sequence beyond what its database can store.
    if i64::try_from(sequence).is_err() {
        return Err(AuditError::NoSuchRecord { sequence });
    }
    let record = log
        .query(&Query {
            after_sequence: sequence.checked_sub(1),
            limit: Some(1),
            ..Query::default()
        })
        .await
        .map_err(AuditError::Log)?
        .into_iter()
        .find(|r| r.sequence == sequence)
        .ok_or(AuditError::NoSuchRecord { sequence })?;
    let checkpoint = log
        .latest_checkpoint()
        .await
        .map_err(AuditError::Log)?
        .filter(|c| c.size > sequence)
        .ok_or(AuditError::NotCheckpointed {
            sequence,
            covered: 0,
        })?;
    let hashes = log
        .inclusion_proof(sequence, checkpoint.size)
        .await
        .map_err(AuditError::Log)?;
    let canonical =
        garrison_log::canonical_bytes(sequence, &record.record).map_err(AuditError::Log)?;
    // Handed out only if it proves what it says: a record or stored hash changed since the
    // checkpoint was signed would give a proof nobody can check.
    garrison_transparency::verify_inclusion(
        &garrison_transparency::leaf_hash_of(&canonical),
        sequence,
        checkpoint.size,
        &hashes,
        &checkpoint.root_hash,
    )
    .map_err(|e| AuditError::ProofDoesNotVerify {
        sequence,
        reason: e.to_string(),
    })?;
    Ok(InclusionProof {
        index: sequence,
        extra: Some(canonical),
        hashes,
        checkpoint: checkpoint.note,
    })
}
