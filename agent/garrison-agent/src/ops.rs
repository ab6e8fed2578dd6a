//! The agent's metrics and readiness, served on `ops_listen` (`/livez`, `/readyz`,
//! `/metrics`) and as gRPC health on the Workload API socket.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `garrison_agent_exchanges_total{exchange,result}` | counter | enrollments and renewals by outcome: `ok`, `refused` (the attestor said no), `failed` (anything else) |
//! | `garrison_agent_exchange_duration_seconds{exchange}` | histogram | wall time of successful exchanges |
//! | `garrison_agent_svid_expiry_seconds` | gauge | seconds until the SVID on disk expires (negative once expired; absent before the first SVID) |
//! | `garrison_agent_svid_renewal_seconds` | gauge | seconds until the next renewal is due (0 while renewing) |
//! | `garrison_agent_workload_api_streams` | gauge | open Workload API streams |
//! | `garrison_agent_workload_api_refused_total` | counter | Workload API calls refused (header missing or caller not allowed) |
//!
//! Ready means: the agent holds an SVID that has not expired.

use garrison_ops::seconds_between;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the exchange metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExchangeLabels {
    /// `enroll` or `renew`.
    pub exchange: &'static str,
    /// `ok`, `refused` or `failed`.
    pub result: &'static str,
}

/// Label of the exchange duration histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExchangeLabel {
    /// `enroll` or `renew`.
    pub exchange: &'static str,
}

/// The agent's metrics.
#[derive(Debug)]
pub struct AgentMetrics {
    exchanges: Family<ExchangeLabels, Counter>,
    durations: Family<ExchangeLabel, Histogram>,
    svid_expiry: Gauge<f64, AtomicU64>,
    renewal_due: Gauge<f64, AtomicU64>,
    /// Open Workload API streams (the server updates it).
    pub streams: Gauge<i64, AtomicI64>,
    /// Workload API calls refused (the server counts them).
    pub refused: Counter,
    /// notAfter of the current SVID and the next renewal time, for the gauges.
    schedule: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl AgentMetrics {
    /// The metrics, registered in a new registry.
    pub fn register() -> (Arc<Self>, Registry) {
        let metrics = Arc::new(Self {
            exchanges: Family::default(),
            durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 14))
            }),
            svid_expiry: Gauge::default(),
            renewal_due: Gauge::default(),
            streams: Gauge::default(),
            refused: Counter::default(),
            schedule: Mutex::new((None, None)),
        });
        let mut registry = Registry::with_prefix("garrison_agent");
        registry.register(
            "exchanges",
            "Enrollments and renewals by outcome (ok, refused, failed)",
            metrics.exchanges.clone(),
        );
        registry.register(
            "exchange_duration_seconds",
            "Wall time of successful enrollments and renewals",
            metrics.durations.clone(),
        );
        registry.register(
            "svid_expiry_seconds",
            "Seconds until the current SVID expires (negative once expired)",
            metrics.svid_expiry.clone(),
        );
        registry.register(
            "svid_renewal_seconds",
            "Seconds until the next renewal is due (0 while renewing)",
            metrics.renewal_due.clone(),
        );
        registry.register(
            "workload_api_streams",
            "Open Workload API streams",
            metrics.streams.clone(),
        );
        registry.register(
            "workload_api_refused",
            "Workload API calls refused (security header missing or caller not allowed)",
            metrics.refused.clone(),
        );
        (metrics, registry)
    }

    /// Counts one exchange.
    pub fn exchange(&self, exchange: &'static str, result: &'static str, took: Option<Duration>) {
        self.exchanges
            .get_or_create(&ExchangeLabels { exchange, result })
            .inc();
        if let Some(took) = took {
            self.durations
                .get_or_create(&ExchangeLabel { exchange })
                .observe(took.as_secs_f64());
        }
    }

    /// Records the current SVID's expiry and the next renewal time.
    pub fn schedule(&self, not_after: Option<SystemTime>, renew_at: Option<SystemTime>) {
        if let Ok(mut schedule) = self.schedule.lock() {
            if not_after.is_some() {
                schedule.0 = not_after;
            }
            schedule.1 = renew_at;
        }
    }

    /// Sets the time gauges from `now` (run before each scrape).
    pub fn refresh(&self, now: SystemTime) {
        let Ok(schedule) = self.schedule.lock() else {
            return;
        };
        if let Some(not_after) = schedule.0 {
            self.svid_expiry.set(seconds_between(now, not_after));
        }
        self.renewal_due.set(
            schedule
                .1
                .map_or(0.0, |at| seconds_between(now, at).max(0.0)),
        );
    }
}
