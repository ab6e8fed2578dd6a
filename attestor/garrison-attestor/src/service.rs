//! gRPC services: convert at the edge, call the attestor, map refusals to statuses.

use std::sync::Arc;

use garrison_proto::v1;
use garrison_proto::v1::enrollment_server::Enrollment;
use garrison_proto::v1::renewal_server::Renewal;
use tonic::{Request, Response, Status};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::attestor::Attestor;
use crate::refusal::{Reason, Refusal, RefusalStatus};

/// A bound on requests being worked on at once. Beyond it requests are shed at once with
/// `overloaded` (RESOURCE_EXHAUSTED and a retry hint) instead of queueing without limit, so
/// that a herd of reconnecting agents cannot exhaust the site's memory.
#[derive(Debug, Clone)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl InFlight {
    /// At most `limit` requests at once (at least one).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        InFlight {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// A permit for one request, held until the response is ready, or the refusal to send.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, Status> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            Refusal::new(
                Reason::Overloaded,
                format!("{} requests in flight", self.limit),
            )
            .to_status()
        })
    }
}

/// The Enrollment and Renewal services over one attestor.
#[derive(Debug, Clone)]
pub struct Services {
    attestor: Arc<Attestor>,
    in_flight: InFlight,
}

impl Services {
    /// Services backed by `attestor`, working on at most `max_in_flight` requests at once.
    pub fn new(attestor: Arc<Attestor>, max_in_flight: usize) -> Self {
        Services {
            attestor,
            in_flight: InFlight::new(max_in_flight),
        }
    }
}

/// One call being worked on: its in-flight permit, counted in the metrics until dropped,
/// when its duration is observed.
struct Call {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<crate::metrics::AttestorMetrics>,
    method: &'static str,
    started: std::time::Instant,
}

impl Drop for Call {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
        self.metrics.request(self.method, self.started.elapsed());
    }
}

impl Services {
    /// Admits one call to `method`, or sheds it (counted).
    fn admit(&self, method: &'static str) -> Result<Call, Status> {
        let metrics = Arc::clone(self.attestor.metrics());
        match self.in_flight.admit() {
            Ok(permit) => {
                metrics.in_flight.inc();
                Ok(Call {
                    _permit: permit,
                    metrics,
                    method,
                    started: std::time::Instant::now(),
                })
            }
            Err(status) => {
                metrics.shed.inc();
                Err(status)
            }
        }
    }
}

fn peer_chain<T>(request: &Request<T>) -> Option<Vec<Vec<u8>>> {
    request
        .peer_certs()
        .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
}

#[tonic::async_trait]
impl Enrollment for Services {
    async fn begin(
        &self,
        request: Request<v1::BeginRequest>,
    ) -> Result<Response<v1::BeginResponse>, Status> {
        let _call = self.admit("begin")?;
        let peer = request.remote_addr();
        self.attestor
            .begin(request.into_inner(), peer)
            .await
            .map(Response::new)
            .map_err(|r| r.to_status())
    }

    async fn complete(
        &self,
        request: Request<v1::CompleteRequest>,
    ) -> Result<Response<v1::SvidResponse>, Status> {
        let _call = self.admit("complete")?;
        let peer = request.remote_addr();
        self.attestor
            .complete(request.into_inner(), peer)
            .await
            .map(Response::new)
            .map_err(|r| r.to_status())
    }
}

#[tonic::async_trait]
impl Renewal for Services {
    async fn begin_renewal(
        &self,
        request: Request<v1::BeginRenewalRequest>,
    ) -> Result<Response<v1::Challenge>, Status> {
        let _call = self.admit("begin_renewal")?;
        let chain = peer_chain(&request);
        self.attestor
            .begin_renewal(chain.as_deref(), request.remote_addr())
            .await
            .map(Response::new)
            .map_err(|r| r.to_status())
    }

    async fn complete_renewal(
        &self,
        request: Request<v1::CompleteRenewalRequest>,
    ) -> Result<Response<v1::SvidResponse>, Status> {
        let _call = self.admit("complete_renewal")?;
        let chain = peer_chain(&request);
        let peer = request.remote_addr();
        self.attestor
            .complete_renewal(chain.as_deref(), request.into_inner(), peer)
            .await
            .map(Response::new)
            .map_err(|r| r.to_status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_beyond_the_limit_are_shed_with_a_retry_hint() {
        let in_flight = InFlight::new(2);
        let first = in_flight.admit().unwrap();
        let _second = in_flight.admit().unwrap();
        let shed = in_flight.admit().unwrap_err();
        assert_eq!(shed.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            shed.metadata().get(crate::REASON_METADATA_KEY).unwrap(),
            "overloaded"
        );
        assert!(
            shed.metadata()
                .get(crate::RETRY_AFTER_METADATA_KEY)
                .is_some()
        );
        drop(first);
        assert!(
            in_flight.admit().is_ok(),
            "a finished request frees its place"
        );
    }
}
