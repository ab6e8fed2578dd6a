//! Readiness checks and the HTTP listener that serves `/livez`, `/readyz` and `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// What one readiness check found: `Ok` or the problem, in words.
pub type CheckResult = Result<(), String>;

/// A readiness check: cheap, and bounded by [`CHECK_TIMEOUT`].
pub type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = CheckResult> + Send>> + Send + Sync>;

/// Longest a check may take; a slower one counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one evaluation of the checks answers for: probes, scrapes and the gRPC health
/// task within it share its result, so a burst of `/readyz` calls costs one database write
/// probe, not one each.
pub const CHECK_REUSE: Duration = Duration::from_secs(1);

/// Results of the last evaluation, and when it was made.
type Evaluated = Option<(std::time::Instant, Vec<(&'static str, CheckResult)>)>;

/// The named checks that make a daemon ready.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
    /// One evaluation at a time; its result is reused for [`CHECK_REUSE`].
    last: Arc<tokio::sync::Mutex<Evaluated>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.checks.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

impl Readiness {
    /// No checks yet (always ready).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an asynchronous check.
    pub fn check<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckResult> + Send + 'static,
    {
        let check: Check = Arc::new(move || Box::pin(check()));
        self.checks.push((name, check));
        self
    }

    /// Adds a synchronous check.
    pub fn check_now<F>(self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> CheckResult + Send + Sync + 'static,
    {
        let check = Arc::new(check);
        self.check(name, move || {
            let check = Arc::clone(&check);
            async move { check() }
        })
    }

    /// The checks' results: those of an evaluation less than [`CHECK_REUSE`] old, else a new
    /// one (one at a time: concurrent callers wait for it and share it). Each check is run,
    /// one after another, within [`CHECK_TIMEOUT`] (a synchronous check is not interrupted:
    /// keep those to a file read).
    pub async fn evaluate(&self) -> Vec<(&'static str, CheckResult)> {
        let mut last = self.last.lock().await;
        if let Some((at, results)) = last.as_ref()
            && at.elapsed() < CHECK_REUSE
        {
            return results.clone();
        }
        let results = self.run_checks().await;
        *last = Some((std::time::Instant::now(), results.clone()));
        results
    }

    /// A new evaluation, whatever the age of the last one (still one at a time), kept for
    /// [`Readiness::evaluate`] to reuse.
    pub async fn evaluate_now(&self) -> Vec<(&'static str, CheckResult)> {
        let mut last = self.last.lock().await;
        let results = self.run_checks().await;
        *last = Some((std::time::Instant::now(), results.clone()));
        results
    }

    async fn run_checks(&self) -> Vec<(&'static str, CheckResult)> {
        let runs = self.checks.iter().map(|(name, check)| {
            let future = check();
            async move {
                let result = match tokio::time::timeout(CHECK_TIMEOUT, future).await {
                    Ok(result) => result,
                    Err(_) => Err(format!(
                        "did not answer within {} s",
                        CHECK_TIMEOUT.as_secs()
                    )),
                };
                (*name, result)
            }
        });
        let mut results = Vec::with_capacity(self.checks.len());
        for run in runs {
            results.push(run.await);
        }
        results
    }
}

/// Refreshes gauges computed at scrape time (time to expiry, sync lag) just before the
/// registry is encoded.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// Everything the HTTP listener serves.
pub struct Probes {
    readiness: Readiness,
    registry: Registry,
    refresh: Option<Refresh>,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

impl Probes {
    /// Probes over `readiness` and the metrics in `registry`; `refresh` runs before each
    /// scrape.
    pub fn new(readiness: Readiness, registry: Registry, refresh: Option<Refresh>) -> Self {
        Self {
            readiness,
            registry,
            refresh,
        }
    }

    /// The readiness checks.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The metrics in Prometheus text format (OpenMetrics), after the refresh.
    pub fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        if let Some(refresh) = &self.refresh {
            refresh();
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Serves `GET /livez`, `/readyz` and `/metrics` on `listener` until `shutdown`.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = axum::Router::new()
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self);
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Warns (one line) when the probes listen beyond loopback: they answer anyone who reaches
/// them, without authentication.
pub fn warn_if_exposed(address: std::net::SocketAddr) {
    if !address.ip().is_loopback() {
        tracing::warn!(
            %address,
            "ops_listen is not a loopback address: /livez, /readyz and /metrics answer anyone \
             who reaches it, without authentication; keep it on loopback or a management network"
        );
    }
}

/// Binds the probes listener, with a clear error naming the address.
pub async fn bind(address: &str) -> Result<TcpListener, BindError> {
    if let Ok(parsed) = address.parse() {
        warn_if_exposed(parsed);
    }
    TcpListener::bind(address)
        .await
        .map_err(|source| BindError {
            address: address.to_owned(),
            source,
        })
}

/// The probes address cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for probes and metrics on {address}")]
pub struct BindError {
    address: String,
    #[source]
    source: std::io::Error,
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(probes): State<Arc<Probes>>) -> Response {
    let results = probes.readiness.evaluate().await;
    let ready = results.iter().all(|(_, result)| result.is_ok());
    let mut body = String::from(if ready { "ready\n" } else { "not ready\n" });
    for (name, result) in &results {
        match result {
            Ok(()) => body.push_str(&format!("ok {name}\n")),
            Err(problem) => body.push_str(&format!("fail {name}: {problem}\n")),
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

async fn metrics(State(probes): State<Arc<Probes>>) -> Response {
    match probes.metrics_text() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        )
            .into_response(),
    }
}
