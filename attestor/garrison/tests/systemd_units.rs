//! The systemd units of packaging/systemd as systemd reads them: `systemd-analyze verify`
//! finds nothing to say about the attestor's and the hub's units run with the binary cargo
//! built (their Documentation= man pages included), their ExecStart is a command this binary
//! takes, the example configurations keep everything the services write in their
//! StateDirectory=, and the sysusers.d and tmpfiles.d files make the users and directories
//! the three units name. (The agent's unit: agent/garrison-agent/tests/systemd_unit.rs.)
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

use garrison_attestor::SiteConfig;
use garrison_hub::HubConfig;

/// Where the units run the installed binary.
const INSTALLED: &str = "/usr/local/bin/garrison";

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging")
}

fn unit_text(name: &str) -> String {
    std::fs::read_to_string(packaging().join("systemd").join(name)).unwrap()
}

/// The values of every `key=` line of a unit (comments and sections ignored).
fn directive(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

fn one(text: &str, key: &str) -> String {
    let values = directive(text, key);
    assert_eq!(values.len(), 1, "{key}=: {values:?}");
    values[0].clone()
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

/// `/etc/garrison/site.toml` → packaging/etc/garrison/site.toml, the example installed there.
fn example_for(installed: &str) -> PathBuf {
    packaging()
        .join("etc")
        .join(installed.strip_prefix("/etc/").unwrap())
}

/// The value after `--config` in ExecStart.
fn config_path(unit: &str) -> String {
    let exec = one(unit, "ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "--config").unwrap();
    words[at + 1].to_owned()
}

#[test]
fn units_verify_without_a_word_from_systemd() {
    if !tool_available("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in ["garrison-attestor.service", "garrison-hub.service"] {
        let text = unit_text(name);
        assert!(text.contains(INSTALLED), "{name} runs {INSTALLED}");
        let path = dir.path().join(name);
        let built = format!("{} ", env!("CARGO_BIN_EXE_garrison"));
        std::fs::write(&path, text.replace(&format!("{INSTALLED} "), &built)).unwrap();
        paths.push(path);
    }
    let mut verify = Command::new("systemd-analyze");
    verify.arg("verify");
    // Documentation=man:... is checked against the man pages this binary writes.
    if tool_available("man") {
        let man1 = dir.path().join("man/man1");
        run(Command::new(env!("CARGO_BIN_EXE_garrison"))
            .args(["man", "--out-dir"])
            .arg(&man1));
        verify.env("MANPATH", dir.path().join("man"));
    } else {
        verify.arg("--man=no");
    }
    let out = verify.args(&paths).output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Only what it says about our units counts; a host's own units are not ours to judge.
    let about_ours: Vec<&str> = said.lines().filter(|l| l.contains("garrison")).collect();
    assert!(
        out.status.success() && about_ours.is_empty(),
        "systemd-analyze verify ({}):\n{said}",
        out.status
    );
}

#[test]
fn exec_start_is_a_command_garrison_takes() {
    for name in ["garrison-attestor.service", "garrison-hub.service"] {
        let exec = one(&unit_text(name), "ExecStart");
        let mut words = exec.split_whitespace();
        assert_eq!(words.next(), Some(INSTALLED), "{name}");
        // The same subcommand and flags with --help: clap refuses an unknown one.
        let out = Command::new(env!("CARGO_BIN_EXE_garrison"))
            .args(words)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {exec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_attestor_writes_only_in_its_state_directory() {
    let unit = unit_text("garrison-attestor.service");
    let state = format!("/var/lib/{}/", one(&unit, "StateDirectory"));
    let config_dir = format!("/etc/{}/", one(&unit, "ConfigurationDirectory"));
    let installed = config_path(&unit);
    assert!(installed.starts_with(&config_dir), "{installed}");
    let config = SiteConfig::load(&example_for(&installed)).unwrap();
    for written in [&config.ca_dir, &config.log_key] {
        assert!(written.starts_with(&state), "{}", written.display());
    }
    let database = config.database.strip_prefix("sqlite://").unwrap();
    assert!(database.starts_with(&state), "{database}");
    for read in config.ek_roots.iter().chain([&config.policy_bundle]) {
        assert!(read.starts_with(&config_dir), "{}", read.display());
    }
}

#[test]
fn the_hub_writes_only_in_its_state_directory() {
    let unit = unit_text("garrison-hub.service");
    let state = format!("/var/lib/{}/", one(&unit, "StateDirectory"));
    let installed = config_path(&unit);
    assert!(
        installed.starts_with(&format!("/etc/{}/", one(&unit, "ConfigurationDirectory"))),
        "{installed}"
    );
    let config = HubConfig::load(&example_for(&installed)).unwrap();
    for written in [&config.ca_dir, &config.witness_key] {
        assert!(written.starts_with(&state), "{}", written.display());
    }
    let database = config.database.strip_prefix("sqlite://").unwrap();
    assert!(database.starts_with(&state), "{database}");
}

/// sysusers.d makes the units' users; tmpfiles.d makes their configuration and state
/// directories with the units' owners and modes (checked by running both tools into an
/// empty root directory).
#[test]
fn sysusers_and_tmpfiles_make_what_the_units_name() {
    let units = [
        "garrison-attestor.service",
        "garrison-hub.service",
        "garrison-agent.service",
    ];
    let tmpfiles =
        std::fs::read_to_string(packaging().join("systemd/tmpfiles.d/garrison.conf")).unwrap();
    let entries: Vec<Vec<&str>> = tmpfiles
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    let entry = |path: &str| {
        entries
            .iter()
            .find(|e| e[1] == path)
            .unwrap_or_else(|| panic!("tmpfiles.d has no {path}"))
            .clone()
    };
    for name in units {
        let unit = unit_text(name);
        let user = one(&unit, "User");
        assert_eq!(one(&unit, "Group"), user, "{name}");
        let state = entry(&format!("/var/lib/{}", one(&unit, "StateDirectory")));
        assert_eq!(
            state,
            [
                "d",
                state[1],
                &one(&unit, "StateDirectoryMode"),
                &user,
                &user,
                "-"
            ],
            "{name}"
        );
        let config = entry(&format!("/etc/{}", one(&unit, "ConfigurationDirectory")));
        assert_eq!(
            config,
            ["d", config[1], "0755", "root", "root", "-"],
            "{name}"
        );
    }

    if !tool_available("systemd-sysusers") || !tool_available("systemd-tmpfiles") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let sysusers = packaging().join("systemd/sysusers.d/garrison.conf");
    run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(sysusers.canonicalize().unwrap()));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let ids = |user: &str| -> (u32, u32) {
        let line = passwd
            .lines()
            .find(|l| l.starts_with(&format!("{user}:")))
            .unwrap_or_else(|| panic!("no {user} in {passwd}"));
        let fields: Vec<&str> = line.split(':').collect();
        assert_eq!(fields[6], "/usr/sbin/nologin", "{line}");
        (fields[2].parse().unwrap(), fields[3].parse().unwrap())
    };
    // Owners can be set only by root: elsewhere the users' creation is what is checked.
    if is_root() {
        std::fs::create_dir_all(root.path().join("var/lib")).unwrap();
        run(Command::new("systemd-tmpfiles")
            .arg(format!("--root={}", root.path().display()))
            .arg("--create")
            .arg(
                packaging()
                    .join("systemd/tmpfiles.d/garrison.conf")
                    .canonicalize()
                    .unwrap(),
            ));
        use std::os::unix::fs::MetadataExt as _;
        for (dir, user) in [
            ("var/lib/garrison", "garrison"),
            ("var/lib/garrison-hub", "garrison"),
            ("var/lib/garrison-agent", "garrison-agent"),
        ] {
            let meta = std::fs::metadata(root.path().join(dir)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), ids(user), "{dir}");
            assert_eq!(meta.mode() & 0o7777, 0o700, "{dir}");
        }
    } else {
        ids("garrison");
        ids("garrison-agent");
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
