//! What an operator does to a node's stored state, each act a record in the attestation log.
//!
//! A cleared TPM (TPM2_Clear, e.g. after a firmware reset or a re-provisioning) keeps its
//! endorsement key but restarts resetCount, restartCount and clock at zero, so every quote it
//! makes afterwards looks like a rollback and the node is refused `clock-rollback` until its
//! counters pass the old ones, which may be never. Only an operator can tell a cleared TPM
//! from a rolled-back one (by looking at the machine), so only an operator's act lets it in:
//! [`reset_node`] writes a `node-reset` record naming who decided and why, with the state it
//! discards, and in the same transaction resets the node's state (see
//! [`garrison_log::NodeReset`]). The node then enrolls again, proving its EK and a fresh AK,
//! and policy decides as for any enrollment.

use garrison_log::{Appended, AttestationLog, LogError, NodeReset};
use time::OffsetDateTime;

/// The first reason of every node-reset record (a stable code, like refusal codes).
pub const TPM_CLEARED: &str = "tpm-cleared";

/// Accept that `node_id`'s TPM was cleared: log a node-reset record at `now`, with `why`
/// (who decided, on what grounds; a record without one says so) and the state it discards,
/// and reset the node's state. The record's site is `site`, or else the one in the node's
/// SPIFFE ID. Refused with [`LogError::UnknownNode`] for a node that never enrolled, and with
/// [`LogError::InvalidEntry`] for a `why` that is given but blank.
pub async fn reset_node(
    log: &AttestationLog,
    site: Option<&str>,
    node_id: &str,
    why: Option<&str>,
    now: OffsetDateTime,
) -> Result<Appended, LogError> {
    let why = match why.map(str::trim) {
        Some("") => {
            return Err(LogError::InvalidEntry {
                field: "reasons",
                problem: "a node reset's reason, when given, says why (who checked the machine, \
                          and what they found)",
            });
        }
        Some(why) => why.to_owned(),
        None => NO_REASON_GIVEN.to_owned(),
    };
    let node_id = node_id.trim().to_ascii_lowercase();
    let before = log
        .node(&node_id)
        .await?
        .ok_or_else(|| LogError::UnknownNode {
            node_id: node_id.clone(),
        })?;
    let site = match site {
        Some(site) => site.to_owned(),
        None => site_of(&before.spiffe_id).ok_or(LogError::InvalidEntry {
            field: "site",
            problem: "the node's SPIFFE ID names no site; give the site explicitly",
        })?,
    };
    let discarded = format!(
        "discarded: resetCount {}, restartCount {}, clock {} ms, AK name {}, current serial {}",
        before.reset_count,
        before.restart_count,
        before.clock,
        hex::encode(&before.ak_name),
        before.current_serial.as_deref().unwrap_or("none"),
    );
    log.reset_node(NodeReset {
        time: now,
        site,
        node_id,
        reasons: vec![TPM_CLEARED.to_owned(), why, discarded],
    })
    .await
}

/// What a node-reset record says when the operator gave no reason.
pub const NO_REASON_GIVEN: &str = "no reason given by the operator";

/// `<s>` of `spiffe://<td>/site/<s>/...`.
fn site_of(spiffe_id: &str) -> Option<String> {
    let id = garrison_ca::SpiffeId::parse(spiffe_id).ok()?;
    garrison_ca::site_of(&id).map(str::to_owned)
}
