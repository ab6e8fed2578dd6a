//! gRPC services: convert at the edge, call the attestor, map refusals to statuses.

use std::sync::Arc;

use garrison_proto::v1;
use garrison_proto::v1::enrollment_server::Enrollment;
use garrison_proto::v1::renewal_server::Renewal;
use tonic::{Request, Response, Status};

use crate::attestor::Attestor;

/// The Enrollment and Renewal services over one attestor.
#[derive(Debug, Clone)]
pub struct Services {
    attestor: Arc<Attestor>,
}

impl Services {
    /// Services backed by `attestor`.
    pub fn new(attestor: Arc<Attestor>) -> Self {
        Services { attestor }
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
        self.attestor
            .begin(request.into_inner())
            .await
            .map(Response::new)
            .map_err(|r| r.to_status())
    }

    async fn complete(
        &self,
        request: Request<v1::CompleteRequest>,
    ) -> Result<Response<v1::SvidResponse>, Status> {
        self.attestor
            .complete(request.into_inner())
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
        let chain = peer_chain(&request);
        self.attestor
            .begin_renewal(chain.as_deref())
            .await
            .map(Response::new)
            .map_err(|r| r.to_status())
    }

    async fn complete_renewal(
        &self,
        request: Request<v1::CompleteRenewalRequest>,
    ) -> Result<Response<v1::SvidResponse>, Status> {
        let chain = peer_chain(&request);
        self.attestor
            .complete_renewal(chain.as_deref(), request.into_inner())
            .await
            .map(Response::new)
            .map_err(|r| r.to_status())
    }
}
