//! Stored evidence as an auditor reads it back from the log: `EvidenceRecord::decode` and
//! `UnprovenRequest::decode` over fuzzed bytes. Whatever decodes must be canonical (encode
//! to exactly the bytes it came from), and a decoded record's quote must convert or fail
//! cleanly.
#![no_main]

use garrison_appraisal::{EvidenceRecord, UnprovenRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = EvidenceRecord::decode(data) {
        assert_eq!(record.to_bytes(), data, "decoded bytes are canonical");
        let _ = record.quote();
    }
    if let Ok(unproven) = UnprovenRequest::decode(data) {
        assert_eq!(unproven.to_bytes(), data, "decoded bytes are canonical");
    }
});
