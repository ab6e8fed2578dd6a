//! What `garrison-agent completions`, `man` and `config-reference` generate from the command
//! line and the configuration type: a bash completion that completes real subcommands and
//! flags, man pages that groff renders without a warning, and the agent.toml reference that
//! ends docs/configuration.md word for word (attestor/garrison/tests/docs_cli.rs checks the
//! whole file).
//!
//! Without bash or groff those checks are skipped, except in CI (CI=true), where
//! scripts/install-deps.sh installs them and their absence fails the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::path::Path;
use std::process::Command;

fn agent(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_garrison-agent"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "garrison-agent {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
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

/// What bash's completion offers for the words typed so far (the last one being completed).
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    // The function the script registers for garrison-agent (`complete -F NAME ...`).
    let text = std::fs::read_to_string(script).unwrap();
    let function = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("complete -F "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let current = words.len() - 1;
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={current}; \
         {function} garrison-agent '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words[current],
        words[current.saturating_sub(1)]
    );
    let out = Command::new("bash")
        .args(["-c", &program])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let script = agent(&["completions", "bash"]);
    for word in ["run", "enroll", "renew", "--config", "--once"] {
        assert!(script.contains(word), "{word} missing");
    }
    for shell in ["zsh", "fish"] {
        let other = agent(&["completions", shell]);
        assert!(
            other.contains("enroll") && other.contains("config-reference"),
            "{shell}"
        );
    }
    if !tool_available("bash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garrison-agent.bash");
    std::fs::write(&path, &script).unwrap();
    assert_eq!(bash_completes(&path, &["garrison-agent", "ru"]), ["run"]);
    assert_eq!(
        bash_completes(&path, &["garrison-agent", "enroll", "--on"]),
        ["--once"]
    );
}

#[test]
fn man_pages_render_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("man1");
    agent(&["man", "--out-dir", man1.to_str().unwrap()]);
    for name in [
        "garrison-agent.1",
        "garrison-agent-run.1",
        "garrison-agent-enroll.1",
        "garrison-agent-renew.1",
    ] {
        let page = std::fs::read_to_string(man1.join(name)).unwrap();
        let title = format!(".TH {} 1", name.trim_end_matches(".1"));
        assert!(page.contains(&title), "{name}: {page}");
    }
    if !tool_available("groff") {
        return;
    }
    for entry in std::fs::read_dir(&man1).unwrap() {
        let page = entry.unwrap().path();
        // -k: through preconv, as man does; -ww: every warning; -z: print nothing.
        let out = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(&page)
            .output()
            .unwrap();
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && warnings.is_empty(),
            "{}: {warnings}",
            page.display()
        );
    }
}

#[test]
fn config_reference_ends_docs_configuration_md() {
    let reference = agent(&["config-reference"]);
    assert!(reference.starts_with("## `agent.toml`"), "{reference}");
    for key in [
        "`attestor`",
        "`tcti`",
        "### `[backoff]`",
        "### `[workload_api]`",
    ] {
        assert!(reference.contains(key), "{key} missing");
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let docs = std::fs::read_to_string(path).unwrap();
    assert!(
        docs.ends_with(&reference),
        "docs/configuration.md does not end with `garrison-agent config-reference`; \
         regenerate it:\n  {{ cargo run -q -p garrison -- config-reference; \
         cargo run -q -p garrison-agent -- config-reference; }} > docs/configuration.md"
    );
}
