//! What the attestor tells operators about itself: readiness (`/readyz` and the gRPC health
//! service), `/livez`, and `/metrics` (see `metrics.rs` for the list).
//!
//! Ready means the attestor can decide and issue now: its attestation log takes a write (a
//! transaction that updates nothing and rolls back), its site CA in force is valid now, and a
//! signed policy is in force.

use garrison_ops::error_chain;
use std::sync::Arc;
use std::time::SystemTime;

use garrison_ops::Readiness;

use crate::attestor::Attestor;
use crate::status::{LINK_DOWN, LINK_UP};

/// The attestor's readiness checks: `log`, `ca`, `policy`.
pub fn readiness(attestor: &Arc<Attestor>) -> Readiness {
    let log = attestor.log().clone();
    let ca_attestor = Arc::clone(attestor);
    let policy_attestor = Arc::clone(attestor);
    Readiness::new()
        .check("log", move || {
            let log = log.clone();
            async move {
                log.check_writable()
                    .await
                    .map_err(|error| error_chain(&error))
            }
        })
        .check_now("ca", move || {
            let validity = ca_attestor.site_ca().active().validity();
            let now = ca_attestor.clock().now();
            if now < validity.not_before {
                return Err(format!(
                    "the site CA is valid only from {}",
                    validity.not_before
                ));
            }
            if now >= validity.not_after {
                return Err(format!(
                    "the site CA expired at {}: issuing is refused (ca-unavailable)",
                    validity.not_after
                ));
            }
            Ok(())
        })
        .check_now("policy", move || {
            let (_, digest) = policy_attestor.policy_in_force();
            if digest.is_empty() {
                return Err("no signed policy is in force".to_owned());
            }
            Ok(())
        })
}

/// The registry of the attestor's metrics, with the hub-link gauges when `with_hub`, and
/// the refresh that sets the time gauges before each scrape. The hub-link gauges start from
/// what the log recorded of the link before this process started.
pub async fn registry(
    attestor: &Arc<Attestor>,
    with_hub: bool,
) -> (
    prometheus_client::registry::Registry,
    garrison_ops::probes::Refresh,
) {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = attestor.metrics();
    metrics.register(&mut registry, with_hub);
    if with_hub {
        match attestor.log().sync_events().await {
            Ok(events) => {
                let last = |kind: &str| events.iter().find(|e| e.kind == kind).map(|e| e.last);
                let (up, down) = (last(LINK_UP), last(LINK_DOWN));
                if let Some(up) = up {
                    metrics.synced(SystemTime::from(up));
                }
                if down.is_some_and(|down| up.is_none_or(|up| down > up)) {
                    metrics.link_down();
                }
            }
            Err(error) => tracing::warn!(
                error = %error_chain(&error),
                "cannot read the hub link's history; sync lag starts unknown"
            ),
        }
    }
    let attestor = Arc::clone(attestor);
    let refresh: garrison_ops::probes::Refresh = Arc::new(move || {
        let now = attestor.clock().now();
        let state = attestor.site_ca().state();
        let budget = state.offline_budget(now);
        attestor.metrics().refresh(
            SystemTime::from(now),
            SystemTime::from(state.active.not_after()),
            std::time::Duration::try_from(budget).unwrap_or_default(),
        );
    });
    (registry, refresh)
}
