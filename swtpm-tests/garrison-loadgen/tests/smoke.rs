//! Smoke run of the load generator (correctness only, not performance): a few agents against
//! an in-process attestor enroll and renew without errors, and every figure parses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::process::Command;

const REQUIRED: [&str; 10] = [
    "enroll_per_s",
    "renew_per_s",
    "p50_ms",
    "p99_ms",
    "server_cpu_us_per_enroll",
    "server_cpu_us_per_renew",
    "crypto_floor_us_per_enroll",
    "server_peak_rss_mib",
    "errors",
    "shed",
];

#[test]
fn a_short_in_process_run_enrolls_renews_and_prints_parseable_figures() {
    let output = Command::new(env!("CARGO_BIN_EXE_garrison-loadgen"))
        .args(["--agents", "4", "--seconds", "1", "--renew-ratio", "0.5"])
        .args(["--in-process", "--floor-iterations", "10"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let figures: BTreeMap<&str, f64> = stdout
        .lines()
        .map(|line| {
            let (key, value) = line.split_once('=').expect("key=value");
            (
                key,
                value
                    .parse::<f64>()
                    .unwrap_or_else(|_| panic!("{line} does not parse")),
            )
        })
        .collect();
    for key in REQUIRED {
        let value = figures
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing:\n{stdout}"));
        assert!(value.is_finite(), "{key}={value}");
    }
    assert!(figures["enrolls"] > 0.0, "{stdout}");
    assert!(figures["renews"] > 0.0, "{stdout}");
    assert!(
        figures["mixed_enroll_per_s"] + figures["mixed_renew_per_s"] > 0.0,
        "{stdout}"
    );
    assert_eq!(
        figures["errors"], 0.0,
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(figures["crypto_floor_us_per_enroll"] > 0.0);
    assert!(figures["server_peak_rss_mib"] > 0.0);
    // The bare exchanges (a connection and an UNIMPLEMENTED call) ran over TLS and mTLS, and
    // every one got exactly that answer (anything else would count in `errors`).
    assert!(figures["bare_per_s"] > 0.0, "{stdout}");
    assert!(figures["bare_mtls_per_s"] > 0.0, "{stdout}");
    for key in [
        "server_cpu_us_per_connection",
        "server_cpu_us_per_mtls_connection",
    ] {
        let value = figures[key];
        assert!(value.is_finite() && value >= 0.0, "{key}={value}");
    }
    // The generator's own CPU, with the attestor's threads taken out (10 ms ticks: may be 0).
    for key in ["generator_cpu_us_per_enroll", "generator_cpu_us_per_renew"] {
        let value = figures[key];
        assert!(value.is_finite() && value >= 0.0, "{key}={value}");
    }
}

fn figures(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Runs the generator, which must succeed, and returns its figures (and its stdout, for
/// assertion messages).
fn run_ok(command: &mut Command) -> (BTreeMap<String, String>, String) {
    let output = command.output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (figures(&stdout), stdout)
}

#[test]
fn a_prepared_site_is_driven_through_attestor_addr() {
    let dir = tempfile::tempdir().unwrap();
    let site_dir = dir.path().join("site");
    let bin = env!("CARGO_BIN_EXE_garrison-loadgen");
    let prepared = Command::new(bin)
        .args(["--prepare-only", "--site-dir"])
        .arg(&site_dir)
        .output()
        .unwrap();
    assert!(prepared.status.success(), "{prepared:?}");
    let prepared = figures(&String::from_utf8(prepared.stdout).unwrap());
    let site_toml = std::path::PathBuf::from(&prepared["site_toml"]);
    let listen: std::net::SocketAddr = prepared["listen"].parse().unwrap();
    assert!(site_dir.join("ek-ca/key.pem").is_file());

    // The attestor is started apart from the generator (here in this test process).
    let mut attestor = garrison_loadgen::server::Attestor::spawn_in_process(&site_toml).unwrap();
    attestor
        .wait_ready(listen, std::time::Duration::from_secs(60))
        .unwrap();
    let (got, stdout) = run_ok(
        Command::new(bin)
            .args(["--attestor", &listen.to_string(), "--site-dir"])
            .arg(&site_dir)
            .args(["--agents", "2", "--seconds", "1", "--floor-iterations", "5"]),
    );
    attestor.stop();
    assert_eq!(got["errors"], "0", "{stdout}");
    assert!(got["enrolls"].parse::<f64>().unwrap() > 0.0, "{stdout}");
    assert!(got["renews"].parse::<f64>().unwrap() > 0.0, "{stdout}");
    // Nothing of somebody else's attestor is measured.
    assert_eq!(got["server_cpu_us_per_enroll"], "nan", "{stdout}");
    assert_eq!(got["server_peak_rss_mib"], "nan", "{stdout}");
}

#[test]
fn attestor_addr_without_a_prepared_site_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_garrison-loadgen"))
        .args(["--attestor", "127.0.0.1:9", "--site-dir"])
        .arg(dir.path())
        .args(["--agents", "1", "--seconds", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a prepared site"), "{stderr}");
}

#[test]
fn an_attestor_admitting_one_connection_at_a_time_serves_every_agent() {
    // Six agents start at once against an attestor that admits one connection at a time:
    // the others wait in the listen backlog (no refusal, no error) and are served in turn.
    let (got, stdout) = run_ok(
        Command::new(env!("CARGO_BIN_EXE_garrison-loadgen"))
            .args(["--agents", "6", "--seconds", "1", "--storm-only"])
            .args(["--in-process", "--floor-iterations", "5"])
            .args(["--site-extra", "max_connections = 1"]),
    );
    assert_eq!(got["prime_enrolls"], "6", "{stdout}");
    assert_eq!(got["prime_errors"], "0", "{stdout}");
    assert_eq!(got["prime_unreachable"], "0", "{stdout}");
}
