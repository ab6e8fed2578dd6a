//! `garrison audit verify`: recompute the log and check it against what was signed.

use std::collections::{HashMap, HashSet};

use garrison_appraisal::EvidenceRecord;
use garrison_log::{
    Decision, KeptNodeState, RecordKind, RevocationTarget, StoredCheckpoint, StoredRecord,
};
use garrison_transparency::{LogKeyCertificate, verify_checkpoint};
use serde::Serialize;
use tlog_tiles::{Hash, HashReader};

use crate::replay::{quoted, recorded_identity};
use crate::{AuditError, LogSource};
use garrison_evidence::AkPolicy;

/// Records read per query.
const PAGE: u32 = 5_000;
/// Problems kept in a report; beyond it they are counted only.
const MAX_PROBLEMS: usize = 1_000;

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum Problem {
    /// No record at this sequence (deleted), though later records exist.
    MissingRecord { sequence: u64 },
    /// No records from `first` up to `next`, the sequence of the next record read (two or
    /// more deleted, or a record moved ahead): one problem per gap, however long.
    MissingRecords { first: u64, next: u64 },
    /// The record's contents do not hash to its stored leaf hash (edited, or moved).
    LeafMismatch { sequence: u64 },
    /// The record names evidence the log does not hold.
    EvidenceMissing { sequence: u64, digest: String },
    /// The evidence stored under the record's digest has another digest (swapped bytes).
    EvidenceMismatch { sequence: u64, digest: String },
    /// The allow at `sequence` was decided over an event log (its evidence names the log's
    /// digest) that the log does not hold. The attestor stores every event log an allow was
    /// decided over, with that record or an earlier one (only a refusal's log may be kept as
    /// its digest alone): this one was deleted, and with it what the boot was judged on.
    EventLogMissing { sequence: u64, digest: String },
    /// The event log stored under the digest the record's evidence names has another
    /// digest (its bytes were changed or swapped).
    EventLogMismatch { sequence: u64, digest: String },
    /// A log key certificate does not verify against the roots.
    KeyCertificate { reason: String },
    /// A checkpoint's signature does not verify with any certified log key.
    CheckpointSignature { size: u64, reason: String },
    /// A kept checkpoint's size and root columns are not what its signed text states (the
    /// row was edited, or a signed note copied into a row of another size): whoever reads
    /// the columns (the attestor deciding what is signed, a proof to that size) is misled.
    /// The signed text is what the checkpoint is checked as.
    CheckpointRow { size: u64, signed_size: u64 },
    /// The records do not hash to a signed checkpoint's root: something in
    /// `first_suspect..size` was changed, or the checkpoint is of a forked tree.
    CheckpointRoot { size: u64, first_suspect: u64 },
    /// Two checkpoints of this size both verify, and the records reproduce only one: the
    /// log key signed a second tree of the same size (a fork shown to someone), though the
    /// records themselves agree with the other.
    CheckpointFork { size: u64 },
    /// A signed checkpoint covers more records than the log holds (records removed from
    /// the end).
    CheckpointBeyondLog { size: u64, records: u64 },
    /// The log's head (its `logs` row) does not state the log as read: `next_sequence`
    /// (the next record's sequence) is not one past the last record, or `tree_size` (the
    /// records the stored tree covers) is not `next_sequence`. The attestor appends from the
    /// head: a head behind the records makes its appends fail, one ahead leaves a gap, and
    /// a smaller tree size hides stored tree hashes from this check and stops proofs. (A log
    /// migrated from before the tree that no attestor has opened since has no tree yet.)
    LogHead {
        next_sequence: u64,
        tree_size: u64,
        records_end: u64,
    },
    /// Stored tree hashes outside the log's tree (a negative index, or beyond the hashes its
    /// tree size needs): none are written there. One at a future index makes the
    /// attestor's appends fail once the tree reaches it; one that is not would be served in
    /// proofs.
    StrayTreeHashes { count: u64 },
    /// The stored hash of the Merkle tree at `index` (first stored with record `sequence`)
    /// is missing, or disagrees with the tree of the records' stored leaf hashes: either the
    /// hash was changed (the proofs and roots served from it would not verify, though the
    /// records may be intact), or a record's stored leaf was changed with its row (then
    /// [`Problem::CheckpointRoot`] says so too).
    StoredTreeHash { index: u64, sequence: u64 },
    /// The revoke record at `sequence` has no revocation row at the site: the attestor no
    /// longer enforces it (the row was deleted), though the log says the target is revoked.
    RevocationNotEnforced { sequence: u64 },
    /// The revocation row of the revoke record at `sequence` names another target.
    RevocationDiffers { sequence: u64 },
    /// A revocation row the site enforces with no revoke record at its `sequence`.
    RevocationNotLogged { sequence: u64 },
    /// The source was given as a site's own database, but holds none of the attestor's
    /// enforcement state for the log (no node state, no revocations): deleted or moved to
    /// another log, or not the site's database at all.
    EnforcementStateMissing,
    /// The record at `sequence` allows a node that the revoke record at `revoked_by`, earlier
    /// in the log, revoked: the node itself, or (for a renewal) the certificate the node
    /// renewed, its current one by the log's own records. The attestor refuses both, so the
    /// revocation was not enforced when this decision was made (its row deleted meanwhile,
    /// say). Judged from the records alone, so any copy of the log shows it.
    AllowAfterRevocation { sequence: u64, revoked_by: u64 },
    /// The site's state of a node differs from what the log's records wrote into it: `fields`
    /// names which (`last-sequence`: not the node's last allow or reset; `current-serial`,
    /// `spiffe-id`: not that record's; `ak-name`, `identity`: not the AK and EK facts of the
    /// enrollment that bound them; `counters`: not the TPM counters and clock of the last
    /// allow's quote; `log`: the state belongs to another log). The attestor decides
    /// renewals and re-enrollments against this state, so an edited one lets another TPM or
    /// certificate renew as the node, or a rolled-back TPM pass.
    NodeStateDiffers {
        node_id: String,
        last_sequence: u64,
        fields: Vec<String>,
    },
    /// A hub revocation list the site keeps, above the newest that verifies, does not
    /// verify with a witness key certified under the root: written by someone else (the
    /// site passes over it).
    HubRevocationList { sequence: u64, reason: String },
    /// An entry of the latest hub revocation list the site keeps (`node:<id>` or
    /// `serial:<hex>`) is not revoked in the database: un-revoked since the site applied it
    /// (the log's end rolled back with its revocation rows, say).
    HubRevocationNotEnforced { list_sequence: u64, target: String },
    /// The site keeps a state for a node no allow or reset record of the log wrote.
    NodeStateNotLogged { node_id: String, last_sequence: u64 },
    /// The log allowed this node, but the site keeps no state for it (deleted: its next
    /// enrollment is then decided without its history, as an unlogged reset would be).
    /// Reported only for a source taken as the site's database.
    NodeStateMissing { node_id: String },
}

impl Problem {
    /// The record this problem names exactly, if any.
    pub fn sequence(&self) -> Option<u64> {
        match self {
            Problem::MissingRecord { sequence }
            | Problem::MissingRecords {
                first: sequence, ..
            }
            | Problem::LeafMismatch { sequence }
            | Problem::EvidenceMissing { sequence, .. }
            | Problem::EvidenceMismatch { sequence, .. }
            | Problem::EventLogMissing { sequence, .. }
            | Problem::EventLogMismatch { sequence, .. } => Some(*sequence),
            Problem::CheckpointBeyondLog { records, .. } => Some(*records),
            Problem::CheckpointRoot { .. }
            | Problem::KeyCertificate { .. }
            | Problem::CheckpointSignature { .. }
            | Problem::CheckpointRow { .. }
            | Problem::CheckpointFork { .. }
            | Problem::LogHead { .. }
            | Problem::StrayTreeHashes { .. }
            | Problem::StoredTreeHash { .. }
            | Problem::RevocationNotEnforced { .. }
            | Problem::RevocationDiffers { .. }
            | Problem::RevocationNotLogged { .. }
            | Problem::EnforcementStateMissing
            | Problem::HubRevocationList { .. }
            | Problem::HubRevocationNotEnforced { .. }
            // A decision that should not have been made, not an altered record: it names
            // its record, but is not the first *bad* one.
            | Problem::AllowAfterRevocation { .. }
            | Problem::NodeStateDiffers { .. }
            | Problem::NodeStateMissing { .. }
            | Problem::NodeStateNotLogged { .. } => None,
        }
    }

    /// The first record of the range this problem puts in doubt, if it names a range.
    fn suspect_from(&self) -> Option<u64> {
        match self {
            Problem::CheckpointRoot { first_suspect, .. } => Some(*first_suspect),
            _ => None,
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub origin: String,
    /// Records read.
    pub records: u64,
    /// Log key certificates that verified against the roots.
    pub certified_keys: usize,
    /// Checkpoints whose signature verified and whose root the records reproduce.
    pub checkpoints_verified: usize,
    /// Checkpoints the auditor gave ([`verify_against`]) besides those the source keeps;
    /// each counts in `checkpoints_verified` only if the log reproduces it.
    pub checkpoints_given: usize,
    /// The largest such checkpoint's size: records up to it are proven as signed.
    pub verified_size: u64,
    /// Records after the last signed checkpoint (not yet covered by a signature).
    pub unsigned_tail: u64,
    /// The revocation rows the site enforces, checked against the revoke records; `None`
    /// when the source holds none (a hub's replica, an archive, the Audit service).
    pub revocations_checked: Option<u64>,
    /// The node states the site keeps, checked against the records that wrote them; `None`
    /// when the source holds none (as for `revocations_checked`).
    pub node_states_checked: Option<u64>,
    /// Of those, the states whose AK, identity facts and counters could not be derived from
    /// the evidence (an AK this auditor does not accept, say) and were not compared.
    pub node_states_not_derived: u64,
    /// Nodes the log allowed for which the source keeps no state (the first 100, by id).
    pub nodes_without_state: Vec<String>,
    /// How many there are.
    pub nodes_without_state_count: u64,
    /// The first bad record: the lowest sequence a problem names exactly (an edited,
    /// missing or moved record, swapped evidence); failing that, the start of the first
    /// range a checkpoint puts in doubt (records changed together with their stored leaf
    /// hashes are only caught by the checkpoint after them).
    pub first_bad_sequence: Option<u64>,
    /// Whether a problem names `first_bad_sequence` exactly (else it starts a range in
    /// doubt).
    pub first_bad_exact: bool,
    pub problems: Vec<Problem>,
    /// Problems beyond those listed.
    pub problems_not_listed: u64,
    #[serde(skip)]
    first_exact: Option<u64>,
    #[serde(skip)]
    first_suspect: Option<u64>,
}

impl VerifyReport {
    /// True when nothing was found wrong and at least one checkpoint verified.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.problems_not_listed == 0 && self.checkpoints_verified > 0
    }

    /// For a source the auditor knows to be a site's own database: its enforcement state
    /// must be there to be checked. Without it ([`revocations_checked`] is `None`, as for a
    /// copy of the log) this adds [`Problem::EnforcementStateMissing`]: whoever deleted
    /// every node and revocation row, or moved them to another log, does not get a site's
    /// database passed off as a copy.
    ///
    /// Likewise each node the log allowed that has no state there is
    /// [`Problem::NodeStateMissing`].
    ///
    /// [`revocations_checked`]: Self::revocations_checked
    pub fn expect_enforcement_state(&mut self) {
        if self.revocations_checked.is_none() {
            self.add(Problem::EnforcementStateMissing);
        }
        for node_id in self.nodes_without_state.clone() {
            self.add(Problem::NodeStateMissing { node_id });
        }
        let unlisted = self
            .nodes_without_state_count
            .saturating_sub(self.nodes_without_state.len() as u64);
        self.problems_not_listed += unlisted;
    }

    /// Adds what [`check_hub_revocations`](crate::check_hub_revocations) found on a site's
    /// own database: a kept list that does not verify, and each entry not enforced.
    pub fn add_hub_revocations(&mut self, checked: &crate::HubRevocationsReport) {
        for (sequence, reason) in &checked.unverifiable {
            self.add(Problem::HubRevocationList {
                sequence: *sequence,
                reason: reason.clone(),
            });
        }
        let Some(sequence) = checked.list_sequence else {
            return;
        };
        for target in &checked.not_enforced {
            self.add(Problem::HubRevocationNotEnforced {
                list_sequence: sequence,
                target: target.clone(),
            });
        }
        let unlisted = checked
            .not_enforced_count
            .saturating_sub(checked.not_enforced.len());
        self.problems_not_listed += unlisted as u64;
    }

    fn add(&mut self, problem: Problem) {
        if let Some(sequence) = problem.sequence() {
            self.first_exact = Some(self.first_exact.map_or(sequence, |s: u64| s.min(sequence)));
        }
        if let Some(sequence) = problem.suspect_from() {
            self.first_suspect = Some(
                self.first_suspect
                    .map_or(sequence, |s: u64| s.min(sequence)),
            );
        }
        self.first_bad_sequence = self.first_exact.or(self.first_suspect);
        self.first_bad_exact = self.first_exact.is_some();
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.problems_not_listed += 1;
        }
    }
}

/// Verifies the log `log` holds against `roots` (DER root certificates): the log key
/// certificates, every checkpoint's signature, every record's leaf and evidence, every
/// checkpoint's root against the tree recomputed from the records, every allow against the
/// revocations logged before it, and (for a source that keeps them) the stored tree hashes
/// against the tree of the stored leaves and the revocations enforced against the log.
pub async fn verify<S: LogSource>(log: &S, roots: &[Vec<u8>]) -> Result<VerifyReport, AuditError> {
    verify_against(log, roots, &[]).await
}

/// [`verify`], and the log must also reproduce each of `given`: signed checkpoints (notes)
/// the auditor saw before, from an earlier verify, a proof, or the hub. A log cut back
/// below one ([`Problem::CheckpointBeyondLog`]) or rewritten before it
/// ([`Problem::CheckpointRoot`]) is found even when every checkpoint and cosignature kept
/// with it was removed or rewritten to match. Each must verify with a key the log's
/// certificates certify under `roots` ([`AuditError::GivenCheckpoint`] otherwise).
pub async fn verify_against<S: LogSource>(
    log: &S,
    roots: &[Vec<u8>],
    given: &[String],
) -> Result<VerifyReport, AuditError> {
    let origin = log.origin().ok_or(AuditError::NoOrigin)?;
    let mut report = VerifyReport {
        origin: origin.clone(),
        ..VerifyReport::default()
    };
    let keys = certified_keys(log, roots, &origin, &mut report).await?;
    report.certified_keys = keys.len();
    let mut checkpoints = signed_checkpoints(log, &keys, &origin, &mut report).await?;
    for (index, note) in given.iter().enumerate() {
        let stored = StoredCheckpoint {
            size: 0,
            root_hash: [0; 32],
            signed: time::OffsetDateTime::UNIX_EPOCH,
            note: note.clone(),
        };
        let checkpoint = check_signature(&stored, &keys, &origin)
            .map_err(|reason| AuditError::GivenCheckpoint { index, reason })?;
        checkpoints.push(checkpoint);
    }
    report.checkpoints_given = given.len();
    checkpoints.sort_by_key(|c| c.size);
    checkpoints.dedup_by_key(|c| (c.size, c.root));
    let mut tree = Frontier::default();
    let mut pending = checkpoints.iter().peekable();
    let mut last_good = 0u64;
    // Checkpoints of the empty tree (an attestor's first start) are checked before any record.
    check_roots(&tree, 0, &mut pending, &mut report, &mut last_good)?;
    let mut kept = KeptHashes::default();
    // The revoke records read, by sequence, with the target each names (`None`: it names
    // neither a serial nor a node alone): checked against the revocation rows after the
    // pass, so that a revocation committed meanwhile (record and row together) is not
    // taken for a missing row.
    let mut revoked: Vec<(u64, Option<RevocationTarget>)> = Vec::new();
    let mut decided = Decided::default();
    let mut event_logs = EventLogs::default();
    // The sequence the next record should have; `tree` stops growing at the first missing
    // record (its leaf is unknown: no later root can be recomputed).
    let mut next = 0u64;
    let mut pages = crate::source::Pages::start(log, PAGE).await?;
    loop {
        let page = pages.next(log).await?;
        if page.is_empty() {
            break;
        }
        let evidence = page_evidence(log, &page).await?;
        event_logs
            .check_page(log, &page, &evidence, &mut report)
            .await?;
        let kept_hashes = kept.read(log, &page).await?;
        for stored in &page {
            // (Pages refuses a sequence at or below one already read.)
            match stored.sequence.saturating_sub(next) {
                0 => {}
                1 => report.add(Problem::MissingRecord { sequence: next }),
                _ => report.add(Problem::MissingRecords {
                    first: next,
                    next: stored.sequence,
                }),
            }
            let contiguous = tree.size == stored.sequence;
            next = stored.sequence.saturating_add(1);
            report.records += 1;
            let leaf = garrison_log::leaf_hash(stored.sequence, &stored.record)
                .map_err(AuditError::Log)?;
            if leaf != stored.leaf_hash {
                report.add(Problem::LeafMismatch {
                    sequence: stored.sequence,
                });
            }
            check_evidence(
                &evidence,
                stored.sequence,
                stored.record.evidence_digest.as_deref(),
                &mut report,
            );
            if stored.record.kind == RecordKind::Revoke {
                revoked.push((stored.sequence, logged_target(stored)));
            }
            decided.check(stored, &mut report);
            if contiguous {
                tree.push(Hash(leaf))?;
                kept.check(stored, kept_hashes.as_ref(), &mut report)?;
            }
            check_roots(&tree, next, &mut pending, &mut report, &mut last_good)?;
        }
    }
    check_head(log, next, tree.size, !checkpoints.is_empty(), &mut report).await?;
    check_revocations(log, revoked, next, &mut report).await?;
    if report.revocations_checked.is_some() {
        check_node_states(log, &mut decided, next, &mut report).await?;
    }
    for checkpoint in pending {
        report.add(Problem::CheckpointBeyondLog {
            size: checkpoint.size,
            records: next,
        });
    }
    report.unsigned_tail = report.records.saturating_sub(report.verified_size);
    Ok(report)
}

/// The stored tree hashes, checked against a tree of their own built from the records'
/// stored leaf hashes (what the writer built them from; an edited record is
/// [`Problem::LeafMismatch`] already, and would otherwise put every hash above its leaf in
/// doubt). The check stops at the first missing record, whose leaf it cannot know, and at
/// the end of the tree the source has built.
#[derive(Default)]
struct KeptHashes {
    tree: Frontier,
    stopped: bool,
}

/// What [`KeptHashes::read`] found for a page.
struct KeptPage {
    /// Records the source's stored tree covers.
    tree_size: u64,
    hashes: HashMap<u64, [u8; 32]>,
}

impl KeptHashes {
    /// The stored hashes the page's records add, by index, for the records that follow on
    /// from the tree so far without a gap (at most a page's worth: about two per record);
    /// `None` if the source keeps none or the check has stopped.
    async fn read<S: LogSource>(
        &self,
        log: &S,
        page: &[StoredRecord],
    ) -> Result<Option<KeptPage>, AuditError> {
        let start = self.tree.size;
        let following = page
            .iter()
            .zip(start..)
            .take_while(|(stored, sequence)| stored.sequence == *sequence)
            .count() as u64;
        if self.stopped || following == 0 {
            return Ok(None);
        }
        let first = tlog_tiles::stored_hash_index(0, start);
        let end = tlog_tiles::stored_hash_count(start + following);
        Ok(log
            .stored_tree_hashes(first, end)
            .await?
            .map(|kept| KeptPage {
                tree_size: kept.tree_size,
                hashes: kept.hashes.into_iter().collect(),
            }))
    }

    /// Adds `stored`'s leaf and compares the hashes that adds with `kept`.
    fn check(
        &mut self,
        stored: &StoredRecord,
        kept: Option<&KeptPage>,
        report: &mut VerifyReport,
    ) -> Result<(), AuditError> {
        let Some(kept) = kept else {
            return Ok(());
        };
        if self.stopped || self.tree.size != stored.sequence || stored.sequence >= kept.tree_size {
            self.stopped = true;
            return Ok(());
        }
        let (start, added) = self.tree.push(Hash(stored.leaf_hash))?;
        for (index, hash) in (start..).zip(added) {
            if kept.hashes.get(&index) != Some(&hash.0) {
                report.add(Problem::StoredTreeHash {
                    index,
                    sequence: stored.sequence,
                });
            }
        }
        Ok(())
    }
}

/// Checks the source's head (if it keeps one: a database or an archive) against the pass:
/// `next` is one past the last record read, `contiguous` the records before the first gap,
/// `signed` whether any checkpoint with a good signature is kept.
///
/// * `next_sequence` must be `next`, or ahead of it with the records it counts there
///   (appended since the pass read the end: the head is read first, so they are visible).
/// * `tree_size` must be `next_sequence`; or stop at the first gap (an archive's tree stops
///   there, and the gap is a problem already); or be short of it with no checkpoint signed
///   at all (a log migrated from before the tree that no attestor has opened since: an
///   attestor builds the whole tree before it signs anything, and keeps it whole). With any
///   checkpoint, a tree short of the records means the head was lowered.
async fn check_head<S: LogSource>(
    log: &S,
    next: u64,
    contiguous: u64,
    signed: bool,
    report: &mut VerifyReport,
) -> Result<(), AuditError> {
    let Some(head) = log.stored_tree_hashes(0, 0).await? else {
        return Ok(());
    };
    let appended =
        head.next_sequence > next && !log.records_after(next.checked_sub(1), 1).await?.is_empty();
    let sequence_ok = head.next_sequence == next || appended;
    let tree_ok = head.tree_size == head.next_sequence
        || (contiguous < next && head.tree_size == contiguous)
        || (head.tree_size < head.next_sequence && !signed);
    if let Some(stray) = log.stray_tree_hashes().await?
        && stray > 0
    {
        report.add(Problem::StrayTreeHashes { count: stray });
    }
    if !(sequence_ok && tree_ok) {
        report.add(Problem::LogHead {
            next_sequence: head.next_sequence,
            tree_size: head.tree_size,
            records_end: next,
        });
    }
    Ok(())
}

/// Compares the recomputed root with every checkpoint of at most `next` records (the
/// sequence the next record should have). After a missing record `tree` stopped before it,
/// and no later root can be recomputed: each such checkpoint puts the records after the
/// last one that held in doubt.
fn check_roots<'a>(
    tree: &Frontier,
    next: u64,
    pending: &mut std::iter::Peekable<std::slice::Iter<'a, Verified>>,
    report: &mut VerifyReport,
    last_good: &mut u64,
) -> Result<(), AuditError> {
    // Called after every record, so no checkpoint is ever passed over: the first one whose
    // size is the tree's is compared now.
    let mut due = Vec::new();
    while let Some(checkpoint) = pending.next_if(|c| c.size <= next) {
        due.push(checkpoint);
    }
    if due.is_empty() {
        return Ok(());
    }
    let root = if due.iter().any(|c| c.size == tree.size) {
        Some(tree.root()?)
    } else {
        None
    };
    let reproduced = |c: &Verified| c.size == tree.size && root == Some(c.root);
    let suspect_from = *last_good;
    for checkpoint in &due {
        if reproduced(checkpoint) {
            report.checkpoints_verified += 1;
            report.verified_size = report.verified_size.max(checkpoint.size);
            *last_good = checkpoint.size;
        }
    }
    for checkpoint in due.iter().filter(|c| !reproduced(c)) {
        // Another checkpoint of the same size that the records reproduce: the records are
        // not in doubt, the log key signed two trees of that size.
        if due
            .iter()
            .any(|c| c.size == checkpoint.size && reproduced(c))
        {
            report.add(Problem::CheckpointFork {
                size: checkpoint.size,
            });
        } else {
            report.add(Problem::CheckpointRoot {
                size: checkpoint.size,
                first_suspect: suspect_from,
            });
        }
    }
    Ok(())
}

/// What the records read so far revoked, and what each node's last allow or reset wrote
/// into its state: enough to tell an allow the attestor should have refused
/// ([`Problem::AllowAfterRevocation`]) and to check the node states a site keeps. Memory
/// grows with the nodes and revocations of the log (a few hundred bytes a node), not with
/// its records.
#[derive(Default)]
struct Decided {
    /// Revoked node → the revoke record.
    nodes: HashMap<String, u64>,
    /// Revoked serial (as logged: lowercase) → the revoke record.
    serials: HashMap<String, u64>,
    /// Node → what its last allowed enrollment or renewal, or reset, wrote into its state.
    state: HashMap<String, NodeWritten>,
}

/// What the records wrote into a node's state, as [`Decided`] keeps it.
struct NodeWritten {
    /// The node's last allow or reset.
    sequence: u64,
    /// That allow's certificate (none after a reset).
    serial: Option<String>,
    /// The SPIFFE ID of the node's last allow (a reset keeps it).
    spiffe_id: Option<String>,
    /// The last allow's evidence: its quote gave the counters (none after a reset).
    evidence_digest: Option<String>,
    /// The evidence of the enrollment that bound the node's AK and identity facts (a
    /// renewal quotes with the AK bound, a reset keeps the facts).
    bound_by: Option<String>,
    reset: bool,
    /// Whether the site keeps a state for the node ([`check_node_states`]).
    kept: bool,
}

impl Decided {
    fn check(&mut self, stored: &StoredRecord, report: &mut VerifyReport) {
        let record = &stored.record;
        let sequence = stored.sequence;
        match (record.kind, record.decision, record.node_id.as_deref()) {
            (RecordKind::Revoke, _, _) => match logged_target(stored) {
                Some(RevocationTarget::Node(node)) => {
                    self.nodes.entry(node).or_insert(sequence);
                }
                Some(RevocationTarget::Serial(serial)) => {
                    self.serials.entry(serial).or_insert(sequence);
                }
                None => {}
            },
            (kind @ (RecordKind::Enroll | RecordKind::Renew), Decision::Allow, Some(node)) => {
                let before = self.state.get(node);
                // A renewal presents the node's current certificate; an enrollment proves
                // the TPM afresh, so only a revocation of the node refuses it.
                let presented = match kind {
                    RecordKind::Renew => before.and_then(|s| s.serial.as_ref()),
                    _ => None,
                };
                let revoked_by = self
                    .nodes
                    .get(node)
                    .or_else(|| presented.and_then(|serial| self.serials.get(serial)));
                if let Some(&revoked_by) = revoked_by {
                    report.add(Problem::AllowAfterRevocation {
                        sequence,
                        revoked_by,
                    });
                }
                // Updated in place: a node's key and strings are allocated once, not per
                // record (allocation churn over millions of records cost more than the check).
                match self.state.get_mut(node) {
                    Some(slot) => {
                        slot.sequence = sequence;
                        slot.serial.clone_from(&record.cert_serial);
                        slot.spiffe_id.clone_from(&record.spiffe_id);
                        slot.evidence_digest.clone_from(&record.evidence_digest);
                        // A renewal quotes with the AK bound; an enrollment binds anew.
                        if kind != RecordKind::Renew {
                            slot.bound_by.clone_from(&record.evidence_digest);
                        }
                        slot.reset = false;
                    }
                    None => {
                        self.state.insert(
                            node.to_owned(),
                            NodeWritten {
                                sequence,
                                serial: record.cert_serial.clone(),
                                spiffe_id: record.spiffe_id.clone(),
                                evidence_digest: record.evidence_digest.clone(),
                                bound_by: record.evidence_digest.clone(),
                                reset: false,
                                kept: false,
                            },
                        );
                    }
                }
            }
            (RecordKind::NodeReset, Decision::Allow, Some(node)) => {
                let before = self.state.remove(node);
                self.state.insert(
                    node.to_owned(),
                    NodeWritten {
                        sequence,
                        serial: None,
                        spiffe_id: before.as_ref().and_then(|b| b.spiffe_id.clone()),
                        evidence_digest: None,
                        bound_by: before.and_then(|b| b.bound_by),
                        reset: true,
                        kept: false,
                    },
                );
            }
            _ => {}
        }
    }
}

/// Node states read per call.
const NODE_PAGE: u32 = 1_000;

/// Node ids listed in [`VerifyReport::nodes_without_state`] at most.
const MAX_NODES_WITHOUT_STATE: usize = 100;

/// Checks the node states the site keeps (if the source holds them) against what the log's
/// records wrote into each: the record it names must be the node's last allow or reset; its
/// serial and SPIFFE ID that record's; its AK and identity facts those of the enrollment
/// that bound them; its TPM counters and clock those of the last allow's quote (zero after
/// a reset). A state written by a record at or beyond `next` (appended after the pass read
/// the log's end) is checked to name such a record. Nodes with allows but no state are
/// listed in the report (a problem only for a source taken as the site's database:
/// [`VerifyReport::expect_enforcement_state`]).
async fn check_node_states<S: LogSource>(
    log: &S,
    decided: &mut Decided,
    next: u64,
    report: &mut VerifyReport,
) -> Result<(), AuditError> {
    let mut after: Option<String> = None;
    let mut checked = 0u64;
    loop {
        let Some(page) = log.node_states(after.as_deref(), NODE_PAGE).await? else {
            return Ok(());
        };
        let Some(last) = page.last() else {
            break;
        };
        if after.as_deref() == Some(last.state.node_id.as_str()) {
            return Err(AuditError::Log(garrison_log::LogError::Corrupt {
                column: "nodes.node_id",
                found: "a page of node states that does not advance".to_owned(),
            }));
        }
        after = Some(last.state.node_id.clone());
        let evidence = node_evidence(log, decided, &page).await?;
        for kept in &page {
            let node_id = &kept.state.node_id;
            let written = decided.state.get_mut(node_id);
            if !kept.this_log && written.is_none() {
                // Another log's node, in a database several logs share: that log's auditors
                // check it. Unless no record of any log wrote it (a row naming a log or a
                // record that does not exist): it is enforced here all the same.
                if !kept.record_held {
                    report.add(Problem::NodeStateNotLogged {
                        node_id: node_id.clone(),
                        last_sequence: kept.last_sequence,
                    });
                }
                continue;
            }
            if kept.last_sequence >= next {
                // Written after the pass read the log's end, if the record it names is there.
                if !newer_write_is_logged(log, kept).await? {
                    report.add(Problem::NodeStateNotLogged {
                        node_id: node_id.clone(),
                        last_sequence: kept.last_sequence,
                    });
                }
                if let Some(written) = written {
                    written.kept = true;
                }
                continue;
            }
            checked += 1;
            let Some(written) = written else {
                report.add(Problem::NodeStateNotLogged {
                    node_id: node_id.clone(),
                    last_sequence: kept.last_sequence,
                });
                continue;
            };
            written.kept = true;
            let fields = differing_fields(kept, written, &evidence, report);
            if !fields.is_empty() {
                report.add(Problem::NodeStateDiffers {
                    node_id: node_id.clone(),
                    last_sequence: kept.last_sequence,
                    fields,
                });
            }
        }
    }
    report.node_states_checked = Some(checked);
    let mut without: Vec<&String> = decided
        .state
        .iter()
        .filter(|(_, written)| !written.kept && !written.reset)
        .map(|(node, _)| node)
        .collect();
    without.sort_unstable();
    report.nodes_without_state_count = without.len() as u64;
    report.nodes_without_state = without
        .into_iter()
        .take(MAX_NODES_WITHOUT_STATE)
        .cloned()
        .collect();
    Ok(())
}

/// The evidence a page of node states is checked with (each node's binding enrollment and
/// last allow), decoded, by digest; only bytes that hash to their digest (swapped evidence
/// is the pass's problem, and is not compared).
async fn node_evidence<S: LogSource>(
    log: &S,
    decided: &Decided,
    page: &[KeptNodeState],
) -> Result<HashMap<String, EvidenceRecord>, AuditError> {
    let mut seen = HashSet::new();
    let digests: Vec<String> = page
        .iter()
        .filter_map(|kept| decided.state.get(&kept.state.node_id))
        .flat_map(|written| [written.bound_by.clone(), written.evidence_digest.clone()])
        .flatten()
        .filter(|digest| seen.insert(digest.clone()))
        .collect();
    if digests.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(log
        .evidence_many(&digests)
        .await?
        .into_iter()
        .filter(|(digest, bytes)| garrison_log::evidence_digest(bytes) == *digest)
        .filter_map(|(digest, bytes)| Some((digest, EvidenceRecord::decode(&bytes).ok()?)))
        .collect())
}

/// Whether the record a node state names, at or beyond the end the pass read, is there and
/// is that node's.
async fn newer_write_is_logged<S: LogSource>(
    log: &S,
    kept: &KeptNodeState,
) -> Result<bool, AuditError> {
    let after = kept.last_sequence.checked_sub(1);
    let found = log.records_after(after, 1).await?;
    Ok(found.first().is_some_and(|stored| {
        stored.sequence == kept.last_sequence
            && stored.record.node_id.as_deref() == Some(kept.state.node_id.as_str())
    }))
}

/// The fields of `kept` that differ from what the records wrote (`written`), as
/// [`Problem::NodeStateDiffers`] names them. Fields derived from evidence that cannot be
/// read (an AK this crate does not accept, say) are not compared, and counted.
fn differing_fields(
    kept: &KeptNodeState,
    written: &NodeWritten,
    evidence: &HashMap<String, EvidenceRecord>,
    report: &mut VerifyReport,
) -> Vec<String> {
    let state = &kept.state;
    let mut fields = Vec::new();
    let mut differs = |same: bool, field: &str| {
        if !same {
            fields.push(field.to_owned());
        }
    };
    differs(kept.this_log, "log");
    differs(written.sequence == kept.last_sequence, "last-sequence");
    differs(written.serial == state.current_serial, "current-serial");
    differs(
        written.spiffe_id.as_deref() == Some(state.spiffe_id.as_str()),
        "spiffe-id",
    );
    let binding = written.bound_by.as_ref().and_then(|d| evidence.get(d));
    let mut derived_all = true;
    // The AK: none bound after a reset; otherwise the binding enrollment's.
    let ak_name = if written.reset {
        Some(Vec::new())
    } else {
        binding.and_then(ak_name_of)
    };
    match ak_name {
        Some(name) => differs(name == state.ak_name, "ak-name"),
        None => derived_all = false,
    }
    // The EK facts: the binding enrollment's (a reset keeps them).
    match binding.and_then(|b| recorded_identity(&state.node_id, b)) {
        Some(facts) => differs(same_identity(&facts, &state.identity), "identity"),
        None => derived_all = false,
    }
    // The counters and clock: zero after a reset; otherwise the last allow's quote.
    let counters = if written.reset {
        Some((0, 0, 0))
    } else {
        written
            .evidence_digest
            .as_ref()
            .and_then(|d| evidence.get(d))
            .and_then(|last| quoted(last, &AkPolicy::default()).ok())
            .map(|(_, quote)| (quote.reset_count, quote.restart_count, quote.clock))
    };
    match counters {
        Some(counters) => differs(
            counters == (state.reset_count, state.restart_count, state.clock),
            "counters",
        ),
        None => derived_all = false,
    }
    if !derived_all {
        report.node_states_not_derived += 1;
    }
    fields
}

/// The TPM name of an evidence record's AK, if it parses.
fn ak_name_of(evidence: &EvidenceRecord) -> Option<Vec<u8>> {
    let public = garrison_evidence::TpmPublic::from_tpm2b_or_tpmt(&evidence.ak_public).ok()?;
    Some(public.name().as_bytes().to_vec())
}

/// Whether a kept identity (the EK facts and the trust basis the attestor found) holds the
/// facts derived from the evidence. The trust basis is how the attestor verified the EK
/// then, which the evidence alone does not say, and is not compared.
fn same_identity(derived: &str, kept: &str) -> bool {
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    let (Some(derived), Some(mut kept)) = (parse(derived), parse(kept)) else {
        return false;
    };
    if let Some(fields) = kept.as_object_mut() {
        fields.remove("trust_basis");
    }
    derived == kept
}

/// The target a revoke record names: its serial or its node, not both.
fn logged_target(stored: &StoredRecord) -> Option<RevocationTarget> {
    match (&stored.record.cert_serial, &stored.record.node_id) {
        (Some(serial), None) => Some(RevocationTarget::Serial(serial.clone())),
        (None, Some(node)) => Some(RevocationTarget::Node(node.clone())),
        _ => None,
    }
}

/// Checks the revocation rows the site enforces (if the source holds them) against the
/// `revoked` records read, both ways: each revoke record must have its row naming exactly
/// its target (the attestor compares serials as stored, lowercase), and no row may stand
/// without one. Rows at or beyond `next` belong to records appended after the pass read the
/// log's end, and are left out.
async fn check_revocations<S: LogSource>(
    log: &S,
    revoked: Vec<(u64, Option<RevocationTarget>)>,
    next: u64,
    report: &mut VerifyReport,
) -> Result<(), AuditError> {
    let Some(rows) = log.enforced_revocations().await? else {
        return Ok(());
    };
    let mut enforced: HashMap<u64, RevocationTarget> = rows
        .into_iter()
        .filter(|(sequence, _)| *sequence < next)
        .collect();
    report.revocations_checked = Some(enforced.len() as u64);
    for (sequence, logged) in revoked {
        match enforced.remove(&sequence) {
            None => report.add(Problem::RevocationNotEnforced { sequence }),
            Some(kept) if Some(&kept) != logged.as_ref() => {
                report.add(Problem::RevocationDiffers { sequence });
            }
            Some(_) => {}
        }
    }
    let mut not_logged: Vec<u64> = enforced.into_keys().collect();
    not_logged.sort_unstable();
    for sequence in not_logged {
        report.add(Problem::RevocationNotLogged { sequence });
    }
    Ok(())
}

/// The evidence the page's records name, each distinct digest asked for once, in one
/// [`LogSource::evidence_many`] call (none if no record names any).
async fn page_evidence<S: LogSource>(
    log: &S,
    page: &[StoredRecord],
) -> Result<HashMap<String, Vec<u8>>, AuditError> {
    let mut seen = HashSet::new();
    let digests: Vec<String> = page
        .iter()
        .filter_map(|stored| stored.record.evidence_digest.as_deref())
        .filter(|digest| seen.insert(*digest))
        .map(str::to_owned)
        .collect();
    if digests.is_empty() {
        return Ok(HashMap::new());
    }
    log.evidence_many(&digests).await
}

/// The event logs the records' evidence names, checked once each: held (for an allow) and
/// hashing to the digest named (whenever held).
#[derive(Default)]
struct EventLogs {
    /// Digests found held and intact. Cleared when it reaches [`EventLogs::REMEMBERED`]
    /// (a fleet shares a few logs; a log of distinct ones is then checked again, not
    /// remembered without bound).
    intact: HashSet<String>,
}

/// The one field of an evidence record the event-log check reads (an unproven request has
/// none; any other field is skipped unread).
#[derive(serde::Deserialize)]
struct NamesEventLog {
    #[serde(default)]
    event_log_sha256: Option<String>,
}

impl EventLogs {
    const REMEMBERED: usize = 100_000;
    /// Event logs fetched per call.
    const FETCHED_AT_ONCE: usize = 16;

    /// Checks the event logs named by `page`'s enrollment and renewal evidence (`evidence`:
    /// the page's, by digest; evidence that is missing or does not hash to its digest is a
    /// problem already and is not read).
    async fn check_page<S: LogSource>(
        &mut self,
        log: &S,
        page: &[StoredRecord],
        evidence: &HashMap<String, Vec<u8>>,
        report: &mut VerifyReport,
    ) -> Result<(), AuditError> {
        if self.intact.len() >= Self::REMEMBERED {
            self.intact.clear();
        }
        // (sequence, event log digest, whether the record is an allow)
        let mut named: Vec<(u64, String, bool)> = Vec::new();
        for stored in page {
            let record = &stored.record;
            if !matches!(record.kind, RecordKind::Enroll | RecordKind::Renew) {
                continue;
            }
            let Some(bytes) = record
                .evidence_digest
                .as_deref()
                .and_then(|digest| evidence.get(digest))
                .filter(|bytes| {
                    record.evidence_digest.as_deref().is_some_and(|d| {
                        garrison_log::evidence_digest(bytes) == d.to_ascii_lowercase()
                    })
                })
            else {
                continue;
            };
            let Ok(names) = serde_json::from_slice::<NamesEventLog>(bytes) else {
                continue;
            };
            if let Some(digest) = names.event_log_sha256.filter(|d| !d.is_empty()) {
                named.push((stored.sequence, digest, record.decision == Decision::Allow));
            }
        }
        let mut wanted: Vec<String> = named
            .iter()
            .map(|(_, digest, _)| digest.clone())
            .filter(|digest| !self.intact.contains(digest))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        // A few at a time, each hashed and let go: event logs can be large, and a page can
        // name thousands of distinct ones.
        let mut altered = HashSet::new();
        for chunk in wanted.chunks(Self::FETCHED_AT_ONCE) {
            for (digest, bytes) in log.evidence_many(chunk).await? {
                if garrison_log::evidence_digest(&bytes) == digest.to_ascii_lowercase() {
                    self.intact.insert(digest);
                } else {
                    altered.insert(digest);
                }
            }
        }
        for (sequence, digest, allow) in named {
            if self.intact.contains(&digest) {
                continue;
            }
            if altered.contains(&digest) {
                report.add(Problem::EventLogMismatch { sequence, digest });
            } else if allow {
                report.add(Problem::EventLogMissing { sequence, digest });
            }
        }
        Ok(())
    }
}

/// Checks the record's evidence, as [`LogSource::evidence`] would answer for its digest, in
/// `evidence` (the page's, keyed by digest as the records name it).
fn check_evidence(
    evidence: &HashMap<String, Vec<u8>>,
    sequence: u64,
    digest: Option<&str>,
    report: &mut VerifyReport,
) {
    let Some(digest) = digest else {
        return;
    };
    match evidence.get(digest) {
        None => report.add(Problem::EvidenceMissing {
            sequence,
            digest: digest.to_owned(),
        }),
        Some(bytes) if garrison_log::evidence_digest(bytes) != digest.to_ascii_lowercase() => {
            report.add(Problem::EvidenceMismatch {
                sequence,
                digest: digest.to_owned(),
            })
        }
        Some(_) => {}
    }
}

/// The Ed25519 keys the log's key certificates certify under `roots`.
async fn certified_keys<S: LogSource>(
    log: &S,
    roots: &[Vec<u8>],
    origin: &str,
    report: &mut VerifyReport,
) -> Result<Vec<[u8; 32]>, AuditError> {
    let mut keys = Vec::new();
    for chain_pem in log.log_key_certificates().await? {
        let checked = LogKeyCertificate::from_pem(&chain_pem)
            .and_then(|certificate| certificate.verify(roots, origin));
        match checked {
            Ok(key) if !keys.contains(&key) => keys.push(key),
            Ok(_) => {}
            Err(e) => report.add(Problem::KeyCertificate {
                reason: e.to_string(),
            }),
        }
    }
    Ok(keys)
}

/// A checkpoint whose signature verified.
struct Verified {
    size: u64,
    root: [u8; 32],
}

/// Every kept checkpoint whose signature verifies with one of `keys`, by size.
async fn signed_checkpoints<S: LogSource>(
    log: &S,
    keys: &[[u8; 32]],
    origin: &str,
    report: &mut VerifyReport,
) -> Result<Vec<Verified>, AuditError> {
    let mut verified = Vec::new();
    for stored in log.checkpoints().await? {
        match check_signature(&stored, keys, origin) {
            Ok(checkpoint) => {
                if (checkpoint.size, checkpoint.root) != (stored.size, stored.root_hash) {
                    report.add(Problem::CheckpointRow {
                        size: stored.size,
                        signed_size: checkpoint.size,
                    });
                }
                verified.push(checkpoint);
            }
            Err(reason) => report.add(Problem::CheckpointSignature {
                size: stored.size,
                reason,
            }),
        }
    }
    verified.sort_by_key(|c| c.size);
    // The same signed note kept twice (copied into another row) is one checkpoint.
    verified.dedup_by_key(|c| (c.size, c.root));
    Ok(verified)
}

fn check_signature(
    stored: &StoredCheckpoint,
    keys: &[[u8; 32]],
    origin: &str,
) -> Result<Verified, String> {
    let mut last_error = "no certified log key".to_owned();
    for key in keys {
        match verify_checkpoint(&stored.note, origin, key) {
            // The signed text, not the database's size and root columns, is what counts.
            Ok(checkpoint) => {
                return Ok(Verified {
                    size: checkpoint.size,
                    root: checkpoint.root,
                });
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(last_error)
}

/// The right edge of the tree being recomputed: the stored hashes `tlog_tiles` needs to add
/// the next leaf and to compute the root, and nothing else.
#[derive(Default)]
struct Frontier {
    size: u64,
    hashes: HashMap<u64, Hash>,
}

impl HashReader for Frontier {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.hashes
                    .get(i)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Frontier {
    /// Adds `leaf`; returns the index of the first stored hash that adds, and the hashes.
    fn push(&mut self, leaf: Hash) -> Result<(u64, Vec<Hash>), AuditError> {
        let n = self.size;
        let new = tlog_tiles::stored_hashes_for_record_hash(n, leaf, self).map_err(tree_error)?;
        let start = tlog_tiles::stored_hash_index(0, n);
        self.hashes.extend((start..).zip(new.iter().copied()));
        self.size = n + 1;
        let keep: std::collections::HashSet<u64> =
            tlog_tiles::sub_tree_index(0, self.size, Vec::new())
                .into_iter()
                .collect();
        self.hashes.retain(|i, _| keep.contains(i));
        Ok((start, new))
    }

    fn root(&self) -> Result<[u8; 32], AuditError> {
        Ok(tlog_tiles::tree_hash(self.size, self)
            .map_err(tree_error)?
            .0)
    }
}

fn tree_error(e: tlog_tiles::Error) -> AuditError {
    AuditError::Tree(e.to_string())
}
