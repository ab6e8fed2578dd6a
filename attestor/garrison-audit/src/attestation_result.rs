//! A node's latest decision, as the facts of an attestation result (`garrison-ear` makes and
//! signs the EAR from them). Read from the log alone, so the attestor (signing at fetch
//! time) and an auditor over a database or an archive derive the same claims.
//!
//! * The decision: the node's newest `enroll`, `renew`, `reject` or `revoke` record (by node
//!   id; a SPIFFE ID is first resolved to the node its newest decision names). An allow whose
//!   certificate was revoked by serial later is superseded by that `revoke` record.
//! * The policy's declared claims: from the `data.json` of the bundle the record names, as
//!   archived with its `policy-update` record and verified against the roots at that time.
//! * How the EK was trusted: the `trust_basis` the attestor keeps with the node (node state,
//!   not a record: an exported archive has none, and the hardware claim is then "no claim").

use garrison_ear::{DecisionFacts, EkBasis, Outcome, PolicyClaims, Reason};
use garrison_log::{AttestationLog, Decision, Query, RecordKind, StoredRecord};
use garrison_policy::{BundleLimits, DATA_FILE, PolicyTrust, decode_archive, verify_bundle};
use serde_json::Value as Json;

use crate::AuditError;

/// The node an attestation result is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRef {
    /// Its id: the EK public key's SHA-256, hex.
    NodeId(String),
    /// A SPIFFE ID a decision gave it.
    SpiffeId(String),
}

/// The kinds of record that decide about a node.
const DECISIONS: [RecordKind; 4] = [
    RecordKind::Enroll,
    RecordKind::Renew,
    RecordKind::Reject,
    RecordKind::Revoke,
];

/// The facts of `node`'s latest decision in `log`; policy bundles are verified against
/// `roots` (DER).
pub async fn decision_facts(
    log: &AttestationLog,
    node: &NodeRef,
    roots: &[Vec<u8>],
) -> Result<DecisionFacts, AuditError> {
    let origin = log.origin().ok_or(AuditError::NoOrigin)?.to_owned();
    let node_id = node_id(log, node).await?;
    let decided = latest(log, by_node(&node_id), &DECISIONS)
        .await?
        .ok_or_else(|| no_decision(node))?;
    let stored = match revoked_after(log, &decided).await? {
        Some(revocation) => revocation,
        None => decided.clone(),
    };
    let outcome = outcome(&stored)?;
    let policy_claims = match (outcome, &stored.record.policy_digest) {
        (Outcome::Revoked, _) | (_, None) => PolicyClaims::default(),
        (_, Some(digest)) => declared_claims(log, digest, roots).await?,
    };
    let record = stored.record;
    Ok(DecisionFacts {
        origin,
        sequence: stored.sequence,
        leaf_hash: stored.leaf_hash,
        time: record.time,
        outcome,
        kind: record.kind.as_str().to_owned(),
        ek_basis: ek_basis(log, &node_id).await?,
        node_id,
        spiffe_id: record.spiffe_id.or(decided.record.spiffe_id),
        reasons: record.reasons,
        policy_digest: record.policy_digest,
        cert_serial: record.cert_serial.or(decided.record.cert_serial),
        policy_claims,
    })
}

fn no_decision(node: &NodeRef) -> AuditError {
    let node = match node {
        NodeRef::NodeId(id) => id.clone(),
        NodeRef::SpiffeId(id) => id.clone(),
    };
    AuditError::NoDecision { node }
}

fn by_node(node_id: &str) -> Query {
    Query {
        node_id: Some(node_id.to_owned()),
        ..Query::default()
    }
}

async fn latest(
    log: &AttestationLog,
    filter: Query,
    kinds: &[RecordKind],
) -> Result<Option<StoredRecord>, AuditError> {
    log.latest(&filter, kinds).await.map_err(AuditError::Log)
}

/// The node id asked for, or the one the newest decision giving that SPIFFE ID names.
async fn node_id(log: &AttestationLog, node: &NodeRef) -> Result<String, AuditError> {
    match node {
        NodeRef::NodeId(id) => Ok(id.to_ascii_lowercase()),
        NodeRef::SpiffeId(id) => {
            let filter = Query {
                spiffe_id: Some(id.clone()),
                ..Query::default()
            };
            latest(log, filter, &DECISIONS)
                .await?
                .and_then(|r| r.record.node_id)
                .ok_or_else(|| no_decision(node))
        }
    }
}

/// A `revoke` record of the certificate an allow issued, after the allow.
async fn revoked_after(
    log: &AttestationLog,
    decided: &StoredRecord,
) -> Result<Option<StoredRecord>, AuditError> {
    let record = &decided.record;
    let Some(serial) = record.cert_serial.as_ref() else {
        return Ok(None);
    };
    if record.decision != Decision::Allow {
        return Ok(None);
    }
    let filter = Query {
        cert_serial: Some(serial.clone()),
        after_sequence: Some(decided.sequence),
        ..Query::default()
    };
    latest(log, filter, &[RecordKind::Revoke]).await
}

fn outcome(stored: &StoredRecord) -> Result<Outcome, AuditError> {
    let record = &stored.record;
    let unreadable = |reason: String| AuditError::UnreadableDecision {
        sequence: stored.sequence,
        reason,
    };
    match (record.kind, record.decision) {
        (RecordKind::Enroll, Decision::Allow) => Ok(Outcome::Enrolled),
        (RecordKind::Renew, Decision::Allow) => Ok(Outcome::Renewed),
        (RecordKind::Revoke, _) => Ok(Outcome::Revoked),
        (RecordKind::Reject, Decision::Deny) => {
            let code = record.reasons.first().map(String::as_str).unwrap_or("");
            Reason::from_code(code)
                .map(Outcome::Refused)
                .ok_or_else(|| unreadable(format!("unknown reason code {code:?}")))
        }
        (kind, decision) => Err(unreadable(format!(
            "a {kind} record with decision {decision} is no decision about a node"
        ))),
    }
}

/// The claims the bundle `digest` declares (`data.json`'s `ear.appraises`), from its
/// archive in the log, verified against `roots` at the time it was put in force.
async fn declared_claims(
    log: &AttestationLog,
    digest: &str,
    roots: &[Vec<u8>],
) -> Result<PolicyClaims, AuditError> {
    let unusable = |reason: String| AuditError::PolicyBundle {
        digest: digest.to_owned(),
        reason,
    };
    let filter = Query {
        policy_digest: Some(digest.to_owned()),
        decision: Some(Decision::Allow),
        ..Query::default()
    };
    let update = latest(log, filter, &[RecordKind::PolicyUpdate])
        .await?
        .ok_or_else(|| unusable("no policy-update record put it in force".to_owned()))?;
    let archive_digest = update
        .record
        .evidence_digest
        .ok_or_else(|| unusable("its policy-update record names no archive".to_owned()))?;
    let archive = log
        .evidence(&archive_digest)
        .await
        .map_err(AuditError::Log)?
        .ok_or_else(|| unusable(format!("archive {archive_digest} is not in the log")))?;
    let trust = PolicyTrust::from_pem(&garrison_ca::certificates_to_pem(roots))
        .map_err(AuditError::Roots)?;
    let limits = BundleLimits::default();
    let verified = decode_archive(&archive, &limits)
        .and_then(|files| verify_bundle(&files, &trust, update.record.time, &limits))
        .map_err(|e| unusable(format!("does not verify: {e}")))?;
    if verified.digest != digest {
        return Err(unusable(format!(
            "its archive is bundle {}",
            verified.digest
        )));
    }
    let data: Json = match verified.files.get(DATA_FILE) {
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| unusable(format!("{DATA_FILE} is not JSON: {e}")))?,
        None => Json::Null,
    };
    PolicyClaims::from_policy_data(&data).map_err(AuditError::AttestationResult)
}

/// How the node's EK was trusted at its enrollment, as the attestor keeps it with the node.
async fn ek_basis(log: &AttestationLog, node_id: &str) -> Result<Option<EkBasis>, AuditError> {
    let Some(state) = log.node(node_id).await.map_err(AuditError::Log)? else {
        return Ok(None);
    };
    let identity: Json =
        serde_json::from_str(&state.identity).map_err(|e| AuditError::NodeIdentity {
            node_id: node_id.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(identity
        .get("trust_basis")
        .and_then(Json::as_str)
        .and_then(EkBasis::from_stored))
}
