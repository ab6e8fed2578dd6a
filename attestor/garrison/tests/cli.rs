//! The production binary's command set: the demo and its embedded fixtures live in
//! `swtpm-tests/garrison-demo`, not here.
#![allow(clippy::unwrap_used)] // test code

use std::process::Command;

#[test]
fn the_production_binary_has_no_demo_command() {
    let help = Command::new(env!("CARGO_BIN_EXE_garrison"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for command in ["ca", "evidence", "attestor", "log", "node", "policy"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command} missing:\n{text}"
        );
    }
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("demo")),
        "{text}"
    );
    let demo = Command::new(env!("CARGO_BIN_EXE_garrison"))
        .arg("demo")
        .output()
        .unwrap();
    assert!(!demo.status.success());
}
