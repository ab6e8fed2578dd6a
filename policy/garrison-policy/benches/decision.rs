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

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

#[path = "fixtures/mod.rs"]
mod fixtures;
use fixtures::{input, signed_message, split, strict};

fn reference(c: &mut Criterion) {
    let (key, message, signature) = signed_message();
    c.bench_function("reference/ring ECDSA P-256 verify", |b| {
        b.iter(|| {
            key.verify(black_box(&message), black_box(signature.as_slice()))
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
    let (base, boot, pcrs) = split(&allow);
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
