//! packaging/systemd/garrison-agent.service as systemd reads it: `systemd-analyze verify`
//! finds nothing to say about it run with the binary cargo built (its Documentation= man
//! page included), its ExecStart is a command garrison-agent takes, and the example
//! configuration keeps what the agent writes in the unit's StateDirectory= and
//! RuntimeDirectory= and reads the event log where the unit copies it. (The attestor's and
//! hub's units, sysusers.d and tmpfiles.d: attestor/garrison/tests/systemd_units.rs.)
//!
//! Without systemd-analyze the test is skipped, except in CI (CI=true), where
//! scripts/install-deps.sh installs it and its absence fails the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::path::{Path, PathBuf};
use std::process::Command;

use garrison_agent::AgentConfig;

/// Where the unit runs the installed binary.
const INSTALLED: &str = "/usr/local/bin/garrison-agent";

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging")
}

fn unit_text() -> String {
    std::fs::read_to_string(packaging().join("systemd/garrison-agent.service")).unwrap()
}

/// The value of the one `key=` line of the unit.
fn one(text: &str, key: &str) -> String {
    let values: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect();
    assert_eq!(values.len(), 1, "{key}=: {values:?}");
    values[0].to_owned()
}

/// Whether `tool` is on PATH. Missing in CI is a failure: install-deps.sh installs it.
fn tool_available(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| dir.join(tool).is_file());
    if !found {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{tool} is not installed: scripts/install-deps.sh installs it"
        );
        eprintln!("skipped: {tool} is not installed (scripts/install-deps.sh installs it)");
    }
    found
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unit_verifies_without_a_word_from_systemd() {
    if !tool_available("systemd-analyze") {
        return;
    }
    let text = unit_text();
    assert!(text.contains(INSTALLED), "the unit runs {INSTALLED}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garrison-agent.service");
    let built = format!("{} ", env!("CARGO_BIN_EXE_garrison-agent"));
    std::fs::write(&path, text.replace(&format!("{INSTALLED} "), &built)).unwrap();
    let mut verify = Command::new("systemd-analyze");
    verify.arg("verify");
    // Documentation=man:... is checked against the man pages this binary writes.
    if tool_available("man") {
        run(Command::new(env!("CARGO_BIN_EXE_garrison-agent"))
            .args(["man", "--out-dir"])
            .arg(dir.path().join("man/man1")));
        verify.env("MANPATH", dir.path().join("man"));
    } else {
        verify.arg("--man=no");
    }
    let out = verify.arg(&path).output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Only what it says about our unit counts; a host's own units are not ours to judge.
    let about_ours: Vec<&str> = said.lines().filter(|l| l.contains("garrison")).collect();
    assert!(
        out.status.success() && about_ours.is_empty(),
        "systemd-analyze verify ({}):\n{said}",
        out.status
    );
}

#[test]
fn exec_start_is_a_command_the_agent_takes() {
    let exec = one(&unit_text(), "ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some(INSTALLED));
    // The same subcommand and flags with --help: clap refuses an unknown one.
    let out = Command::new(env!("CARGO_BIN_EXE_garrison-agent"))
        .args(words)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{exec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The example agent.toml, installed where ExecStart reads it, writes only below the unit's
/// StateDirectory= and RuntimeDirectory=, reads the event log where ExecStartPre copies it,
/// and serves the Workload API (the default socket) inside the runtime directory.
#[test]
fn the_agent_writes_only_in_its_own_directories() {
    let unit = unit_text();
    let exec = one(&unit, "ExecStart");
    let installed = exec.split_whitespace().last().unwrap();
    let config_dir = format!("/etc/{}/", one(&unit, "ConfigurationDirectory"));
    assert!(installed.starts_with(&config_dir), "{installed}");
    let example = packaging()
        .join("etc")
        .join(installed.strip_prefix("/etc/").unwrap());
    let config = AgentConfig::load(&example).unwrap();
    let state = format!("/var/lib/{}/", one(&unit, "StateDirectory"));
    let runtime = format!("/run/{}/", one(&unit, "RuntimeDirectory"));
    assert!(
        config.state_dir.starts_with(&state),
        "{}",
        config.state_dir.display()
    );
    assert!(
        config.svid_dir.starts_with(&runtime),
        "{}",
        config.svid_dir.display()
    );
    assert!(config.trust_bundle.starts_with(&config_dir));
    let copied_to = one(&unit, "ExecStartPre")
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    assert_eq!(config.event_log, Path::new(&copied_to));
    assert!(copied_to.starts_with(&runtime), "{copied_to}");
    assert_eq!(one(&unit, "RuntimeDirectoryMode"), "0755");
    assert_eq!(one(&unit, "RuntimeDirectoryPreserve"), "yes");
    // The commented-out [workload_api] block, switched on, serves in the runtime directory.
    let text = std::fs::read_to_string(&example).unwrap();
    let switched_on = text
        .replace("# [workload_api]", "[workload_api]")
        .replace("# allowed_gids", "allowed_gids");
    let api = AgentConfig::from_toml(&switched_on)
        .unwrap()
        .workload_api
        .unwrap();
    assert_eq!(api.socket, Path::new(&format!("{runtime}workload.sock")));
}
