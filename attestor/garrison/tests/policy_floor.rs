//! The policy rollback floor lives in the attestation log: the newest accepted `policy-update`
//! record and its bundle archive. A bundle below it, or a different bundle at its sequence, is
//! refused at start and on reload, and the refusal is recorded with a stable reason code; a
//! floor record that cannot be read back stops the start instead of resetting the floor.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::sync::Arc;

use garrison_attestor::server::{StartError, build};
use garrison_attestor::{Attestor, Clock, SiteConfig, SystemClock};
use garrison_log::{
    AttestationLog, Decision, LogConfig, NewEntry, Query, Record, RecordKind, StoredRecord,
};
use garrison_testbed::{STRICT_POLICY, Site, free_local_address};
use ring::rand::SystemRandom;

const LAB_POLICY: &str =
    include_str!("../../../policy/policies/lab-permissive-INSECURE/admission.rego");
const LAB_DATA: &str = include_str!("../../../policy/policies/lab-permissive-INSECURE/data.json");

struct Fixture {
    _tmp: tempfile::TempDir,
    site: Site,
    config: SiteConfig,
}

/// A site whose attestor trusts one listed EK hash (no TPM is needed: nothing enrolls here).
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::create(tmp.path(), time::OffsetDateTime::now_utc()).unwrap();
    let config = site
        .write_config(
            free_local_address().unwrap(),
            "sqlite://log.db",
            &[],
            "[insecure]\nallow_listed_ek_hashes = [\"00\"]\n",
        )
        .unwrap();
    Fixture {
        _tmp: tmp,
        site,
        config,
    }
}

impl Fixture {
    fn sign(&self, rego: &str, data: &str, name: &str, sequence: u64) -> Vec<u8> {
        let dir = self.site.dir.join("ca/policy-signer");
        let signer = garrison_policy::BundleSigner::from_pem(
            &std::fs::read_to_string(dir.join("key.pem")).unwrap(),
            &std::fs::read_to_string(dir.join("chain.pem")).unwrap(),
        )
        .unwrap();
        let mut files = garrison_policy::BundleFiles::new();
        files.insert("admission.rego".into(), rego.as_bytes().to_vec());
        files.insert("data.json".into(), data.as_bytes().to_vec());
        let signed = signer
            .sign(
                &files,
                name,
                sequence,
                time::OffsetDateTime::now_utc(),
                &SystemRandom::new(),
            )
            .unwrap();
        garrison_policy::encode_archive(&signed)
    }

    /// The strict policy with the testbed's data, signed again as `sequence`: the same
    /// rules, another bundle (another manifest, another digest).
    fn strict_again(&self, sequence: u64) -> Vec<u8> {
        let data = std::fs::read_to_string(self.site.dir.join("policy/data.json")).unwrap();
        self.sign(STRICT_POLICY, &data, "testbed-strict-resigned", sequence)
    }

    fn lab(&self, sequence: u64) -> Vec<u8> {
        self.sign(LAB_POLICY, LAB_DATA, "lab", sequence)
    }

    fn use_bundle(&self, archive: &[u8]) {
        std::fs::write(&self.config.policy_bundle, archive).unwrap();
    }

    async fn start(&self) -> Result<Attestor, StartError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        build(&self.config, clock).await
    }

    async fn log(&self) -> AttestationLog {
        AttestationLog::open(&LogConfig {
            url: self.config.database.clone(),
            origin: None,
            max_batch: 1,
            max_connections: 2,
        })
        .await
        .unwrap()
    }

    async fn policy_updates(&self) -> Vec<StoredRecord> {
        let log = self.log().await;
        let updates = log
            .query(&Query {
                kind: Some(RecordKind::PolicyUpdate),
                ..Query::default()
            })
            .await
            .unwrap();
        log.close().await;
        updates
    }
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

fn assert_refused(record: &StoredRecord, code: &str) {
    assert_eq!(record.record.decision, Decision::Deny, "{record:?}");
    assert_eq!(record.record.reasons[0], code, "{record:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_bundle_at_the_floors_sequence_is_refused_at_start_and_recorded() {
    let f = fixture();
    let first = std::fs::read(&f.config.policy_bundle).unwrap();
    f.start().await.unwrap();
    assert_eq!(f.policy_updates().await.len(), 1, "#1 recorded at start");

    // Another bundle signed as #1: the floor is #1 with another digest.
    let forked = f.strict_again(1);
    f.use_bundle(&forked);
    let err = f.start().await.unwrap_err();
    assert!(matches!(err, StartError::Policy { .. }), "{}", chain(&err));
    assert!(chain(&err).contains("already in force"), "{}", chain(&err));
    let updates = f.policy_updates().await;
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_refused(&updates[1], "policy-sequence-reused");
    let log = f.log().await;
    let stored = log
        .evidence(updates[1].record.evidence_digest.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        stored.as_deref(),
        Some(forked.as_slice()),
        "the refused bundle is the evidence"
    );
    log.close().await;

    // The bundle that set the floor starts again, and nothing new is recorded.
    f.use_bundle(&first);
    f.start().await.unwrap();
    assert_eq!(f.policy_updates().await.len(), 2);

    // A newer bundle is put in force and recorded; the old one is now a rollback, refused
    // and recorded too.
    f.use_bundle(&f.lab(2));
    f.start().await.unwrap();
    f.use_bundle(&first);
    let err = f.start().await.unwrap_err();
    assert!(chain(&err).contains("rollback"), "{}", chain(&err));
    let updates = f.policy_updates().await;
    assert_eq!(updates.len(), 4, "{updates:?}");
    assert_eq!(updates[2].record.decision, Decision::Allow);
    assert_refused(&updates[3], "policy-rollback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_is_checked_against_the_floor_in_the_log_not_only_the_bundle_in_memory() {
    let f = fixture();
    // Two attestors on one log (a restart overlapping the old process, or two replicas).
    let a = f.start().await.unwrap();
    let b = f.start().await.unwrap();
    let lab = f.lab(2);
    let text = a.reload_policy(&lab).await.unwrap();
    assert!(text.contains("lab #2 replaced"), "{text}");

    // b still has #1 in force, but the log says #2 is: another #2 is refused.
    let forked = f.strict_again(2);
    let err = b.reload_policy(&forked).await.unwrap_err();
    assert!(err.starts_with("policy-sequence-reused"), "{err}");
    let updates = f.policy_updates().await;
    assert_refused(updates.last().unwrap(), "policy-sequence-reused");

    // The floor's own bundle is fine for b; on a, the same forked bundle is refused alike.
    b.reload_policy(&lab).await.unwrap();
    let err = a.reload_policy(&forked).await.unwrap_err();
    assert!(err.starts_with("policy-sequence-reused"), "{err}");
    let err = a.reload_policy(&f.strict_again(1)).await.unwrap_err();
    assert!(err.starts_with("policy-rollback"), "{err}");
    let updates = f.policy_updates().await;
    let codes: Vec<_> = updates
        .iter()
        .map(|u| (u.record.decision, u.record.reasons[0].clone()))
        .collect();
    assert_eq!(
        codes[codes.len() - 3..],
        [
            (Decision::Allow, codes[codes.len() - 3].1.clone()),
            (Decision::Deny, "policy-sequence-reused".to_owned()),
            (Decision::Deny, "policy-rollback".to_owned()),
        ],
        "{codes:?}"
    );
}

/// An accepted `policy-update` record whose evidence is not a bundle archive.
async fn append_undecodable_floor(f: &Fixture) {
    let log = f.log().await;
    let record = Record {
        time: time::OffsetDateTime::now_utc(),
        site: "site-a".into(),
        kind: RecordKind::PolicyUpdate,
        node_id: None,
        spiffe_id: None,
        decision: Decision::Allow,
        reasons: vec!["written by hand".into()],
        policy_digest: Some("00".repeat(32)),
        evidence_digest: None,
        cert_serial: None,
        cert_not_after: None,
    };
    log.append(NewEntry {
        record,
        evidence: Some(b"not a bundle archive".to_vec()),
        node_update: None,
    })
    .await
    .unwrap();
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_floor_record_that_does_not_decode_stops_the_start() {
    let f = fixture();
    let running = f.start().await.unwrap();
    append_undecodable_floor(&f).await;

    let err = f.start().await.unwrap_err();
    assert!(matches!(err, StartError::PolicyFloor(_)), "{}", chain(&err));
    assert!(chain(&err).contains("does not decode"), "{}", chain(&err));

    // A running attestor refuses to reload while the floor cannot be read.
    let err = running.reload_policy(&f.lab(2)).await.unwrap_err();
    assert!(err.starts_with("policy-floor-unreadable"), "{err}");
    let updates = f.policy_updates().await;
    assert_refused(updates.last().unwrap(), "policy-floor-unreadable");
}

/// A reload whose policy-update record cannot be written does not take effect: the bundle in
/// force is the one the log's floor names, so a restart cannot silently roll it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_cannot_be_recorded_does_not_take_effect() {
    use sqlx::Connection as _;
    let f = fixture();
    let a = f.start().await.unwrap();
    let before = f.policy_updates().await.len();
    sqlx::any::install_default_drivers();
    let mut side = sqlx::AnyConnection::connect(&f.config.database)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_policy_updates BEFORE INSERT ON records \
         WHEN NEW.kind = 'policy-update' BEGIN SELECT RAISE(ABORT, 'test: log refuses'); END",
    )
    .execute(&mut side)
    .await
    .unwrap();
    let err = a.reload_policy(&f.lab(2)).await.unwrap_err();
    assert!(err.starts_with("log-unavailable"), "{err}");
    sqlx::query("DROP TRIGGER refuse_policy_updates")
        .execute(&mut side)
        .await
        .unwrap();
    side.close().await.unwrap();
    assert_eq!(f.policy_updates().await.len(), before, "nothing recorded");
    // Once the log takes it, the same bundle goes in force: "replaced", not "unchanged",
    // so it was not in force before.
    let text = a.reload_policy(&f.lab(2)).await.unwrap();
    assert!(text.contains("lab #2 replaced"), "{text}");
}
