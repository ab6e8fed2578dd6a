//! Decisions per second of the strict policy on realistic inputs built from real event logs:
//! the RHEL shim machine it admits (every rule runs to an allow) and the GCE Ubuntu VM it
//! denies (five reasons). Compare with one quote verification (≈ 60–70 µs on the dev VM).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use garrison_policy::{BundleFiles, EvalLimits, PolicyEngine, golden};

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
    c.bench_function("strict/deny gce-ubuntu (value by reference)", |b| {
        b.iter(|| engine.evaluate_ref(&deny).unwrap())
    });
    c.bench_function("strict/allow (JSON bytes in)", |b| {
        b.iter(|| engine.evaluate_json(&allow_bytes).unwrap())
    });
}

criterion_group!(benches, decisions);

/// Where the time goes: converting the input document into regorus values.
fn parts(c: &mut Criterion) {
    let allow = input("tpm2tools-event-moklisttrusted.bin");
    c.bench_function("part/clone input (bench overhead)", |b| {
        b.iter(|| allow.clone())
    });
    c.bench_function("part/input into regorus value", |b| {
        b.iter(|| regorus::Value::from(allow.clone()))
    });
}

criterion_group!(parts_group, parts);
criterion_main!(benches, parts_group);
