//! The site's side of store-and-forward sync, shared by the network client
//! (`sync_client.rs`) and air-gap files ([`export`], [`import`]).
//!
//! * **Up:** log batches from where the hub stands to a checkpoint the site signed, each
//!   with the evidence the hub lacks, a consistency proof from the batch's end to the
//!   checkpoint and one from a size the hub holds (what it cosigned) to the checkpoint.
//!   Batches are cut at [`SYNC_BATCH_RECORDS`] records or about [`SYNC_BATCH_BYTES`], so a
//!   month of backlog streams instead of loading.
//! * **Down:** the hub's witness key is checked against the roots (its certificate chains
//!   through hub CAs only), then with it the revocation list (applied as `revoke` records,
//!   newer lists only) and the cosignature on the site's own checkpoint (kept beside it).
//!   Policy bundles are kept in the database and put in force by the attestor exactly as a
//!   local bundle (signature, rollback floor, a `policy-update` record).
//!
//! Nothing here trusts the hub or the file beyond what its signatures prove.

use std::collections::{BTreeSet, HashSet};

use garrison_appraisal::EvidenceRecord;
use garrison_log::{
    AttestationLog, LogError, Query, Revocation, RevocationTarget, StoredCheckpoint,
    StoredCosignature, SyncEvent, canonical_bytes,
};
use garrison_proto::limits::{SYNC_BATCH_BYTES, SYNC_BATCH_RECORDS};
use garrison_proto::sync_file::{
    HUB_TO_SITE, SITE_TO_HUB, SyncFileError, SyncFileReader, SyncFileWriter,
};
use garrison_proto::v1::{self, SyncFileHeader, sync_file::Part};
use garrison_transparency::{
    RevocationList, RevokedTarget, TransparencyError, WitnessKeyCertificate, hub_witness_name,
    newest_verified_list, site_origin, verify_cosignature,
};
use time::OffsetDateTime;

/// The first reason of every revoke record written from a hub's revocation list.
pub const HUB_REVOCATION: &str = "hub-revocation-list";

/// Kept revocation lists looked at, newest first, for the one held
/// ([`SiteSync::held_revocation_sequence`]): rows written out of place above it are passed
/// over, this many at most.
pub const KEPT_LISTS_LOOKED_AT: u32 = 64;

/// Why a sync step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The site's own log failed.
    #[error("the site's attestation log")]
    Log(#[from] LogError),
    /// The site has no signed checkpoint or no log key certificate to send yet.
    #[error("nothing to send yet: {0}")]
    NotReady(&'static str),
    /// Something the hub (or a file) sent does not verify; nothing of it was applied.
    #[error("refused from the hub: {0}")]
    Refused(String),
    /// The hub refused or could not take what the site sent.
    #[error("the hub answered {code:?}: {message}")]
    Hub { code: tonic::Code, message: String },
    /// The hub is taking other sites' batches and asked to come back after `retry_after`
    /// (`RESOURCE_EXHAUSTED` with a `retry-after-ms` hint): not a failure of the link.
    #[error("the hub is busy; retry in {} ms", retry_after.as_millis())]
    Busy {
        /// The hub's hint.
        retry_after: std::time::Duration,
    },
    /// The connection to the hub failed.
    #[error("connecting to the hub: {0}")]
    Connect(String),
    /// An air-gap file is damaged or not one for this site.
    #[error("sync file")]
    File(#[from] SyncFileError),
}

impl From<tonic::Status> for SyncError {
    fn from(status: tonic::Status) -> Self {
        let hint = status
            .metadata()
            .get(crate::RETRY_AFTER_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|_| status.code() == tonic::Code::ResourceExhausted);
        if let Some(ms) = hint {
            // At most ten minutes, whatever the hub says.
            return SyncError::Busy {
                retry_after: std::time::Duration::from_millis(ms.min(600_000)),
            };
        }
        SyncError::Hub {
            code: status.code(),
            message: status.message().chars().take(500).collect(),
        }
    }
}

/// One site's log and what it needs to check what comes down.
#[derive(Debug, Clone)]
pub struct SiteSync {
    log: AttestationLog,
    /// Signs a checkpoint of every record before a push, when given.
    signer: Option<std::sync::Arc<crate::checkpoint::CheckpointSigner>>,
    site: String,
    trust_domain: String,
    origin: String,
    witness_name: String,
    roots: Vec<Vec<u8>>,
}

/// Which evidence the receiving end lacks.
pub(crate) enum EvidenceFilter<'a> {
    /// Ask the hub.
    Hub(&'a mut crate::sync_client::HubClient),
    /// A file: everything not already written to it (remembered up to a bound).
    File(&'a mut Written),
}

/// Digests already written to a file, up to [`Written::MAX`] (beyond it, evidence may be
/// written twice, which the hub stores once).
#[derive(Debug, Default)]
pub(crate) struct Written(HashSet<String>);

impl Written {
    const MAX: usize = 200_000;

    fn lacking(&self, digests: Vec<String>) -> Vec<String> {
        digests
            .into_iter()
            .filter(|d| !self.0.contains(d))
            .collect()
    }

    fn mark(&mut self, digest: &str) {
        if self.0.len() < Self::MAX {
            self.0.insert(digest.to_owned());
        }
    }
}

/// What a pull (or the down part of a file) changed at the site.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The revocation list accepted, if a newer one came.
    pub revocation_sequence: Option<u64>,
    /// Revoke records written for it.
    pub revoked: usize,
    /// A newer policy bundle kept for the attestor to put in force: its sequence.
    pub policy_sequence: Option<u64>,
    /// The size of the checkpoint whose cosignature was kept.
    pub cosigned_size: Option<u64>,
}

impl SiteSync {
    /// Sync for the log `log` of `site` in `trust_domain`, checking what comes down against
    /// `roots` (DER).
    pub fn new(log: AttestationLog, site: &str, trust_domain: &str, roots: Vec<Vec<u8>>) -> Self {
        SiteSync {
            log,
            signer: None,
            site: site.to_owned(),
            trust_domain: trust_domain.to_owned(),
            origin: site_origin(trust_domain, site),
            witness_name: hub_witness_name(trust_domain),
            roots,
        }
    }

    /// Signs a checkpoint of the whole log before each push or export, so that what goes up
    /// is every record there is (without it, the newest checkpoint the attestor signed).
    pub fn with_signer(
        mut self,
        signer: std::sync::Arc<crate::checkpoint::CheckpointSigner>,
    ) -> Self {
        self.signer = Some(signer);
        self
    }

    /// The site's log origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The site's log.
    pub fn log(&self) -> &AttestationLog {
        &self.log
    }

    /// The newest signed checkpoint and the newest log key certificate chain.
    pub async fn checkpoint(
        &self,
        now: OffsetDateTime,
    ) -> Result<(StoredCheckpoint, String), SyncError> {
        if let Some(signer) = &self.signer {
            signer
                .sign(now)
                .await
                .map_err(|e| SyncError::NotReady(checkpoint_failed(&e)))?;
        }
        let checkpoint = self
            .log
            .latest_checkpoint()
            .await?
            .ok_or(SyncError::NotReady("no signed checkpoint"))?;
        let chain = self
            .log
            .log_key_certificates()
            .await?
            .pop()
            .ok_or(SyncError::NotReady("no log key certificate"))?;
        Ok((checkpoint, chain))
    }

    /// The size of the newest checkpoint the hub cosigned, as the site knows it.
    pub async fn cosigned_size(&self) -> Result<u64, SyncError> {
        Ok(self
            .log
            .latest_cosignature(&self.witness_name)
            .await?
            .map_or(0, |c| c.size))
    }

    /// [`batch`](Self::batch) with every record's evidence, as a file carries it.
    pub async fn self_contained_batch(
        &self,
        start: u64,
        checkpoint: &StoredCheckpoint,
        chain_pem: &str,
        proof_from_size: u64,
    ) -> Result<v1::LogBatch, SyncError> {
        let mut written = Written::default();
        self.batch(
            start,
            checkpoint,
            chain_pem,
            proof_from_size,
            EvidenceFilter::File(&mut written),
        )
        .await
    }

    /// The next batch from `start` towards `checkpoint` (at least one record when any is
    /// left; none when `start` is the checkpoint's size).
    pub(crate) async fn batch(
        &self,
        start: u64,
        checkpoint: &StoredCheckpoint,
        chain_pem: &str,
        proof_from_size: u64,
        filter: EvidenceFilter<'_>,
    ) -> Result<v1::LogBatch, SyncError> {
        let left = checkpoint.size.saturating_sub(start);
        let limit = u32::try_from(left.min(SYNC_BATCH_RECORDS as u64)).unwrap_or(u32::MAX);
        let stored = if limit == 0 {
            Vec::new()
        } else {
            self.log
                .query(&Query {
                    after_sequence: start.checked_sub(1),
                    limit: Some(limit),
                    ..Default::default()
                })
                .await?
        };
        let mut filter = filter;
        let mut batch = Cut::default();
        'chunks: for chunk in stored.chunks(100) {
            // One question per chunk: which of its records' evidence the receiver lacks.
            let digests: BTreeSet<String> = chunk
                .iter()
                .filter_map(|r| r.record.evidence_digest.clone())
                .filter(|d| !batch.included.contains(d))
                .collect();
            let lacking: BTreeSet<String> = lacking_digests(&mut filter, digests)
                .await?
                .into_iter()
                .collect();
            for record in chunk {
                let adding = self
                    .evidence_for(record, &lacking, &batch, &mut filter)
                    .await?;
                let encoded = canonical_bytes(record.sequence, &record.record)?;
                let size = encoded.len() + adding.iter().map(|e| e.bytes.len()).sum::<usize>();
                // Cut before the record that would take the batch past its budget; a record
                // that is over it alone travels alone.
                if !batch.records.is_empty() && batch.bytes + size > SYNC_BATCH_BYTES {
                    break 'chunks;
                }
                batch.bytes += size;
                batch.records.push(encoded);
                for e in adding {
                    mark_written(&mut filter, &e.digest);
                    batch.included.insert(e.digest.clone());
                    batch.evidence.push(e);
                }
            }
        }
        let Cut {
            records, evidence, ..
        } = batch;
        let end = start + u64::try_from(records.len()).unwrap_or(u64::MAX);
        let proof_to_checkpoint = self.proof(end, checkpoint.size).await?;
        let proof_from = self.proof(proof_from_size, checkpoint.size).await?;
        Ok(v1::LogBatch {
            origin: self.origin.clone(),
            first: start,
            records,
            evidence,
            checkpoint: checkpoint.note.clone(),
            proof_to_checkpoint,
            proof_from_size,
            proof_from,
            log_key_chain_pem: chain_pem.to_owned(),
        })
    }

    async fn proof(&self, old: u64, new: u64) -> Result<Vec<Vec<u8>>, SyncError> {
        if old == 0 || old >= new {
            return Ok(Vec::new());
        }
        Ok(self
            .log
            .consistency_proof(old, new)
            .await?
            .into_iter()
            .map(|h| h.to_vec())
            .collect())
    }

    /// What of `record`'s evidence goes with it: its evidence if the receiver lacks it, and
    /// the event log that evidence refers to if the receiver lacks that too; nothing the
    /// batch already carries.
    async fn evidence_for(
        &self,
        record: &garrison_log::StoredRecord,
        lacking: &BTreeSet<String>,
        batch: &Cut,
        filter: &mut EvidenceFilter<'_>,
    ) -> Result<Vec<v1::Evidence>, SyncError> {
        let Some(digest) = record.record.evidence_digest.as_ref() else {
            return Ok(Vec::new());
        };
        if !lacking.contains(digest) || batch.included.contains(digest) {
            return Ok(Vec::new());
        }
        let mut out = self.fetch(vec![digest.clone()]).await?;
        // Event logs are evidence of their own, referred to from inside an evidence record.
        let blob = out
            .first()
            .and_then(|e| EvidenceRecord::decode(&e.bytes).ok())
            .map(|r| r.event_log_sha256)
            .filter(|d| !d.is_empty() && !batch.included.contains(d));
        if let Some(blob) = blob {
            let wanted = lacking_digests(filter, BTreeSet::from([blob])).await?;
            out.extend(self.fetch(wanted).await?);
        }
        Ok(out)
    }

    async fn fetch(&self, digests: Vec<String>) -> Result<Vec<v1::Evidence>, SyncError> {
        let mut out = Vec::with_capacity(digests.len());
        for digest in digests {
            // Evidence a record refers to is stored with it (a foreign key): absence would be
            // a damaged database, and the hub would refuse the batch for it.
            if let Some(bytes) = self.log.evidence(&digest).await? {
                out.push(v1::Evidence { digest, bytes });
            }
        }
        Ok(out)
    }

    /// Applies what the hub publishes (see the module docs).
    pub async fn apply_pull(
        &self,
        pull: &v1::PullResponse,
        now: OffsetDateTime,
    ) -> Result<Applied, SyncError> {
        let mut applied = Applied::default();
        if pull.witness_chain_pem.is_empty() {
            return Ok(applied);
        }
        let witness = self.witness_key(&pull.witness_chain_pem)?;
        // Kept (once per chain) so that an auditor can check the hub's cosignatures.
        let chain = garrison_ca::certificates_from_pem(&pull.witness_chain_pem)
            .map(|ders| garrison_ca::certificates_to_pem(&ders))
            .map_err(|e| SyncError::Refused(format!("hub witness key: {e}")))?;
        self.log.add_witness_certificate(&chain, now).await?;
        if !pull.revocation_list.is_empty() {
            let (sequence, revoked) = self
                .apply_revocations(&pull.revocation_list, &witness, now)
                .await?;
            applied.revocation_sequence = sequence;
            applied.revoked = revoked;
        }
        if !pull.policy_bundle.is_empty() {
            applied.policy_sequence = self.keep_policy_bundle(&pull.policy_bundle, now).await?;
        }
        Ok(applied)
    }

    /// The sequence of the hub revocation list the site keeps, which decides which lists
    /// are new (and which the site asks the hub for): the newest kept list that verifies,
    /// with `witness` or a witness key kept and certified under the roots. A row someone
    /// wrote with a high sequence must not make the site ignore the hub's lists; lists
    /// above the one that verifies are recorded (`revocation-list-unverifiable`, one
    /// counter) and passed over. Lists of another trust domain (kept from before the site's
    /// changed) are passed over silently. Looks at the newest [`KEPT_LISTS_LOOKED_AT`]
    /// lists; with none of them verifying, none counts as held, and the hub's latest is
    /// applied again (which records nothing already revoked).
    pub async fn held_revocation_sequence(
        &self,
        witness: Option<&[u8; 32]>,
        now: OffsetDateTime,
    ) -> Result<u64, SyncError> {
        let kept = self
            .log
            .newest_revocation_lists(KEPT_LISTS_LOOKED_AT)
            .await?;
        if kept.is_empty() {
            return Ok(0);
        }
        let mut keys: Vec<[u8; 32]> = witness.copied().into_iter().collect();
        for chain_pem in self.log.witness_certificates().await? {
            if let Ok(key) = self.witness_key(&chain_pem) {
                keys.push(key);
            }
        }
        let newest = newest_verified_list(&kept, &self.trust_domain, &keys);
        if let Some((sequence, why)) = newest.unverifiable.first() {
            self.record(
                "revocation-list-unverifiable",
                format!(
                    "the kept revocation list #{sequence} does not verify ({why}); {} such \
                     list(s) passed over",
                    newest.unverifiable.len()
                ),
                now,
            )
            .await;
        }
        Ok(newest.held.map_or(0, |list| list.sequence))
    }

    pub(crate) fn witness_key(&self, chain_pem: &str) -> Result<[u8; 32], SyncError> {
        WitnessKeyCertificate::from_pem(chain_pem)
            .and_then(|certificate| certificate.verify(&self.roots, &self.trust_domain))
            .map_err(|e| SyncError::Refused(format!("hub witness key: {e}")))
    }

    /// Verifies the list; if it is newer than the last one accepted, revokes every entry
    /// not revoked yet (each a `revoke` record), then keeps the list.
    async fn apply_revocations(
        &self,
        note: &str,
        witness: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<(Option<u64>, usize), SyncError> {
        let list = RevocationList::verify(note, &self.trust_domain, witness)
            .map_err(|e| SyncError::Refused(format!("revocation list: {e}")))?;
        let held = self.held_revocation_sequence(Some(witness), now).await?;
        if list.sequence <= held {
            if list.sequence < held {
                self.record(
                    "stale-revocation-list",
                    format!(
                        "revocation list #{} is older than #{held}, which stays in force",
                        list.sequence
                    ),
                    now,
                )
                .await;
            }
            return Ok((None, 0));
        }
        let mut revoked = 0;
        for entry in &list.entries {
            if self.revoke_entry(entry, list.sequence, now).await? {
                revoked += 1;
            }
        }
        self.log
            .store_revocation_list(list.sequence, note, now)
            .await?;
        tracing::info!(
            sequence = list.sequence,
            entries = list.entries.len(),
            revoked,
            "hub revocation list in force"
        );
        Ok((Some(list.sequence), revoked))
    }

    async fn revoke_entry(
        &self,
        entry: &RevokedTarget,
        sequence: u64,
        now: OffsetDateTime,
    ) -> Result<bool, SyncError> {
        let target = match entry {
            RevokedTarget::Node(node) => RevocationTarget::Node(node.clone()),
            RevokedTarget::Serial(serial) => RevocationTarget::Serial(serial.clone()),
        };
        // Already revoked in this log: nothing to record. A revocation in another log of the
        // database (the site's log before its origin changed) is enforced already, but this
        // log, and whoever verifies it, should say so too.
        if self.log.is_revoked_in_this_log(&target).await? {
            return Ok(false);
        }
        self.log
            .revoke(Revocation {
                time: now,
                site: self.site.clone(),
                target,
                reasons: vec![
                    HUB_REVOCATION.to_owned(),
                    format!(
                        "revocation list #{sequence} signed by {}",
                        self.witness_name
                    ),
                ],
                policy_digest: None,
            })
            .await?;
        Ok(true)
    }

    /// Keeps a signed bundle newer than every one kept, for the attestor to put in force
    /// (which checks it again, against the rollback floor). The signature is checked here
    /// first and the sequence read from the signed manifest, never from the message: an
    /// unsigned or forged bundle is never kept, so it can neither block later ones nor be
    /// what a restart starts with. An older one is refused and recorded.
    async fn keep_policy_bundle(
        &self,
        bundle: &[u8],
        now: OffsetDateTime,
    ) -> Result<Option<u64>, SyncError> {
        let limits = garrison_policy::BundleLimits::default();
        let refuse = |e: garrison_policy::PolicyError| {
            SyncError::Refused(format!("policy bundle from the hub: {e}"))
        };
        let files = garrison_policy::decode_archive(bundle, &limits).map_err(refuse)?;
        let trust =
            garrison_policy::PolicyTrust::from_pem(&garrison_ca::certificates_to_pem(&self.roots))
                .map_err(refuse)?;
        let verified =
            garrison_policy::verify_bundle(&files, &trust, now, &limits).map_err(refuse)?;
        let sequence = verified.manifest.sequence;
        let kept = self
            .log
            .latest_policy_bundle()
            .await?
            .map_or(0, |(s, _, _)| s);
        if sequence <= kept {
            if sequence < kept {
                self.record(
                    "stale-policy-bundle",
                    format!("policy bundle #{sequence} is older than #{kept}"),
                    now,
                )
                .await;
            }
            return Ok(None);
        }
        self.log
            .store_policy_bundle(sequence, &verified.digest, bundle, now)
            .await?;
        Ok(Some(sequence))
    }

    /// Checks the hub's cosignature on one of the site's own checkpoints and keeps it.
    /// Returns the checkpoint's size if the cosignature was new.
    pub async fn keep_cosignature(
        &self,
        cosigned_note: &str,
        witness: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<Option<u64>, SyncError> {
        let cosignature = verify_cosignature(cosigned_note, &self.witness_name, witness)
            .map_err(|e| SyncError::Refused(format!("cosignature: {e}")))?;
        // The checkpoint's body is its first three lines: origin, size, root.
        let body = cosigned_note.split("\n\n").next().unwrap_or_default();
        let size = body
            .lines()
            .nth(1)
            .and_then(|line| line.parse::<u64>().ok())
            .ok_or_else(|| {
                SyncError::Refused("the cosigned note is not a checkpoint".to_owned())
            })?;
        let ours = self.log.checkpoint_at(size).await?;
        let Some(checkpoint) = ours.filter(|c| c.note.split("\n\n").next() == Some(body)) else {
            return Err(SyncError::Refused(
                "the hub cosigned a checkpoint this site never signed".to_owned(),
            ));
        };
        let new = self
            .log
            .store_cosignature(&StoredCosignature {
                size: checkpoint.size,
                witness: self.witness_name.clone(),
                line: cosignature.line,
                cosigned: now,
            })
            .await?;
        // Only a cosignature the site did not hold yet is news.
        Ok(new.then_some(checkpoint.size))
    }

    pub(crate) async fn record(&self, kind: &str, detail: String, now: OffsetDateTime) {
        tracing::warn!(kind, detail = %detail, "refused from the hub");
        self.note(kind, detail, now).await;
    }

    /// Counts an event of `kind` (one row per kind: bounded however often it happens).
    pub(crate) async fn note(&self, kind: &str, detail: String, now: OffsetDateTime) {
        let event = SyncEvent {
            origin: self.witness_name.clone(),
            kind: kind.to_owned(),
            time: now,
            detail,
            notes: None,
        };
        if let Err(e) = self.log.record_sync_event(&event).await {
            tracing::error!(error = %e, "could not record a refusal");
        }
    }
}

fn checkpoint_failed(e: &crate::checkpoint::CheckpointError) -> &'static str {
    tracing::error!(error = %e, "signing a checkpoint before sync failed");
    "signing a checkpoint failed (see the attestor's log)"
}

/// A batch being cut.
#[derive(Debug, Default)]
pub(crate) struct Cut {
    records: Vec<Vec<u8>>,
    evidence: Vec<v1::Evidence>,
    /// Digests of the evidence in `evidence`.
    included: BTreeSet<String>,
    bytes: usize,
}

/// Of `digests`, those the receiver lacks.
async fn lacking_digests(
    filter: &mut EvidenceFilter<'_>,
    digests: BTreeSet<String>,
) -> Result<Vec<String>, SyncError> {
    if digests.is_empty() {
        return Ok(Vec::new());
    }
    let digests: Vec<String> = digests.into_iter().collect();
    match filter {
        EvidenceFilter::Hub(client) => client.missing(digests).await,
        EvidenceFilter::File(written) => Ok(written.lacking(digests)),
    }
}

/// A file remembers what it carries (up to its bound) once it is written.
fn mark_written(filter: &mut EvidenceFilter<'_>, digest: &str) {
    if let EvidenceFilter::File(written) = filter {
        written.mark(digest);
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub first: u64,
    pub checkpoint_size: u64,
    pub batches: u64,
}

/// Writes the site's records from `from` to its newest checkpoint as a site-to-hub file.
/// `from` is where the hub stands: by default the newest checkpoint the hub cosigned.
pub async fn export<W: std::io::Write>(
    sync: &SiteSync,
    from: Option<u64>,
    out: W,
    now: OffsetDateTime,
) -> Result<(W, ExportSummary), SyncError> {
    let (checkpoint, chain) = sync.checkpoint(now).await?;
    let cosigned = sync.cosigned_size().await?;
    let first = from.unwrap_or(cosigned).min(checkpoint.size);
    let header = SyncFileHeader {
        direction: SITE_TO_HUB.to_owned(),
        origin: sync.origin.clone(),
        written_unix: now.unix_timestamp().max(0).unsigned_abs(),
    };
    let mut writer = SyncFileWriter::new(out, header)?;
    let mut written = Written::default();
    let mut start = first;
    let mut batches = 0;
    loop {
        let batch = sync
            .batch(
                start,
                &checkpoint,
                &chain,
                // A size the hub holds when it reads this batch: where the file starts (what
                // it cosigned, or where the operator says it stands), then where each batch
                // starts, the hub taking them in order.
                start,
                EvidenceFilter::File(&mut written),
            )
            .await?;
        let sent = u64::try_from(batch.records.len()).unwrap_or(u64::MAX);
        writer.push(Part::LogBatch(batch))?;
        batches += 1;
        start += sent;
        if sent == 0 || start >= checkpoint.size {
            break;
        }
    }
    let summary = ExportSummary {
        first,
        checkpoint_size: checkpoint.size,
        batches,
    };
    Ok((writer.finish()?, summary))
}

/// Applies a hub-to-site file: checks it is for this site, then applies the pull part and
/// keeps the cosignature. Importing it twice, or an older file, changes nothing.
pub async fn import(
    sync: &SiteSync,
    input: impl std::io::Read,
    now: OffsetDateTime,
) -> Result<Applied, SyncError> {
    let mut reader = SyncFileReader::new(input)?;
    let header = reader.header();
    if header.direction != HUB_TO_SITE {
        return Err(SyncError::Refused(format!(
            "this is a {:?} file, not one a hub writes for a site",
            header.direction
        )));
    }
    if header.origin != sync.origin {
        return Err(SyncError::Refused(format!(
            "the file is for {:?}, not this site ({})",
            header.origin, sync.origin
        )));
    }
    let outcome = import_parts(sync, &mut reader, now).await;
    if let Err(SyncError::Refused(why)) = &outcome {
        sync.record("refused-from-hub", why.clone(), now).await;
    }
    outcome
}

async fn import_parts(
    sync: &SiteSync,
    reader: &mut SyncFileReader<impl std::io::Read>,
    now: OffsetDateTime,
) -> Result<Applied, SyncError> {
    let mut applied = Applied::default();
    let mut witness = None;
    while let Some(part) = reader.next_part()? {
        match part {
            Part::Pull(pull) => {
                witness = Some(sync.witness_key(&pull.witness_chain_pem)?);
                let got = sync.apply_pull(&pull, now).await?;
                applied = Applied {
                    cosigned_size: applied.cosigned_size,
                    ..got
                };
            }
            Part::CosignedCheckpoint(note) => {
                let key = witness.ok_or_else(|| {
                    SyncError::Refused("a cosignature before the witness key".to_owned())
                })?;
                applied.cosigned_size = sync.keep_cosignature(&note, &key, now).await?;
            }
            Part::LogBatch(_) | Part::Header(_) | Part::IntermediateRequest(_) => {
                return Err(SyncError::Refused(
                    "a hub-to-site file holds no log batches or CA requests".to_owned(),
                ));
            }
            Part::Intermediate(_) => {
                return Err(SyncError::Refused(
                    "site CA certificates do not travel by sync file yet: install one with \
                     `garrison attestor install-ca`"
                        .to_owned(),
                ));
            }
        }
    }
    Ok(applied)
}

impl From<TransparencyError> for SyncError {
    fn from(e: TransparencyError) -> Self {
        SyncError::Refused(e.to_string())
    }
}
