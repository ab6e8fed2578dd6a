//! The machine-readable output: one `key=value` per line.

use std::fmt::Write as _;

use crate::run::{PhaseStats, Report};

/// The report as `key=value` lines. The keys the issue asks for come first; the rest break
/// them down. Unknown values (e.g. server figures for an external attestor) print as `nan`.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let measured = combined(&[&report.phases.enroll, &report.phases.renew]);
    let floor = report.floor.total_us();
    let enroll_cpu = report.phases.enroll.server_cpu_us_per_op();
    let lines: Vec<(&str, f64)> = vec![
        (
            "enroll_per_s",
            rate(report.phases.enroll.enrolls, &report.phases.enroll),
        ),
        (
            "renew_per_s",
            rate(report.phases.renew.renews, &report.phases.renew),
        ),
        ("p50_ms", percentile_ms(&measured, 0.50)),
        ("p99_ms", percentile_ms(&measured, 0.99)),
        ("server_cpu_us_per_enroll", enroll_cpu.unwrap_or(f64::NAN)),
        (
            "server_cpu_us_per_renew",
            report
                .phases
                .renew
                .server_cpu_us_per_op()
                .unwrap_or(f64::NAN),
        ),
        ("crypto_floor_us_per_enroll", floor),
        (
            "server_peak_rss_mib",
            report
                .server_peak_rss_kib
                .map_or(f64::NAN, |k| k as f64 / 1024.0),
        ),
        ("errors", total(report, |p| p.errors) as f64),
        ("shed", total(report, |p| p.shed) as f64),
        ("unreachable", total(report, |p| p.unreachable) as f64),
        ("agents", report.agents as f64),
        (
            "enroll_cpu_over_floor",
            enroll_cpu.map_or(f64::NAN, |c| c / floor),
        ),
        (
            "enroll_p50_ms",
            percentile_ms(&report.phases.enroll.enroll_latency_us, 0.50),
        ),
        (
            "enroll_p99_ms",
            percentile_ms(&report.phases.enroll.enroll_latency_us, 0.99),
        ),
        (
            "renew_p50_ms",
            percentile_ms(&report.phases.renew.renew_latency_us, 0.50),
        ),
        (
            "renew_p99_ms",
            percentile_ms(&report.phases.renew.renew_latency_us, 0.99),
        ),
        // Of the attestor's CPU, what its SQLite threads spent: the attestation log's share
        // (appends, commits, WAL checkpoints, node-state reads); 0 on PostgreSQL.
        (
            "server_sqlite_cpu_us_per_enroll",
            report
                .phases
                .enroll
                .sqlite_cpu_us_per_op()
                .unwrap_or(f64::NAN),
        ),
        (
            "server_sqlite_cpu_us_per_renew",
            report
                .phases
                .renew
                .sqlite_cpu_us_per_op()
                .unwrap_or(f64::NAN),
        ),
        // With `--database postgres://…`: the CPU of the machine's PostgreSQL processes, the
        // server's side of the log (its backends, WAL writer, checkpointer); nan if none runs.
        (
            "server_postgres_cpu_us_per_enroll",
            report
                .phases
                .enroll
                .postgres_cpu_us_per_op()
                .unwrap_or(f64::NAN),
        ),
        (
            "server_postgres_cpu_us_per_renew",
            report
                .phases
                .renew
                .postgres_cpu_us_per_op()
                .unwrap_or(f64::NAN),
        ),
        // The generator's own CPU: with the attestor's, what the machine spends per operation.
        (
            "generator_cpu_us_per_enroll",
            report
                .phases
                .enroll
                .generator_cpu_us_per_op()
                .unwrap_or(f64::NAN),
        ),
        (
            "generator_cpu_us_per_renew",
            report
                .phases
                .renew
                .generator_cpu_us_per_op()
                .unwrap_or(f64::NAN),
        ),
        ("enrolls", report.phases.enroll.enrolls as f64),
        ("renews", report.phases.renew.renews as f64),
        ("prime_enrolls", report.phases.prime.enrolls as f64),
        // The first enrollment of every agent, all started at once: the storm.
        ("prime_seconds", report.phases.prime.elapsed.as_secs_f64()),
        ("prime_errors", report.phases.prime.errors as f64),
        ("prime_shed", report.phases.prime.shed as f64),
        ("prime_unreachable", report.phases.prime.unreachable as f64),
        (
            "prime_p99_ms",
            percentile_ms(&report.phases.prime.enroll_latency_us, 0.99),
        ),
        (
            "prime_server_cpu_us_per_enroll",
            report
                .phases
                .prime
                .server_cpu_us_per_op()
                .unwrap_or(f64::NAN),
        ),
        ("floor_verify_ek_us", report.floor.verify_ek_us),
        ("floor_check_ak_us", report.floor.check_ak_us),
        ("floor_make_credential_us", report.floor.make_credential_us),
        ("floor_verify_quote_us", report.floor.verify_quote_us),
        ("floor_verify_csr_us", report.floor.verify_csr_us),
        ("floor_issue_svid_us", report.floor.issue_svid_us),
        ("pregen_s", report.pregen_seconds),
        // A connection alone (TLS or mTLS handshake, HTTP/2 set-up and teardown, one call
        // the router answers UNIMPLEMENTED): what an exchange costs before any work.
        (
            "bare_per_s",
            rate(report.phases.bare.bare, &report.phases.bare),
        ),
        (
            "server_cpu_us_per_connection",
            report
                .phases
                .bare
                .server_cpu_us_per_op()
                .unwrap_or(f64::NAN),
        ),
        (
            "server_cpu_us_per_mtls_connection",
            report
                .phases
                .bare_mtls
                .server_cpu_us_per_op()
                .unwrap_or(f64::NAN),
        ),
        (
            "generator_cpu_us_per_connection",
            report
                .phases
                .bare
                .generator_cpu_us_per_op()
                .unwrap_or(f64::NAN),
        ),
        (
            "bare_mtls_per_s",
            rate(report.phases.bare_mtls.bare, &report.phases.bare_mtls),
        ),
        (
            "generator_cpu_us_per_mtls_connection",
            report
                .phases
                .bare_mtls
                .generator_cpu_us_per_op()
                .unwrap_or(f64::NAN),
        ),
    ];
    for (key, value) in lines {
        let _ = writeln!(out, "{key}={}", number(value));
    }
    if let Some(mixed) = &report.phases.mixed {
        let all = combined(&[mixed]);
        for (key, value) in [
            ("mixed_enroll_per_s", rate(mixed.enrolls, mixed)),
            ("mixed_renew_per_s", rate(mixed.renews, mixed)),
            ("mixed_p50_ms", percentile_ms(&all, 0.50)),
            ("mixed_p99_ms", percentile_ms(&all, 0.99)),
            (
                "mixed_server_cpu_us_per_op",
                mixed.server_cpu_us_per_op().unwrap_or(f64::NAN),
            ),
        ] {
            let _ = writeln!(out, "{key}={}", number(value));
        }
    }
    out
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "nan".to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

fn rate(ops: u64, phase: &PhaseStats) -> f64 {
    let seconds = phase.elapsed.as_secs_f64();
    if seconds > 0.0 {
        ops as f64 / seconds
    } else {
        0.0
    }
}

fn total(report: &Report, field: impl Fn(&PhaseStats) -> u64) -> u64 {
    report.phases.all().map(field).sum()
}

fn combined(phases: &[&PhaseStats]) -> Vec<u64> {
    phases
        .iter()
        .flat_map(|p| p.enroll_latency_us.iter().chain(&p.renew_latency_us))
        .copied()
        .collect()
}

/// Nearest-rank percentile in milliseconds (0 when there are no samples).
fn percentile_ms(samples: &[u64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).saturating_sub(1);
    sorted.get(rank).map_or(0.0, |us| *us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&samples, 0.50), 50.0);
        assert_eq!(percentile_ms(&samples, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.99), 0.0);
    }

    #[test]
    fn numbers_print_plainly() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(2.5), "2.500");
        assert_eq!(number(f64::NAN), "nan");
    }
}
