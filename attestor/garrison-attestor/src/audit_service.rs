//! The read-only `Audit` gRPC service: the auditor's view of this site's log.
//!
//! It is served on its own port (`audit_listen`), over TLS that requires a client
//! certificate chaining to the trust domain's root. Each call then checks the caller itself:
//! the chain again with webpki (the path it builds, not the list the client sent), the
//! containment rule over that path, and the SPIFFE ID, which must be
//! `spiffe://<td>/auditor/<name>`. Anyone else (a node, another site's attestor, a hub
//! service) is refused with `PERMISSION_DENIED` before anything is read.
//!
//! Every answer is bounded: pages of at most [`MAX_PAGE`] records or checkpoints, evidence
//! up to the size the log stores, and `GetEvidenceBatch` at most [`MAX_EVIDENCE_BATCH`]
//! digests and about [`EVIDENCE_BATCH_BYTES`] of blobs (the rest deferred to another call).
//! `LogInfo`, when asked, lists at most [`MAX_UNATTACHED_COSIGNATURES`] cosignatures that
//! have lost their checkpoint (one is enough to show tampering; finding them scans every
//! cosignature, so only a request that asks pays for it); every other cosignature comes with
//! its checkpoint in `Checkpoints`.
//!
//! `GetAttestationResult` derives a node's latest decision's EAR from the log
//! (`garrison_audit::decision_facts`, `garrison_ear`) and signs it at the time of the call
//! with the log key ([`AuditService::with_results`]): nothing new is stored, and the same
//! record always gives the same claims.

use garrison_ops::error_chain;
use std::sync::Arc;

use garrison_audit::{AuditError, NodeRef, decision_facts};
use garrison_ca::{SpiffeId, TrustDomain};
use garrison_log::{
    AttestationLog, LogError, Query, StoredCheckpoint, StoredCosignature, StoredRecord,
};
use garrison_proto::v1;
use garrison_proto::v1::audit_server::Audit;
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::Clock;
use crate::checkpoint::CheckpointSigner;
use crate::tls::PeerCheck;

/// Most records or checkpoints in one answer.
pub const MAX_PAGE: u32 = 1_000;

/// Most digests one `GetEvidenceBatch` may ask for.
pub const MAX_EVIDENCE_BATCH: usize = 100;

/// At most this many cosignatures without a checkpoint in `LogInfo`: one is enough to show
/// that the log was tampered with.
pub const MAX_UNATTACHED_COSIGNATURES: u32 = 100;

/// `GetEvidenceBatch` stops adding blobs once its answer holds this many bytes (the rest is
/// `deferred`), well under the 16 MiB the CLI's client accepts.
pub const EVIDENCE_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Digests read from the log at a time within one `GetEvidenceBatch`, so that the service
/// holds at most this many blobs beyond its answer's budget.
const EVIDENCE_READ_CHUNK: usize = 10;

/// The Audit service over one log.
#[derive(Clone)]
pub struct AuditService {
    log: AttestationLog,
    trust_domain: TrustDomain,
    roots: Vec<Vec<u8>>,
    peers: PeerCheck,
    /// Signs attestation results (the log key); without it `GetAttestationResult` is
    /// `UNAVAILABLE`.
    results: Option<Arc<CheckpointSigner>>,
}

impl std::fmt::Debug for AuditService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditService")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl AuditService {
    /// The service for `log`, admitting auditors of `trust_domain` whose SVIDs chain to
    /// `roots` (DER).
    pub fn new(
        log: AttestationLog,
        trust_domain: TrustDomain,
        roots: &[Vec<u8>],
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        Ok(AuditService {
            log,
            trust_domain,
            roots: roots.to_vec(),
            peers: PeerCheck::new(roots, clock)?,
            results: None,
        })
    }

    /// Serves attestation results signed by `signer`'s log key.
    pub fn with_results(mut self, signer: Arc<CheckpointSigner>) -> Self {
        self.results = Some(signer);
        self
    }

    /// The caller's auditor identity, or the refusal.
    fn authorize<T>(&self, request: &Request<T>) -> Result<SpiffeId, Status> {
        let checked = self
            .peers
            .identity_of(request)
            .and_then(|id| self.auditor(id));
        let id = checked.map_err(|why| {
            tracing::warn!(why = %why, "Audit call refused");
            Status::permission_denied(format!(
                "not an auditor of {}: {why}",
                self.trust_domain.as_str()
            ))
        })?;
        tracing::debug!(auditor = %id, "Audit call");
        Ok(id)
    }

    #[cfg(test)]
    fn check_chain(&self, leaf: &[u8], intermediates: &[Vec<u8>]) -> Result<SpiffeId, String> {
        self.peers
            .identity(leaf, intermediates)
            .and_then(|id| self.auditor(id))
    }

    /// `id` if it is an auditor of this trust domain.
    fn auditor(&self, id: SpiffeId) -> Result<SpiffeId, String> {
        {
            let is_auditor = id.trust_domain_name() == self.trust_domain.as_str()
                && id
                    .path()
                    .strip_prefix("/auditor/")
                    .is_some_and(|name| !name.is_empty());
            if is_auditor {
                Ok(id)
            } else {
                Err(format!(
                    "{id} is not spiffe://{}/auditor/<name>",
                    self.trust_domain.as_str()
                ))
            }
        }
    }
}

fn page(limit: u32) -> u32 {
    if limit == 0 {
        MAX_PAGE
    } else {
        limit.min(MAX_PAGE)
    }
}

fn log_status(e: LogError) -> Status {
    match e {
        LogError::ProofRange { .. } | LogError::InvalidEntry { .. } => {
            Status::invalid_argument(e.to_string())
        }
        other => {
            tracing::error!(error = %other, "Audit: reading the log failed");
            Status::unavailable("the attestation log cannot be read")
        }
    }
}

fn time_arg(us: Option<i64>, field: &str) -> Result<Option<OffsetDateTime>, Status> {
    us.map(|us| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
            .map_err(|_| Status::invalid_argument(format!("{field} out of range")))
    })
    .transpose()
}

fn to_message(stored: StoredRecord) -> v1::AuditRecord {
    let r = stored.record;
    v1::AuditRecord {
        sequence: stored.sequence,
        leaf_hash: stored.leaf_hash.to_vec(),
        time_us: micros(r.time),
        site: r.site,
        kind: r.kind.as_str().to_owned(),
        node_id: r.node_id,
        spiffe_id: r.spiffe_id,
        decision: r.decision.as_str().to_owned(),
        reasons: r.reasons,
        policy_digest: r.policy_digest,
        evidence_digest: r.evidence_digest,
        cert_serial: r.cert_serial,
        cert_not_after_us: r.cert_not_after.map(micros),
    }
}

/// The one mapping of the attestation result's errors to a status.
fn result_status(e: AuditError) -> Status {
    match e {
        AuditError::NoDecision { .. } => Status::not_found(e.to_string()),
        AuditError::Log(e) => log_status(e),
        other => {
            tracing::error!(error = %error_chain(&other), "Audit: the attestation result failed");
            Status::failed_precondition(format!("no attestation result: {other}"))
        }
    }
}

fn checkpoint_message(
    c: StoredCheckpoint,
    cosignatures: &[StoredCosignature],
) -> v1::SignedCheckpoint {
    v1::SignedCheckpoint {
        size: c.size,
        root_hash: c.root_hash.to_vec(),
        signed_us: micros(c.signed),
        note: c.note,
        cosignatures: cosignatures
            .iter()
            .filter(|k| k.size == c.size)
            .map(cosignature_message)
            .collect(),
    }
}

fn cosignature_message(k: &StoredCosignature) -> v1::Cosignature {
    v1::Cosignature {
        witness: k.witness.clone(),
        line: k.line.clone(),
        cosigned_us: micros(k.cosigned),
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1000)).unwrap_or(i64::MAX)
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn query_records(
        &self,
        request: Request<v1::QueryRecordsRequest>,
    ) -> Result<Response<v1::QueryRecordsResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let limit = page(r.limit);
        let filter = Query {
            node_id: r.node_id,
            since: time_arg(r.since_us, "since_us")?,
            until: time_arg(r.until_us, "until_us")?,
            kind: r
                .kind
                .map(|k| {
                    k.parse()
                        .map_err(|_| Status::invalid_argument(format!("unknown kind {k:?}")))
                })
                .transpose()?,
            decision: r
                .decision
                .map(|d| {
                    d.parse()
                        .map_err(|_| Status::invalid_argument(format!("unknown decision {d:?}")))
                })
                .transpose()?,
            spiffe_id: r.spiffe_id,
            policy_digest: r.policy_digest,
            cert_serial: r.cert_serial,
            after_sequence: r.after_sequence,
            limit: Some(limit),
        };
        let records = self.log.query(&filter).await.map_err(log_status)?;
        let more = records.len() == limit as usize;
        Ok(Response::new(v1::QueryRecordsResponse {
            records: records.into_iter().map(to_message).collect(),
            more,
        }))
    }

    async fn get_evidence(
        &self,
        request: Request<v1::GetEvidenceRequest>,
    ) -> Result<Response<v1::GetEvidenceResponse>, Status> {
        self.authorize(&request)?;
        let digest = request.into_inner().digest;
        if !garrison_log::is_evidence_digest(&digest) {
            return Err(Status::invalid_argument("digest must be 64 hex digits"));
        }
        let bytes = self.log.evidence(&digest).await.map_err(log_status)?;
        Ok(Response::new(v1::GetEvidenceResponse {
            found: bytes.is_some(),
            bytes: bytes.unwrap_or_default(),
        }))
    }

    async fn get_evidence_batch(
        &self,
        request: Request<v1::GetEvidenceBatchRequest>,
    ) -> Result<Response<v1::GetEvidenceBatchResponse>, Status> {
        self.authorize(&request)?;
        let digests = request.into_inner().digests;
        if digests.len() > MAX_EVIDENCE_BATCH {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_EVIDENCE_BATCH} digests per call, {} asked",
                digests.len()
            )));
        }
        if let Some(bad) = digests
            .iter()
            .find(|d| !garrison_log::is_evidence_digest(d))
        {
            return Err(Status::invalid_argument(format!(
                "digest {:?} is not 64 hex digits",
                bad.chars().take(80).collect::<String>()
            )));
        }
        let mut answer = v1::GetEvidenceBatchResponse::default();
        let mut bytes_in_answer = 0usize;
        let mut chunks = digests.chunks(EVIDENCE_READ_CHUNK);
        for chunk in chunks.by_ref() {
            let mut held = self.log.evidence_many(chunk).await.map_err(log_status)?;
            for digest in chunk {
                if bytes_in_answer >= EVIDENCE_BATCH_BYTES {
                    answer.deferred.push(digest.clone());
                    continue;
                }
                match held.remove(digest) {
                    Some(bytes) => {
                        bytes_in_answer += bytes.len();
                        answer.found.push(v1::EvidenceBlob {
                            digest: digest.clone(),
                            bytes,
                        });
                    }
                    // Asked twice in one call: answered once.
                    None if answer.found.iter().any(|b| &b.digest == digest) => {}
                    None => answer.missing.push(digest.clone()),
                }
            }
            if bytes_in_answer >= EVIDENCE_BATCH_BYTES {
                break;
            }
        }
        answer.deferred.extend(chunks.flatten().cloned());
        Ok(Response::new(answer))
    }

    async fn log_info(
        &self,
        request: Request<v1::LogInfoRequest>,
    ) -> Result<Response<v1::LogInfoResponse>, Status> {
        self.authorize(&request)?;
        let size = self.log.tree_size().await.map_err(log_status)?;
        let latest = self.log.latest_checkpoint().await.map_err(log_status)?;
        let certificates = self.log.log_key_certificates().await.map_err(log_status)?;
        let witness_certificates = self.log.witness_certificates().await.map_err(log_status)?;
        let unattached = if request.get_ref().unattached_cosignatures {
            self.log
                .unattached_cosignatures(MAX_UNATTACHED_COSIGNATURES)
                .await
                .map_err(log_status)?
        } else {
            Vec::new()
        };
        Ok(Response::new(v1::LogInfoResponse {
            origin: self.log.origin().unwrap_or_default().to_owned(),
            size,
            latest_checkpoint: latest.map(|c| c.note).unwrap_or_default(),
            log_key_certificates: certificates,
            witness_certificates,
            unattached_cosignatures: unattached
                .iter()
                .map(|k| v1::UnattachedCosignature {
                    size: k.size,
                    cosignature: Some(cosignature_message(k)),
                })
                .collect(),
        }))
    }

    async fn checkpoints(
        &self,
        request: Request<v1::CheckpointsRequest>,
    ) -> Result<Response<v1::CheckpointsResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let limit = page(r.limit);
        // One more than the page, to tell whether there are more.
        let mut checkpoints = self
            .log
            .checkpoints_after(r.after_size, limit.saturating_add(1))
            .await
            .map_err(log_status)?;
        let more = checkpoints.len() > limit as usize;
        checkpoints.truncate(limit as usize);
        let cosignatures = match (checkpoints.first(), checkpoints.last()) {
            (Some(first), Some(last)) => self
                .log
                .cosignatures_between(first.size, last.size)
                .await
                .map_err(log_status)?,
            _ => Vec::new(),
        };
        Ok(Response::new(v1::CheckpointsResponse {
            checkpoints: checkpoints
                .into_iter()
                .map(|c| checkpoint_message(c, &cosignatures))
                .collect(),
            more,
        }))
    }

    async fn inclusion_proof(
        &self,
        request: Request<v1::InclusionProofRequest>,
    ) -> Result<Response<v1::InclusionProofResponse>, Status> {
        self.authorize(&request)?;
        let sequence = request.into_inner().sequence;
        let proof = garrison_audit::prove(&self.log, sequence)
            .await
            .map_err(|e| match e {
                garrison_audit::AuditError::NoSuchRecord { .. }
                | garrison_audit::AuditError::NotCheckpointed { .. } => {
                    Status::not_found(e.to_string())
                }
                other => {
                    tracing::error!(error = %other, "Audit: proof failed");
                    Status::unavailable("the proof could not be made")
                }
            })?;
        Ok(Response::new(v1::InclusionProofResponse {
            tlog_proof: proof.to_text(),
        }))
    }

    async fn consistency_proof(
        &self,
        request: Request<v1::ConsistencyProofRequest>,
    ) -> Result<Response<v1::ConsistencyProofResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let hashes = self
            .log
            .consistency_proof(r.old_size, r.new_size)
            .await
            .map_err(log_status)?;
        Ok(Response::new(v1::ConsistencyProofResponse {
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn get_attestation_result(
        &self,
        request: Request<v1::AttestationResultRequest>,
    ) -> Result<Response<v1::AttestationResultResponse>, Status> {
        self.authorize(&request)?;
        let node = match request.into_inner().node {
            Some(v1::attestation_result_request::Node::NodeId(id)) => NodeRef::NodeId(id),
            Some(v1::attestation_result_request::Node::SpiffeId(id)) => NodeRef::SpiffeId(id),
            None => return Err(Status::invalid_argument("name a node_id or a spiffe_id")),
        };
        let signer = self
            .results
            .as_ref()
            .ok_or_else(|| Status::unavailable("this attestor signs no attestation results"))?;
        let facts = decision_facts(&self.log, &node, &self.roots)
            .await
            .map_err(result_status)?;
        let signed = garrison_ear::attestation_result(&facts)
            .and_then(|ear| signer.sign_attestation_result(&ear))
            .map_err(|e| result_status(AuditError::AttestationResult(e)))?;
        Ok(Response::new(v1::AttestationResultResponse {
            ear_jwt: signed,
            log_sequence: facts.sequence,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use garrison_ca::{
        Authority, CaRole, IntermediateParams, KeyAlgorithm, PathLen, RootParams, SubjectKey,
        SvidParams,
    };
    use ring::rand::SystemRandom;
    use time::Duration;

    use super::*;
    use crate::SystemClock;

    fn root(td: &str) -> Authority {
        let issued = Authority::new_root(
            &RootParams {
                trust_domain: TrustDomain::new(td).unwrap(),
                name: "root".into(),
                ttl: Duration::days(10),
                path_len: 2,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            OffsetDateTime::now_utc(),
            &SystemRandom::new(),
        )
        .unwrap();
        Authority::from_issued(issued).unwrap()
    }

    fn below(issuer: &Authority, name: &str, role: CaRole) -> Authority {
        let issued = issuer
            .issue_intermediate(
                IntermediateParams {
                    name: name.into(),
                    role,
                    ttl: Duration::days(if name == "hub" { 5 } else { 2 }),
                    path_len: PathLen::OneBelowIssuer,
                    subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                },
                OffsetDateTime::now_utc(),
                &SystemRandom::new(),
            )
            .unwrap();
        Authority::from_issued(issued).unwrap()
    }

    fn svid(issuer: &Authority, id: &str) -> Result<Vec<Vec<u8>>, garrison_ca::CaError> {
        issuer
            .issue_svid(
                SvidParams {
                    spiffe_id: SpiffeId::parse(id).unwrap(),
                    ttl: Duration::hours(1),
                    max_ttl: Duration::hours(1),
                    subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                },
                OffsetDateTime::now_utc(),
                &SystemRandom::new(),
            )
            .map(|issued| issued.chain)
    }

    async fn service(root: &Authority) -> AuditService {
        let dir = tempfile::tempdir().unwrap();
        let log = AttestationLog::open(&garrison_log::LogConfig {
            url: format!("sqlite://{}", dir.path().join("log.db").display()),
            origin: Some("garrison.example.org/site/s1".into()),
            max_batch: 1,
            max_connections: 1,
        })
        .await
        .unwrap();
        std::mem::forget(dir); // the log outlives the test body
        AuditService::new(
            log,
            TrustDomain::new("example.org").unwrap(),
            &[root.certificate().to_vec()],
            Arc::new(SystemClock),
        )
        .unwrap()
    }

    fn check(service: &AuditService, chain: &[Vec<u8>]) -> Result<SpiffeId, String> {
        let (leaf, rest) = chain.split_first().unwrap();
        service.check_chain(leaf, rest)
    }

    #[tokio::test]
    async fn only_auditors_of_this_trust_domain_are_admitted() {
        let root = root("example.org");
        let hub = below(&root, "hub", CaRole::Hub);
        let site = below(&hub, "s1", CaRole::Site("s1".into()));
        let service = service(&root).await;
        // Auditors issued by the root or the hub.
        for issuer in [&root, &hub] {
            let chain = svid(issuer, "spiffe://example.org/auditor/alice").unwrap();
            assert_eq!(
                check(&service, &chain).unwrap().as_str(),
                "spiffe://example.org/auditor/alice"
            );
        }
        // A node of the site, the hub's own services, look-alike paths: refused.
        let node = svid(&site, "spiffe://example.org/site/s1/node/abc").unwrap();
        assert!(
            check(&service, &node)
                .unwrap_err()
                .contains("is not spiffe://example.org/auditor/")
        );
        for id in [
            "spiffe://example.org/auditors/alice",
            "spiffe://example.org/hub/auditor/x",
        ] {
            let chain = svid(&hub, id).unwrap();
            assert!(check(&service, &chain).is_err(), "{id}");
        }
        // A site CA cannot even issue an auditor identity (it vouches for its site only).
        assert!(svid(&site, "spiffe://example.org/auditor/mallory").is_err());
        // An auditor of another trust domain, under another root: the chain fails.
        let other = root_other();
        let stranger = svid(&other, "spiffe://other.org/auditor/eve").unwrap();
        assert!(check(&service, &stranger).unwrap_err().contains("chain"));
    }

    fn root_other() -> Authority {
        root("other.org")
    }
}
