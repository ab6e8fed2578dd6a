//! The demo is its own binary; the production `garrison` has no `demo` command (and links
//! none of the test bed's fixtures). The demo itself runs in `scripts/demo.sh`.
#![allow(clippy::unwrap_used)] // test code

use std::process::Command;

#[test]
fn the_demo_binary_answers_help_and_names_its_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_garrison-demo"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--dir") && text.contains("--agent-bin"),
        "{text}"
    );
}

#[test]
fn a_missing_agent_binary_is_a_clear_error_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_garrison-demo"))
        .args(["--dir"])
        .arg(dir.path())
        .args(["--agent-bin", "/nonexistent/garrison-agent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("agent binary"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing made"
    );
}

/// The whole demo, as `scripts/demo.sh` runs it: enrollments, refusals, and the auditor's
/// view through the Audit service and offline. The `garrison` and `garrison-agent`
/// binaries are the ones `cargo test --workspace` built beside this test.
#[test]
fn the_demo_runs_end_to_end_with_the_auditors_view() {
    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .to_owned();
    let agent = bin_dir.join("garrison-agent");
    let garrison = bin_dir.join("garrison");
    assert!(
        agent.exists() && garrison.exists(),
        "build the binaries first (cargo test --workspace does): {} {}",
        agent.display(),
        garrison.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_garrison-demo"))
        .arg("--dir")
        .arg(dir.path())
        .arg("--agent-bin")
        .arg(&agent)
        .arg("--garrison-bin")
        .arg(&garrison)
        .env("TSS2_LOG", "all+none")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "node-2: refused with reason policy-deny",
        "OK: record #",
        "signed checkpoint verified against the root",
        "is not spiffe://example.org/auditor/<name>",
        "replay: the appraisal run again",
        "node states the attestor keeps, checked against the log: ",
        "demo complete: every outcome was as expected",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert_eq!(
        stdout
            .matches("OK: every record matches the signed checkpoints")
            .count(),
        3,
        "the log verifies through the service, as an archive, and as the site's own database \
         with its enforcement state:\n{stdout}"
    );
}
