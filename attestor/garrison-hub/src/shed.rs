//! Shedding pushes before their bodies are read: when many sites come back at once, each
//! `PushLog` carries up to a whole batch (4 MiB, at most 16 MiB), decoded into memory before
//! the handler runs. [`ShedPushes`] wraps the Sync service and admits at most a fixed number
//! of pushes at a time, counted from before the body is read until the answer is sent; a push
//! beyond that is answered at once with `RESOURCE_EXHAUSTED` and a retry hint
//! (`retry-after-ms`), which the site's sync loop waits out. The hub's memory for pushes is
//! bounded by that number times the largest message, however many sites call.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tonic::codegen::{BoxFuture, Service, http};

/// The path of the call that carries batches.
const PUSH_PATH: &str = "/garrison.v1.Sync/PushLog";

/// Pushes admitted at once by a hub process: the 4 it works on and as many waiting their turn.
/// With 16 MiB messages that bounds what pushes hold to 128 MiB (32 MiB with 4 MiB batches).
pub const ADMITTED_PUSHES: usize = 8;

/// The retry hint sent with a shed push, milliseconds. A site adds its own jitter, so sites
/// shed together do not come back in step.
pub const SHED_RETRY_AFTER_MS: u64 = 2_000;

/// Wraps the Sync service (see the module docs).
#[derive(Clone)]
pub struct ShedPushes<S> {
    inner: S,
    permits: Arc<tokio::sync::Semaphore>,
    shed: Arc<AtomicU64>,
    /// The sites with a push admitted: one at a time each, so that a few sites (or one
    /// stolen site identity) cannot hold every place.
    pushing: Arc<Mutex<HashSet<String>>>,
    /// Who is pushing ([`pushing_site`]).
    who: fn(&http::Extensions) -> Option<String>,
    /// Calls, sheds and pushes are counted here when set, pushes timed by the clock.
    metrics: Option<(
        Arc<crate::metrics::HubMetrics>,
        Arc<dyn garrison_attestor::Clock>,
    )>,
}

/// Who is pushing, from the TLS client certificate (already verified by the TLS layer): the
/// site of a `spiffe://<td>/site/<site>/attestor` SVID, or `None` for anyone else.
fn pushing_site(extensions: &http::Extensions) -> Option<String> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let certs = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    let id = garrison_spiffe_tls::spiffe_id_of(certs.first()?).ok()?;
    let site = id
        .path()
        .strip_prefix("/site/")?
        .strip_suffix("/attestor")?
        .to_owned();
    garrison_ca::is_site_name(&site).then_some(site)
}

/// A site's place, given back when its push is answered.
struct Place {
    _permit: tokio::sync::OwnedSemaphorePermit,
    site: String,
    pushing: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Ok(mut pushing) = self.pushing.lock() {
            pushing.remove(&self.site);
        }
    }
}

impl<S> ShedPushes<S> {
    /// At most `pushes` pushes admitted at once.
    pub fn new(inner: S, pushes: usize) -> Self {
        ShedPushes {
            inner,
            permits: Arc::new(tokio::sync::Semaphore::new(pushes.max(1))),
            shed: Arc::new(AtomicU64::new(0)),
            pushing: Arc::new(Mutex::new(HashSet::new())),
            who: pushing_site,
            metrics: None,
        }
    }

    /// Counts every Sync call (method, result, duration), sheds, pushes in flight and each
    /// site's last accepted push in `metrics`.
    pub fn with_metrics(
        mut self,
        metrics: Arc<crate::metrics::HubMetrics>,
        clock: Arc<dyn garrison_attestor::Clock>,
    ) -> Self {
        self.metrics = Some((metrics, clock));
        self
    }

    /// How many pushes were shed so far.
    pub fn shed_count(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shed)
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for ShedPushes<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for ShedPushes<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = crate::metrics::method_of(request.uri().path());
        let started = std::time::Instant::now();
        let metrics = self.metrics.clone();
        if request.uri().path() != PUSH_PATH {
            let answer = self.inner.call(request);
            return Box::pin(async move {
                let response = answer.await;
                if let (Some((metrics, _)), Ok(response)) = (&metrics, &response) {
                    metrics.call(&method, answered_ok(response), started.elapsed());
                }
                response
            });
        }
        // Only a site attestor may push: anyone else is answered before the body is read.
        let Some(site) = (self.who)(request.extensions()) else {
            if let Some((metrics, _)) = &metrics {
                metrics.call(&method, false, started.elapsed());
            }
            let status = tonic::Status::permission_denied("only a site attestor pushes its log");
            return Box::pin(async move { Ok(status.into_http()) });
        };
        match self.admit(site.clone()) {
            Some(place) => {
                let answer = self.inner.call(request);
                // Counted until the push is answered or its future dropped (the client went
                // away, the call timed out).
                let in_flight = metrics
                    .as_ref()
                    .map(|(metrics, _)| PushInFlight::new(metrics));
                Box::pin(async move {
                    let response = answer.await;
                    drop(place);
                    drop(in_flight);
                    if let (Some((metrics, clock)), Ok(response)) = (&metrics, &response) {
                        let ok = answered_ok(response);
                        metrics.call(&method, ok, started.elapsed());
                        if ok {
                            metrics.pushed(&site, std::time::SystemTime::from(clock.now()));
                        }
                    }
                    response
                })
            }
            None => {
                if let Some((metrics, _)) = &metrics {
                    metrics.shed(&method);
                }
                let shed = self.shed.fetch_add(1, Ordering::Relaxed) + 1;
                if shed.is_power_of_two() {
                    tracing::warn!(
                        shed,
                        "pushes shed: more sites are sending batches than the hub takes at once"
                    );
                }
                let mut status = tonic::Status::resource_exhausted(
                    "the hub is taking other sites' batches: retry after the hint",
                );
                status.metadata_mut().insert(
                    garrison_attestor::RETRY_AFTER_METADATA_KEY,
                    tonic::metadata::MetadataValue::from(SHED_RETRY_AFTER_MS),
                );
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// One push counted in `pushes_in_flight` until dropped.
struct PushInFlight(Arc<crate::metrics::HubMetrics>);

impl PushInFlight {
    fn new(metrics: &Arc<crate::metrics::HubMetrics>) -> Self {
        metrics.pushes_in_flight.inc();
        Self(Arc::clone(metrics))
    }
}

impl Drop for PushInFlight {
    fn drop(&mut self) {
        self.0.pushes_in_flight.dec();
    }
}

/// Whether a gRPC response is a success: an error is answered "trailers-only", with its
/// `grpc-status` in the headers; a success carries it in the trailers.
fn answered_ok(response: &http::Response<tonic::body::Body>) -> bool {
    response.status() == http::StatusCode::OK
        && response
            .headers()
            .get("grpc-status")
            .is_none_or(|status| status.as_bytes() == b"0")
}

impl<S> ShedPushes<S> {
    /// A place for `site`'s push: none if every place is taken or the site already has one.
    fn admit(&self, site: String) -> Option<Place> {
        let mut pushing = self.pushing.lock().ok()?;
        if pushing.contains(&site) {
            return None;
        }
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        pushing.insert(site.clone());
        Some(Place {
            _permit: permit,
            site,
            pushing: Arc::clone(&self.pushing),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Answers each call once a permit is added to its semaphore.
    #[derive(Clone)]
    struct Held(Arc<tokio::sync::Semaphore>);

    impl Service<http::Request<()>> for Held {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: http::Request<()>) -> Self::Future {
            let release = Arc::clone(&self.0);
            Box::pin(async move {
                release.acquire().await.unwrap().forget();
                Ok(http::Response::new(tonic::body::Body::empty()))
            })
        }
    }

    /// The site a test request says it is from.
    #[derive(Clone)]
    struct FromSite(&'static str);

    fn request(path: &str) -> http::Request<()> {
        from(path, "a")
    }

    fn from(path: &str, site: &'static str) -> http::Request<()> {
        let mut request = http::Request::builder().uri(path).body(()).unwrap();
        if !site.is_empty() {
            request.extensions_mut().insert(FromSite(site));
        }
        request
    }

    fn shed(inner: Held, pushes: usize) -> ShedPushes<Held> {
        ShedPushes {
            who: |extensions| extensions.get::<FromSite>().map(|f| f.0.to_owned()),
            ..ShedPushes::new(inner, pushes)
        }
    }

    fn grpc_status(response: &http::Response<tonic::body::Body>) -> Option<String> {
        response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn pushes_beyond_the_admitted_ones_are_shed_at_once_with_a_hint() {
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let mut shed = shed(Held(Arc::clone(&release)), 2);
        let first = tokio::spawn(shed.call(from(PUSH_PATH, "a")));
        // One push at a time per site: a's second is shed.
        let again_a = shed.call(from(PUSH_PATH, "a")).await.unwrap();
        assert_eq!(grpc_status(&again_a).as_deref(), Some("8"));
        let second = tokio::spawn(shed.call(from(PUSH_PATH, "b")));
        // The third site's push is answered before the first two finish.
        let third = shed.call(from(PUSH_PATH, "c")).await.unwrap();
        assert_eq!(
            grpc_status(&third).as_deref(),
            Some("8"),
            "RESOURCE_EXHAUSTED"
        );
        assert_eq!(
            third
                .headers()
                .get(garrison_attestor::RETRY_AFTER_METADATA_KEY)
                .unwrap(),
            &SHED_RETRY_AFTER_MS.to_string()
        );
        assert_eq!(shed.shed_count().load(Ordering::Relaxed), 2);
        // Not a site attestor: refused before its body is read, taking no place.
        let stranger = shed.call(from(PUSH_PATH, "")).await.unwrap();
        assert_eq!(
            grpc_status(&stranger).as_deref(),
            Some("7"),
            "PERMISSION_DENIED"
        );
        // Other calls are never shed.
        let status = tokio::spawn(shed.call(request("/garrison.v1.Sync/Status")));
        release.add_permits(3);
        for answer in [first, second, status] {
            let response = answer.await.unwrap().unwrap();
            assert_eq!(grpc_status(&response), None, "passed through");
        }
        // Places are given back once answered.
        let again = tokio::spawn(shed.call(request(PUSH_PATH)));
        release.add_permits(1);
        assert_eq!(grpc_status(&again.await.unwrap().unwrap()), None);
    }
}
