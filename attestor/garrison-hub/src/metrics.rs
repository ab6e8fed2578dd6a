//! The hub's Prometheus metrics (served on `ops_listen` at `/metrics`).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `garrison_hub_sync_calls_total{method,result}` | counter | Sync calls by method (`push_log`, `pull`, `status`, `request_intermediate`, ...) and result: `ok`, `refused` (any gRPC error status), `shed` |
//! | `garrison_hub_sync_call_duration_seconds{method}` | histogram | time to answer each Sync call (shed calls excluded) |
//! | `garrison_hub_pushes_in_flight` | gauge | `PushLog` calls admitted and not yet answered (at most 8) |
//! | `garrison_hub_site_push_age_seconds{site}` | gauge | seconds since each site's last accepted `PushLog`, as this hub process saw it (the hub's view of sync lag; a site appears at its first push after the hub started) |
//! | `garrison_hub_ca_expiry_seconds` | gauge | seconds until the hub CA expires (negative once expired) |

use garrison_ops::seconds_between;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a Sync call's outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The method, snake case.
    pub method: String,
    /// `ok`, `refused` or `shed`.
    pub result: &'static str,
}

/// Label of a Sync method.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    /// The method, snake case.
    pub method: String,
}

/// Label of a site.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabel {
    /// The site's name.
    pub site: String,
}

/// The hub's metrics.
#[derive(Debug)]
pub struct HubMetrics {
    calls: Family<CallLabels, Counter>,
    durations: Family<MethodLabel, Histogram>,
    /// Pushes admitted and not yet answered.
    pub pushes_in_flight: Gauge<i64, AtomicI64>,
    push_age: Family<SiteLabel, Gauge<f64, AtomicU64>>,
    /// Seconds until the hub CA expires.
    pub ca_expiry: Gauge<f64, AtomicU64>,
    last_push: Mutex<HashMap<String, SystemTime>>,
}

impl Default for HubMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            pushes_in_flight: Gauge::default(),
            push_age: Family::default(),
            ca_expiry: Gauge::default(),
            last_push: Mutex::new(HashMap::new()),
        }
    }
}

impl HubMetrics {
    /// Registers the metrics under `garrison_hub_`.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("garrison_hub");
        registry.register(
            "sync_calls",
            "Sync calls by method and result (ok, refused, shed)",
            self.calls.clone(),
        );
        registry.register(
            "sync_call_duration_seconds",
            "Time to answer each Sync call",
            self.durations.clone(),
        );
        registry.register(
            "pushes_in_flight",
            "PushLog calls admitted and not yet answered",
            self.pushes_in_flight.clone(),
        );
        registry.register(
            "site_push_age_seconds",
            "Seconds since each site's last accepted PushLog",
            self.push_age.clone(),
        );
        registry.register(
            "ca_expiry_seconds",
            "Seconds until the hub CA expires",
            self.ca_expiry.clone(),
        );
    }

    /// Counts one answered call (`ok` or `refused`) and its duration.
    pub fn call(&self, method: &str, ok: bool, took: Duration) {
        let method = method.to_owned();
        self.calls
            .get_or_create(&CallLabels {
                method: method.clone(),
                result: if ok { "ok" } else { "refused" },
            })
            .inc();
        self.durations
            .get_or_create(&MethodLabel { method })
            .observe(took.as_secs_f64());
    }

    /// Counts one shed call.
    pub fn shed(&self, method: &str) {
        self.calls
            .get_or_create(&CallLabels {
                method: method.to_owned(),
                result: "shed",
            })
            .inc();
    }

    /// Notes `site`'s accepted push at `now`.
    pub fn pushed(&self, site: &str, now: SystemTime) {
        if let Ok(mut last) = self.last_push.lock() {
            last.insert(site.to_owned(), now);
        }
    }

    /// Sets the time gauges from `now` and the hub CA's notAfter (run before each scrape).
    pub fn refresh(&self, now: SystemTime, ca_not_after: Option<SystemTime>) {
        if let Some(not_after) = ca_not_after {
            self.ca_expiry.set(seconds_between(now, not_after));
        }
        if let Ok(last) = self.last_push.lock() {
            for (site, at) in last.iter() {
                self.push_age
                    .get_or_create(&SiteLabel { site: site.clone() })
                    .set(seconds_between(*at, now).max(0.0));
            }
        }
    }
}

/// The Sync methods, as labels take them; any other path is `other`, so a caller cannot
/// grow the label set (and the hub's memory) by calling made-up methods.
const SYNC_METHODS: &[&str] = &[
    "Status",
    "MissingEvidence",
    "PushLog",
    "Pull",
    "RequestIntermediate",
];

/// `/garrison.v1.Sync/PushLog` → `push_log`: the method name of a Sync call, snake case;
/// `other` for anything that is not a Sync method.
pub fn method_of(path: &str) -> String {
    let name = match path.strip_prefix("/garrison.v1.Sync/") {
        Some(name) if SYNC_METHODS.contains(&name) => name,
        _ => return "other".to_owned(),
    };
    let mut snake = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_snake_case() {
        assert_eq!(method_of("/garrison.v1.Sync/PushLog"), "push_log");
        assert_eq!(
            method_of("/garrison.v1.Sync/RequestIntermediate"),
            "request_intermediate"
        );
        assert_eq!(method_of("/garrison.v1.Sync/Pull"), "pull");
        assert_eq!(method_of("/garrison.v1.Sync/MadeUp1"), "other");
        assert_eq!(method_of("/grpc.health.v1.Health/Check"), "other");
    }
}
