//! Putting a policy bundle in force, and the rollback floor that guards it.
//!
//! Every bundle put in force (at start or by a reload) is an allowed `policy-update` record
//! whose evidence is the bundle archive. The newest such record is the *floor*: the log, not
//! the attestor's memory, says which bundle this site last put in force, so a restart or a
//! second attestor on the same log sees it too. Against the floor:
//!
//! * a bundle with a lower sequence is a rollback ([`PolicyRefusal::Rollback`]);
//! * a bundle with the same sequence but another digest is a second bundle signed under a
//!   number already used ([`PolicyRefusal::SequenceReused`]): the number alone cannot tell
//!   them apart, so the digest of the floor's archive decides;
//! * the same bundle again is no change (nothing is recorded), a newer one is put in force.
//!
//! A refusal is itself a `policy-update` record, decision deny, with the stable reason code
//! first and the detail second, and the refused archive as evidence. A floor record that
//! cannot be read back (no archive, an archive that does not decode, a digest that does not
//! match) is an error: the attestor does not start and a reload is refused. The floor is
//! never guessed, and never 0 unless the log has no accepted bundle at all.

use garrison_log::{AttestationLog, Decision, NewEntry, Query, Record, RecordKind};
use garrison_ops::error_chain;
use garrison_policy::{
    BundleFiles, BundleInfo, BundleLimits, MANIFEST_FILE, Manifest, PolicyError, PolicyErrorKind,
    PolicyService, ReloadOutcome, decode_archive, sha256_hex,
};
use time::OffsetDateTime;

/// Why a bundle was not put in force: the stable code that opens the `policy-update` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyRefusal {
    /// Its sequence is below the floor.
    Rollback,
    /// Its sequence is the floor's, its digest is not.
    SequenceReused,
    /// The floor record in the log cannot be read back, so nothing can be compared with it.
    FloorUnreadable,
    /// The bundle does not decode, verify or compile.
    BundleInvalid,
}

impl PolicyRefusal {
    /// The stable code, first in the record's reasons. Never renamed once released.
    pub fn code(self) -> &'static str {
        match self {
            PolicyRefusal::Rollback => "policy-rollback",
            PolicyRefusal::SequenceReused => "policy-sequence-reused",
            PolicyRefusal::FloorUnreadable => "policy-floor-unreadable",
            PolicyRefusal::BundleInvalid => "policy-bundle-invalid",
        }
    }

    /// The refusal for a policy error, by its kind: the two floor checks have their own
    /// codes; a bundle that does not decode, verify or compile is invalid. (A decision error
    /// cannot come out of a reload; should one, the bundle is not usable either.)
    pub fn of(err: &PolicyError) -> Self {
        match err.kind() {
            PolicyErrorKind::Rollback => PolicyRefusal::Rollback,
            PolicyErrorKind::SequenceReused => PolicyRefusal::SequenceReused,
            PolicyErrorKind::Bundle | PolicyErrorKind::Decision => PolicyRefusal::BundleInvalid,
        }
    }
}

/// The floor record in the log cannot be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyFloorError {
    /// The log could not be queried.
    #[error("reading the policy floor from the log")]
    Log(#[source] garrison_log::LogError),
    /// An accepted `policy-update` record without evidence.
    #[error("policy-update record #{record} has no evidence (expected the bundle archive)")]
    NoArchive {
        /// The record's sequence.
        record: u64,
    },
    /// The record's evidence is not in the log.
    #[error(
        "policy-update record #{record} refers to evidence {digest}, which the log does not hold"
    )]
    ArchiveMissing {
        /// The record's sequence.
        record: u64,
        /// The evidence digest it names.
        digest: String,
    },
    /// The archive does not decode, or its manifest does not parse.
    #[error("policy-update record #{record}: its bundle archive does not decode")]
    ArchiveUndecodable {
        /// The record's sequence.
        record: u64,
        /// Why.
        #[source]
        source: PolicyError,
    },
    /// The record's policy digest is not the digest of its archive's manifest.
    #[error(
        "policy-update record #{record} names policy digest {expected:?}, its archive is {got}"
    )]
    DigestMismatch {
        /// The record's sequence.
        record: u64,
        /// The digest in the record.
        expected: Option<String>,
        /// The digest of the archive's manifest.
        got: String,
    },
}

/// Which bundle an archive claims to be: its manifest's sequence and digest. Not verified:
/// used to refuse against the floor, never to accept (acceptance verifies the signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BundleId {
    pub sequence: u64,
    /// Hex SHA-256 of manifest.json, as [`BundleInfo::digest`].
    pub digest: String,
}

impl BundleId {
    pub fn of(files: &BundleFiles) -> Result<Self, PolicyError> {
        let manifest = files
            .get(MANIFEST_FILE)
            .ok_or(PolicyError::BundleFileMissing {
                name: MANIFEST_FILE,
            })?;
        Ok(BundleId {
            sequence: Manifest::parse(manifest)?.sequence,
            digest: sha256_hex(manifest),
        })
    }

    fn from_info(info: &BundleInfo) -> Self {
        BundleId {
            sequence: info.sequence,
            digest: info.digest.clone(),
        }
    }
}

/// Where a bundle stands against the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// It is the floor's bundle.
    Same,
    /// It is newer than the floor (or there is no floor).
    Newer,
}

/// The newest bundle this site put in force, as the log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyFloor {
    pub bundle: BundleId,
    /// The sequence of the record that set it.
    pub record: u64,
}

impl PolicyFloor {
    /// The floor, or `None` when the log has never accepted a bundle.
    pub async fn read(log: &AttestationLog) -> Result<Option<Self>, PolicyFloorError> {
        let query = Query {
            kind: Some(RecordKind::PolicyUpdate),
            decision: Some(Decision::Allow),
            ..Query::default()
        };
        let records = log.query(&query).await.map_err(PolicyFloorError::Log)?;
        let Some(newest) = records.last() else {
            return Ok(None);
        };
        let record = newest.sequence;
        let digest = newest
            .record
            .evidence_digest
            .clone()
            .ok_or(PolicyFloorError::NoArchive { record })?;
        let archive = log
            .evidence(&digest)
            .await
            .map_err(PolicyFloorError::Log)?
            .ok_or_else(|| PolicyFloorError::ArchiveMissing { record, digest })?;
        let bundle = decode_archive(&archive, &BundleLimits::default())
            .and_then(|files| BundleId::of(&files))
            .map_err(|source| PolicyFloorError::ArchiveUndecodable { record, source })?;
        if newest.record.policy_digest.as_deref() != Some(bundle.digest.as_str()) {
            return Err(PolicyFloorError::DigestMismatch {
                record,
                expected: newest.record.policy_digest.clone(),
                got: bundle.digest,
            });
        }
        Ok(Some(PolicyFloor { bundle, record }))
    }

    /// The sequence below which nothing is put in force (0 without a floor).
    pub fn sequence(floor: Option<&Self>) -> u64 {
        floor.map_or(0, |f| f.bundle.sequence)
    }

    /// Whether `bundle` may be put in force over `floor`.
    pub fn admits(floor: Option<&Self>, bundle: &BundleId) -> Result<Standing, PolicyError> {
        let Some(floor) = floor else {
            return Ok(Standing::Newer);
        };
        let (got, at) = (bundle.sequence, &floor.bundle);
        if got < at.sequence {
            return Err(PolicyError::Rollback {
                in_force: at.sequence,
                got,
            });
        }
        if got > at.sequence {
            return Ok(Standing::Newer);
        }
        if bundle.digest != at.digest {
            return Err(PolicyError::SequenceReused {
                sequence: got,
                in_force: at.digest.clone(),
                got: bundle.digest.clone(),
            });
        }
        Ok(Standing::Same)
    }
}

/// A `policy-update` record: an allow with a description, or a deny with its code and detail.
/// `archive` is the bundle that was put in force or refused.
pub(crate) fn update_entry(
    site: &str,
    now: OffsetDateTime,
    outcome: Result<String, (PolicyRefusal, String)>,
    policy_digest: String,
    archive: Vec<u8>,
) -> NewEntry {
    let (decision, reasons) = match outcome {
        Ok(text) => (Decision::Allow, vec![text]),
        Err((refusal, detail)) => (Decision::Deny, vec![refusal.code().to_owned(), detail]),
    };
    let record = Record {
        time: now,
        site: site.to_owned(),
        kind: RecordKind::PolicyUpdate,
        node_id: None,
        spiffe_id: None,
        decision,
        reasons,
        policy_digest: Some(policy_digest),
        evidence_digest: None,
        cert_serial: None,
        cert_not_after: None,
    };
    NewEntry {
        record,
        evidence: Some(archive),
        node_update: None,
    }
}

/// Why the bundle file given at start is not put in force.
#[derive(Debug)]
pub(crate) enum StartRefusal {
    /// The floor cannot be read back.
    Floor(PolicyFloorError),
    /// The bundle is refused (and, when it was refused against the floor, that is recorded).
    Bundle(PolicyError),
    /// The log could not record the outcome.
    Log(garrison_log::LogError),
}

/// Where the bundle given at start stands: verified, and compared with the floor in the log.
/// Nothing is recorded (that is [`start`]'s); `garrison attestor check-config` stops here.
pub(crate) enum Assessment {
    /// Verified, and the floor admits it.
    Admitted {
        /// The bundle, compiled.
        service: PolicyService,
        /// The floor's bundle, or newer.
        standing: Standing,
        /// The floor's sequence (0: none).
        floor: u64,
    },
    /// Below the floor (a rollback), or the floor's sequence with another digest.
    BelowFloor {
        /// Why.
        err: PolicyError,
        /// The digest to record the refusal under.
        digest: String,
    },
}

/// `build` the bundle with the floor read from the log (it verifies the bundle at the time
/// it was given, and refuses a sequence below the floor) and check it against the floor.
pub(crate) async fn assess(
    log: &AttestationLog,
    build: impl FnOnce(u64) -> Result<PolicyService, PolicyError>,
) -> Result<Assessment, StartRefusal> {
    let floor = PolicyFloor::read(log).await.map_err(StartRefusal::Floor)?;
    let floor = floor.as_ref();
    let service = match build(PolicyFloor::sequence(floor)) {
        Ok(service) => service,
        Err(err @ PolicyError::Rollback { .. }) => {
            let digest = floor.map(|f| f.bundle.digest.clone()).unwrap_or_default();
            return Ok(Assessment::BelowFloor { err, digest });
        }
        Err(err) => return Err(StartRefusal::Bundle(err)),
    };
    let info = service.current().info().clone();
    Ok(
        match PolicyFloor::admits(floor, &BundleId::from_info(&info)) {
            Ok(standing) => Assessment::Admitted {
                service,
                standing,
                floor: PolicyFloor::sequence(floor),
            },
            Err(err) => Assessment::BelowFloor {
                err,
                digest: info.digest,
            },
        },
    )
}

/// The bundle in force at start: `files` (decoded from `archive`) verified at `now` and
/// checked against the floor in the log ([`assess`]). A rollback or reused sequence is
/// recorded as a refusal; a bundle newer than the floor is recorded as put in force, so that
/// the floor survives the next restart.
pub(crate) async fn start(
    log: &AttestationLog,
    site: &str,
    build: impl FnOnce(u64) -> Result<PolicyService, PolicyError>,
    archive: Vec<u8>,
    now: OffsetDateTime,
) -> Result<PolicyService, StartRefusal> {
    match assess(log, build).await? {
        Assessment::Admitted {
            service,
            standing: Standing::Same,
            ..
        } => Ok(service),
        Assessment::Admitted {
            service,
            standing: Standing::Newer,
            floor,
        } => {
            let info = service.current().info().clone();
            let text = format!(
                "policy {} #{} in force at start (previous floor #{floor})",
                info.name, info.sequence,
            );
            let entry = update_entry(site, now, Ok(text), info.digest, archive);
            log.append(entry).await.map_err(StartRefusal::Log)?;
            Ok(service)
        }
        Assessment::BelowFloor { err, digest } => {
            Err(refuse_at_start(log, site, now, err, digest, archive).await)
        }
    }
}

/// Record a bundle refused against the floor at start; the refusal to return.
async fn refuse_at_start(
    log: &AttestationLog,
    site: &str,
    now: OffsetDateTime,
    err: PolicyError,
    digest: String,
    archive: Vec<u8>,
) -> StartRefusal {
    let detail = format!("bundle given at start refused: {err}");
    let outcome = Err((PolicyRefusal::of(&err), detail));
    match log
        .append(update_entry(site, now, outcome, digest, archive))
        .await
    {
        Ok(_) => StartRefusal::Bundle(err),
        Err(e) => StartRefusal::Log(e),
    }
}

/// Verify `archive` and put it in force if the floor in the log and the bundle in force both
/// admit it; record the outcome (unless nothing changed). Returns a one-line description.
pub(crate) async fn reload(
    policy: &PolicyService,
    log: &AttestationLog,
    site: &str,
    archive: &[u8],
    now: OffsetDateTime,
) -> Result<String, String> {
    let before = policy.current();
    let in_force = before.info().clone();
    let (outcome, digest) = match reload_checked(policy, log, archive, now).await {
        Ok(ReloadOutcome::Replaced { previous, current }) => {
            // The same footgun warning as at start (`startup.rs`), for a bundle put in force
            // later (SIGHUP, the hub, a carried file).
            if current.name.to_ascii_lowercase().contains("insecure") {
                tracing::warn!(
                    policy = %current.name,
                    sequence = current.sequence,
                    "INSECURE policy put in force: the bundle is named insecure; it is meant for a lab, not for nodes that matter"
                );
            }
            (
                Ok(format!(
                    "policy {} #{} replaced {} #{}",
                    current.name, current.sequence, previous.name, previous.sequence
                )),
                current.digest,
            )
        }
        Ok(_unchanged) => {
            return Ok(format!(
                "policy {} #{} unchanged",
                in_force.name, in_force.sequence
            ));
        }
        Err((refusal, detail)) => (
            Err((
                refusal,
                format!(
                    "new policy bundle refused, {} #{} stays in force: {detail}",
                    in_force.name, in_force.sequence
                ),
            )),
            in_force.digest,
        ),
    };
    let replaced = outcome.is_ok();
    let result = outcome
        .clone()
        .map_err(|(refusal, detail)| format!("{}: {detail}", refusal.code()));
    let entry = update_entry(site, now, outcome, digest, archive.to_vec());
    if let Err(e) = log.append(entry).await {
        tracing::error!(error = %e, "could not record the policy update");
        if replaced {
            // A bundle in force must have its policy-update record (the floor a restart
            // checks against): unrecorded, it does not take effect.
            policy.reinstate(before);
            return Err(format!(
                "log-unavailable: the new bundle could not be recorded ({e}); {} #{} stays in \
                 force",
                in_force.name, in_force.sequence
            ));
        }
    }
    result
}

async fn reload_checked(
    policy: &PolicyService,
    log: &AttestationLog,
    archive: &[u8],
    now: OffsetDateTime,
) -> Result<ReloadOutcome, (PolicyRefusal, String)> {
    let refused = |e: PolicyError| (PolicyRefusal::of(&e), e.to_string());
    let files = decode_archive(archive, &BundleLimits::default()).map_err(refused)?;
    let floor = PolicyFloor::read(log)
        .await
        .map_err(|e| (PolicyRefusal::FloorUnreadable, error_chain(&e)))?;
    PolicyFloor::admits(floor.as_ref(), &BundleId::of(&files).map_err(refused)?)
        .map_err(refused)?;
    policy.reload(&files, now).map_err(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor(sequence: u64, digest: &str) -> PolicyFloor {
        PolicyFloor {
            bundle: BundleId {
                sequence,
                digest: digest.into(),
            },
            record: 0,
        }
    }

    fn id(sequence: u64, digest: &str) -> BundleId {
        BundleId {
            sequence,
            digest: digest.into(),
        }
    }

    #[test]
    fn the_floor_admits_its_own_bundle_and_newer_ones_only() {
        let at = floor(5, "aa");
        assert_eq!(
            PolicyFloor::admits(Some(&at), &id(5, "aa")).unwrap(),
            Standing::Same
        );
        assert_eq!(
            PolicyFloor::admits(Some(&at), &id(6, "bb")).unwrap(),
            Standing::Newer
        );
        assert_eq!(
            PolicyFloor::admits(None, &id(0, "cc")).unwrap(),
            Standing::Newer
        );
        let reused = PolicyFloor::admits(Some(&at), &id(5, "bb")).unwrap_err();
        assert_eq!(PolicyRefusal::of(&reused), PolicyRefusal::SequenceReused);
        let rollback = PolicyFloor::admits(Some(&at), &id(4, "aa")).unwrap_err();
        assert_eq!(PolicyRefusal::of(&rollback), PolicyRefusal::Rollback);
    }

    #[test]
    fn every_refusal_has_its_own_stable_code() {
        let all = [
            (PolicyRefusal::Rollback, "policy-rollback"),
            (PolicyRefusal::SequenceReused, "policy-sequence-reused"),
            (PolicyRefusal::FloorUnreadable, "policy-floor-unreadable"),
            (PolicyRefusal::BundleInvalid, "policy-bundle-invalid"),
        ];
        for (refusal, code) in all {
            assert_eq!(refusal.code(), code);
        }
        let errors = [
            (
                PolicyError::Rollback {
                    in_force: 2,
                    got: 1,
                },
                PolicyRefusal::Rollback,
            ),
            (
                PolicyError::SequenceReused {
                    sequence: 2,
                    in_force: "aa".into(),
                    got: "bb".into(),
                },
                PolicyRefusal::SequenceReused,
            ),
            (PolicyError::SignatureInvalid, PolicyRefusal::BundleInvalid),
            (
                PolicyError::BundleFileMissing {
                    name: MANIFEST_FILE,
                },
                PolicyRefusal::BundleInvalid,
            ),
        ];
        for (err, refusal) in errors {
            assert_eq!(PolicyRefusal::of(&err), refusal, "{err}");
        }
    }
}
