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

/// Accept that `node_id`'s TPM was cleared: log a node-reset record at `site` and `now`,
/// with `why` (who decided, on what grounds) and the state it discards, and reset the node's
/// state. Refused with [`LogError::UnknownNode`] for a node that never enrolled, and with
/// [`LogError::InvalidEntry`] for an empty `why`: an auditor must be able to read why.
pub async fn reset_node(
    log: &AttestationLog,
    site: &str,
    node_id: &str,
    why: &str,
    now: OffsetDateTime,
) -> Result<Appended, LogError> {
    let why = why.trim();
    if why.is_empty() {
        return Err(LogError::InvalidEntry {
            field: "reasons",
            problem: "a node reset says why (who checked the machine, and what they found)",
        });
    }
    let node_id = node_id.trim().to_ascii_lowercase();
    let before = log
        .node(&node_id)
        .await?
        .ok_or_else(|| LogError::UnknownNode {
            node_id: node_id.clone(),
        })?;
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
        site: site.to_owned(),
        node_id,
        reasons: vec![TPM_CLEARED.to_owned(), why.to_owned(), discarded],
    })
    .await
}
