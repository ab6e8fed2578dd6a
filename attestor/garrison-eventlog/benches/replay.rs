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
}

criterion_group!(benches, parse_and_replay);
criterion_main!(benches);
