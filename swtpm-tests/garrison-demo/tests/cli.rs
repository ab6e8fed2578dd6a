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
