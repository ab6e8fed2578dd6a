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
}
