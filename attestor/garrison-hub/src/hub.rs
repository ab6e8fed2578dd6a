//! [`Hub`]: what the hub does with what sites send and what operators publish. No gRPC
//! here: `sync_service.rs` and `files.rs` are the two ways in.

use std::collections::BTreeSet;
use std::sync::Arc;

use garrison_attestor::Clock;
use garrison_log::{
    AttestationLog, LogError, ReplicaBatch, StoredCheckpoint, StoredCosignature, SyncEvent,
    SyncEventSummary,
};
use garrison_policy::{BundleLimits, PolicyTrust, decode_archive, verify_bundle};
use garrison_proto::v1;
use garrison_transparency::{
    RevocationList, RevokedTarget, TransparencyError, WitnessKey, hub_witness_name,
    verify_cosignature,
};

use crate::Refusal;
use crate::push::{self, CheckedBatch, consistent};

/// What a hub is made of; built by `server.rs` from the configuration, or by tests.
pub struct HubParts {
    /// The hub's database, opened on the hub's own log (origin `garrison.<td>/hub`); site
    /// logs are replicas beside it.
    pub log: AttestationLog,
    pub trust_domain: String,
    /// The trust domain's roots, DER.
    pub roots: Vec<Vec<u8>>,
    /// Cosigns site checkpoints and signs revocation lists.
    pub witness: WitnessKey,
    /// The witness key's certificate chain (PEM, its certificate first, then the hub CA).
    pub witness_chain_pem: String,
    /// The hub CA: certifies the sites' next intermediates.
    pub ca: Arc<garrison_ca::Authority>,
    /// The longest lifetime the hub certifies a site CA for.
    pub max_site_ca_ttl: time::Duration,
    /// New roots announced to sites (a root rotation), each cross-signed by a current root
    /// (`garrison hub publish-root` writes the file; PEM).
    pub cross_signed_roots: std::path::PathBuf,
    pub clock: Arc<dyn Clock>,
}

/// The hub.
pub struct Hub {
    parts: HubParts,
    witness_name: String,
    /// Pushes worked on at once (each holds up to a whole batch in memory).
    pushes: tokio::sync::Semaphore,
    /// Certifications one at a time in this process, so that two requests for one site CA
    /// cannot both pass the one-successor check.
    certifying: tokio::sync::Mutex<()>,
}

/// The largest signed revocation list the hub issues: half of what one Sync answer may
/// carry (`MAX_SYNC_MESSAGE`), the rest left for a policy bundle beside it. About 110,000
/// node entries or 160,000 serials.
pub const MAX_REVOCATION_LIST_BYTES: usize = garrison_proto::limits::MAX_SYNC_MESSAGE / 2;

/// Pushes a hub process works on at once; more wait their turn.
const CONCURRENT_PUSHES: usize = 4;

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("trust_domain", &self.parts.trust_domain)
            .finish_non_exhaustive()
    }
}

/// Why a hub operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// What the caller sent was refused (and recorded); nothing of it was stored.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The hub's database failed.
    #[error("the hub's database")]
    Log(#[source] LogError),
    /// Signing with the witness key failed, or a stored list no longer verifies.
    #[error("the hub's witness key")]
    Witness(#[source] TransparencyError),
    /// A policy bundle to publish does not verify.
    #[error("policy bundle refused")]
    Policy(#[source] garrison_policy::PolicyError),
    /// The file of announced roots cannot be read or written.
    #[error("announced roots: {0}")]
    Roots(String),
}

/// A refusal, with the two checkpoints of a fork when it is one.
struct Rejection {
    refusal: Refusal,
    notes: Option<(String, String)>,
}

impl From<Refusal> for Rejection {
    fn from(refusal: Refusal) -> Self {
        Rejection {
            refusal,
            notes: None,
        }
    }
}

enum PushError {
    Rejected(Rejection),
    Failed(HubError),
}

impl From<Refusal> for PushError {
    fn from(refusal: Refusal) -> Self {
        PushError::Rejected(refusal.into())
    }
}

impl From<LogError> for PushError {
    fn from(e: LogError) -> Self {
        PushError::Failed(HubError::Log(e))
    }
}

impl Hub {
    pub fn new(parts: HubParts) -> Self {
        let witness_name = hub_witness_name(&parts.trust_domain);
        Hub {
            parts,
            witness_name,
            pushes: tokio::sync::Semaphore::new(CONCURRENT_PUSHES),
            certifying: tokio::sync::Mutex::new(()),
        }
    }

    /// The roots the hub checks sites against: the trust domain's, and the new roots announced
    /// when the hub started.
    pub fn roots(&self) -> &[Vec<u8>] {
        &self.parts.roots
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.parts.trust_domain
    }

    /// The hub's database handle (its own log).
    pub fn log(&self) -> &AttestationLog {
        &self.parts.log
    }

    /// The witness's key name, `garrison.<td>/hub`.
    pub fn witness_name(&self) -> &str {
        &self.witness_name
    }

    /// Where the hub stands on `origin`'s log.
    pub async fn status(&self, origin: &str) -> Result<v1::SyncStatus, HubError> {
        let replica = self.replica(origin).await?;
        let held_size = replica.tree_size().await.map_err(HubError::Log)?;
        let cosigned_size = replica
            .latest_cosignature(&self.witness_name)
            .await
            .map_err(HubError::Log)?
            .map_or(0, |c| c.size);
        let policy_sequence = self.latest_policy_sequence().await?;
        let revocation_sequence = self
            .parts
            .log
            .latest_revocation_list()
            .await
            .map_err(HubError::Log)?
            .map_or(0, |(sequence, _)| sequence);
        Ok(v1::SyncStatus {
            held_size,
            cosigned_size,
            policy_sequence,
            revocation_sequence,
        })
    }

    /// Of `digests`, the evidence the hub lacks.
    pub async fn missing_evidence(&self, digests: &[String]) -> Result<Vec<String>, HubError> {
        self.parts
            .log
            .missing_evidence(digests)
            .await
            .map_err(HubError::Log)
    }

    /// Takes a log batch from the attestor of `caller_origin` (see the crate docs). A
    /// refusal is recorded under the caller's origin and returned.
    pub async fn push(
        &self,
        caller_origin: &str,
        batch: v1::LogBatch,
    ) -> Result<v1::PushResult, HubError> {
        match self.push_checked(caller_origin, batch).await {
            Ok(result) => Ok(result),
            Err(PushError::Failed(e)) => Err(e),
            Err(PushError::Rejected(rejection)) => {
                self.record(caller_origin, &rejection).await;
                Err(HubError::Refused(rejection.refusal))
            }
        }
    }

    async fn push_checked(
        &self,
        caller_origin: &str,
        batch: v1::LogBatch,
    ) -> Result<v1::PushResult, PushError> {
        // Bounded work at once, whatever the callers: a batch is up to MAX_SYNC_MESSAGE.
        let _turn = self.pushes.acquire().await.map_err(|_| {
            PushError::Failed(HubError::Refused(Refusal::new(
                "stale",
                "the hub is stopping".to_owned(),
            )))
        })?;
        let mut batch = push::check(batch, caller_origin, &self.parts.roots)?;
        let replica = self
            .replica(caller_origin)
            .await
            .map_err(PushError::Failed)?;
        self.check_extends_held(&replica, &batch).await?;
        self.keep_needed_evidence(&mut batch).await?;
        let appended = match self.append(&replica, &mut batch).await {
            Err(PushError::Rejected(rejection)) if rejection.refusal.code == "tampered-record" => {
                // Records that differ from held ones under a checkpoint the site signed: the
                // site shows the hub another history than the one it witnessed.
                let why = rejection.refusal.detail;
                return Err(PushError::Rejected(self.fork(&replica, &batch, why).await?));
            }
            other => other?,
        };
        let held_size = appended.tree_size;
        let cosigned_checkpoint = if held_size >= batch.checkpoint.size {
            self.witness(&replica, &batch).await?
        } else {
            String::new()
        };
        if appended.added > 0 {
            tracing::info!(
                origin = caller_origin,
                added = appended.added,
                held = held_size,
                "site records replicated"
            );
        }
        Ok(v1::PushResult {
            held_size,
            cosigned_checkpoint,
        })
    }

    /// The checkpoint must extend the tree the hub holds (which every checkpoint it
    /// cosigned is a prefix of): else the site shows the hub a history other than the one
    /// the hub witnessed.
    async fn check_extends_held(
        &self,
        replica: &AttestationLog,
        batch: &CheckedBatch,
    ) -> Result<(), PushError> {
        let held = replica.tree_size().await?;
        let size = batch.checkpoint.size;
        let from = batch.proof_from_size;
        let verdict = if size <= held && size > 0 {
            let root = replica.tree_root(size).await?;
            consistent(size, &root, size, &batch.checkpoint.root, &[])
        } else if from == 0 {
            // No proof from a held size: the batch must restate the whole held log (every
            // held record is then compared) and reach past it, so that the check of its
            // root against the checkpoint covers everything the hub holds.
            if batch.first == 0 && batch.end() >= held {
                return Ok(());
            }
            return Err(Refusal::new(
                "malformed-batch",
                format!("the hub holds {held} records; the batch proves nothing from them"),
            )
            .into());
        } else if from > held {
            return Err(Refusal::new(
                "stale",
                format!("the proof starts at {from}; the hub holds {held}"),
            )
            .into());
        } else {
            let root = replica.tree_root(from).await?;
            consistent(from, &root, size, &batch.checkpoint.root, &batch.proof_from)
        };
        match verdict {
            Ok(()) => Ok(()),
            Err(why) => Err(PushError::Rejected(self.fork(replica, batch, why).await?)),
        }
    }

    async fn fork(
        &self,
        replica: &AttestationLog,
        batch: &CheckedBatch,
        why: String,
    ) -> Result<Rejection, PushError> {
        let held_note = match replica.latest_cosignature(&self.witness_name).await? {
            Some(cosigned) => replica
                .checkpoint_at(cosigned.size)
                .await?
                .map(|c| with_cosignature(&c.note, &cosigned.line))
                .transpose()
                .map_err(PushError::Failed)?
                .unwrap_or_default(),
            None => String::new(),
        };
        tracing::error!(origin = %batch.origin, size = batch.checkpoint.size, why = %why, "FORK: a site checkpoint contradicts the log the hub holds and witnessed");
        Ok(Rejection {
            refusal: Refusal::new(
                "fork",
                format!(
                    "checkpoint of size {} does not extend the log the hub holds: {why}",
                    batch.checkpoint.size
                ),
            ),
            notes: Some((held_note, batch.checkpoint.note.clone())),
        })
    }

    async fn append(
        &self,
        replica: &AttestationLog,
        batch: &mut CheckedBatch,
    ) -> Result<garrison_log::ReplicaAppended, PushError> {
        let checkpoint = &batch.checkpoint;
        let proof = &batch.proof_to_checkpoint;
        let to_checkpoint = |end: u64, root: &[u8; 32]| {
            if end == 0 {
                return Ok(());
            }
            consistent(end, root, checkpoint.size, &checkpoint.root, proof)
        };
        let replica_batch = ReplicaBatch {
            first: batch.first,
            records: std::mem::take(&mut batch.records),
            evidence: std::mem::take(&mut batch.evidence),
        };
        match replica.append_replica(&replica_batch, to_checkpoint).await {
            Ok(appended) => Ok(appended),
            Err(e) => Err(replica_refusal(e)),
        }
    }

    /// Keeps, of the evidence sent, only what the batch's records refer to: their evidence
    /// and the event logs that evidence refers to by digest. Nothing else is stored (the
    /// evidence store is shared by every site; a site cannot park bytes in it). Every event
    /// log an allow's evidence refers to must come with the batch or be held already, so
    /// that the hub's copy replays like the site's. A refusal's may be missing: the site
    /// keeps only the digest of an event log that did not replay to its quote (bytes of the
    /// sender's choosing), and has nothing to send.
    async fn keep_needed_evidence(&self, batch: &mut CheckedBatch) -> Result<(), PushError> {
        let referred: BTreeSet<String> = batch
            .records
            .iter()
            .filter_map(|r| r.evidence_digest.clone())
            .collect();
        let referred_by_allows: BTreeSet<String> = batch
            .records
            .iter()
            .filter(|r| r.decision == garrison_log::Decision::Allow)
            .filter_map(|r| r.evidence_digest.clone())
            .collect();
        // Each referred evidence record decoded once: (its digest, the event log it names).
        let naming: Vec<(&String, String)> = batch
            .evidence
            .iter()
            .filter(|(digest, _)| referred.contains(digest))
            .filter_map(|(digest, bytes)| {
                let evidence = garrison_appraisal::EvidenceRecord::decode(bytes).ok()?;
                (!evidence.event_log_sha256.is_empty())
                    .then_some((digest, evidence.event_log_sha256))
            })
            .collect();
        let required: BTreeSet<String> = naming
            .iter()
            .filter(|(digest, _)| referred_by_allows.contains(*digest))
            .map(|(_, event_log)| event_log.clone())
            .collect();
        let blobs: BTreeSet<String> = naming.into_iter().map(|(_, event_log)| event_log).collect();
        batch
            .evidence
            .retain(|(digest, _)| referred.contains(digest) || blobs.contains(digest));
        let sent: BTreeSet<&String> = batch.evidence.iter().map(|(digest, _)| digest).collect();
        let wanted: Vec<String> = required
            .iter()
            .filter(|d| !sent.contains(d))
            .cloned()
            .collect();
        match self.parts.log.missing_evidence(&wanted).await?.first() {
            None => Ok(()),
            Some(digest) => Err(Refusal::new(
                "bad-evidence",
                format!("event log {digest}, referred to by the batch's evidence, is neither sent nor held"),
            )
            .into()),
        }
    }

    /// Keeps the checkpoint and the log key's chain, and cosigns the checkpoint (once per
    /// size, never one older than the newest cosigned); returns the checkpoint with the
    /// cosignature line, or nothing for an older checkpoint never cosigned.
    async fn witness(
        &self,
        replica: &AttestationLog,
        batch: &CheckedBatch,
    ) -> Result<String, PushError> {
        let checkpoint = &batch.checkpoint;
        if let Some(line) = self.cosignature_at(replica, checkpoint.size).await? {
            return self.cosigned_note(replica, checkpoint, &line).await;
        }
        let newest = replica.latest_cosignature(&self.witness_name).await?;
        if newest.is_some_and(|c| c.size > checkpoint.size) {
            return Ok(String::new());
        }
        let now = self.parts.clock.now();
        let kept = StoredCheckpoint {
            size: checkpoint.size,
            root_hash: checkpoint.root,
            signed: now,
            note: checkpoint.note.clone(),
        };
        match replica.store_checkpoint(&kept).await {
            Ok(_) => {}
            // Another history of the same size won the race to the hub's tree.
            Err(LogError::CheckpointMismatch { .. }) => {
                let why = "its root differs from the hub's tree at that size".to_owned();
                return Err(PushError::Rejected(self.fork(replica, batch, why).await?));
            }
            Err(e) => return Err(e.into()),
        }
        // One row per certificate chain (PEM re-encoded from its DER), stored only with a
        // new cosignature: resends add nothing.
        let chain = garrison_ca::certificates_from_pem(&batch.log_key_chain_pem)
            .map(|ders| garrison_ca::certificates_to_pem(&ders))
            .unwrap_or_default();
        replica
            .add_log_key_certificate(&batch.log_key, &chain, now)
            .await?;
        let note = replica
            .checkpoint_at(checkpoint.size)
            .await?
            .map_or_else(|| checkpoint.note.clone(), |c| c.note);
        let timestamp = now.unix_timestamp().max(0).unsigned_abs();
        let cosigned = self
            .parts
            .witness
            .cosign(&note, timestamp)
            .map_err(|e| PushError::Failed(HubError::Witness(e)))?;
        // The line just added, as the verifier reads it back: a self-check of the signing.
        let line = verify_cosignature(
            &cosigned,
            &self.witness_name,
            &self.parts.witness.public_key(),
        )
        .map_err(|e| PushError::Failed(HubError::Witness(e)))?
        .line;
        replica
            .store_cosignature(&StoredCosignature {
                size: checkpoint.size,
                witness: self.witness_name.clone(),
                line: line.clone(),
                cosigned: now,
            })
            .await?;
        // Another hub process may have cosigned the same size a moment before: keep theirs.
        let line = self
            .cosignature_at(replica, checkpoint.size)
            .await?
            .unwrap_or(line);
        with_cosignature(&note, &line).map_err(PushError::Failed)
    }

    async fn cosigned_note(
        &self,
        replica: &AttestationLog,
        checkpoint: &garrison_transparency::Checkpoint,
        line: &str,
    ) -> Result<String, PushError> {
        let note = replica
            .checkpoint_at(checkpoint.size)
            .await?
            .map_or_else(|| checkpoint.note.clone(), |c| c.note);
        with_cosignature(&note, line).map_err(PushError::Failed)
    }

    async fn cosignature_at(
        &self,
        replica: &AttestationLog,
        size: u64,
    ) -> Result<Option<String>, LogError> {
        Ok(replica
            .cosignature_at(size, &self.witness_name)
            .await?
            .map(|c| c.line))
    }

    async fn record(&self, origin: &str, rejection: &Rejection) {
        tracing::warn!(origin, code = rejection.refusal.code, detail = %rejection.refusal.detail, "sync push refused");
        let event = SyncEvent {
            origin: origin.to_owned(),
            kind: rejection.refusal.code.to_owned(),
            time: self.parts.clock.now(),
            detail: rejection.refusal.detail.clone(),
            notes: rejection.notes.clone(),
        };
        if let Err(e) = self.parts.log.record_sync_event(&event).await {
            tracing::error!(error = %e, "could not record a refused sync push");
        }
    }

    /// Certifies a site's next intermediate CA: the key of `request.csr` (the site generated
    /// it; its self-signature must verify), role `site/<site>` for the caller's own site, one
    /// path length below the hub CA, for exactly the lifetime asked. A lifetime the hub CA
    /// does not cover is refused (`hub-ca-expiring`), never shortened: the hub's own
    /// intermediate must be renewed first (the file ceremony in the README). Refusals and
    /// issuances are recorded as sync events of the site.
    pub async fn certify_site_ca(
        &self,
        origin: &str,
        request: &v1::IntermediateRequest,
        caller_ca: Option<&[u8]>,
    ) -> Result<v1::IntermediateResponse, HubError> {
        let _one_at_a_time = self.certifying.lock().await;
        let now = self.parts.clock.now();
        let result = match self.check_caller_ca(origin, request, caller_ca, now).await {
            Ok(successor_of) => self
                .certify(origin, request, now)
                .map(|issued| (issued, successor_of)),
            Err(refusal) => Err(refusal),
        };
        if let Ok((_, Some((kind, fingerprint)))) = &result {
            let event = SyncEvent {
                origin: origin.to_owned(),
                kind: kind.clone(),
                time: now,
                detail: fingerprint.clone(),
                notes: None,
            };
            if let Err(e) = self.parts.log.record_sync_event(&event).await {
                tracing::error!(error = %e, "could not record a site CA's successor");
                return Err(HubError::Log(e));
            }
        }
        let result = result.map(|(issued, _)| issued);
        let (kind, detail) = match &result {
            Ok((serial, not_after, _)) => (
                "intermediate-issued",
                format!("site CA {serial} certified until {not_after}"),
            ),
            Err(refusal) => (refusal.code, refusal.detail.clone()),
        };
        let event = SyncEvent {
            origin: origin.to_owned(),
            kind: kind.to_owned(),
            time: now,
            detail,
            notes: None,
        };
        if let Err(e) = self.parts.log.record_sync_event(&event).await {
            tracing::error!(error = %e, "could not record a site CA request");
        }
        match result {
            Ok((serial, not_after, chain)) => {
                tracing::info!(origin, serial, %not_after, "site intermediate certified");
                Ok(v1::IntermediateResponse { chain })
            }
            Err(refusal) => Err(HubError::Refused(refusal)),
        }
    }

    /// What a site's CA in force (the caller's, over the network) may ask for: a successor
    /// once it is half through its life (the site's own schedule), and one successor key only
    /// (asking again for the same key is fine: a lost answer). A stolen site CA key thus gets
    /// at most one successor per CA, and no earlier than the site would ask. Returns the event
    /// that records the successor, `(kind, key fingerprint)`.
    async fn check_caller_ca(
        &self,
        origin: &str,
        request: &v1::IntermediateRequest,
        caller_ca: Option<&[u8]>,
        now: time::OffsetDateTime,
    ) -> Result<Option<(String, String)>, Refusal> {
        let Some(ca) = caller_ca else {
            return Ok(None);
        };
        let summary = garrison_ca::CertificateSummary::from_der(ca)
            .map_err(|e| Refusal::new("bad-caller", e.to_string()))?;
        let validity = garrison_ca::validity_of_der(ca)
            .map_err(|e| Refusal::new("bad-caller", e.to_string()))?;
        if now < validity.prepare_at() {
            return Err(Refusal::new(
                "too-early",
                format!(
                    "the site CA {} is not half through its life until {}",
                    summary.serial,
                    validity.prepare_at()
                ),
            ));
        }
        let csr = garrison_ca::VerifiedCsr::from_der(&request.csr)
            .map_err(|e| Refusal::new("bad-csr", e.to_string()))?;
        let fingerprint = hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            csr.public_key_der(),
        ));
        let kind = format!("successor-of:{}", summary.serial);
        let events = self
            .parts
            .log
            .sync_events()
            .await
            .map_err(|e| Refusal::new("unavailable", e.to_string()))?;
        let earlier = events
            .iter()
            .find(|e| e.origin == origin && e.kind == kind)
            .map(|e| e.detail.clone());
        match earlier {
            Some(key) if key != fingerprint => Err(Refusal::new(
                "successor-exists",
                format!(
                    "the site CA {} already has a successor (key {key}); an operator certifies \
                     any other (garrison hub certify-site)",
                    summary.serial
                ),
            )),
            _ => Ok(Some((kind, fingerprint))),
        }
    }

    fn certify(
        &self,
        origin: &str,
        request: &v1::IntermediateRequest,
        now: time::OffsetDateTime,
    ) -> Result<(String, time::OffsetDateTime, Vec<Vec<u8>>), Refusal> {
        use garrison_ca::{CaError, CaRole, IntermediateParams, PathLen, SubjectKey, VerifiedCsr};
        if request.origin != origin {
            return Err(Refusal::new(
                "wrong-origin",
                format!("this caller speaks for {origin} only"),
            ));
        }
        let site = origin
            .rsplit_once("/site/")
            .map(|(_, site)| site.to_owned())
            .filter(|site| garrison_ca::is_site_name(site))
            .ok_or_else(|| Refusal::new("wrong-origin", format!("{origin} is not a site log")))?;
        let csr = VerifiedCsr::from_der(&request.csr)
            .map_err(|e| Refusal::new("bad-csr", e.to_string()))?;
        // The lifetime asked for, at most the hub's `max_site_ca_ttl`.
        let max = self.parts.max_site_ca_ttl.whole_seconds();
        let asked = i64::try_from(request.lifetime_seconds).unwrap_or(i64::MAX);
        if asked < 1 {
            return Err(Refusal::new("bad-lifetime", "a lifetime of 0s".to_owned()));
        }
        let seconds = asked.min(max);
        let params = IntermediateParams {
            name: site.clone(),
            role: CaRole::Site(site),
            ttl: time::Duration::seconds(seconds),
            path_len: PathLen::OneBelowIssuer,
            subject_key: SubjectKey::Csr(csr),
        };
        let issued = self
            .parts
            .ca
            .issue_intermediate(params, now, &ring::rand::SystemRandom::new())
            .map_err(|e| match e {
                CaError::TtlExceedsIssuer { .. } | CaError::IssuerExpired { .. } => Refusal::new(
                    "hub-ca-expiring",
                    format!(
                        "{e}: the hub's own CA must be renewed (garrison ca request / install, \
                         see the README) before it can certify this site's next CA"
                    ),
                ),
                other => Refusal::new("bad-csr", other.to_string()),
            })?;
        Ok((hex::encode(&issued.serial), issued.not_after, issued.chain))
    }

    /// Records (counted, one row per site) that a site called with a credential that expired
    /// at `expired`: a site cut off past its CA's expiry, syncing and asking for its next CA.
    pub async fn note_rejoin(
        &self,
        origin: &str,
        expired: time::OffsetDateTime,
        now: time::OffsetDateTime,
    ) {
        tracing::warn!(origin, %expired, "a site with an expired credential syncs (rejoin window)");
        let event = SyncEvent {
            origin: origin.to_owned(),
            kind: "rejoin-after-expiry".to_owned(),
            time: now,
            detail: format!("the caller's certificate expired at {expired}"),
            notes: None,
        };
        if let Err(e) = self.parts.log.record_sync_event(&event).await {
            tracing::error!(error = %e, "could not record a rejoin");
        }
    }

    /// What the hub publishes, when newer than what the caller has.
    pub async fn pull(&self, request: &v1::PullRequest) -> Result<v1::PullResponse, HubError> {
        let log = &self.parts.log;
        let mut response = v1::PullResponse {
            witness_chain_pem: self.parts.witness_chain_pem.clone(),
            ..Default::default()
        };
        if let Some((sequence, _, bundle)) =
            log.latest_policy_bundle().await.map_err(HubError::Log)?
            && sequence > request.policy_sequence
        {
            response.policy_bundle = bundle;
            response.policy_sequence = sequence;
        }
        if let Some((sequence, note)) = log.latest_revocation_list().await.map_err(HubError::Log)?
            && sequence > request.revocation_sequence
        {
            response.revocation_list = note;
        }
        // A damaged announcement file must not stop every site's sync: logged, and nothing
        // announced until it is fixed.
        response.cross_signed_roots = self.cross_signed_roots().unwrap_or_else(|e| {
            tracing::error!(error = %e, "the announced roots cannot be read; none are sent");
            Vec::new()
        });
        Ok(response)
    }

    /// The new roots announced (empty when no root rotation is under way).
    pub fn cross_signed_roots(&self) -> Result<Vec<Vec<u8>>, HubError> {
        let path = &self.parts.cross_signed_roots;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(HubError::Roots(format!("{}: {source}", path.display()))),
        };
        garrison_ca::certificates_from_pem(&text)
            .map_err(|e| HubError::Roots(format!("{}: {e}", path.display())))
    }

    /// Announces a new root to every site: `der`, the new root cross-signed by a current
    /// root (`garrison ca cross-sign`, checked by [`garrison_ca::verify_cross_signed`]), or the
    /// new root's self-signed certificate once its cross-signed one is announced
    /// ([`garrison_ca::verify_root_twin`]); added to what every Pull sends. Returns false if it
    /// was already announced.
    pub fn publish_root(&self, der: &[u8]) -> Result<bool, HubError> {
        let now = self.parts.clock.now();
        let mut roots = self.cross_signed_roots()?;
        garrison_ca::verify_cross_signed(der, &self.parts.roots, now)
            .or_else(|_| garrison_ca::verify_root_twin(der, &roots, now))
            .map_err(|e| HubError::Refused(Refusal::new("bad-root", e.to_string())))?;
        if roots.iter().any(|r| r.as_slice() == der) {
            return Ok(false);
        }
        roots.push(der.to_vec());
        let path = &self.parts.cross_signed_roots;
        let tmp = path.with_extension("tmp");
        let written = std::fs::write(&tmp, garrison_ca::certificates_to_pem(&roots))
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path));
        written.map_err(|e| HubError::Roots(format!("{}: {e}", path.display())))?;
        Ok(true)
    }

    /// Verifies a signed policy bundle against the roots and publishes it to every site.
    /// Its sequence must be above every one published before. Returns (sequence, digest).
    pub async fn publish_policy(&self, archive: &[u8]) -> Result<(u64, String), HubError> {
        let now = self.parts.clock.now();
        let limits = BundleLimits::default();
        let files = decode_archive(archive, &limits).map_err(HubError::Policy)?;
        let roots_pem = garrison_ca::certificates_to_pem(&self.parts.roots);
        let trust = PolicyTrust::from_pem(&roots_pem).map_err(HubError::Policy)?;
        let verified = verify_bundle(&files, &trust, now, &limits).map_err(HubError::Policy)?;
        let sequence = verified.manifest.sequence;
        let latest = self.latest_policy_sequence().await?;
        if sequence <= latest {
            return Err(HubError::Refused(Refusal::new(
                "stale",
                format!("bundle #{sequence} is not newer than the published #{latest}"),
            )));
        }
        self.parts
            .log
            .store_policy_bundle(sequence, &verified.digest, archive, now)
            .await
            .map_err(HubError::Log)?;
        tracing::info!(sequence, digest = %verified.digest, "policy bundle published to every site");
        Ok((sequence, verified.digest))
    }

    async fn latest_policy_sequence(&self) -> Result<u64, HubError> {
        Ok(self
            .parts
            .log
            .latest_policy_bundle()
            .await
            .map_err(HubError::Log)?
            .map_or(0, |(sequence, _, _)| sequence))
    }

    /// The revocation list in force at the hub (verified again with the witness key).
    pub async fn revocation_list(&self) -> Result<Option<RevocationList>, HubError> {
        let Some((_, note)) = self
            .parts
            .log
            .latest_revocation_list()
            .await
            .map_err(HubError::Log)?
        else {
            return Ok(None);
        };
        RevocationList::verify(
            &note,
            &self.parts.trust_domain,
            &self.parts.witness.public_key(),
        )
        .map(Some)
        .map_err(HubError::Witness)
    }

    /// Adds `targets` to the revocation list and signs the next one. Returns its sequence.
    /// Two hub processes revoking at once both land: the loser of a sequence signs again.
    pub async fn revoke(&self, targets: &[RevokedTarget]) -> Result<u64, HubError> {
        for _ in 0..8 {
            let current = self.revocation_list().await?;
            let (sequence, mut entries) = match current {
                Some(list) => (list.sequence + 1, list.entries),
                None => (1, Vec::new()),
            };
            entries.extend(targets.iter().cloned());
            entries.sort();
            entries.dedup();
            let now = self.parts.clock.now();
            let list = RevocationList {
                trust_domain: self.parts.trust_domain.clone(),
                sequence,
                issued_unix: now.unix_timestamp().max(0).unsigned_abs(),
                entries,
            };
            let note = self
                .parts
                .witness
                .sign_revocations(&list)
                .map_err(HubError::Witness)?;
            // Every site must be able to take the list in one Pull answer.
            if note.len() > MAX_REVOCATION_LIST_BYTES {
                return Err(HubError::Refused(Refusal::new(
                    "too-large",
                    format!(
                        "a revocation list of {} entries is {} bytes, more than the {} a site takes in one answer; nothing was signed",
                        list.entries.len(),
                        note.len(),
                        MAX_REVOCATION_LIST_BYTES
                    ),
                )));
            }
            let stored = self
                .parts
                .log
                .store_revocation_list(sequence, &note, now)
                .await
                .map_err(HubError::Log)?;
            if stored {
                tracing::info!(
                    sequence,
                    entries = list.entries.len(),
                    "revocation list signed"
                );
                return Ok(sequence);
            }
        }
        Err(HubError::Refused(Refusal::new(
            "stale",
            "the revocation list kept changing under this revocation; try again".to_owned(),
        )))
    }

    /// The newest checkpoint of `origin`'s log the hub cosigned, with its cosignature line.
    pub async fn latest_cosigned(&self, origin: &str) -> Result<Option<String>, HubError> {
        let replica = self.replica(origin).await?;
        let Some(cosigned) = replica
            .latest_cosignature(&self.witness_name)
            .await
            .map_err(HubError::Log)?
        else {
            return Ok(None);
        };
        let checkpoint = replica
            .checkpoint_at(cosigned.size)
            .await
            .map_err(HubError::Log)?;
        checkpoint
            .map(|c| with_cosignature(&c.note, &cosigned.line))
            .transpose()
    }

    /// Every site log the hub holds: (origin, records held, largest size cosigned).
    pub async fn sites(&self) -> Result<Vec<(String, u64, u64)>, HubError> {
        let own = crate::server::hub_origin(&self.parts.trust_domain);
        let mut sites = Vec::new();
        for origin in self.parts.log.origins().await.map_err(HubError::Log)? {
            if origin == own {
                continue;
            }
            let status = self.status(&origin).await?;
            sites.push((origin, status.held_size, status.cosigned_size));
        }
        Ok(sites)
    }

    /// Refusals and alarms recorded so far, per (origin, kind).
    pub async fn events(&self) -> Result<Vec<SyncEventSummary>, HubError> {
        self.parts.log.sync_events().await.map_err(HubError::Log)
    }

    /// Checks a cosigned note with this hub's witness key (for tests and the CLI).
    pub fn check_cosignature(&self, note: &str) -> Result<u64, HubError> {
        verify_cosignature(note, &self.witness_name, &self.parts.witness.public_key())
            .map(|c| c.timestamp)
            .map_err(HubError::Witness)
    }

    async fn replica(&self, origin: &str) -> Result<AttestationLog, HubError> {
        self.parts.log.replica(origin).await.map_err(HubError::Log)
    }
}

fn replica_refusal(e: LogError) -> PushError {
    let refuse = |code, detail: String| PushError::Rejected(Refusal::new(code, detail).into());
    match e {
        LogError::ReplicaGap { held, first, .. } => refuse(
            "gap",
            format!("the batch starts at {first}; the hub holds {held}: resume there"),
        ),
        LogError::ReplicaConflict { sequence, .. } => refuse(
            "tampered-record",
            format!("record #{sequence} differs from the one the hub holds"),
        ),
        LogError::ReplicaRefused { reason, .. } => refuse(
            "bad-proof",
            format!("the records do not lead to the checkpoint's root: {reason}"),
        ),
        LogError::ReplicaEvidence {
            digest, problem, ..
        } => refuse("bad-evidence", format!("evidence {digest}: {problem}")),
        other => PushError::Failed(HubError::Log(other)),
    }
}

/// A kept checkpoint note with a kept cosignature line merged in.
fn with_cosignature(note: &str, line: &str) -> Result<String, HubError> {
    garrison_transparency::add_cosignature_line(note, line).map_err(HubError::Witness)
}
