//! A decision's facts as an EAR.
//!
//! ```json
//! {
//!   "eat_profile": "tag:ietf.org,2026:rats/ear#04",
//!   "iat": 1767225600,
//!   "ear_verifier_id": {"developer": "...", "build": "garrison 0.1.0"},
//!   "submods": {"node": {
//!     "ear_status": "affirming",
//!     "ear_trustworthiness_vector": {"instance-identity": 2, "configuration": 2, ...},
//!     "ear_appraisal_policy_ids": ["sha256:<policy bundle digest>"],
//!     "ear_verifier_claims": {"garrison_log_origin": "...", "garrison_log_sequence": 7, ...}
//!   }},
//!   "ear_status": "affirming"
//! }
//! ```
//!
//! The pointer into the log and everything else Garrison adds are `ear_verifier_claims`
//! (draft-ietf-rats-ear-04 §3.1: claims with the verifier's authority), not extensions, so a
//! generic EAR reader keeps them.

use std::collections::BTreeMap;

use ear::{Appraisal, EAR_PROFILE, Ear, Extensions, RawValue, VerifierID};

use crate::EarError;
use crate::facts::DecisionFacts;
use crate::vector::{status, trust_vector};

/// The name of the one appraisal in every Garrison EAR: the node's.
pub const SUBMOD: &str = "node";

/// Who made the EAR: this project, and this build of it.
pub fn verifier_id() -> VerifierID {
    VerifierID {
        developer: env!("CARGO_PKG_REPOSITORY").to_owned(),
        build: format!("garrison {}", env!("CARGO_PKG_VERSION")),
    }
}

/// The EAR of `facts`. Deterministic: `iat` is the decision's time (whole seconds), and no
/// nonce, expiry or raw evidence is included (the evidence stays in the log, named by the
/// record the EAR points to).
pub fn attestation_result(facts: &DecisionFacts) -> Result<Ear, EarError> {
    let vector = trust_vector(facts.outcome, facts.ek_basis, facts.policy_claims);
    let tier = status(facts.outcome, facts.ek_basis, vector);
    let mut appraisal = Appraisal::new();
    appraisal.status = tier;
    appraisal.trust_vector = vector.to_ear();
    appraisal.policy_ids = facts
        .policy_digest
        .iter()
        .map(|d| format!("sha256:{d}"))
        .collect();
    appraisal.verifier_claims = verifier_claims(facts);
    let ear = Ear {
        profile: EAR_PROFILE.to_owned(),
        iat: facts.time.unix_timestamp(),
        exp: None,
        vid: verifier_id(),
        submods: BTreeMap::from([(SUBMOD.to_owned(), appraisal)]),
        nonce: None,
        status: Some(tier),
        raw_evidence: None,
        topology: None,
        extensions: Extensions::new(),
    };
    ear.validate().map_err(|e| EarError::Invalid {
        reason: e.to_string(),
    })?;
    Ok(ear)
}

fn verifier_claims(facts: &DecisionFacts) -> BTreeMap<String, RawValue> {
    let text = |s: &str| RawValue::String(s.to_owned());
    let mut claims = BTreeMap::from([
        ("garrison_log_origin", text(&facts.origin)),
        (
            "garrison_log_sequence",
            RawValue::Integer(i64::try_from(facts.sequence).unwrap_or(i64::MAX)),
        ),
        (
            "garrison_log_leaf_hash",
            text(&hex::encode(facts.leaf_hash)),
        ),
        ("garrison_record_kind", text(&facts.kind)),
        ("garrison_node_id", text(&facts.node_id)),
        (
            "garrison_ek_trust",
            text(facts.ek_basis.map_or("unknown", |b| b.name())),
        ),
        (
            "garrison_policy_appraises",
            RawValue::Array(facts.policy_claims.names().into_iter().map(text).collect()),
        ),
    ]);
    let optional = [
        ("garrison_spiffe_id", &facts.spiffe_id),
        ("garrison_cert_serial", &facts.cert_serial),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            claims.insert(name, text(value));
        }
    }
    if !facts.reasons.is_empty() {
        let reasons = facts.reasons.iter().map(|r| text(r)).collect();
        claims.insert("garrison_reasons", RawValue::Array(reasons));
    }
    claims.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use garrison_appraisal::Reason;
    use serde_json::{Value as Json, json};
    use time::macros::datetime;

    use super::*;
    use crate::facts::{EkBasis, Outcome, PolicyClaims};

    pub(crate) fn facts(outcome: Outcome) -> DecisionFacts {
        DecisionFacts {
            origin: "garrison.example.org/site/s1".into(),
            sequence: 7,
            leaf_hash: [0xab; 32],
            time: datetime!(2026-01-01 00:00:00.123456 UTC),
            outcome,
            kind: "enroll".into(),
            node_id: "cd".repeat(32),
            spiffe_id: Some("spiffe://example.org/site/s1/node/cdcd".into()),
            reasons: vec![],
            policy_digest: Some("ef".repeat(32)),
            cert_serial: Some("0a1b".into()),
            ek_basis: Some(EkBasis::ManufacturerCertificate),
            policy_claims: PolicyClaims {
                configuration: true,
                executables: true,
                file_system: false,
            },
        }
    }

    /// The claim names and shapes of draft-ietf-rats-ear-04 (its CDDL's JSON labels and the
    /// example of its appendix), checked on the serialized JSON, not on the ear crate's types.
    #[test]
    fn the_json_has_the_names_and_shapes_of_the_ear_draft() {
        let ear = attestation_result(&facts(Outcome::Enrolled)).unwrap();
        let got: Json = serde_json::to_value(&ear).unwrap();
        let keys: Vec<&str> = got
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "ear_status",
                "ear_verifier_id",
                "eat_profile",
                "iat",
                "submods"
            ]
        );
        assert_eq!(got["eat_profile"], "tag:ietf.org,2026:rats/ear#04");
        assert_eq!(
            got["iat"], 1_767_225_600,
            "the record's time, whole seconds"
        );
        assert_eq!(got["ear_status"], "affirming");
        assert_eq!(got["ear_verifier_id"]["build"], "garrison 0.1.0");
        assert!(got["ear_verifier_id"]["developer"].is_string());
        let node = &got["submods"]["node"];
        assert_eq!(node["ear_status"], "affirming");
        assert_eq!(
            node["ear_trustworthiness_vector"],
            json!({
                "instance-identity": 2, "configuration": 2, "executables": 3,
                "file-system": 0, "hardware": 2, "runtime-opaque": 0,
                "storage-opaque": 0, "sourced-data": 0
            })
        );
        assert_eq!(
            node["ear_appraisal_policy_ids"],
            json!([format!("sha256:{}", "ef".repeat(32))])
        );
        let claims = &node["ear_verifier_claims"];
        assert_eq!(
            claims["garrison_log_origin"],
            "garrison.example.org/site/s1"
        );
        assert_eq!(claims["garrison_log_sequence"], 7);
        assert_eq!(claims["garrison_log_leaf_hash"], "ab".repeat(32));
        assert_eq!(claims["garrison_record_kind"], "enroll");
        assert_eq!(claims["garrison_ek_trust"], "manufacturer-certificate");
        assert_eq!(
            claims["garrison_policy_appraises"],
            json!(["configuration", "executables"])
        );
        assert!(claims.get("garrison_reasons").is_none());
        // It reads back as an EAR of the same content.
        let back: Ear = serde_json::from_slice(&serde_json::to_vec(&got).unwrap()).unwrap();
        assert_eq!(back, ear);
    }

    #[test]
    fn a_refusal_is_contraindicated_with_its_reasons() {
        let mut refused = facts(Outcome::Refused(Reason::PolicyDeny));
        refused.kind = "reject".into();
        refused.reasons = vec!["policy-deny".into(), "boot: Secure Boot is off".into()];
        refused.cert_serial = None;
        let got = serde_json::to_value(attestation_result(&refused).unwrap()).unwrap();
        assert_eq!(got["ear_status"], "contraindicated");
        let node = &got["submods"]["node"];
        assert_eq!(node["ear_status"], "contraindicated");
        assert_eq!(node["ear_trustworthiness_vector"]["instance-identity"], 2);
        assert_eq!(node["ear_trustworthiness_vector"]["executables"], 0);
        assert_eq!(
            node["ear_verifier_claims"]["garrison_reasons"],
            json!(["policy-deny", "boot: Secure Boot is off"])
        );
        assert!(
            node["ear_verifier_claims"]
                .get("garrison_cert_serial")
                .is_none()
        );
    }

    #[test]
    fn the_same_record_gives_the_same_claims() {
        let one = serde_json::to_vec(&attestation_result(&facts(Outcome::Renewed)).unwrap());
        let two = serde_json::to_vec(&attestation_result(&facts(Outcome::Renewed)).unwrap());
        assert_eq!(one.unwrap(), two.unwrap());
    }
}
