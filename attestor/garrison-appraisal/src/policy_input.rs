//! The policy input of an appraisal: the facts it verified, handed to `garrison-policy`'s one
//! producer ([`PolicyInput`], [`TpmFacts::from_evidence`], [`SiteFacts::without_hub`]).
//! Nothing is formatted here, so the attestor's inputs cannot drift from the golden
//! generator's and the case files' (a test below holds them to the published schema).

use std::collections::BTreeMap;

use garrison_ca::SpiffeId;
use garrison_evidence::{AkIdentity, EkIdentity, QuoteVerdict};
use garrison_policy::{
    EkFacts, NodeFacts, PolicyError, PolicyInput, PreviousDecision, RequestFacts, SiteFacts,
    TpmFacts,
};
use serde_json::Value as Json;

use crate::node::NodeHistory;
use crate::refusal::{Reason, Refusal};

/// `input` (without `boot` and `pcrs`, which come converted from the boot cache).
pub(crate) fn build(
    site: SiteFacts,
    request: RequestFacts,
    ek: EkFacts,
    ak: &AkIdentity,
    verdict: &QuoteVerdict,
    asserted: &BTreeMap<String, String>,
) -> Result<Json, Refusal> {
    let input = PolicyInput {
        tpm: TpmFacts::from_evidence(ek, ak, verdict).map_err(policy_refusal)?,
        node: NodeFacts {
            asserted: asserted.clone(),
        },
        site,
        request,
    };
    input.to_json().map_err(policy_refusal)
}

/// The EK facts kept with `node` at enrollment. Facts that do not decode stop the renewal:
/// policy never decides on made-up facts.
pub(crate) fn stored_ek_facts(node: &NodeHistory) -> Result<EkFacts, Refusal> {
    EkFacts::from_stored(&node.identity).map_err(policy_refusal)
}

/// The decision that admitted `node`'s current SVID: an allow (nothing else issues one),
/// with the path it gave and when. Its bundle digest is in the log record, not the node.
pub(crate) fn previous_decision(node: &NodeHistory) -> Result<PreviousDecision, Refusal> {
    let id = SpiffeId::parse(&node.spiffe_id).map_err(|e| {
        Refusal::new(
            Reason::PolicyError,
            format!("node's SPIFFE ID {:?}: {e}", node.spiffe_id),
        )
    })?;
    Ok(PreviousDecision {
        allow: true,
        spiffe_path: Some(id.path().to_owned()),
        bundle_digest: None,
        time: Some(node.updated),
    })
}

/// What enrollment established about the TPM's identity, kept with the node so that every
/// renewal's policy input carries the same facts (the EK certificate is not sent again).
/// It is `garrison_policy::EkFacts` (what renewals read back with `EkFacts::from_stored`)
/// plus, for auditors, how the EK was trusted.
/// A facts value that does not encode refuses the enrollment: nothing is stored in its place.
pub(crate) fn identity_facts(ek: &EkIdentity) -> Result<Json, Refusal> {
    let mut facts = serde_json::to_value(EkFacts::from(ek))
        .map_err(|e| Refusal::new(Reason::PolicyError, format!("EK facts do not encode: {e}")))?;
    if let Json::Object(fields) = &mut facts {
        fields.insert(
            "trust_basis".to_owned(),
            Json::String(format!("{:?}", ek.basis)),
        );
    }
    Ok(facts)
}

/// The checker of `policy/input.schema.json` that garrison-policy's tests use: one checker
/// for every producer's inputs.
#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic)]
#[path = "../../../policy/garrison-policy/tests/schema/mod.rs"]
mod schema;

fn policy_refusal(err: PolicyError) -> Refusal {
    Refusal::new(Reason::PolicyError, err.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use garrison_evidence::{
        AkPolicy, EkEvidence, EkTrust, ManufacturerRoots, PcrValues, check_ak, verify_ek,
        verify_quote,
    };
    use garrison_policy::golden;
    use serde_json::json;
    use time::macros::datetime;

    use super::*;
    use crate::boot as boot_cache;

    macro_rules! tpm2tools {
        ($file:literal) => {
            include_bytes!(concat!(
                "../../garrison-evidence/testdata/tpm2tools/",
                $file
            ))
        };
    }

    const LOG: &[u8] =
        include_bytes!("../../../testdata/eventlogs/tpm2tools-event-moklisttrusted.bin");
    const SHIPPED_INPUT: &[u8] =
        include_bytes!("../../../policy/policies/inputs/tpm2tools-event-moklisttrusted.json");
    const SCHEMA: &[u8] = include_bytes!("../../../policy/input.schema.json");

    /// Real evidence of one enrollment: swtpm's EK through its local CA, an ECC AK and its
    /// verified quote (attestor/garrison-evidence/testdata/tpm2tools).
    fn evidence() -> (garrison_evidence::EkIdentity, AkIdentity, QuoteVerdict) {
        let intermediate = pem::parse(tpm2tools!("swtpm-localca-intermediate.pem"))
            .unwrap()
            .into_contents();
        let roots = ManufacturerRoots::from_pem_or_der(&[(
            "root.pem",
            tpm2tools!("swtpm-localca-root.pem").as_slice(),
        )])
        .unwrap();
        let ek = verify_ek(
            &EkEvidence {
                public_area: tpm2tools!("ek_rsa.pub"),
                certificate: Some(tpm2tools!("ek_rsa_cert.der")),
                intermediates: &[&intermediate],
            },
            &EkTrust::ManufacturerRoots(roots),
            datetime!(2026-12-01 00:00 UTC),
        )
        .unwrap();
        let ak = check_ak(tpm2tools!("ak_ecc.pub"), &AkPolicy::default()).unwrap();
        let pcrs = PcrValues::from_tpm2_tools_pcrs(tpm2tools!("quote_ecc.pcrs")).unwrap();
        let verdict = verify_quote(
            &ak,
            tpm2tools!("quote_ecc.msg"),
            tpm2tools!("quote_ecc.sig"),
            b"garrison-nonce-01",
            &pcrs,
        )
        .unwrap();
        (ek, ak, verdict)
    }

    /// The whole input the attestor decides on for an enrollment of a machine that booted
    /// LOG: `build` plus the boot cache's `boot` and `pcrs`, exactly as `decide` joins them.
    fn attestor_input(site: &str) -> Json {
        let (ek, ak, verdict) = evidence();
        let log = garrison_eventlog::EventLog::parse(LOG).unwrap();
        let mut quoted = PcrValues::new();
        for (alg, index, value) in garrison_eventlog::ReplayedPcrs::replay(&log).iter() {
            quoted.insert(alg, index, value.to_vec()).unwrap();
        }
        let identity = identity_facts_as_stored(&ek);
        let mut input = build(
            SiteFacts::without_hub(site, 3),
            RequestFacts::enroll(datetime!(2026-12-01 08:30 UTC)),
            EkFacts::from_stored(&identity).unwrap(),
            &ak,
            &verdict,
            &BTreeMap::from([("hostname".to_owned(), "node-1".to_owned())]),
        )
        .unwrap();
        let claims = boot_cache::boot_claims(LOG, &quoted).unwrap();
        input["boot"] = serde_json::to_value(&claims).unwrap();
        input["pcrs"] = boot_cache::pcrs_json(&quoted);
        input
    }

    /// What an enrollment stores with the node.
    fn identity_facts_as_stored(ek: &garrison_evidence::EkIdentity) -> String {
        identity_facts(ek).unwrap().to_string()
    }

    #[test]
    fn enrollment_input_is_the_case_tools_input_for_the_same_evidence() {
        let (ek, ak, verdict) = evidence();
        let got = attestor_input("site-a");
        // The case tooling's input for the same evidence: the same producer fed the same
        // verified facts, with the golden generator's boot and PCR sections of the same log.
        let (claims, replayed) =
            golden::trusted_claims(&garrison_eventlog::EventLog::parse(LOG).unwrap());
        let want = PolicyInput {
            tpm: TpmFacts::from_evidence(EkFacts::from(&ek), &ak, &verdict).unwrap(),
            node: NodeFacts {
                asserted: BTreeMap::from([("hostname".to_owned(), "node-1".to_owned())]),
            },
            site: SiteFacts::without_hub("site-a", 3),
            request: RequestFacts::enroll(datetime!(2026-12-01 08:30 UTC)),
        }
        .with_boot(&claims, &golden::pcrs_section(&replayed))
        .unwrap();
        assert_eq!(got, want);
        assert_eq!(got["tpm"]["firmware_version"], "8217.4131");
        assert_eq!(got["tpm"]["ak_algorithm"], "ecc-nist-p256");
        assert_eq!(got["site"]["connected"], false);
    }

    #[test]
    fn enrollment_input_conforms_to_the_schema_and_has_the_shipped_inputs_shape() {
        let got = attestor_input("site-a");
        let schema: Json = serde_json::from_slice(SCHEMA).unwrap();
        let found = schema::violations(&schema, &got);
        assert!(found.is_empty(), "{}", found.join("\n"));
        // Same log as the shipped case input: the same boot and PCR sections, and the same
        // fields everywhere else.
        let shipped: Json = serde_json::from_slice(SHIPPED_INPUT).unwrap();
        assert_eq!(got["boot"], shipped["boot"]);
        assert_eq!(got["pcrs"], shipped["pcrs"]);
        for section in ["tpm", "site", "request"] {
            let keys = |v: &Json| -> Vec<String> {
                v[section].as_object().unwrap().keys().cloned().collect()
            };
            assert_eq!(keys(&got), keys(&shipped), "{section}");
        }
    }

    #[test]
    fn renewal_facts_come_from_the_node_state_or_the_renewal_stops() {
        let (ek, _, _) = evidence();
        let mut node = NodeHistory {
            node_id: ek.ek_hash.clone(),
            ak_name: vec![],
            spiffe_id: "spiffe://example.org/site/site-a/node/2f0c".into(),
            identity: identity_facts_as_stored(&ek),
            reset_count: 0,
            restart_count: 0,
            clock: 0,
            current_serial: None,
            updated: datetime!(2026-12-01 08:00 UTC),
        };
        assert_eq!(stored_ek_facts(&node).unwrap(), EkFacts::from(&ek));
        let previous = previous_decision(&node).unwrap();
        assert_eq!(
            serde_json::to_value(&previous).unwrap(),
            json!({"allow": true, "spiffe_path": "/site/site-a/node/2f0c", "time": "2026-12-01T08:00:00Z"})
        );
        node.identity = "{}".into();
        assert_eq!(
            stored_ek_facts(&node).unwrap_err().reason,
            Reason::PolicyError
        );
        node.spiffe_id = "not an id".into();
        assert_eq!(
            previous_decision(&node).unwrap_err().reason,
            Reason::PolicyError
        );
    }
}
