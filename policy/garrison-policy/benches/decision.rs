//! Decisions per second of the strict policy on realistic inputs built from real event logs:
//! the RHEL shim machine it admits (every rule runs to an allow) and the GCE Ubuntu VM it
//! denies (five reasons). `reference/ring ECDSA P-256 verify` is the signature check at the
//! heart of one quote verification, measured in the same run (`cargo bench -p
//! garrison-evidence --bench quote` puts a whole quote verification a few µs above it).
//! Run: `taskset -c 0 cargo bench -p garrison-policy --bench decision -- --quick`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use garrison_policy::{BundleFiles, EvalLimits, InputSection, PolicyEngine, golden};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};

fn strict() -> PolicyEngine {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/strict");
    let files: BundleFiles = ["admission.rego", "data.json"]
        .iter()
        .map(|n| ((*n).to_owned(), std::fs::read(dir.join(n)).unwrap()))
        .collect();
    PolicyEngine::from_source("strict", &files, EvalLimits::default()).unwrap()
}

fn input(log: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/eventlogs")
        .join(log);
    let log = garrison_eventlog::EventLog::parse(&std::fs::read(path).unwrap()).unwrap();
    let (claims, pcrs) = golden::trusted_claims(&log);
    let mut input = golden::sample_input(&claims, &pcrs, "site-a", "2025-06-01T12:00:00Z");
    input["tpm"]["manufacturer"] = "id:53544D20".into();
    input
}

fn reference(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // About the size of a TPMS_ATTEST quote.
    let message = [0x5a_u8; 145];
    let signature = pair.sign(&rng, &message).unwrap();
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, pair.public_key().as_ref().to_vec());
    key.verify(&message, signature.as_ref()).unwrap();
    c.bench_function("reference/ring ECDSA P-256 verify", |b| {
        b.iter(|| {
            key.verify(black_box(&message), black_box(signature.as_ref()))
                .is_ok()
        })
    });
}

fn decisions(c: &mut Criterion) {
    let engine = strict();
    let allow = input("tpm2tools-event-moklisttrusted.bin");
    let deny = input("tpm2tools-event-gce-ubuntu-2104-log.bin");
    assert!(engine.evaluate(allow.clone()).unwrap().allow);
    assert!(!engine.evaluate(deny.clone()).unwrap().allow);
    let allow_bytes = serde_json::to_vec(&allow).unwrap();
    c.bench_function("strict/allow (value by reference)", |b| {
        b.iter(|| engine.evaluate_ref(&allow).unwrap())
    });
    c.bench_function("strict/allow (owned value, incl. its drop)", |b| {
        b.iter_batched(
            || allow.clone(),
            |input| engine.evaluate(input).unwrap(),
            BatchSize::SmallInput,
        )
    });
    // How the attestor decides: boot claims and PCRs converted once per distinct event log
    // (shared by every node that sends it), the small per-request rest converted each time.
    let mut base = allow.clone();
    let top = base.as_object_mut().unwrap();
    let boot = InputSection::from_json(&top.remove("boot").unwrap(), 1 << 20).unwrap();
    let pcrs = InputSection::from_json(&top.remove("pcrs").unwrap(), 1 << 20).unwrap();
    let sections = [("boot", &boot), ("pcrs", &pcrs)];
    assert!(engine.evaluate_sections(&base, &sections).unwrap().allow);
    c.bench_function("strict/allow (boot and pcrs as shared sections)", |b| {
        b.iter(|| engine.evaluate_sections(&base, &sections).unwrap())
    });
    c.bench_function("strict/deny gce-ubuntu (value by reference)", |b| {
        b.iter(|| engine.evaluate_ref(&deny).unwrap())
    });
    c.bench_function("strict/allow (JSON bytes in)", |b| {
        b.iter(|| engine.evaluate_json(&allow_bytes).unwrap())
    });
}

criterion_group!(benches, reference, decisions);

/// For comparison: what regorus' own conversion of a `serde_json::Value` costs (the path
/// this crate used before converting by reference), and dropping an input document.
fn parts(c: &mut Criterion) {
    let allow = input("tpm2tools-event-moklisttrusted.bin");
    c.bench_function(
        "part/regorus Value::from(serde_json) (old path, owned)",
        |b| {
            b.iter_batched(
                || allow.clone(),
                regorus::Value::from,
                BatchSize::SmallInput,
            )
        },
    );
    c.bench_function("part/drop the serde_json input", |b| {
        b.iter_batched(|| allow.clone(), drop, BatchSize::SmallInput)
    });
}

criterion_group!(parts_group, parts);
criterion_main!(benches, parts_group);
