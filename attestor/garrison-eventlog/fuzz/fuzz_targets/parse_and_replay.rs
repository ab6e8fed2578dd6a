//! Parse arbitrary bytes as an event log; whatever parses is replayed, compared with an
//! all-zero quote and mined for claims. Any panic is a bug.
#![no_main]

use garrison_eventlog::{BootClaims, EventLog, HashAlg, Limits, PcrValues, ReplayReport, VerifiedPcrs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_events: 4096, max_event_data_bytes: 64 * 1024, ..Limits::default() };
    let Ok(log) = EventLog::parse_with_limits(data, &limits) else { return };
    let replayed = log.replay();
    let mut quoted = PcrValues::new();
    for (alg, index, value) in replayed.iter() {
        let _ = quoted.insert(alg, index, value.to_vec());
        let _ = quoted.insert(alg, (index + 1) % 24, vec![0; alg.digest_len()]);
    }
    let report = ReplayReport::compare(&log, &quoted);
    let _ = report.to_string();
    let all: VerifiedPcrs = HashAlg::ALL.into_iter().flat_map(|alg| (0..24).map(move |pcr| (alg, pcr))).collect();
    let _ = BootClaims::extract(&log, &all);
    let _ = BootClaims::extract(&log, &report.verified);
});
