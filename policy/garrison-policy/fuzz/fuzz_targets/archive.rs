//! Untrusted archive bytes: decode, verify against the fixture root, and if that somehow
//! succeeds, compile and evaluate. Any panic is a bug; every failure must be an error.
#![no_main]

use garrison_policy::{EvalLimits, PolicyEngine, decode_archive, verify_bundle};
use garrison_policy_fuzz::fixtures;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let f = fixtures();
    let Ok(files) = decode_archive(data, &f.limits) else {
        return;
    };
    let Ok(verified) = verify_bundle(&files, &f.trust, f.now, &f.limits) else {
        return;
    };
    if let Ok(engine) = PolicyEngine::from_verified(&verified, EvalLimits::default()) {
        let _ = engine.evaluate_json(br#"{"tpm":{},"boot":{},"site":{},"request":{"kind":"enroll","time":"2025-06-01T12:00:00Z"}}"#);
    }
});
