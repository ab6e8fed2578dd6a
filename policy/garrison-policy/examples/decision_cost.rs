//! The cost of one admission decision next to the signature check at the heart of one quote
//! verification, measured in the same process and run. Each figure is the fastest of 400
//! batches of 20 calls (per call): on a shared, noisy VM the minimum is the stable statistic,
//! and both sides of each ratio are measured the same way. Prints `key=value` lines.
//!
//! Run: `taskset -c 0 cargo run --release -p garrison-policy --example decision_cost`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use garrison_policy::{BundleFiles, EvalLimits, InputSection, PolicyEngine, golden};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};

const BATCHES: usize = 400;
const CALLS: usize = 20;

/// Fastest batch, in µs per call.
fn fastest(mut call: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..BATCHES {
        let start = Instant::now();
        for _ in 0..CALLS {
            call();
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / CALLS as f64);
    }
    best
}

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

fn main() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let message = [0x5a_u8; 145];
    let signature = pair.sign(&rng, &message).unwrap();
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, pair.public_key().as_ref().to_vec());

    let engine = strict();
    let allow = input("tpm2tools-event-moklisttrusted.bin");
    let deny = input("tpm2tools-event-gce-ubuntu-2104-log.bin");
    assert!(engine.evaluate_ref(&allow).unwrap().allow);
    assert!(!engine.evaluate_ref(&deny).unwrap().allow);
    let mut base = allow.clone();
    let top = base.as_object_mut().unwrap();
    let boot = InputSection::from_json(&top.remove("boot").unwrap(), 1 << 20).unwrap();
    let pcrs = InputSection::from_json(&top.remove("pcrs").unwrap(), 1 << 20).unwrap();
    let sections = [("boot", &boot), ("pcrs", &pcrs)];
    assert!(engine.evaluate_sections(&base, &sections).unwrap().allow);

    let verify = fastest(|| {
        black_box(
            key.verify(black_box(&message), black_box(signature.as_ref()))
                .is_ok(),
        );
    });
    let shared = fastest(|| {
        black_box(engine.evaluate_sections(&base, &sections).unwrap());
    });
    let by_ref = fastest(|| {
        black_box(engine.evaluate_ref(&allow).unwrap());
    });
    let deny_ref = fastest(|| {
        black_box(engine.evaluate_ref(&deny).unwrap());
    });
    let verify_after = fastest(|| {
        black_box(
            key.verify(black_box(&message), black_box(signature.as_ref()))
                .is_ok(),
        );
    });
    // The reference is measured before and after; the lower one is used.
    let reference = verify.min(verify_after);
    for (name, value) in [
        ("ring_p256_verify_us", reference),
        ("decision_shared_sections_us", shared),
        ("decision_by_ref_us", by_ref),
        ("decision_deny_by_ref_us", deny_ref),
        ("shared_sections_over_verify", shared / reference),
        ("by_ref_over_verify", by_ref / reference),
    ] {
        println!("{name}={value:.2}");
    }
}
