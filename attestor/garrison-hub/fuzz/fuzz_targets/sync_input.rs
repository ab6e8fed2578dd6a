//! What a site (or a carried file) hands the hub, as arbitrary bytes: a sync file, a log
//! batch message, a record's canonical bytes. None of it may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut reader) = garrison_proto::sync_file::SyncFileReader::new(data) {
        for _ in 0..64 {
            match reader.next_part() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
    let _ = garrison_log::record_from_canonical(data);
    if let Ok(batch) = garrison_proto::v1::LogBatch::decode(data) {
        let _ = garrison_hub::push::check(batch, "garrison.example.org/site/s1", &[]);
    }
});
