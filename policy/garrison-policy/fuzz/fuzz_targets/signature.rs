//! Untrusted signature.json bytes (JSON, base64, DER certificates, signature) in place of the
//! fixture bundle's signature.
#![no_main]

use garrison_policy::{SIGNATURE_FILE, verify_bundle};
use garrison_policy_fuzz::fixtures;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let f = fixtures();
    let mut files = f.bundle.clone();
    files.insert(SIGNATURE_FILE.to_owned(), data.to_vec());
    let _ = verify_bundle(&files, &f.trust, f.now, &f.limits);
});
