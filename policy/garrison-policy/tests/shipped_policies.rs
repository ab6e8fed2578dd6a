//! The shipped policies against their case files (inputs built from the real event logs in
//! `testdata/eventlogs`): every case must pass, and every deny reason the strict policy can
//! give must be exercised by some case.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fs;
use std::path::{Path, PathBuf};

use garrison_policy::cases::Case;
use garrison_policy::{BundleFiles, EvalLimits, PolicyEngine};

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn source(dir: &Path) -> BundleFiles {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// (case name, failures) for every case of a policy directory.
type Outcome = (String, Case, Result<(), Vec<String>>);

fn run_cases(name: &str) -> Vec<Outcome> {
    let dir = policies().join(name);
    let engine = PolicyEngine::from_source(name, &source(&dir), EvalLimits::default()).unwrap();
    let mut paths: Vec<PathBuf> = fs::read_dir(dir.join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let case = Case::parse(&fs::read(&path).unwrap()).unwrap();
            let base = case.base.as_ref().map(|b| {
                serde_json::from_slice(&fs::read(path.parent().unwrap().join(b)).unwrap()).unwrap()
            });
            let result = case.check(&engine, case.build_input(base));
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            (name, case, result)
        })
        .collect()
}

fn assert_all_pass(results: &[Outcome]) {
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(name, _, r)| r.as_ref().err().map(|e| format!("{name}: {e:#?}")))
        .collect();
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
}

#[test]
fn strict_policy_cases_pass() {
    let results = run_cases("strict");
    assert!(results.len() >= 15);
    assert_all_pass(&results);
}

#[test]
fn lab_policy_cases_pass() {
    let results = run_cases("lab-permissive-INSECURE");
    assert!(results.len() >= 3);
    assert_all_pass(&results);
}

#[test]
fn strict_cases_cover_allow_and_every_deny_reason() {
    let results = run_cases("strict");
    assert!(results.iter().any(|(_, c, _)| c.want.allow == Some(true)));
    let rego = fs::read_to_string(policies().join("strict/admission.rego")).unwrap();
    // Every reason template's fixed prefix (up to its first format verb) appears in some
    // case's expected reasons.
    let templates: Vec<String> = rego
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let start = l.find('"')?;
            let is_reason =
                l.starts_with("reasons contains \"") || l.starts_with("msg := sprintf(\"");
            is_reason.then(|| l[start + 1..].split(['%', '"']).next().unwrap().to_owned())
        })
        .collect();
    assert!(templates.len() >= 11, "{templates:?}");
    let expected: Vec<&String> = results
        .iter()
        .flat_map(|(_, c, _)| c.want.reasons.iter().flatten())
        .collect();
    for template in templates {
        assert!(
            expected.iter().any(|r| r.starts_with(&template)),
            "no case expects a reason starting {template:?}"
        );
    }
}

#[test]
fn shipped_policies_default_to_deny() {
    for name in ["strict", "lab-permissive-INSECURE"] {
        let rego = fs::read_to_string(policies().join(name).join("admission.rego")).unwrap();
        assert!(rego.contains("\ndefault allow := false\n"), "{name}");
    }
}
