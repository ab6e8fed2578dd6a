//! Untrusted input JSON against the strict policy: the raw-bytes path (size limit, parse,
//! contract, conversion, evaluation) and, for anything that parses, `check_input` and the
//! by-reference path.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use garrison_policy::{BundleFiles, EvalLimits, PolicyEngine, check_input};
use libfuzzer_sys::fuzz_target;

fn engine() -> &'static PolicyEngine {
    static ENGINE: OnceLock<PolicyEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/strict");
        let files: BundleFiles = ["admission.rego", "data.json"]
            .iter()
            .map(|n| ((*n).to_owned(), std::fs::read(dir.join(n)).expect("strict policy")))
            .collect();
        PolicyEngine::from_source("strict", &files, EvalLimits::default()).expect("compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let engine = engine();
    let from_bytes = engine.evaluate_json(data);
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        let by_ref = engine.evaluate_ref(&json);
        if let (Ok(a), Ok(b)) = (&from_bytes, &by_ref) {
            assert_eq!(a, b);
        }
        let _ = check_input(json);
    }
});
