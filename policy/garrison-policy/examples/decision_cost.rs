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
use std::time::Instant;

#[path = "../benches/fixtures/mod.rs"]
mod fixtures;
use fixtures::{input, signed_message, split, strict};

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

fn main() {
    let (key, message, signature) = signed_message();

    let engine = strict();
    let allow = input("tpm2tools-event-moklisttrusted.bin");
    let deny = input("tpm2tools-event-gce-ubuntu-2104-log.bin");
    assert!(engine.evaluate_ref(&allow).unwrap().allow);
    assert!(!engine.evaluate_ref(&deny).unwrap().allow);
    let (base, boot, pcrs) = split(&allow);
    let sections = [("boot", &boot), ("pcrs", &pcrs)];
    assert!(engine.evaluate_sections(&base, &sections).unwrap().allow);

    let verify = fastest(|| {
        black_box(
            key.verify(black_box(&message), black_box(signature.as_slice()))
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
            key.verify(black_box(&message), black_box(signature.as_slice()))
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
