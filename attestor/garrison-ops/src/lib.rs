//! What operators run Garrison's daemons with (the attestor, the hub and the agent):
//!
//! * [`probes`]: readiness checks, and an HTTP listener with `/livez`, `/readyz` and
//!   `/metrics` (Prometheus text format, from a `prometheus-client` registry);
//! * [`health`]: the standard gRPC health service (`grpc.health.v1.Health`), kept in step
//!   with the same readiness checks;
//! * [`logging`]: log output on stderr, as text (colour only on a terminal) or one JSON
//!   object per line.
//!
//! Readiness means "this daemon can do its job now": each daemon names its own checks (the
//! attestor: its log is writable, its CA is valid, a policy is in force). Liveness only means
//! the process answers.
#![forbid(unsafe_code)]

pub mod health;
pub mod logging;
pub mod probes;

pub use probes::{Check, CheckResult, Probes, Readiness};
pub use prometheus_client;

/// An error and its causes on one line, `error: cause: cause...`, for a log field or a
/// readiness line (never a Debug dump).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `to - from` in seconds, negative when `to` is earlier: what the time-to-expiry and lag
/// gauges report.
pub fn seconds_between(from: std::time::SystemTime, to: std::time::SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(ahead) => ahead.as_secs_f64(),
        Err(behind) => -behind.duration().as_secs_f64(),
    }
}
