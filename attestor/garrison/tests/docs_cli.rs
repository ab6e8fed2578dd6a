//! What `garrison completions`, `garrison man` and `garrison config-reference` generate from
//! the command line and the configuration types: a bash completion that completes real
//! subcommands and flags, man pages that groff renders without a warning, and the
//! configuration reference, which docs/configuration.md must match word for word.
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

fn garrison(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "garrison {args:?}: {}",
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
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let current = words.len() - 1;
    let previous = words[current.saturating_sub(1)];
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={current}; \
         _garrison garrison '{}' '{previous}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words[current]
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
    let script = garrison(&["completions", "bash"]);
    for word in ["attestor", "serve", "hub", "config-reference", "--config"] {
        assert!(script.contains(word), "{word} missing");
    }
    if !tool_available("bash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garrison.bash");
    std::fs::write(&path, &script).unwrap();
    assert_eq!(bash_completes(&path, &["garrison", "att"]), ["attestor"]);
    assert_eq!(
        bash_completes(&path, &["garrison", "attestor", "se"]),
        ["serve"]
    );
    assert_eq!(
        bash_completes(&path, &["garrison", "attestor", "serve", "--con"]),
        ["--config"]
    );
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    for shell in ["zsh", "fish"] {
        let script = garrison(&["completions", shell]);
        for word in ["attestor", "serve", "request-ca", "config-reference"] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
    }
}

#[test]
fn man_pages_for_every_command_render_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("man1");
    let said = garrison(&["man", "--out-dir", man1.to_str().unwrap()]);
    let mut pages: Vec<_> = std::fs::read_dir(&man1)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    pages.sort();
    assert!(
        said.starts_with(&format!("{} man pages", pages.len())),
        "{said}"
    );
    for name in [
        "garrison.1",
        "garrison-attestor-serve.1",
        "garrison-hub-serve.1",
        "garrison-ca-init-root.1",
        "garrison-completions.1",
        "garrison-config-reference.1",
    ] {
        assert!(man1.join(name).is_file(), "{name} missing");
    }
    let serve = std::fs::read_to_string(man1.join("garrison-attestor-serve.1")).unwrap();
    assert!(serve.contains(".TH garrison-attestor-serve 1"), "{serve}");
    assert!(serve.contains("\\-\\-config"), "{serve}");
    if !tool_available("groff") {
        return;
    }
    for page in &pages {
        // -k: through preconv, as man does (help texts hold UTF-8 such as →); -ww: every
        // warning; -z: render, print nothing.
        let out = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(page)
            .output()
            .unwrap();
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && warnings.is_empty(),
            "{}: {warnings}",
            page.display()
        );
    }
    let out = Command::new("groff")
        // -P-cbou: plain text, no overstriking for bold and underline.
        .args(["-k", "-man", "-Tutf8", "-P-cbou"])
        .arg(man1.join("garrison-attestor-serve.1"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SYNOPSIS") && text.contains("--config"),
        "{text}"
    );
}

/// docs/configuration.md is `garrison config-reference` then `garrison-agent
/// config-reference` (the agent's part through its library: a test cannot run another
/// package's binary; agent/garrison-agent/tests/docs_cli.rs checks that binary's output).
#[test]
fn docs_configuration_md_is_what_the_code_says() {
    let agent = garrison_docgen::config_reference(
        "agent.toml",
        &garrison_agent::AgentConfig::file_schema(),
    )
    .unwrap();
    let want = format!("{}{agent}", garrison(&["config-reference"]));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
        panic!(
            "docs/configuration.md differs from the code from line {} on; regenerate it:\n  \
             {{ cargo run -q -p garrison -- config-reference; \
             cargo run -q -p garrison-agent -- config-reference; }} > docs/configuration.md\n\
             the code says:\n{}",
            line + 1,
            want.lines().nth(line).unwrap_or("(end of file)")
        );
    }
}
