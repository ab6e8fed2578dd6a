//! Untrusted manifest.json bytes: parse alone, then verify the fixture bundle with them in
//! place of its manifest (the signature must then fail, never panic).
#![no_main]

use garrison_policy::{MANIFEST_FILE, Manifest, verify_bundle};
use garrison_policy_fuzz::fixtures;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let f = fixtures();
    let _ = Manifest::parse(data);
    let mut files = f.bundle.clone();
    files.insert(MANIFEST_FILE.to_owned(), data.to_vec());
    let verified = verify_bundle(&files, &f.trust, f.now, &f.limits);
    if let Ok(v) = verified {
        // Only the original manifest can carry the fixture signature.
        assert_eq!(Some(data), f.bundle.get(MANIFEST_FILE).map(Vec::as_slice));
        assert_eq!(v.manifest.sequence, 1);
    }
});
