//! The gRPC side: TLS channels to the attestor and the four calls, each with a time limit
//! and size limits. No TPM here.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use garrison_ca::SpiffeId;
use garrison_proto::limits;
use garrison_proto::v1::enrollment_client::EnrollmentClient;
use garrison_proto::v1::renewal_client::RenewalClient;
use garrison_proto::v1::{
    BeginRenewalRequest, BeginRequest, BeginResponse, Challenge, CompleteRenewalRequest,
    CompleteRequest, SvidResponse,
};
use garrison_spiffe_tls::Identity;
use tonic::transport::Channel;

use crate::AgentError;

/// A connection to the attestor: the address, the server's expected SPIFFE ID, the
/// bootstrap bundle and the per-call time limit.
#[derive(Debug, Clone)]
pub struct Attestor<'a> {
    /// `https://host:port`.
    pub address: &'a str,
    /// The SPIFFE ID the server must present.
    pub spiffe_id: &'a SpiffeId,
    /// The bootstrap bundle, PEM.
    pub bundle_pem: &'a [u8],
    /// Limit on each call.
    pub timeout: Duration,
}

impl Attestor<'_> {
    /// A lazily connecting channel, presenting `identity` as client certificate if given.
    /// Each attempt builds a fresh channel, so an attestor restart costs one failed call.
    pub fn channel(&self, identity: Option<Identity>) -> Result<Channel, AgentError> {
        let tls =
            garrison_spiffe_tls::client_config(self.bundle_pem, self.spiffe_id.clone(), identity)
                .map_err(|source| AgentError::TlsConfig { source })?;
        garrison_spiffe_tls::connect(self.address, tls)
            .map_err(|source| AgentError::AttestorAddress { source })
    }
}

/// The enrollment service (server-authenticated TLS).
#[derive(Debug, Clone)]
pub struct EnrollmentCalls {
    client: EnrollmentClient<Channel>,
    timeout: Duration,
}

impl EnrollmentCalls {
    /// Calls over `channel`.
    pub fn new(channel: Channel, timeout: Duration) -> Self {
        let client = EnrollmentClient::new(channel)
            .max_decoding_message_size(limits::MAX_RESPONSE_BYTES)
            .max_encoding_message_size(limits::MAX_REQUEST_BYTES);
        Self { client, timeout }
    }

    /// `Enrollment.Begin`.
    pub async fn begin(&mut self, request: BeginRequest) -> Result<BeginResponse, AgentError> {
        let call = self.client.begin(request);
        with_timeout("Begin", self.timeout, call).await
    }

    /// `Enrollment.Complete`.
    pub async fn complete(&mut self, request: CompleteRequest) -> Result<SvidResponse, AgentError> {
        let call = self.client.complete(request);
        with_timeout("Complete", self.timeout, call).await
    }
}

/// The renewal service (mutual TLS with the current SVID).
#[derive(Debug, Clone)]
pub struct RenewalCalls {
    client: RenewalClient<Channel>,
    timeout: Duration,
}

impl RenewalCalls {
    /// Calls over `channel`.
    pub fn new(channel: Channel, timeout: Duration) -> Self {
        let client = RenewalClient::new(channel)
            .max_decoding_message_size(limits::MAX_RESPONSE_BYTES)
            .max_encoding_message_size(limits::MAX_REQUEST_BYTES);
        Self { client, timeout }
    }

    /// `Renewal.BeginRenewal`.
    pub async fn begin(&mut self) -> Result<Challenge, AgentError> {
        let call = self.client.begin_renewal(BeginRenewalRequest {});
        with_timeout("BeginRenewal", self.timeout, call).await
    }

    /// `Renewal.CompleteRenewal`.
    pub async fn complete(
        &mut self,
        request: CompleteRenewalRequest,
    ) -> Result<SvidResponse, AgentError> {
        let call = self.client.complete_renewal(request);
        with_timeout("CompleteRenewal", self.timeout, call).await
    }
}

async fn with_timeout<T>(
    rpc: &'static str,
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, AgentError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(AgentError::Rpc {
            rpc,
            code: status.code(),
            status: Box::new(status),
        }),
        Err(_) => Err(AgentError::RpcTimeout { rpc, timeout }),
    }
}

/// Reads a PEM file of certificates (`what` names it in errors).
pub fn read_pem_file(what: &'static str, path: &Path) -> Result<Vec<u8>, AgentError> {
    std::fs::read(path).map_err(|source| AgentError::ReadPemFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}
