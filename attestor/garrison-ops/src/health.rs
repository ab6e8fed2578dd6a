//! The standard gRPC health service (`grpc.health.v1.Health`), answering `SERVING` for the
//! whole server (`""`) and each named service while every readiness check passes, and
//! `NOT_SERVING` otherwise. Kept in step by a task that re-runs the checks every
//! [`HEALTH_INTERVAL`].

use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::Readiness;

/// How often the gRPC health status is re-evaluated.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Re-evaluates the readiness checks and sets the health status now (the daemon calls it
/// when something that readiness depends on changed, besides the periodic refresh).
#[derive(Clone)]
pub struct HealthUpdater {
    reporter: tonic_health::server::HealthReporter,
    readiness: Readiness,
    services: &'static [&'static str],
}

impl std::fmt::Debug for HealthUpdater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthUpdater")
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl HealthUpdater {
    /// Runs the checks and publishes `SERVING` or `NOT_SERVING`.
    pub async fn update(&self) {
        let results = self.readiness.evaluate_now().await;
        let status = if results.iter().all(|(_, result)| result.is_ok()) {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        for name in self.services {
            self.reporter.set_service_status(*name, status).await;
        }
    }
}

/// The health service to add to a tonic server, and its updater. The status is set before
/// this returns, then kept current every [`HEALTH_INTERVAL`] by a spawned task that runs as
/// long as the runtime does.
pub async fn service(
    readiness: Readiness,
    services: &'static [&'static str],
) -> (HealthServer<impl Health>, HealthUpdater) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let updater = HealthUpdater {
        reporter,
        readiness,
        services,
    };
    updater.update().await;
    let periodic = updater.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(HEALTH_INTERVAL);
        interval.tick().await;
        loop {
            interval.tick().await;
            periodic.update().await;
        }
    });
    (service, updater)
}
