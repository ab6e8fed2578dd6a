//! `garrison audit replay`: re-run the appraisal ([`garrison_appraisal`], the code the
//! attestor decides with) over the evidence stored beside each decision record, with the
//! policy bundle that was in force then or a proposed one, and compare verdicts.
//!
//! What replay rebuilds, and from what:
//!
//! * **The policy in force** at a record is the bundle of the newest allowed `policy-update`
//!   record before it (its evidence is the signed archive), verified against the roots at
//!   that record's time, as the attestor verified it when it put it in force. Its digest
//!   must be the one the `policy-update` record names. A what-if bundle
//!   ([`ReplayOptions::policy`]) is verified at [`ReplayOptions::now`] instead and decides
//!   every record.
//! * **The node's history** (its bound AK, TPM counters, EK facts, last SPIFFE ID) is
//!   rebuilt from its earlier *logged* allows (not from replayed verdicts, so a what-if
//!   denial of an enrollment does not hide the renewals that followed it), and dropped at a
//!   `node-reset` record, as the attestor's node table is.
//! * **The EK** is what the stored EK certificate states
//!   ([`garrison_evidence::ek_as_recorded`]): the certificate must certify the stored EK and
//!   the EK must be the record's node, but the chain to the manufacturer is not checked
//!   again, because the log does not keep the intermediates the node sent.
//!
//! What replay assumes, because the log does not hold it (each is a [`ReplayOptions`] field):
//! the site's PCR selection (the attestor's default, PCRs 0-9, unless told), its AK policy
//! (no SHA-1), the protocol's field limits, and the maximum SVID lifetime (which only caps
//! the lifetime, never decides allow or deny; replay does not compare lifetimes). The facts a
//! node asserted about itself are not stored either: policy sees none on replay, so a policy
//! that decides on `input.node.asserted` may not replay.
//!
//! What cannot be replayed, and is reported as such with a stable code
//! ([`Unreplayable`]): a record without usable evidence (refused before the node proved
//! anything, or before it answered a challenge), a refusal the host made around the
//! appraisal (EK trust, credential activation, revocation, challenges, load), an event log
//! that was not kept (one that did not replay to its quote), a renewal whose node has no
//! logged allow before it, and any record for which no verified policy was in force.
//!
//! Replay takes the records' columns as the claim under test; that they are the records the
//! site signed is `verify`'s job, so run both.

use std::collections::HashMap;
use std::sync::Arc;

use garrison_appraisal::{
    Answer, Appraisal, BootCache, Enrollment, EvidenceRecord, FieldLimits, NodeHistory, Reason,
    SiteRules, Stage, UnprovenRequest, appraise_enrollment, appraise_renewal, check_ak, pcr_values,
};
use garrison_ca::TrustDomain;
use garrison_evidence::AkPolicy;
use garrison_log::{Decision, Record, RecordKind, StoredRecord};
use garrison_policy::{
    BundleLimits, EkFacts, EvalLimits, PolicyEngine, PolicyError, PolicyTrust, decode_archive,
    verify_bundle,
};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::{AuditError, LogSource};

/// Records read per query.
const PAGE: u32 = 1_000;
/// Event-log appraisals memoised across records (a fleet boots few distinct logs).
const BOOT_CACHE: usize = 16;

/// What replay needs that the log does not hold, and what to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// A proposed policy bundle (signed archive): decide every record with it instead of the
    /// bundle then in force ("what would this policy have decided?").
    pub policy: Option<Vec<u8>>,
    /// The time the proposed bundle is verified at (the auditor's now).
    pub now: OffsetDateTime,
    /// Only records at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only records before this time.
    pub until: Option<OffsetDateTime>,
    /// Only this node's records (EK hash, hex).
    pub node: Option<String>,
    /// SHA-256 PCRs the site's quotes cover (the site's `pcrs`; the attestor's default is
    /// 0-9).
    pub pcrs: Vec<u32>,
    /// The site's `max_svid_ttl` (caps lifetimes only; never changes a verdict).
    pub max_svid_ttl: Duration,
    /// The site's AK policy (the attestor's default accepts no SHA-1 signatures).
    pub ak_policy: AkPolicy,
    /// The protocol's field limits (`garrison_attestor::FIELD_LIMITS`).
    pub limits: FieldLimits,
}

impl ReplayOptions {
    /// Every record, each with the policy then in force, under the attestor's defaults:
    /// PCRs 0-9, no SHA-1 AKs, a 24 h maximum lifetime.
    pub fn new(now: OffsetDateTime, limits: FieldLimits) -> Self {
        ReplayOptions {
            policy: None,
            now,
            since: None,
            until: None,
            node: None,
            pcrs: (0..=9).collect(),
            max_svid_ttl: Duration::hours(24),
            ak_policy: AkPolicy::default(),
            limits,
        }
    }

    fn selects(&self, record: &Record) -> bool {
        self.since.is_none_or(|t| record.time >= t)
            && self.until.is_none_or(|t| record.time < t)
            && self.names_node(record)
    }

    /// Whether the record is of the node asked for (any node if none was).
    fn names_node(&self, record: &Record) -> bool {
        self.node.as_ref().is_none_or(|n| {
            record
                .node_id
                .as_ref()
                .is_some_and(|id| id.eq_ignore_ascii_case(n))
        })
    }
}

/// A verdict, as logged or as replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Allow or deny.
    pub decision: Decision,
    /// The refusal's stable reason code (`None` on allow).
    pub reason: Option<String>,
    /// The identity allowed (on allow).
    pub spiffe_id: Option<String>,
    /// The policy bundle that ran, if it ran.
    pub policy_digest: Option<String>,
}

impl Verdict {
    fn logged(record: &Record) -> Self {
        let allowed = record.decision == Decision::Allow;
        Verdict {
            decision: record.decision,
            reason: (!allowed).then(|| record.reasons.first().cloned().unwrap_or_default()),
            spiffe_id: allowed.then(|| record.spiffe_id.clone()).flatten(),
            policy_digest: record.policy_digest.clone(),
        }
    }

    fn replayed(appraisal: &Appraisal) -> Self {
        match &appraisal.verdict {
            Ok(admission) => Verdict {
                decision: Decision::Allow,
                reason: None,
                spiffe_id: Some(admission.spiffe_id.to_string()),
                policy_digest: appraisal.policy_digest.clone(),
            },
            Err(refusal) => Verdict {
                decision: Decision::Deny,
                reason: Some(refusal.reason.code().to_owned()),
                spiffe_id: None,
                policy_digest: appraisal.policy_digest.clone(),
            },
        }
    }

    /// Short form for tables: `allow`, `deny(policy-deny)`.
    pub fn summary(&self) -> String {
        match &self.reason {
            Some(reason) => format!("{}({reason})", self.decision.as_str()),
            None => self.decision.as_str().to_owned(),
        }
    }
}

/// Which parts of two verdicts differ: `decision`, `reason`, `spiffe-id`, `policy-digest`.
/// With a what-if policy only the first two count (the digest is another by design).
fn differences(logged: &Verdict, replayed: &Verdict, what_if: bool) -> Vec<&'static str> {
    let mut found = Vec::new();
    if logged.decision != replayed.decision {
        found.push("decision");
    } else if logged.reason != replayed.reason {
        found.push("reason");
    }
    if !what_if {
        if logged.decision == Decision::Allow
            && replayed.decision == Decision::Allow
            && logged.spiffe_id != replayed.spiffe_id
        {
            found.push("spiffe-id");
        }
        if logged.policy_digest != replayed.policy_digest {
            found.push("policy-digest");
        }
    }
    found
}

/// Why a record cannot be replayed. Codes are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Unreplayable {
    /// The record names no evidence.
    NoEvidence,
    /// The record names evidence the log does not hold.
    EvidenceMissing,
    /// The request was refused before its sender proved anything: only its digest is kept.
    UnprovenRequest,
    /// The evidence does not decode as an evidence record, or does not hold its record's
    /// kind of exchange.
    EvidenceUndecodable,
    /// The request was refused before it answered a challenge: there is no answer to
    /// appraise.
    NoAnswer,
    /// The refusal was made by the attestor around the appraisal (EK trust, credential
    /// activation, revocation, challenges, load, the CA or the log), not by the appraisal.
    DecidedByHost,
    /// The record's reason code is not one this version knows.
    UnknownReason,
    /// The event log the evidence names is not stored (one that did not replay to its quote
    /// is kept as its digest only).
    EventLogMissing,
    /// The stored EK does not give an identity, or is not the record's node.
    EkEvidence,
    /// A renewal (or its node) without a logged allow before it to rebuild the node from.
    NodeHistoryUnknown,
    /// No allowed `policy-update` record precedes the record.
    NoPolicyInForce,
    /// The bundle in force does not decode, verify against the roots at its time, or match
    /// its record's digest.
    PolicyUnverifiable,
    /// The evidence, or the event log it names, is stored as bytes of another digest:
    /// changed or swapped in the database.
    StoredEvidenceAltered,
}

impl Unreplayable {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Unreplayable::NoEvidence => "no-evidence",
            Unreplayable::EvidenceMissing => "evidence-missing",
            Unreplayable::UnprovenRequest => "unproven-request",
            Unreplayable::EvidenceUndecodable => "evidence-undecodable",
            Unreplayable::NoAnswer => "no-answer",
            Unreplayable::DecidedByHost => "decided-by-host",
            Unreplayable::UnknownReason => "unknown-reason",
            Unreplayable::EventLogMissing => "event-log-missing",
            Unreplayable::EkEvidence => "ek-evidence",
            Unreplayable::NodeHistoryUnknown => "node-history-unknown",
            Unreplayable::NoPolicyInForce => "no-policy-in-force",
            Unreplayable::PolicyUnverifiable => "policy-unverifiable",
            Unreplayable::StoredEvidenceAltered => "stored-evidence-altered",
        }
    }

    /// Whether this says the log's stored evidence was tampered with, for a record of
    /// `decision`: bytes that do not hash to their digest, whatever the decision; and for an
    /// allow, evidence or an event log missing, or evidence that is not an answer of the
    /// record's kind. The attestor keeps both for every allow, as such an answer (only a
    /// refusal may keep a digest alone, or an unproven request).
    pub fn means_altered(self, decision: Decision) -> bool {
        match self {
            Unreplayable::StoredEvidenceAltered => true,
            Unreplayable::EvidenceMissing
            | Unreplayable::EventLogMissing
            | Unreplayable::EvidenceUndecodable
            | Unreplayable::UnprovenRequest
            | Unreplayable::NoAnswer => decision == Decision::Allow,
            Unreplayable::NoEvidence
            | Unreplayable::DecidedByHost
            | Unreplayable::UnknownReason
            | Unreplayable::EkEvidence
            | Unreplayable::NodeHistoryUnknown
            | Unreplayable::NoPolicyInForce
            | Unreplayable::PolicyUnverifiable => false,
        }
    }
}

/// What replaying one record gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// The replayed verdict is the logged one.
    Matched {
        /// The replayed verdict.
        replayed: Verdict,
    },
    /// It is not (with a what-if policy: the decision would change).
    Differs {
        /// The replayed verdict.
        replayed: Verdict,
        /// What differs: `decision`, `reason`, `spiffe-id`, `policy-digest`.
        differences: Vec<&'static str>,
        /// The replayed refusal's detail, if it refused.
        detail: Option<String>,
    },
    /// The record could not be replayed.
    NotReplayable {
        /// Why, as a stable code.
        why: Unreplayable,
        /// Details for the auditor.
        detail: String,
    },
}

/// One decision record and what replaying it gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordReplay {
    /// The record's sequence.
    pub sequence: u64,
    /// When it was decided.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// `enroll`, `renew` or `reject`.
    pub kind: RecordKind,
    /// The node, if the record names one.
    pub node_id: Option<String>,
    /// The verdict as logged.
    pub logged: Verdict,
    /// What replay gave.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A policy bundle put in force in the log, as replay found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySeen {
    /// The `policy-update` record's sequence.
    pub sequence: u64,
    /// The digest it names.
    pub digest: Option<String>,
    /// Why it cannot be used, if it cannot.
    pub problem: Option<String>,
}

/// The totals of a replay (each record itself went to the caller's sink).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplaySummary {
    /// The log's origin, if it has one.
    pub origin: Option<String>,
    /// The what-if bundle's digest, when one decided.
    pub what_if: Option<String>,
    /// Records read.
    pub records_read: u64,
    /// Decision records selected by the filters.
    pub decisions: u64,
    /// Replayed with the logged verdict.
    pub matched: u64,
    /// Replayed with another verdict.
    pub differs: u64,
    /// Not replayable.
    pub not_replayable: u64,
    /// Of those, the records whose stored evidence was tampered with
    /// ([`Unreplayable::means_altered`]).
    pub evidence_altered: u64,
    /// Every policy bundle put in force, in log order.
    pub policies: Vec<PolicySeen>,
}

impl ReplaySummary {
    /// Without a what-if policy: every replayable record reproduced its verdict, and no
    /// record's stored evidence was found tampered with.
    pub fn reproduced(&self) -> bool {
        self.differs == 0 && self.evidence_altered == 0
    }
}

/// The policy bundles met so far, by digest, and which one is in force.
struct Policies {
    trust: PolicyTrust,
    by_digest: HashMap<String, Result<Arc<PolicyEngine>, String>>,
    in_force: Option<(u64, String)>,
}

impl Policies {
    /// A `policy-update` record: decode, verify at its time, check its digest, cache.
    async fn put_in_force<S: LogSource>(
        &mut self,
        source: &S,
        stored: &StoredRecord,
    ) -> Result<PolicySeen, AuditError> {
        let record = &stored.record;
        let digest = record.policy_digest.clone().unwrap_or_default();
        if !self.by_digest.contains_key(&digest) {
            let engine = self.load(source, record).await?;
            self.by_digest.insert(digest.clone(), engine);
        }
        self.in_force = Some((stored.sequence, digest.clone()));
        let problem = self.by_digest.get(&digest).and_then(|e| e.clone().err());
        Ok(PolicySeen {
            sequence: stored.sequence,
            digest: record.policy_digest.clone(),
            problem,
        })
    }

    async fn load<S: LogSource>(
        &self,
        source: &S,
        record: &Record,
    ) -> Result<Result<Arc<PolicyEngine>, String>, AuditError> {
        let Some(evidence) = &record.evidence_digest else {
            return Ok(Err("the record names no bundle archive".to_owned()));
        };
        let Some(archive) = source.evidence(evidence).await? else {
            return Ok(Err(format!("bundle archive {evidence} is not in the log")));
        };
        let engine = match verified_engine(&archive, &self.trust, record.time) {
            Ok(engine) => engine,
            Err(e) => {
                return Ok(Err(format!(
                    "bundle does not verify at {}: {e}",
                    record.time
                )));
            }
        };
        if record.policy_digest.as_deref() != Some(engine.info().digest.as_str()) {
            return Ok(Err(format!(
                "the record names policy digest {:?}, its archive is {}",
                record.policy_digest,
                engine.info().digest
            )));
        }
        Ok(Ok(engine))
    }

    /// The engine deciding a record now.
    fn current(&self) -> Result<Arc<PolicyEngine>, (Unreplayable, String)> {
        let Some((sequence, digest)) = &self.in_force else {
            return Err((
                Unreplayable::NoPolicyInForce,
                "no allowed policy-update record before it".to_owned(),
            ));
        };
        match self.by_digest.get(digest) {
            Some(Ok(engine)) => Ok(Arc::clone(engine)),
            Some(Err(problem)) => Err((
                Unreplayable::PolicyUnverifiable,
                format!("policy-update #{sequence}: {problem}"),
            )),
            None => Err((
                Unreplayable::PolicyUnverifiable,
                format!("policy-update #{sequence}: not loaded"),
            )),
        }
    }
}

/// An archive's bundle, verified against `trust` at `at`, compiled.
fn verified_engine(
    archive: &[u8],
    trust: &PolicyTrust,
    at: OffsetDateTime,
) -> Result<Arc<PolicyEngine>, PolicyError> {
    let limits = BundleLimits::default();
    let files = decode_archive(archive, &limits)?;
    let verified = verify_bundle(&files, trust, at, &limits)?;
    Ok(Arc::new(PolicyEngine::from_verified(
        &verified,
        EvalLimits::default(),
    )?))
}

/// What is known of each node, rebuilt from its logged allows: its history, or why it cannot
/// be rebuilt.
type Nodes = HashMap<String, Result<NodeHistory, String>>;

/// The replay of one log.
struct Replay<'a, S> {
    source: &'a S,
    options: &'a ReplayOptions,
    trust_domain: TrustDomain,
    policies: Policies,
    what_if: Option<Arc<PolicyEngine>>,
    nodes: Nodes,
    boot_cache: BootCache,
}

/// Replay every decision record the options select, in log order, handing each to `sink`;
/// the totals come back. Records are read a page at a time; what is kept between them is
/// one history per node and one compiled engine per policy bundle.
///
/// `roots`: the trust domain's root certificates (DER), the only thing trusted: policy
/// bundles are verified against them.
pub async fn replay<S: LogSource>(
    source: &S,
    roots: &[Vec<u8>],
    options: &ReplayOptions,
    sink: &mut impl FnMut(RecordReplay),
) -> Result<ReplaySummary, AuditError> {
    let trust = PolicyTrust::from_pem(&garrison_ca::certificates_to_pem(roots))
        .map_err(AuditError::Roots)?;
    let trust_domain = TrustDomain::new(trust.trust_domain()).map_err(|e| {
        AuditError::Roots(PolicyError::BundleRoot {
            reason: e.to_string(),
        })
    })?;
    let what_if = match &options.policy {
        Some(archive) => {
            Some(verified_engine(archive, &trust, options.now).map_err(AuditError::WhatIfPolicy)?)
        }
        None => None,
    };
    let mut summary = ReplaySummary {
        origin: source.origin(),
        what_if: what_if.as_ref().map(|e| e.info().digest.clone()),
        ..ReplaySummary::default()
    };
    let mut replay = Replay {
        source,
        options,
        trust_domain,
        policies: Policies {
            trust,
            by_digest: HashMap::new(),
            in_force: None,
        },
        what_if,
        nodes: HashMap::new(),
        boot_cache: BootCache::new(BOOT_CACHE),
    };
    let mut pages = crate::source::Pages::start(source, PAGE).await?;
    loop {
        let page = pages.next(source).await?;
        if page.is_empty() {
            break;
        }
        for stored in &page {
            summary.records_read += 1;
            if let Some(done) = replay.record(stored, &mut summary).await? {
                match &done.outcome {
                    Outcome::Matched { .. } => summary.matched += 1,
                    Outcome::Differs { .. } => summary.differs += 1,
                    Outcome::NotReplayable { why, .. } => {
                        summary.not_replayable += 1;
                        if why.means_altered(done.logged.decision) {
                            summary.evidence_altered += 1;
                        }
                    }
                }
                summary.decisions += 1;
                sink(done);
            }
        }
    }
    Ok(summary)
}

impl<S: LogSource> Replay<'_, S> {
    /// Take one record in: a policy change, a node reset, or a decision (replayed when
    /// selected, and remembered for the node's history when it was an allow).
    async fn record(
        &mut self,
        stored: &StoredRecord,
        summary: &mut ReplaySummary,
    ) -> Result<Option<RecordReplay>, AuditError> {
        let record = &stored.record;
        match record.kind {
            RecordKind::PolicyUpdate if record.decision == Decision::Allow => {
                let seen = self.policies.put_in_force(self.source, stored).await?;
                summary.policies.push(seen);
                Ok(None)
            }
            RecordKind::NodeReset => {
                if let Some(node) = &record.node_id {
                    self.nodes.remove(node);
                }
                Ok(None)
            }
            RecordKind::Enroll | RecordKind::Renew | RecordKind::Reject => {
                if !self.options.names_node(record) {
                    return Ok(None);
                }
                let evidence = self.evidence(record).await?;
                let done = if self.options.selects(record) {
                    Some(self.decision(stored, &evidence).await?)
                } else {
                    None
                };
                self.remember(record, evidence.ok());
                Ok(done)
            }
            RecordKind::PolicyUpdate | RecordKind::Revoke | RecordKind::Rotate => Ok(None),
        }
    }

    /// The record's evidence, decoded.
    async fn evidence(
        &self,
        record: &Record,
    ) -> Result<Result<EvidenceRecord, (Unreplayable, String)>, AuditError> {
        let refused = record.reasons.first().map(String::as_str).unwrap_or("-");
        let Some(digest) = &record.evidence_digest else {
            let detail = format!("no evidence kept ({refused})");
            return Ok(Err((Unreplayable::NoEvidence, detail)));
        };
        let Some(bytes) = self.source.evidence(digest).await? else {
            return Ok(Err((
                Unreplayable::EvidenceMissing,
                format!("evidence {digest} is not in the log"),
            )));
        };
        if garrison_log::evidence_digest(&bytes) != digest.to_ascii_lowercase() {
            return Ok(Err((
                Unreplayable::StoredEvidenceAltered,
                format!("the evidence stored as {digest} has another digest"),
            )));
        }
        Ok(match EvidenceRecord::decode(&bytes) {
            Ok(evidence) => Ok(evidence),
            Err(_) if UnprovenRequest::decode(&bytes).is_ok() => Err((
                Unreplayable::UnprovenRequest,
                format!(
                    "refused ({refused}) before the sender proved anything: only a digest is kept"
                ),
            )),
            Err(e) => Err((Unreplayable::EvidenceUndecodable, e.to_string())),
        })
    }

    /// Replay one selected decision record.
    async fn decision(
        &mut self,
        stored: &StoredRecord,
        evidence: &Result<EvidenceRecord, (Unreplayable, String)>,
    ) -> Result<RecordReplay, AuditError> {
        let record = &stored.record;
        let logged = Verdict::logged(record);
        let outcome = match evidence {
            Ok(evidence) => match self.reappraise(record, evidence).await? {
                Ok(appraisal) => {
                    let replayed = Verdict::replayed(&appraisal);
                    compare(&logged, replayed, &appraisal, self.what_if.is_some())
                }
                Err((why, detail)) => Outcome::NotReplayable { why, detail },
            },
            Err((why, detail)) => Outcome::NotReplayable {
                why: *why,
                detail: detail.clone(),
            },
        };
        Ok(RecordReplay {
            sequence: stored.sequence,
            time: record.time,
            kind: record.kind,
            node_id: record.node_id.clone(),
            logged,
            outcome,
        })
    }

    /// The appraisal again, over the record's evidence, at its time.
    async fn reappraise(
        &self,
        record: &Record,
        evidence: &EvidenceRecord,
    ) -> Result<Result<Appraisal, (Unreplayable, String)>, AuditError> {
        if let Err(skip) = appraised_exchange(record, evidence.stage) {
            return Ok(Err(skip));
        }
        let event_log = match self.event_log(evidence).await? {
            Ok(bytes) => bytes,
            Err(skip) => return Ok(Err(skip)),
        };
        let policy = match &self.what_if {
            Some(engine) => Arc::clone(engine),
            None => match self.policies.current() {
                Ok(engine) => engine,
                Err(skip) => return Ok(Err(skip)),
            },
        };
        Ok(self.appraise(record, evidence, &event_log, &policy))
    }

    /// The event log the evidence names (empty when it names none).
    async fn event_log(
        &self,
        evidence: &EvidenceRecord,
    ) -> Result<Result<Vec<u8>, (Unreplayable, String)>, AuditError> {
        let digest = &evidence.event_log_sha256;
        if digest.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        Ok(match self.source.evidence(digest).await? {
            None => Err((
                Unreplayable::EventLogMissing,
                format!("event log {digest} is not stored"),
            )),
            Some(bytes) if garrison_log::evidence_digest(&bytes) != digest.to_ascii_lowercase() => {
                Err((
                    Unreplayable::StoredEvidenceAltered,
                    format!("the event log stored as {digest} has another digest"),
                ))
            }
            Some(bytes) => Ok(bytes),
        })
    }

    /// The renewal or enrollment decision over the stored answer, with the node's rebuilt
    /// history.
    fn appraise(
        &self,
        record: &Record,
        evidence: &EvidenceRecord,
        event_log: &[u8],
        policy: &PolicyEngine,
    ) -> Result<Appraisal, (Unreplayable, String)> {
        let undecodable =
            |e: garrison_appraisal::DecodeError| (Unreplayable::EvidenceUndecodable, e.to_string());
        let quote = evidence.quote().map_err(undecodable)?;
        let answer = evidence
            .answer(quote.as_ref(), event_log)
            .map_err(undecodable)?;
        let node_id = record.node_id.clone().unwrap_or_default();
        let previous = match self.nodes.get(&node_id) {
            Some(Ok(node)) => Some(node),
            Some(Err(why)) => return Err((Unreplayable::NodeHistoryUnknown, why.clone())),
            None => None,
        };
        let rules = SiteRules {
            site: &record.site,
            trust_domain: &self.trust_domain,
            pcrs: &self.options.pcrs,
            max_svid_ttl: self.options.max_svid_ttl,
            ak_policy: &self.options.ak_policy,
            limits: &self.options.limits,
        };
        if evidence.stage == Stage::RenewComplete {
            let node = previous.ok_or_else(|| {
                (
                    Unreplayable::NodeHistoryUnknown,
                    format!("no logged allow of node {node_id} before this renewal"),
                )
            })?;
            let appraisal = appraise_renewal(
                &rules,
                policy,
                &self.boot_cache,
                node,
                &evidence.ak_public,
                &answer,
                record.time,
            );
            return Ok(appraisal);
        }
        self.enrollment(&rules, policy, record, evidence, &answer, previous)
    }

    /// An enrollment again: the EK as recorded, the AK checked, no asserted facts (the
    /// attestor does not store them: see the module docs).
    fn enrollment(
        &self,
        rules: &SiteRules<'_>,
        policy: &PolicyEngine,
        record: &Record,
        evidence: &EvidenceRecord,
        answer: &Answer<'_>,
        previous: Option<&NodeHistory>,
    ) -> Result<Appraisal, (Unreplayable, String)> {
        let ek = recorded_ek(record, evidence)?;
        let ak = match check_ak(&evidence.ak_public, &self.options.ak_policy) {
            Ok(ak) => ak,
            Err(refusal) => {
                return Ok(Appraisal {
                    verdict: Err(refusal),
                    policy_digest: None,
                    boot: None,
                });
            }
        };
        let asserted = std::collections::BTreeMap::new();
        let enrollment = Enrollment {
            ek: &ek,
            ak: &ak,
            asserted: &asserted,
            previous,
        };
        Ok(appraise_enrollment(
            rules,
            policy,
            &self.boot_cache,
            &enrollment,
            answer,
            record.time,
        ))
    }

    /// After a logged allow, the node's history is what that allow wrote.
    fn remember(&mut self, record: &Record, evidence: Option<EvidenceRecord>) {
        if record.decision != Decision::Allow {
            return;
        }
        let Some(node_id) = record.node_id.clone() else {
            return;
        };
        let previous = self.nodes.get(&node_id).and_then(|n| n.as_ref().ok());
        let history = match evidence {
            Some(evidence) => {
                node_after_allow(record, &evidence, previous, &self.options.ak_policy)
            }
            None => Err(format!(
                "the allow of {} has no usable evidence",
                record.time
            )),
        };
        self.nodes.insert(node_id, history);
    }
}

/// Whether the record's decision was the appraisal's: an answer to a challenge of the
/// record's kind of exchange, and a refusal the appraisal makes.
fn appraised_exchange(record: &Record, stage: Stage) -> Result<(), (Unreplayable, String)> {
    let expected = match record.kind {
        RecordKind::Enroll => Some(Stage::EnrollComplete),
        RecordKind::Renew => Some(Stage::RenewComplete),
        _ => None,
    };
    if !matches!(stage, Stage::EnrollComplete | Stage::RenewComplete) {
        return Err((Unreplayable::NoAnswer, format!("evidence stage {stage:?}")));
    }
    if expected.is_some_and(|want| want != stage) {
        return Err((
            Unreplayable::EvidenceUndecodable,
            format!("a {} record with {stage:?} evidence", record.kind.as_str()),
        ));
    }
    if record.decision == Decision::Allow {
        return Ok(());
    }
    let code = record.reasons.first().map(String::as_str).unwrap_or("");
    match Reason::from_code(code) {
        Some(reason) if decided_by_appraisal(reason) => Ok(()),
        Some(_) => Err((Unreplayable::DecidedByHost, code.to_owned())),
        None => Err((Unreplayable::UnknownReason, code.to_owned())),
    }
}

/// Whether the appraisal makes this refusal (else the attestor made it around the
/// appraisal). Exhaustive: a new reason does not compile until it is placed.
fn decided_by_appraisal(reason: Reason) -> bool {
    match reason {
        Reason::MalformedRequest
        | Reason::MalformedEvidence
        | Reason::AkAttributes
        | Reason::QuoteSignature
        | Reason::AttestStructure
        | Reason::Nonce
        | Reason::PcrSelection
        | Reason::PcrDigest
        | Reason::ClockRollback
        | Reason::EventLogReplay
        | Reason::AkMismatch
        | Reason::Csr
        | Reason::PolicyDeny
        | Reason::PolicyScope
        | Reason::PolicyError => true,
        Reason::EkTrust
        | Reason::EkCertificateMismatch
        | Reason::EkAttributes
        | Reason::ChallengeUnknown
        | Reason::ChallengeExpired
        | Reason::ChallengePeerMismatch
        | Reason::CredentialActivation
        | Reason::Revoked
        | Reason::UnknownSvid
        | Reason::ClientCertificateRequired
        | Reason::CaUnavailable
        | Reason::LogUnavailable
        | Reason::RandomUnavailable
        | Reason::Overloaded => false,
    }
}

fn compare(logged: &Verdict, replayed: Verdict, appraisal: &Appraisal, what_if: bool) -> Outcome {
    let differences = differences(logged, &replayed, what_if);
    if differences.is_empty() {
        return Outcome::Matched { replayed };
    }
    Outcome::Differs {
        replayed,
        differences,
        detail: appraisal.verdict.as_ref().err().map(|r| r.detail.clone()),
    }
}

/// The EK as its stored certificate states it, which must be the record's node.
fn recorded_ek(
    record: &Record,
    evidence: &EvidenceRecord,
) -> Result<garrison_evidence::EkIdentity, (Unreplayable, String)> {
    let certificate = (!evidence.ek_certificate.is_empty()).then_some(&evidence.ek_certificate[..]);
    let ek = garrison_evidence::ek_as_recorded(&evidence.ek_public, certificate)
        .map_err(|e| (Unreplayable::EkEvidence, e.to_string()))?;
    if record.node_id.as_deref() != Some(ek.ek_hash.as_str()) {
        return Err((
            Unreplayable::EkEvidence,
            format!(
                "the evidence is EK {}, the record names node {:?}",
                ek.ek_hash, record.node_id
            ),
        ));
    }
    Ok(ek)
}

/// The node's history as a logged allow left it: its AK, the counters of the quote it was
/// allowed on, its EK facts (from the enrollment), identity, certificate and time.
fn node_after_allow(
    record: &Record,
    evidence: &EvidenceRecord,
    previous: Option<&NodeHistory>,
    ak_policy: &AkPolicy,
) -> Result<NodeHistory, String> {
    let (ak, verdict) = quoted(evidence, ak_policy)?;
    let identity = match (record.kind, previous) {
        (RecordKind::Renew, Some(previous)) => previous.identity.clone(),
        (RecordKind::Renew, None) => return Err("a renewal before any enrollment".to_owned()),
        _ => {
            let ek = recorded_ek(record, evidence).map_err(|(_, detail)| detail)?;
            serde_json::to_string(&EkFacts::from(&ek)).map_err(|e| e.to_string())?
        }
    };
    Ok(NodeHistory {
        node_id: record.node_id.clone().unwrap_or_default(),
        ak_name: ak.name().as_bytes().to_vec(),
        spiffe_id: record.spiffe_id.clone().unwrap_or_default(),
        identity,
        reset_count: verdict.reset_count,
        restart_count: verdict.restart_count,
        clock: verdict.clock,
        current_serial: record.cert_serial.clone(),
        updated: record.time,
    })
}

/// The AK of an allow's evidence and what its quote says (counters, clock), the quote
/// verified with that AK.
pub(crate) fn quoted(
    evidence: &EvidenceRecord,
    ak_policy: &AkPolicy,
) -> Result<
    (
        garrison_evidence::AkIdentity,
        garrison_evidence::QuoteVerdict,
    ),
    String,
> {
    let ak = check_ak(&evidence.ak_public, ak_policy).map_err(|r| r.detail)?;
    let quote = evidence
        .quote()
        .map_err(|e| e.to_string())?
        .ok_or("the allow's evidence has no quote")?;
    let pcrs = pcr_values(&quote).map_err(|r| r.detail)?;
    let verdict = garrison_evidence::verify_quote(
        &ak,
        &quote.attest,
        &quote.signature,
        &evidence.nonce,
        &pcrs,
    )
    .map_err(|e| e.to_string())?;
    Ok((ak, verdict))
}

/// The identity facts an enrollment of `node_id` stored, from its evidence's EK (without
/// the trust basis, which the evidence does not say), if the EK is that node's.
pub(crate) fn recorded_identity(node_id: &str, evidence: &EvidenceRecord) -> Option<String> {
    let certificate = (!evidence.ek_certificate.is_empty()).then_some(&evidence.ek_certificate[..]);
    let ek = garrison_evidence::ek_as_recorded(&evidence.ek_public, certificate).ok()?;
    if ek.ek_hash != node_id {
        return None;
    }
    serde_json::to_string(&EkFacts::from(&ek)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(decision: Decision, reasons: &[&str]) -> Record {
        Record {
            time: OffsetDateTime::UNIX_EPOCH,
            site: "site-a".into(),
            kind: if decision == Decision::Allow {
                RecordKind::Enroll
            } else {
                RecordKind::Reject
            },
            node_id: Some("n".into()),
            spiffe_id: None,
            decision,
            reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
            policy_digest: None,
            evidence_digest: None,
            cert_serial: None,
            cert_not_after: None,
        }
    }

    #[test]
    fn only_answers_refused_by_the_appraisal_are_replayed() {
        let allow = record(Decision::Allow, &[]);
        assert!(appraised_exchange(&allow, Stage::EnrollComplete).is_ok());
        assert_eq!(
            appraised_exchange(&allow, Stage::RenewComplete)
                .unwrap_err()
                .0,
            Unreplayable::EvidenceUndecodable,
            "an enroll record with renewal evidence"
        );
        let deny = record(Decision::Deny, &["policy-deny", "why"]);
        assert!(appraised_exchange(&deny, Stage::RenewComplete).is_ok());
        for stage in [Stage::EnrollBegin, Stage::RenewBegin, Stage::None] {
            assert_eq!(
                appraised_exchange(&deny, stage).unwrap_err().0,
                Unreplayable::NoAnswer
            );
        }
        for (code, why) in [
            ("credential-activation", Unreplayable::DecidedByHost),
            ("revoked", Unreplayable::DecidedByHost),
            ("ca-unavailable", Unreplayable::DecidedByHost),
            ("no-such-code", Unreplayable::UnknownReason),
        ] {
            let deny = record(Decision::Deny, &[code, "why"]);
            let got = appraised_exchange(&deny, Stage::EnrollComplete).unwrap_err();
            assert_eq!(got, (why, code.to_owned()));
        }
        // Every reason is placed, and those the appraisal makes are the ones it can make.
        let appraisal: Vec<_> = Reason::ALL
            .into_iter()
            .filter(|r| decided_by_appraisal(*r))
            .map(Reason::code)
            .collect();
        assert_eq!(appraisal.len(), 15, "{appraisal:?}");
    }

    #[test]
    fn verdicts_compare_by_decision_and_reason_and_in_force_by_identity_and_digest() {
        let allow = |id: &str, digest: &str| Verdict {
            decision: Decision::Allow,
            reason: None,
            spiffe_id: Some(id.into()),
            policy_digest: Some(digest.into()),
        };
        let deny = |reason: &str, digest: &str| Verdict {
            decision: Decision::Deny,
            reason: Some(reason.into()),
            spiffe_id: None,
            policy_digest: Some(digest.into()),
        };
        assert!(differences(&allow("a", "p"), &allow("a", "p"), false).is_empty());
        assert_eq!(
            differences(&allow("a", "p"), &deny("policy-deny", "p"), false),
            ["decision"]
        );
        assert_eq!(
            differences(&deny("csr", "p"), &deny("policy-deny", "p"), false),
            ["reason"]
        );
        assert_eq!(
            differences(&allow("a", "p"), &allow("b", "q"), false),
            ["spiffe-id", "policy-digest"]
        );
        // What-if: another bundle by design; only the decision and its reason count.
        assert!(differences(&allow("a", "p"), &allow("b", "q"), true).is_empty());
        assert_eq!(
            differences(&allow("a", "p"), &deny("policy-deny", "q"), true),
            ["decision"]
        );
        assert_eq!(deny("policy-deny", "p").summary(), "deny(policy-deny)");
        let logged = Verdict::logged(&record(Decision::Deny, &[]));
        assert_eq!(logged.reason.as_deref(), Some(""));
    }

    /// swtpm's EK and its certificate (garrison-evidence's fixtures).
    const EK_PUBLIC: &[u8] =
        include_bytes!("../../garrison-evidence/testdata/tpm2tools/ek_rsa.pub");
    const EK_CERTIFICATE: &[u8] =
        include_bytes!("../../garrison-evidence/testdata/tpm2tools/ek_rsa_cert.der");
    const EK_HASH: &str = "2f0c2c8291fd9b8a5e43ec0ad5eac634191e2a07e1957f5ae3a9aaa97cbf0aa2";

    #[test]
    fn the_recorded_ek_must_be_the_records_node() {
        let evidence = EvidenceRecord {
            stage: Stage::EnrollComplete,
            ek_public: EK_PUBLIC.to_vec(),
            ek_certificate: EK_CERTIFICATE.to_vec(),
            ..EvidenceRecord::default()
        };
        let mut r = record(Decision::Allow, &[]);
        r.node_id = Some(EK_HASH.into());
        let ek = recorded_ek(&r, &evidence).unwrap();
        assert!(
            ek.manufacturer.is_some(),
            "the certificate's facts are kept"
        );
        r.node_id = Some("0".repeat(64));
        assert_eq!(
            recorded_ek(&r, &evidence).unwrap_err().0,
            Unreplayable::EkEvidence
        );
        // Not an EK at all.
        let mut broken = evidence.clone();
        broken.ek_public.truncate(10);
        r.node_id = Some(EK_HASH.into());
        assert_eq!(
            recorded_ek(&r, &broken).unwrap_err().0,
            Unreplayable::EkEvidence
        );
    }

    #[test]
    fn filters_select_by_time_and_node() {
        let mut options = ReplayOptions::new(
            OffsetDateTime::UNIX_EPOCH,
            FieldLimits {
                public_area: 0,
                certificate: 0,
                ek_chain: 0,
                asserted_facts: 0,
                asserted_len: 0,
                attest: 0,
                pcr_values: 0,
                event_log: 0,
                csr: 0,
                secret: 0,
            },
        );
        assert_eq!(options.pcrs, (0..=9).collect::<Vec<_>>());
        let mut r = record(Decision::Allow, &[]);
        r.time = OffsetDateTime::UNIX_EPOCH + Duration::hours(1);
        assert!(options.selects(&r));
        options.since = Some(r.time);
        options.until = Some(r.time + Duration::seconds(1));
        options.node = Some("N".into());
        assert!(options.selects(&r), "since inclusive, node id in any case");
        options.until = Some(r.time);
        assert!(!options.selects(&r), "until exclusive");
        options.until = None;
        options.node = Some("m".into());
        assert!(!options.selects(&r));
    }
}
