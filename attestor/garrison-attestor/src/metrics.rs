//! The attestor's Prometheus metrics (served on `ops_listen` at `/metrics`).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `garrison_attestor_decisions_total{kind,decision,reason}` | counter | every decision: `kind` what was asked, enroll or renew (reject when a request could not be told apart), `decision` allow or deny, `reason` the refusal's code (`none` when allowed). Counted even when the refusal's record was only summed up (record budget) |
//! | `garrison_attestor_request_duration_seconds{method}` | histogram | time to answer each Enrollment/Renewal call (`begin`, `complete`, `begin_renewal`, `complete_renewal`), refusals included, sheds excluded |
//! | `garrison_attestor_requests_in_flight` | gauge | calls being worked on (bounded by `max_in_flight`) |
//! | `garrison_attestor_requests_shed_total` | counter | calls refused with `overloaded` because `max_in_flight` were being worked on |
//! | `garrison_attestor_log_append_duration_seconds` | histogram | time for a decision's record to be durably committed (the group commit included) |
//! | `garrison_attestor_site_ca_expiry_seconds` | gauge | seconds until the site CA in force expires (negative once expired) |
//! | `garrison_attestor_offline_budget_seconds` | gauge | seconds until the site fails closed without the hub (the newest CA it holds, certified successor included, expires) |
//! | `garrison_attestor_hub_connected` | gauge | 1 while the last sync with the hub succeeded, 0 otherwise (absent without a hub) |
//! | `garrison_attestor_sync_lag_seconds` | gauge | seconds since the last successful sync with the hub (absent before the first, or without a hub) |

use garrison_ops::seconds_between;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a decision.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// What was asked: `enroll` or `renew` (`reject` when it cannot be told).
    pub kind: &'static str,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The refusal's reason code, `none` when allowed.
    pub reason: &'static str,
}

/// Label of a gRPC method.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    /// The method, snake case.
    pub method: &'static str,
}

/// The attestor's metrics; [`AttestorMetrics::register`] puts them in a registry.
#[derive(Debug, Clone)]
pub struct AttestorMetrics {
    decisions: Family<DecisionLabels, Counter>,
    durations: Family<MethodLabel, Histogram>,
    /// Calls being worked on.
    pub in_flight: Gauge<i64, AtomicI64>,
    /// Calls shed.
    pub shed: Counter,
    log_append: Histogram,
    /// Seconds until the site CA in force expires.
    pub site_ca_expiry: Gauge<f64, AtomicU64>,
    /// Seconds until the site fails closed without the hub.
    pub offline_budget: Gauge<f64, AtomicU64>,
    /// 1 while the hub link is up.
    pub hub_connected: Gauge<i64, AtomicI64>,
    /// Seconds since the last successful sync.
    pub sync_lag: Gauge<f64, AtomicU64>,
    /// When the last sync round succeeded (for `sync_lag`).
    last_sync: Arc<Mutex<Option<SystemTime>>>,
}

impl Default for AttestorMetrics {
    fn default() -> Self {
        Self {
            decisions: Family::default(),
            durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            in_flight: Gauge::default(),
            shed: Counter::default(),
            log_append: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            site_ca_expiry: Gauge::default(),
            offline_budget: Gauge::default(),
            hub_connected: Gauge::default(),
            sync_lag: Gauge::default(),
            last_sync: Arc::new(Mutex::new(None)),
        }
    }
}

impl AttestorMetrics {
    /// Registers the metrics under `garrison_attestor_`. The hub-link gauges are registered
    /// only when `with_hub`.
    pub fn register(&self, registry: &mut Registry, with_hub: bool) {
        let registry = registry.sub_registry_with_prefix("garrison_attestor");
        registry.register(
            "decisions",
            "Decisions by record kind, decision and reason code",
            self.decisions.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer each Enrollment and Renewal call",
            self.durations.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Enrollment and Renewal calls being worked on",
            self.in_flight.clone(),
        );
        registry.register(
            "requests_shed",
            "Calls refused with `overloaded` (max_in_flight reached)",
            self.shed.clone(),
        );
        registry.register(
            "log_append_duration_seconds",
            "Time for a decision's record to be durably committed",
            self.log_append.clone(),
        );
        registry.register(
            "site_ca_expiry_seconds",
            "Seconds until the site CA in force expires",
            self.site_ca_expiry.clone(),
        );
        registry.register(
            "offline_budget_seconds",
            "Seconds until the site fails closed without the hub",
            self.offline_budget.clone(),
        );
        if with_hub {
            registry.register(
                "hub_connected",
                "1 while the last sync with the hub succeeded",
                self.hub_connected.clone(),
            );
            registry.register(
                "sync_lag_seconds",
                "Seconds since the last successful sync with the hub",
                self.sync_lag.clone(),
            );
        }
    }

    /// Counts one decision (labels are static strings: nothing is allocated per decision).
    pub fn decision(&self, kind: &'static str, allowed: bool, reason: Option<&'static str>) {
        self.decisions
            .get_or_create(&DecisionLabels {
                kind,
                decision: if allowed { "allow" } else { "deny" },
                reason: reason.unwrap_or("none"),
            })
            .inc();
    }

    /// Observes one call's duration.
    pub fn request(&self, method: &'static str, took: Duration) {
        self.durations
            .get_or_create(&MethodLabel { method })
            .observe(took.as_secs_f64());
    }

    /// A sync round with the hub succeeded at `now`.
    pub fn synced(&self, now: SystemTime) {
        self.hub_connected.set(1);
        if let Ok(mut last) = self.last_sync.lock() {
            *last = Some(now);
        }
    }

    /// A sync round with the hub failed (the hub was unreachable or refused).
    pub fn link_down(&self) {
        self.hub_connected.set(0);
    }

    /// Sets the time gauges (run before each scrape): the site CA in force expires at
    /// `ca_not_after`, the site fails closed after `offline_budget`.
    pub fn refresh(&self, now: SystemTime, ca_not_after: SystemTime, offline_budget: Duration) {
        self.site_ca_expiry.set(seconds_between(now, ca_not_after));
        self.offline_budget.set(offline_budget.as_secs_f64());
        if let Ok(last) = self.last_sync.lock()
            && let Some(last) = *last
        {
            self.sync_lag.set(seconds_between(last, now).max(0.0));
        }
    }

    /// Observes one append's duration.
    pub fn log_append(&self, took: Duration) {
        self.log_append.observe(took.as_secs_f64());
    }
}
