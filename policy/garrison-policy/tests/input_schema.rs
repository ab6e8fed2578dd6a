//! Every producer of policy inputs against the published schema (`policy/input.schema.json`):
//! inputs built from real evidence with the one producer ([`TpmFacts::from_evidence`]), the
//! golden generator's sample inputs, the shipped case inputs (which must be exactly the
//! generator's output) and the inputs of the case files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod schema;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use garrison_eventlog::EventLog;
use garrison_evidence::{
    AkPolicy, EkEvidence, EkTrust, ManufacturerRoots, PcrValues, check_ak, verify_ek, verify_quote,
};
use garrison_policy::cases::Case;
use garrison_policy::{
    EkFacts, NodeFacts, PolicyInput, PreviousDecision, RequestFacts, SiteFacts, TpmFacts, golden,
};
use serde_json::{Value as Json, json};
use time::OffsetDateTime;
use time::macros::datetime;

/// The shipped inputs' request time (`garrison policy golden --input --time ...`).
const SHIPPED_TIME: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn published_schema() -> Json {
    serde_json::from_slice(&fs::read(repo().join("policy/input.schema.json")).unwrap()).unwrap()
}

fn assert_conforms(what: &str, input: &Json) {
    let found = schema::violations(&published_schema(), input);
    assert!(found.is_empty(), "{what}:\n{}", found.join("\n"));
}

fn shipped_inputs() -> Vec<(String, Json)> {
    let mut inputs: Vec<(String, Json)> = fs::read_dir(repo().join("policy/policies/inputs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_stem().unwrap().to_str().unwrap().to_owned();
            (
                name,
                serde_json::from_slice(&fs::read(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    inputs.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(inputs.len() >= 4);
    inputs
}

fn event_log(name: &str) -> EventLog {
    let path = repo()
        .join("testdata/eventlogs")
        .join(format!("{name}.bin"));
    EventLog::parse(&fs::read(path).unwrap()).unwrap()
}

// ---- Real evidence: swtpm's EK, AKs and quotes (attestor/garrison-evidence/testdata) ----

macro_rules! tpm2tools {
    ($file:literal) => {
        include_bytes!(concat!(
            "../../../attestor/garrison-evidence/testdata/tpm2tools/",
            $file
        ))
    };
}

/// swtpm's RSA EK, verified through its local CA at a time its certificates are valid.
fn swtpm_ek() -> EkFacts {
    let intermediate = pem::parse(tpm2tools!("swtpm-localca-intermediate.pem").as_slice())
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
    EkFacts::from(&ek)
}

/// The TPM facts of swtpm's EK with a real `alg` ("ecc" or "rsa") AK and its verified quote.
fn real_tpm_facts(alg: &str) -> TpmFacts {
    let (ak, msg, sig, pcrs): (&[u8], &[u8], &[u8], &[u8]) = match alg {
        "ecc" => (
            tpm2tools!("ak_ecc.pub"),
            tpm2tools!("quote_ecc.msg"),
            tpm2tools!("quote_ecc.sig"),
            tpm2tools!("quote_ecc.pcrs"),
        ),
        _ => (
            tpm2tools!("ak_rsa.pub"),
            tpm2tools!("quote_rsa.msg"),
            tpm2tools!("quote_rsa.sig"),
            tpm2tools!("quote_rsa.pcrs"),
        ),
    };
    let ak = check_ak(ak, &AkPolicy::default()).unwrap();
    let pcrs = PcrValues::from_tpm2_tools_pcrs(pcrs).unwrap();
    let verdict = verify_quote(&ak, msg, sig, b"garrison-nonce-01", &pcrs).unwrap();
    TpmFacts::from_evidence(swtpm_ek(), &ak, &verdict).unwrap()
}

/// An input as the attestor builds it for an enrollment (its site, no hub), with the boot
/// claims and PCRs of `log` as a machine that booted it would have them verified.
fn real_input(alg: &str, log: &str, request: RequestFacts) -> Json {
    let (claims, replayed) = golden::trusted_claims(&event_log(log));
    PolicyInput {
        tpm: real_tpm_facts(alg),
        node: NodeFacts {
            asserted: BTreeMap::from([("hostname".to_owned(), "node-7".to_owned())]),
        },
        site: SiteFacts::without_hub("site-b", 42),
        request,
    }
    .with_boot(&claims, &golden::pcrs_section(&replayed))
    .unwrap()
}

/// The same keys at every level, and values of the same JSON type, as `want` (the node's
/// free-form `asserted` map and the contents of arrays aside).
fn same_shape(at: &str, got: &Json, want: &Json) -> Vec<String> {
    match (got, want) {
        _ if at == "/node/asserted" => Vec::new(),
        (Json::Object(got), Json::Object(want)) => {
            let mut diffs = Vec::new();
            let keys: std::collections::BTreeSet<&String> = got.keys().chain(want.keys()).collect();
            for key in keys {
                match (got.get(key), want.get(key)) {
                    (Some(g), Some(w)) => diffs.extend(same_shape(&format!("{at}/{key}"), g, w)),
                    (g, _) => diffs.push(format!(
                        "{at}/{key}: only in {}",
                        if g.is_some() { "got" } else { "want" }
                    )),
                }
            }
            diffs
        }
        (g, w) if std::mem::discriminant(g) == std::mem::discriminant(w) => Vec::new(),
        (g, w) => vec![format!("{at}: {g} where the sample has {w}")],
    }
}

#[test]
fn inputs_from_real_evidence_conform_and_share_the_sample_formats() {
    let sample = golden::sample_input(
        &golden::trusted_claims(&event_log("tpm2tools-event-moklisttrusted")).0,
        &golden::trusted_claims(&event_log("tpm2tools-event-moklisttrusted")).1,
        "site-a",
        SHIPPED_TIME,
    )
    .unwrap();
    for alg in ["ecc", "rsa"] {
        let input = real_input(
            alg,
            "tpm2tools-event-moklisttrusted",
            RequestFacts::enroll(datetime!(2026-12-01 08:30:15.25 UTC)),
        );
        assert_conforms(alg, &input);
        let diffs = same_shape("", &input, &sample);
        assert!(diffs.is_empty(), "{alg}: {diffs:#?}");
        let tpm = &input["tpm"];
        // swtpm 0.7 reports firmwareVersion 0x2019_1023_0016_3636.
        assert_eq!(tpm["firmware_version"], "8217.4131", "{alg}");
        assert_eq!(tpm["manufacturer"], "id:00001014", "{alg}");
        assert_eq!(tpm["ek_cert_issuer"], "CN=swtpm-localca", "{alg}");
        assert_eq!(
            input["site"],
            json!({"id": "site-b", "connected": false, "bundle_sequence": 42})
        );
        assert_eq!(input["request"]["time"], "2026-12-01T08:30:15.25Z");
        assert_eq!(input["boot"], sample["boot"], "same log, same claims");
        assert_eq!(input["pcrs"], sample["pcrs"], "same log, same PCRs");
    }
    assert_eq!(
        real_tpm_facts("ecc").ak_algorithm.to_string(),
        "ecc-nist-p256"
    );
    assert_eq!(
        real_tpm_facts("ecc").ak_algorithm.to_string(),
        sample["tpm"]["ak_algorithm"]
    );
    assert_eq!(real_tpm_facts("rsa").ak_algorithm.to_string(), "rsa-2048");
}

#[test]
fn renewal_inputs_conform() {
    let previous = PreviousDecision {
        allow: true,
        spiffe_path: Some("/site/site-b/node/2f0c2c8291fd9b8a5e43ec0ad5eac634".to_owned()),
        bundle_digest: None,
        time: Some(datetime!(2026-12-01 08:00 UTC)),
    };
    let input = real_input(
        "ecc",
        "tpm2tools-event-gce-ubuntu-2104-log",
        RequestFacts::renew(datetime!(2026-12-01 08:30 UTC), previous),
    );
    assert_conforms("renewal", &input);
    assert_eq!(
        input["request"],
        json!({"kind": "renew", "time": "2026-12-01T08:30:00Z", "previous": {
            "allow": true, "spiffe_path": "/site/site-b/node/2f0c2c8291fd9b8a5e43ec0ad5eac634",
            "time": "2026-12-01T08:00:00Z"}})
    );
}

#[test]
fn an_ek_without_certificate_gives_nulls_not_absent_fields() {
    let mut facts = real_tpm_facts("ecc");
    facts.ek = EkFacts {
        ek_sha256: facts.ek.ek_sha256.clone(),
        ek_cert_issuer: None,
        ek_cert_serial: None,
        manufacturer: None,
    };
    let input = PolicyInput {
        tpm: facts,
        node: NodeFacts::default(),
        site: SiteFacts::without_hub("site-a", 1),
        request: RequestFacts::enroll(SHIPPED_TIME),
    };
    let json = input
        .with_boot(&Default::default(), &Default::default())
        .unwrap();
    assert_conforms("no EK certificate", &json);
    for field in ["ek_cert_issuer", "ek_cert_serial", "manufacturer"] {
        assert_eq!(json["tpm"].get(field), Some(&Json::Null), "{field}");
    }
}

#[test]
fn stored_ek_facts_read_back_and_anything_else_is_refused() {
    let stored = json!({
        "ek_sha256": "ab", "ek_cert_issuer": "CN=x", "ek_cert_serial": null,
        "manufacturer": "id:1", "trust_basis": "ManufacturerCertificate"
    });
    let facts = EkFacts::from_stored(&stored.to_string()).unwrap();
    assert_eq!(facts.ek_cert_issuer.as_deref(), Some("CN=x"));
    assert_eq!(facts.ek_cert_serial, None);
    for bad in ["{}", "", "not json", r#"{"ek_sha256": 5}"#] {
        let err = EkFacts::from_stored(bad).unwrap_err();
        assert!(
            matches!(
                err,
                garrison_policy::PolicyError::InputFact { field: "tpm", .. }
            ),
            "{bad}: {err}"
        );
    }
}

#[test]
fn shipped_inputs_conform_and_are_the_generators_output() {
    for (name, shipped) in shipped_inputs() {
        assert_conforms(&name, &shipped);
        let (claims, replayed) = golden::trusted_claims(&event_log(&name));
        let generated = golden::sample_input(&claims, &replayed, "site-a", SHIPPED_TIME).unwrap();
        assert!(
            generated == shipped,
            "{name}: regenerate with `garrison policy golden --eventlog testdata/eventlogs/{name}.bin --input --time 2025-06-01T12:00:00Z`"
        );
        assert_eq!(shipped["site"]["connected"], false, "{name}: no hub yet");
    }
}

/// Cases whose input deliberately leaves the contract, to test a policy's own checks.
const OUTSIDE_THE_SCHEMA: [&str; 1] = ["deny-missing-ek-hash"];

#[test]
fn case_inputs_conform_unless_they_test_a_broken_input() {
    let mut checked = 0;
    for policy in ["strict", "lab-permissive-INSECURE"] {
        let dir = repo().join("policy/policies").join(policy).join("cases");
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let case = Case::parse(&fs::read(&path).unwrap()).unwrap();
            let base = case
                .base
                .as_ref()
                .map(|b| serde_json::from_slice(&fs::read(dir.join(b)).unwrap()).unwrap());
            let input = case.build_input(base);
            let found = schema::violations(&published_schema(), &input);
            if case.want.error.is_some() || OUTSIDE_THE_SCHEMA.contains(&name.as_str()) {
                assert!(
                    !found.is_empty(),
                    "{policy}/{name} conforms: take it off the list"
                );
            } else {
                assert!(found.is_empty(), "{policy}/{name}:\n{}", found.join("\n"));
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "{checked}");
}

#[test]
fn the_checker_refuses_the_formats_production_used_to_send() {
    let good = real_input(
        "ecc",
        "tpm2tools-event-moklisttrusted",
        RequestFacts::enroll(SHIPPED_TIME),
    );
    assert_conforms("good", &good);
    let broken = [
        ("/tpm/firmware_version", json!("0x2019102300163636")),
        ("/tpm/ak_algorithm", json!("ecdsa-sha256")),
        ("/tpm/manufacturer", json!(5)),
        ("/tpm/trust_basis", json!("ManufacturerCertificate")),
        ("/site/connected", json!("false")),
        ("/request/time", json!("2025-06-01 12:00")),
        ("/request/kind", json!("reboot")),
        (
            "/request/previous",
            json!({"allow": true, "spiffe_id": "spiffe://x/y"}),
        ),
        ("/pcrs/sha256/07", json!("00")),
        ("/pcrs/sha256/7", json!("XY")),
        ("/node/asserted/rack", json!(7)),
    ];
    for (pointer, value) in broken {
        let mut input = good.clone();
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        input.pointer_mut(parent).unwrap()[field] = value.clone();
        let found = schema::violations(&published_schema(), &input);
        assert!(!found.is_empty(), "{pointer} = {value} passed");
    }
    let mut missing = good.clone();
    missing["site"].as_object_mut().unwrap().remove("id");
    assert!(!schema::violations(&published_schema(), &missing).is_empty());
}
