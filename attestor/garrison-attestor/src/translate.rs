//! The appraisal core's types from the wire (`garrison-proto`) and to and from the log
//! (`garrison-log`): `garrison-appraisal` links neither, so its types mirror theirs field for
//! field and are moved across here, nothing computed.

use garrison_appraisal::{
    Decision, DecisionRecord, FieldLimits, NodeHistory, Quote, QuotedPcr, RecordKind,
};
use garrison_log::{NodeState, Record};
use garrison_proto::{limits, v1};

/// The protocol's field limits, for the appraisal's size checks (and for an auditor's
/// replay of them: `garrison audit replay`).
pub const FIELD_LIMITS: FieldLimits = FieldLimits {
    public_area: limits::MAX_PUBLIC_AREA,
    certificate: limits::MAX_CERTIFICATE,
    ek_chain: limits::MAX_EK_CHAIN,
    asserted_facts: limits::MAX_ASSERTED_FACTS,
    asserted_len: limits::MAX_ASSERTED_LEN,
    attest: limits::MAX_ATTEST,
    pcr_values: limits::MAX_PCR_VALUES,
    event_log: limits::MAX_EVENT_LOG,
    csr: limits::MAX_CSR,
    secret: limits::MAX_SECRET,
};

/// A quote as received.
pub(crate) fn quote(q: &v1::Quote) -> Quote {
    Quote {
        attest: q.attest.clone(),
        signature: q.signature.clone(),
        pcrs: q
            .pcrs
            .iter()
            .map(|p| QuotedPcr {
                hash_alg: p.hash_alg,
                index: p.index,
                digest: p.digest.clone(),
            })
            .collect(),
    }
}

/// A decision's record as the log stores it (the log fills in the evidence digest).
pub(crate) fn record(r: DecisionRecord) -> Record {
    Record {
        time: r.time,
        site: r.site,
        kind: match r.kind {
            RecordKind::Enroll => garrison_log::RecordKind::Enroll,
            RecordKind::Renew => garrison_log::RecordKind::Renew,
            RecordKind::Reject => garrison_log::RecordKind::Reject,
        },
        node_id: r.node_id,
        spiffe_id: r.spiffe_id,
        decision: match r.decision {
            Decision::Allow => garrison_log::Decision::Allow,
            Decision::Deny => garrison_log::Decision::Deny,
        },
        reasons: r.reasons,
        policy_digest: r.policy_digest,
        evidence_digest: None,
        cert_serial: r.cert_serial,
        cert_not_after: r.cert_not_after,
    }
}

/// A node's state as the log stores it.
pub(crate) fn node_state(n: NodeHistory) -> NodeState {
    NodeState {
        node_id: n.node_id,
        ak_name: n.ak_name,
        spiffe_id: n.spiffe_id,
        identity: n.identity,
        reset_count: n.reset_count,
        restart_count: n.restart_count,
        clock: n.clock,
        current_serial: n.current_serial,
        updated: n.updated,
    }
}

/// A node's state as the appraisal takes it.
pub(crate) fn node_history(n: NodeState) -> NodeHistory {
    NodeHistory {
        node_id: n.node_id,
        ak_name: n.ak_name,
        spiffe_id: n.spiffe_id,
        identity: n.identity,
        reset_count: n.reset_count,
        restart_count: n.restart_count,
        clock: n.clock,
        current_serial: n.current_serial,
        updated: n.updated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn node_state_crosses_both_ways_unchanged() {
        let node = NodeHistory {
            node_id: "ab".into(),
            ak_name: vec![0, 11, 1],
            spiffe_id: "spiffe://example.org/site/a/node/ab".into(),
            identity: r#"{"trust_basis":"ManufacturerRoots"}"#.into(),
            reset_count: 3,
            restart_count: 2,
            clock: u64::from(u32::MAX) + 1,
            current_serial: Some("0f".into()),
            updated: datetime!(2026-12-01 08:00 UTC),
        };
        assert_eq!(node_history(node_state(node.clone())), node);
    }

    #[test]
    fn records_keep_every_field_and_kind() {
        let kinds = [
            (RecordKind::Enroll, garrison_log::RecordKind::Enroll),
            (RecordKind::Renew, garrison_log::RecordKind::Renew),
            (RecordKind::Reject, garrison_log::RecordKind::Reject),
        ];
        for (kind, logged) in kinds {
            let record = record(DecisionRecord {
                time: datetime!(2026-12-01 08:00 UTC),
                site: "a".into(),
                kind,
                node_id: Some("ab".into()),
                spiffe_id: Some("spiffe://example.org/site/a/node/ab".into()),
                decision: Decision::Deny,
                reasons: vec!["policy-deny".into(), "no".into()],
                policy_digest: Some("d".into()),
                cert_serial: Some("0f".into()),
                cert_not_after: Some(datetime!(2026-12-01 09:00 UTC)),
            });
            assert_eq!(record.kind, logged);
            assert_eq!(record.decision, garrison_log::Decision::Deny);
            assert_eq!(record.reasons, ["policy-deny", "no"]);
            assert_eq!(record.policy_digest.as_deref(), Some("d"));
            assert_eq!(record.cert_serial.as_deref(), Some("0f"));
            assert_eq!(record.evidence_digest, None, "the log computes it");
        }
    }
}
