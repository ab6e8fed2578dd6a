//! One simulated agent: enrollment (Begin → ActivateCredential → quote → Complete) and
//! renewal (mTLS with its SVID, BeginRenewal → quote → CompleteRenewal), each over a fresh
//! TLS connection as a real agent makes one per exchange.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use garrison_ca::SpiffeId;
use garrison_evidence::{HashAlg, PcrSelection, PcrValues};
use garrison_proto::v1;
use garrison_proto::v1::enrollment_client::EnrollmentClient;
use garrison_proto::v1::renewal_client::RenewalClient;
use garrison_spiffe_tls::{Identity, SpiffeServerVerifier, client_config_with_verifier, connect};
use ring::rand::SystemRandom;
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use crate::identity::AgentIdentity;
use crate::tls::MemoizingVerifier;

/// What every agent shares: where the attestor is, how it is authenticated, and what a booted
/// node looks like.
#[derive(Debug)]
pub struct AgentContext {
    /// `https://host:port`.
    pub address: String,
    /// Authenticates the attestor as its SPIFFE ID under the bootstrap bundle.
    pub verifier: Arc<MemoizingVerifier>,
    /// The TLS client configuration of every enrollment (no client certificate).
    enroll_tls: Arc<ClientConfig>,
    /// The measured-boot log every node sends.
    pub event_log: Vec<u8>,
    /// The PCR values that log leaves behind (SHA-256, 0..=23).
    pub pcrs: PcrValues,
    /// Randomness for signatures.
    pub rng: SystemRandom,
}

impl AgentContext {
    /// Agents of the attestor at `address` (`https://host:port`) known as `attestor_id` under
    /// the PEM `bundle_pem`, booted with `event_log`, which leaves `pcrs` behind.
    pub fn new(
        address: String,
        bundle_pem: &[u8],
        attestor_id: SpiffeId,
        event_log: Vec<u8>,
        pcrs: PcrValues,
    ) -> Result<Self> {
        let verifier = MemoizingVerifier::new(
            SpiffeServerVerifier::new(bundle_pem, attestor_id).context("trust bundle")?,
        );
        let enroll_tls = Arc::new(tls_config(&verifier, None)?);
        Ok(Self {
            address,
            verifier,
            enroll_tls,
            event_log,
            pcrs,
            rng: SystemRandom::new(),
        })
    }
}

/// A real agent's TLS client configuration with the memoizing verifier, and without session
/// resumption: every handshake the attestor sees is a full one, as from a real agent.
fn tls_config(
    verifier: &Arc<MemoizingVerifier>,
    identity: Option<Identity>,
) -> Result<ClientConfig> {
    let mut config = client_config_with_verifier(Arc::clone(verifier) as Arc<_>, identity)
        .context("TLS client config")?;
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// Why one exchange did not end with an SVID.
#[derive(Debug)]
pub enum OpError {
    /// The attestor shed the request; retry after this many milliseconds.
    Shed(u64),
    /// No answer from the attestor at all (connection refused, or not admitted before the
    /// connect timeout while the attestor is at its connection limit): retry with backoff,
    /// as a real agent does while its attestor is unreachable.
    Unreachable(anyhow::Error),
    /// Anything else: a refusal, a transport error, a malformed answer.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for OpError {
    fn from(err: anyhow::Error) -> Self {
        OpError::Failed(err)
    }
}

/// Default wait when a shed response carries no usable hint.
const DEFAULT_RETRY_AFTER_MS: u64 = 1000;

fn status_error(stage: &str, status: tonic::Status) -> OpError {
    let reason = status
        .metadata()
        .get(garrison_attestor::REASON_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if status.code() == Code::ResourceExhausted || reason == "overloaded" {
        let hint = status
            .metadata()
            .get(garrison_attestor::RETRY_AFTER_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_RETRY_AFTER_MS);
        return OpError::Shed(hint);
    }
    // No reason from the attestor: nothing was decided, the exchange never reached it or its
    // connection broke (tonic reports a connection that never got to HTTP/2 as a transport
    // error; a connection the kernel reset because the listen queue overflowed in a storm is
    // `Unavailable`). A real agent retries both with backoff; so does the generator.
    let transport = reason.is_empty()
        && (status.code() == Code::Unavailable
            || (status.code() == Code::Unknown && status.message().contains("transport error")));
    if transport {
        return OpError::Unreachable(anyhow!("{stage}: {}", status.message()));
    }
    OpError::Failed(anyhow!(
        "{stage}: {:?} reason={reason:?} {}",
        status.code(),
        status.message()
    ))
}

/// A simulated node.
#[derive(Debug)]
pub struct Agent {
    /// Its number (used in its asserted hostname).
    pub index: usize,
    identity: AgentIdentity,
    /// Its current SVID chain (leaf first), once enrolled.
    svid: Option<Vec<Vec<u8>>>,
}

impl Agent {
    /// An agent that has not enrolled yet.
    pub fn new(index: usize, identity: AgentIdentity) -> Self {
        Self {
            index,
            identity,
            svid: None,
        }
    }

    /// Whether it holds an SVID to renew with.
    pub fn is_enrolled(&self) -> bool {
        self.svid.is_some()
    }

    /// The identity (for the in-process crypto floor).
    pub fn identity(&self) -> &AgentIdentity {
        &self.identity
    }

    /// One full enrollment over a new connection.
    pub async fn enroll(&mut self, ctx: &AgentContext) -> Result<(), OpError> {
        let mut client = EnrollmentClient::new(channel(ctx, Arc::clone(&ctx.enroll_tls))?);
        let request = v1::BeginRequest {
            ek_public: self.identity.tpm.ek_public().to_vec(),
            ek_certificate: self.identity.ek_certificate.clone(),
            ek_chain: Vec::new(),
            ak_public: self.identity.tpm.ak_public().to_vec(),
            asserted: HashMap::from([("hostname".to_owned(), format!("loadgen-{}", self.index))]),
        };
        let begin = client
            .begin(request)
            .await
            .map_err(|s| status_error("Begin", s))?
            .into_inner();
        let challenge = begin
            .challenge
            .context("BeginResponse without a challenge")?;
        let activated_secret = self
            .identity
            .tpm
            .activate_credential(&begin.id_object, &begin.encrypted_secret)?;
        let quote = self.quote(ctx, &challenge)?;
        let request = v1::CompleteRequest {
            challenge_id: challenge.challenge_id,
            activated_secret,
            quote: Some(quote),
            event_log: ctx.event_log.clone(),
            csr: self.identity.csr.clone(),
        };
        let svid = client
            .complete(request)
            .await
            .map_err(|s| status_error("Complete", s))?
            .into_inner();
        self.svid = Some(svid.certificate_chain);
        Ok(())
    }

    /// One renewal over a new mTLS connection with the current SVID.
    pub async fn renew(&mut self, ctx: &AgentContext) -> Result<(), OpError> {
        let config = tls_config(&ctx.verifier, Some(self.svid_identity()?))?;
        let mut client = RenewalClient::new(channel(ctx, Arc::new(config))?);
        let challenge = client
            .begin_renewal(v1::BeginRenewalRequest {})
            .await
            .map_err(|s| status_error("BeginRenewal", s))?
            .into_inner();
        let quote = self.quote(ctx, &challenge)?;
        let request = v1::CompleteRenewalRequest {
            challenge_id: challenge.challenge_id,
            quote: Some(quote),
            event_log: ctx.event_log.clone(),
            csr: self.identity.csr.clone(),
            ak_public: self.identity.tpm.ak_public().to_vec(),
        };
        let svid = client
            .complete_renewal(request)
            .await
            .map_err(|s| status_error("CompleteRenewal", s))?
            .into_inner();
        self.svid = Some(svid.certificate_chain);
        Ok(())
    }

    /// The cost of a connection alone: a fresh TLS connection (mTLS with the current SVID if
    /// `mtls`), the HTTP/2 set-up, and one gRPC call to a method the attestor does not have,
    /// which its router answers `UNIMPLEMENTED` without reaching a handler, the database or
    /// any cryptography beyond the handshake.
    pub async fn bare_exchange(&mut self, ctx: &AgentContext, mtls: bool) -> Result<(), OpError> {
        let config = if mtls {
            Arc::new(tls_config(&ctx.verifier, Some(self.svid_identity()?))?)
        } else {
            Arc::clone(&ctx.enroll_tls)
        };
        let mut grpc = tonic::client::Grpc::new(channel(ctx, config)?);
        grpc.ready()
            .await
            .map_err(|e| OpError::Unreachable(anyhow!("connecting: {e}")))?;
        let path = PathAndQuery::from_static(BARE_METHOD);
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        match grpc.unary(tonic::Request::new(()), path, codec).await {
            Err(status) if status.code() == Code::Unimplemented => Ok(()),
            Err(status) => Err(status_error("bare exchange", status)),
            Ok(_) => Err(OpError::Failed(anyhow!(
                "{BARE_METHOD} answered; it must not exist"
            ))),
        }
    }

    /// The TLS client identity of the SVID it holds.
    fn svid_identity(&self) -> Result<Identity> {
        let chain = self.svid.clone().context("no SVID yet: not enrolled")?;
        Ok(Identity {
            chain: chain.into_iter().map(CertificateDer::from).collect(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.identity.svid_key.clone())),
        })
    }

    /// Quote exactly the PCRs the challenge names, with its nonce.
    fn quote(&mut self, ctx: &AgentContext, challenge: &v1::Challenge) -> Result<v1::Quote> {
        let (selection, values) = selected_pcrs(&ctx.pcrs, &challenge.pcr_selection)?;
        let (attest, signature) =
            self.identity
                .tpm
                .quote(&challenge.nonce, &selection, &values, unix_ms(), &ctx.rng)?;
        let pcrs = values
            .iter()
            .map(|(bank, index, digest)| v1::PcrValue {
                hash_alg: u32::from(bank.tpm_alg_id()),
                index,
                digest: digest.to_vec(),
            })
            .collect();
        Ok(v1::Quote {
            attest,
            signature,
            pcrs,
        })
    }
}

fn channel(ctx: &AgentContext, config: Arc<ClientConfig>) -> Result<Channel> {
    connect(&ctx.address, config).context("gRPC channel")
}

/// A method of no service the attestor serves.
const BARE_METHOD: &str = "/garrison.v1.Enrollment/NoSuchMethod";

/// The selection the challenge asks for and the values of exactly those PCRs.
fn selected_pcrs(all: &PcrValues, asked: &[v1::PcrSelection]) -> Result<(PcrSelection, PcrValues)> {
    let mut banks: Vec<(HashAlg, Vec<u32>)> = Vec::with_capacity(asked.len());
    for bank in asked {
        let alg = u16::try_from(bank.hash_alg)
            .ok()
            .and_then(HashAlg::from_tpm_alg_id)
            .with_context(|| format!("unknown PCR bank {:#x}", bank.hash_alg))?;
        banks.push((alg, bank.pcrs.clone()));
    }
    let refs: Vec<(HashAlg, &[u32])> = banks.iter().map(|(a, p)| (*a, p.as_slice())).collect();
    let selection = PcrSelection::new(&refs)?;
    let mut values = PcrValues::new();
    for (bank, index) in selection.iter() {
        let value = all
            .value(bank, index)
            .with_context(|| format!("no value for PCR {bank}:{index}"))?;
        values.insert(bank, index, value.to_vec())?;
    }
    Ok((selection, values))
}

/// Milliseconds since the Unix epoch (the simulated TPM clock follows it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A small xorshift generator for jitter and the operation mix (not for cryptography).
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded; a zero seed is replaced.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `base` scaled by a uniform factor in [0.5, 1.5).
    pub fn around(&mut self, base: Duration) -> Duration {
        base.mul_f64(0.5 + self.unit())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tonic::Status;
    use tonic::metadata::MetadataValue;

    use super::*;

    fn with_reason(code: Code, reason: &str) -> Status {
        let mut status = Status::new(code, "refused");
        status.metadata_mut().insert(
            garrison_attestor::REASON_METADATA_KEY,
            MetadataValue::try_from(reason).unwrap(),
        );
        status
    }

    #[test]
    fn a_broken_connection_without_an_answer_is_unreachable_and_retried() {
        let reset = Status::unavailable("Connection reset by peer (os error 104)");
        assert!(matches!(
            status_error("Begin", reset),
            OpError::Unreachable(_)
        ));
        let never_connected = Status::unknown("transport error");
        assert!(matches!(
            status_error("Begin", never_connected),
            OpError::Unreachable(_)
        ));
    }

    #[test]
    fn an_answer_from_the_attestor_is_never_unreachable() {
        // The attestor's own "log unavailable" is a failure to count, not a network blip.
        let refused = with_reason(Code::Unavailable, "log-unavailable");
        assert!(matches!(
            status_error("Complete", refused),
            OpError::Failed(_)
        ));
        let overloaded = with_reason(Code::ResourceExhausted, "overloaded");
        assert!(matches!(
            status_error("Begin", overloaded),
            OpError::Shed(_)
        ));
        let other = Status::unknown("something else");
        assert!(matches!(status_error("Begin", other), OpError::Failed(_)));
    }
}
