//! Parse + replay (all banks) of a real 112-event crypto-agile log.

use criterion::{Criterion, criterion_group, criterion_main};
use garrison_eventlog::EventLog;

fn parse_and_replay(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/eventlogs/tpm2tools-event-gce-ubuntu-2104-log.bin"
    );
    let bytes = std::fs::read(path).unwrap_or_default();
    c.bench_function("parse_and_replay_gce_ubuntu_2104", |b| {
        b.iter(|| {
            let log = EventLog::parse(std::hint::black_box(&bytes));
            log.map(|log| log.replay())
        })
    });
    // The two halves, to see where time goes.
    c.bench_function("parse_only_gce_ubuntu_2104", |b| {
        b.iter(|| EventLog::parse(std::hint::black_box(&bytes)))
    });
    let digests = [
        garrison_eventlog::HashAlg::Sha1,
        garrison_eventlog::HashAlg::Sha256,
        garrison_eventlog::HashAlg::Sha384,
    ];
    c.bench_function("one_extend_each_of_sha1_sha256_sha384", |b| {
        b.iter(|| {
            digests.map(|alg| alg.extend(&vec![0; alg.digest_len()], &vec![1; alg.digest_len()]))
        })
    });
}

criterion_group!(benches, parse_and_replay);
criterion_main!(benches);
