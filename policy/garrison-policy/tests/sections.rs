//! Inputs given as a base document plus pre-converted sections (how the attestor shares the
//! boot claims of one event log between many decisions) decide exactly as the same input
//! given whole, and meet the same contract and limits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;

use garrison_policy::{BundleFiles, EvalLimits, InputSection, PolicyEngine, PolicyError};
use serde_json::{Value as Json, json};

fn strict(limits: EvalLimits) -> PolicyEngine {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/strict");
    let files: BundleFiles = ["admission.rego", "data.json"]
        .iter()
        .map(|n| ((*n).to_owned(), std::fs::read(dir.join(n)).unwrap()))
        .collect();
    PolicyEngine::from_source("strict", &files, limits).unwrap()
}

fn shipped_inputs() -> Vec<(String, Json)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/inputs");
    let mut inputs: Vec<(String, Json)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let json = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            (path.display().to_string(), json)
        })
        .collect();
    inputs.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(inputs.len() >= 3);
    inputs
}

/// `input` without `names`, and those names as sections.
fn split(input: &Json, names: &[&'static str]) -> (Json, Vec<(&'static str, InputSection)>) {
    let mut base = input.clone();
    let sections = names
        .iter()
        .map(|name| {
            let value = base.as_object_mut().unwrap().remove(*name).unwrap();
            (*name, InputSection::from_json(&value, 1 << 20).unwrap())
        })
        .collect();
    (base, sections)
}

fn refs<'a>(sections: &'a [(&'static str, InputSection)]) -> Vec<(&'static str, &'a InputSection)> {
    sections.iter().map(|(n, s)| (*n, s)).collect()
}

#[test]
fn sections_decide_like_the_whole_input() {
    let engine = strict(EvalLimits::default());
    let mut allowed = 0;
    for (name, mut input) in shipped_inputs() {
        // The shipped example inputs name a manufacturer outside the strict allow-list for
        // some machines; use a trusted one so that the allow path is compared too.
        input["tpm"]["manufacturer"] = json!("id:53544D20");
        let whole = engine.evaluate_ref(&input).unwrap();
        for names in [&["boot"][..], &["boot", "pcrs"], &["tpm", "site", "node"]] {
            let (base, sections) = split(&input, names);
            let parts = engine.evaluate_sections(&base, &refs(&sections)).unwrap();
            assert_eq!(parts, whole, "{name} with {names:?} as sections");
        }
        allowed += usize::from(whole.allow);
    }
    assert!(
        allowed >= 1,
        "no shipped input is allowed: the allow path went untested"
    );
}

#[test]
fn a_section_given_twice_or_under_another_name_is_refused() {
    let engine = strict(EvalLimits::default());
    let (_, input) = shipped_inputs().remove(0);
    let boot = InputSection::from_json(&input["boot"], 1 << 20).unwrap();
    let twice = engine.evaluate_sections(&input, &[("boot", &boot)]);
    assert!(
        matches!(twice, Err(PolicyError::InputMalformed { .. })),
        "{twice:?}"
    );
    let (base, _) = split(&input, &["boot"]);
    let stray = engine.evaluate_sections(&base, &[("boot", &boot), ("data", &boot)]);
    assert!(
        matches!(stray, Err(PolicyError::InputMalformed { .. })),
        "{stray:?}"
    );
    // The same section twice, both apart from the base.
    let (base, _) = split(&input, &["boot"]);
    let doubled = engine.evaluate_sections(&base, &[("boot", &boot), ("boot", &boot)]);
    assert!(
        matches!(doubled, Err(PolicyError::InputMalformed { .. })),
        "{doubled:?}"
    );
    // `request` is read and extended by the host: never given apart.
    let (base, _) = split(&input, &["request", "boot"]);
    let request = InputSection::from_json(&input["request"], 1 << 20).unwrap();
    let apart = engine.evaluate_sections(&base, &[("boot", &boot), ("request", &request)]);
    assert!(
        matches!(apart, Err(PolicyError::InputMalformed { .. })),
        "{apart:?}"
    );
}

#[test]
fn sections_meet_the_input_contract() {
    let engine = strict(EvalLimits::default());
    let (_, input) = shipped_inputs().remove(0);
    let (base, _) = split(&input, &["boot"]);
    // A required section that is not an object, given as a section.
    let not_object = InputSection::from_json(&json!(["boot"]), 1 << 20).unwrap();
    let err = engine
        .evaluate_sections(&base, &[("boot", &not_object)])
        .unwrap_err();
    assert!(
        matches!(err, PolicyError::InputContract { field: "boot", .. }),
        "{err:?}"
    );
    // A required section that is missing altogether.
    let err = engine.evaluate_sections(&base, &[]).unwrap_err();
    assert!(
        matches!(err, PolicyError::InputContract { field: "boot", .. }),
        "{err:?}"
    );
}

#[test]
fn section_sizes_count_towards_the_input_limit() {
    let (_, input) = shipped_inputs().remove(0);
    let (base, sections) = split(&input, &["boot", "pcrs"]);
    let boot_bytes = sections[0].1.json_bytes();
    assert!(boot_bytes > 100, "boot section of {boot_bytes} bytes");
    // A limit the base alone fits but base + sections do not.
    let base_len = serde_json::to_vec(&base).unwrap().len();
    let engine = strict(EvalLimits {
        max_input_bytes: base_len + boot_bytes / 2,
        ..EvalLimits::default()
    });
    let err = engine
        .evaluate_sections(&base, &refs(&sections))
        .unwrap_err();
    assert!(matches!(err, PolicyError::InputTooLarge { .. }), "{err:?}");
    // A section built under a smaller limit than its size is refused when built.
    let err = InputSection::from_json(&input["boot"], 16).unwrap_err();
    assert!(matches!(err, PolicyError::InputTooLarge { .. }), "{err:?}");
}
