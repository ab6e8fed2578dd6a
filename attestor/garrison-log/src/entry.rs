//! Checking and normalising an entry before it reaches the writer, so that a malformed entry
//! is refused on its own instead of failing the batch it would share with others.

use crate::leaf::{evidence_digest, truncate_to_micros, unix_micros};
use crate::{LogError, NewEntry, NodeState, Precondition, Record, RecordKind, RevocationTarget};

/// An entry ready to be written: validated, normalised, with every stored value converted.
#[derive(Debug)]
pub(crate) struct PreparedEntry {
    /// Normalised: time truncated to microseconds in UTC, serial lowercase, evidence digest set.
    pub record: Record,
    pub time_us: i64,
    pub not_after_us: Option<i64>,
    pub reasons_json: String,
    /// (digest, bytes)
    pub evidence: Option<(String, Vec<u8>)>,
    /// More evidence stored by digest, referred to from inside `evidence`: (digest, bytes).
    pub blobs: Vec<(String, Vec<u8>)>,
    pub node: Option<PreparedNode>,
    pub revocation: Option<RevocationTarget>,
    /// The node whose state a node-reset record resets.
    pub reset: Option<String>,
    /// Checked by the writer before the entry is written (serial lowercase).
    pub precondition: Option<Precondition>,
}

#[derive(Debug)]
pub(crate) struct PreparedNode {
    pub state: NodeState,
    pub clock: i64,
    pub updated_us: i64,
}

/// Validates a caller's entry. Revoke and node-reset records only come through
/// [`prepare_revocation`] and [`prepare_node_reset`].
pub(crate) fn prepare(entry: NewEntry) -> Result<PreparedEntry, LogError> {
    match entry.record.kind {
        RecordKind::Revoke => Err(LogError::InvalidEntry {
            field: "kind",
            problem: "revoke records are written by AttestationLog::revoke",
        }),
        RecordKind::NodeReset => Err(LogError::InvalidEntry {
            field: "kind",
            problem: "node-reset records are written by AttestationLog::reset_node",
        }),
        _ => prepare_any(entry, None),
    }
}

/// A node-reset record (its `node_id` is the node reset) and the reset of that node's state.
pub(crate) fn prepare_node_reset(record: Record) -> Result<PreparedEntry, LogError> {
    let node = match record.node_id.as_deref() {
        Some(node) if !node.is_empty() => node.to_owned(),
        _ => {
            return Err(LogError::InvalidEntry {
                field: "node_id",
                problem: "a node reset names its node",
            });
        }
    };
    let entry = NewEntry {
        record,
        evidence: None,
        node_update: None,
    };
    let mut prepared = prepare_any(entry, None)?;
    prepared.reset = Some(node);
    Ok(prepared)
}

/// A revoke record and its revocation row.
pub(crate) fn prepare_revocation(
    record: Record,
    target: RevocationTarget,
) -> Result<PreparedEntry, LogError> {
    let target = match target {
        RevocationTarget::Serial(serial) => {
            RevocationTarget::Serial(normalise_hex(&serial, "target")?)
        }
        RevocationTarget::Node(node) if node.is_empty() => {
            return Err(LogError::InvalidEntry {
                field: "target",
                problem: "empty node id",
            });
        }
        RevocationTarget::Node(node) => RevocationTarget::Node(node),
    };
    let entry = NewEntry {
        record,
        evidence: None,
        node_update: None,
    };
    prepare_any(entry, Some(target))
}

fn prepare_any(
    entry: NewEntry,
    revocation: Option<RevocationTarget>,
) -> Result<PreparedEntry, LogError> {
    let NewEntry {
        mut record,
        evidence,
        node_update,
    } = entry;
    record.time = truncate_to_micros(record.time, "time")?;
    record.cert_not_after = record
        .cert_not_after
        .map(|t| truncate_to_micros(t, "cert_not_after"))
        .transpose()?;
    record.cert_serial = record
        .cert_serial
        .as_deref()
        .map(|s| normalise_hex(s, "cert_serial"))
        .transpose()?;
    let evidence = attach_evidence(&mut record, evidence)?;
    let node = node_update
        .map(|state| prepare_node(&record, state))
        .transpose()?;
    let reasons_json =
        serde_json::to_string(&record.reasons).map_err(|source| LogError::Encode { source })?;
    Ok(PreparedEntry {
        time_us: unix_micros(record.time, "time")?,
        not_after_us: record
            .cert_not_after
            .map(|t| unix_micros(t, "cert_not_after"))
            .transpose()?,
        record,
        reasons_json,
        evidence,
        blobs: Vec::new(),
        node,
        revocation,
        reset: None,
        precondition: None,
    })
}

/// Sets `record.evidence_digest` from the evidence; a digest without evidence, or one that
/// does not match it, is refused (it would reference evidence the log does not hold).
fn attach_evidence(
    record: &mut Record,
    evidence: Option<Vec<u8>>,
) -> Result<Option<(String, Vec<u8>)>, LogError> {
    let Some(bytes) = evidence else {
        if record.evidence_digest.is_some() {
            return Err(LogError::InvalidEntry {
                field: "evidence_digest",
                problem: "set without evidence bytes",
            });
        }
        return Ok(None);
    };
    let digest = evidence_digest(&bytes);
    if let Some(given) = &record.evidence_digest
        && !given.eq_ignore_ascii_case(&digest)
    {
        return Err(LogError::InvalidEntry {
            field: "evidence_digest",
            problem: "does not match the evidence",
        });
    }
    record.evidence_digest = Some(digest.clone());
    Ok(Some((digest, bytes)))
}

fn prepare_node(record: &Record, mut state: NodeState) -> Result<PreparedNode, LogError> {
    if record.node_id.as_deref() != Some(state.node_id.as_str()) {
        return Err(LogError::InvalidEntry {
            field: "node_update",
            problem: "node_id differs from the record's",
        });
    }
    let clock = i64::try_from(state.clock).map_err(|_| LogError::InvalidEntry {
        field: "node_update.clock",
        problem: "larger than i64::MAX",
    })?;
    state.updated = truncate_to_micros(state.updated, "node_update.updated")?;
    state.current_serial = state
        .current_serial
        .as_deref()
        .map(|s| normalise_hex(s, "node_update.current_serial"))
        .transpose()?;
    Ok(PreparedNode {
        clock,
        updated_us: unix_micros(state.updated, "node_update.updated")?,
        state,
    })
}

/// A [`Precondition`] as the writer compares it: the node named, the serial lowercase.
pub(crate) fn prepare_precondition(precondition: Precondition) -> Result<Precondition, LogError> {
    if precondition.node_id.is_empty() {
        return Err(LogError::InvalidEntry {
            field: "precondition.node_id",
            problem: "empty node id",
        });
    }
    let presented_serial = precondition
        .presented_serial
        .as_deref()
        .map(|s| normalise_hex(s, "precondition.presented_serial"))
        .transpose()?;
    Ok(Precondition {
        node_id: precondition.node_id,
        presented_serial,
    })
}

/// Lowercase hex, non-empty.
pub(crate) fn normalise_hex(text: &str, field: &'static str) -> Result<String, LogError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LogError::InvalidEntry {
            field,
            problem: "not a hex string",
        });
    }
    Ok(text.to_ascii_lowercase())
}
