//! `garrison audit replay` over a real site's log: swtpm nodes enroll, are refused and
//! renew through the real attestor; the auditor's replay then re-runs the appraisal over
//! each record's stored evidence. With the policy then in force every replayable record
//! reproduces its decision; with a stricter bundle (signed by the site's policy signer) the
//! allowed node's decisions are listed as would-change; an edited decision is found.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use common::*;
use garrison_audit::{
    AuditError, LogSource, Outcome, RecordReplay, ReplayOptions, ReplaySummary, replay,
};
use garrison_log::{AttestationLog, Decision, RecordKind, StoredCheckpoint, StoredRecord};
use time::OffsetDateTime;

async fn replay_all(
    source: &impl LogSource,
    roots: &[Vec<u8>],
    options: &ReplayOptions,
) -> (ReplaySummary, Vec<RecordReplay>) {
    let mut records = Vec::new();
    let summary = replay(source, roots, options, &mut |r| records.push(r))
        .await
        .unwrap();
    (summary, records)
}

fn options() -> ReplayOptions {
    // The testbed's site.toml leaves `pcrs` at the attestor's default, as replay does.
    ReplayOptions::new(OffsetDateTime::now_utc(), garrison_attestor::FIELD_LIMITS)
}

/// The testbed's strict policy with node-1's boot no longer trusted (no boot application on
/// the allow-list), signed by the site's policy signer as bundle #2.
fn stricter_bundle(site: &Running) -> Vec<u8> {
    let dir = &site.site.dir;
    let mut data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("policy/data.json")).unwrap()).unwrap();
    data["strict"]["boot_applications"] = serde_json::json!({});
    let mut files = garrison_policy::BundleFiles::new();
    files.insert(
        "admission.rego".into(),
        garrison_testbed::STRICT_POLICY.as_bytes().to_vec(),
    );
    files.insert(
        "data.json".into(),
        serde_json::to_vec_pretty(&data).unwrap(),
    );
    let signer = garrison_policy::BundleSigner::from_pem(
        &std::fs::read_to_string(dir.join("ca/policy-signer/key.pem")).unwrap(),
        &std::fs::read_to_string(dir.join("ca/policy-signer/chain.pem")).unwrap(),
    )
    .unwrap();
    let signed = signer
        .sign(
            &files,
            "testbed-stricter",
            2,
            OffsetDateTime::now_utc(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
    garrison_policy::encode_archive(&signed)
}

/// A log as read by someone who edited one record's decision in the database (replay reads
/// only through [`LogSource`], so this is what it sees of such an edit).
struct Edited<'a> {
    log: &'a AttestationLog,
    sequence: u64,
}

impl LogSource for Edited<'_> {
    fn origin(&self) -> Option<String> {
        LogSource::origin(self.log)
    }

    async fn records_after(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, AuditError> {
        let mut records = self.log.records_after(after, limit).await?;
        for r in records.iter_mut().filter(|r| r.sequence == self.sequence) {
            r.record.decision = Decision::Allow;
            r.record.reasons.clear();
        }
        Ok(records)
    }

    async fn evidence(&self, digest: &str) -> Result<Option<Vec<u8>>, AuditError> {
        LogSource::evidence(self.log, digest).await
    }

    async fn evidence_many(
        &self,
        digests: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<u8>>, AuditError> {
        LogSource::evidence_many(self.log, digests).await
    }

    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, AuditError> {
        LogSource::checkpoints(self.log).await
    }

    async fn log_key_certificates(&self) -> Result<Vec<String>, AuditError> {
        LogSource::log_key_certificates(self.log).await
    }

    async fn stated_size(&self) -> Result<Option<u64>, AuditError> {
        LogSource::stated_size(self.log).await
    }

    async fn cosignatures(&self) -> Result<Vec<garrison_log::StoredCosignature>, AuditError> {
        LogSource::cosignatures(self.log).await
    }

    async fn witness_certificates(&self) -> Result<Vec<String>, AuditError> {
        LogSource::witness_certificates(self.log).await
    }

    async fn stored_tree_hashes(
        &self,
        first: u64,
        end: u64,
    ) -> Result<Option<garrison_audit::StoredTreeHashes>, AuditError> {
        LogSource::stored_tree_hashes(self.log, first, end).await
    }

    async fn enforced_revocations(
        &self,
    ) -> Result<Option<garrison_audit::EnforcedRevocations>, AuditError> {
        LogSource::enforced_revocations(self.log).await
    }

    async fn node_states(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<garrison_log::KeptNodeState>>, AuditError> {
        LogSource::node_states(self.log, after, limit).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reproduces_every_decision_and_a_stricter_policy_lists_the_changes() {
    let site = Running::start(
        &[
            good("node-1"),
            NodeSpec {
                name: "node-2",
                log: garrison_testbed::INSECURE_BOOT_LOG,
                ek_trusted: true,
            },
        ],
        "",
    )
    .await;
    let config = site.agent_config("node-1");
    let enrolled = garrison_agent::enroll_once(&config).await.unwrap();
    let err = garrison_agent::enroll_once(&site.agent_config("node-2"))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "policy-deny");
    let renewed = garrison_agent::renew_once(&config).await.unwrap();
    let reject = site
        .records()
        .await
        .into_iter()
        .find(|r| r.record.kind == RecordKind::Reject)
        .expect("node-2's refusal is logged")
        .sequence;

    let roots = garrison_ca::certificates_from_pem(
        &std::fs::read_to_string(site.site.bundle_pem()).unwrap(),
    )
    .unwrap();
    let log = AttestationLog::open_read_only(&site.database, None)
        .await
        .unwrap();

    // With the policy then in force, every decision is reproduced.
    let (summary, records) = replay_all(&log, &roots, &options()).await;
    assert!(summary.reproduced(), "{summary:?}\n{records:#?}");
    assert_eq!(
        summary.policies.len(),
        1,
        "the bundle put in force at start"
    );
    assert_eq!(summary.policies[0].problem, None);
    let by_sequence = |sequence: u64| records.iter().find(|r| r.sequence == sequence).unwrap();
    for (sequence, kind, decision) in [
        (enrolled.log_sequence, RecordKind::Enroll, Decision::Allow),
        (reject, RecordKind::Reject, Decision::Deny),
        (renewed.log_sequence, RecordKind::Renew, Decision::Allow),
    ] {
        let r = by_sequence(sequence);
        assert_eq!((r.kind, r.logged.decision), (kind, decision));
        match &r.outcome {
            Outcome::Matched { replayed } => assert_eq!(*replayed, r.logged),
            other => panic!("record #{sequence}: {other:?}"),
        }
    }
    assert_eq!(
        by_sequence(reject).logged.reason.as_deref(),
        Some("policy-deny")
    );
    assert_eq!(summary.matched, 3, "{records:#?}");
    let node_1 = by_sequence(enrolled.log_sequence).node_id.clone();

    // Only node-1's records, from the time of its renewal on.
    let mut narrow = options();
    narrow.node = node_1.clone();
    narrow.since = Some(by_sequence(renewed.log_sequence).time);
    let (summary, records) = replay_all(&log, &roots, &narrow).await;
    assert_eq!(summary.decisions, 1, "{records:#?}");
    assert!(matches!(records[0].outcome, Outcome::Matched { .. }));

    // What-if: a stricter bundle would refuse node-1 at enrollment and renewal; node-2's
    // refusal stands.
    let mut what_if = options();
    what_if.policy = Some(stricter_bundle(&site));
    let (summary, records) = replay_all(&log, &roots, &what_if).await;
    assert!(summary.what_if.is_some());
    let changed: Vec<&RecordReplay> = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Differs { .. }))
        .collect();
    let sequences: Vec<u64> = changed.iter().map(|r| r.sequence).collect();
    assert_eq!(
        sequences,
        [enrolled.log_sequence, renewed.log_sequence],
        "{records:#?}"
    );
    for r in &changed {
        assert_eq!(r.node_id, node_1);
        assert_eq!(r.logged.decision, Decision::Allow);
        let Outcome::Differs {
            replayed,
            differences,
            detail,
        } = &r.outcome
        else {
            unreachable!()
        };
        assert_eq!(replayed.summary(), "deny(policy-deny)");
        assert_eq!(differences, &["decision"]);
        assert!(
            detail
                .as_deref()
                .is_some_and(|d| d.contains("not on the allow-list")),
            "{detail:?}"
        );
    }
    assert!(matches!(
        records
            .iter()
            .find(|r| r.sequence == reject)
            .unwrap()
            .outcome,
        Outcome::Matched { .. }
    ));

    // A what-if bundle not signed under the roots is refused outright.
    let mut unsigned = options();
    unsigned.policy = Some(b"not a bundle".to_vec());
    let refused = replay(&log, &roots, &unsigned, &mut |_| {}).await;
    assert!(matches!(refused, Err(AuditError::WhatIfPolicy(_))));

    // node-2's refusal edited into an allow: replay does not reproduce it.
    let edited = Edited {
        log: &log,
        sequence: reject,
    };
    let (summary, records) = replay_all(&edited, &roots, &options()).await;
    assert!(!summary.reproduced());
    assert_eq!(summary.differs, 1);
    match &records
        .iter()
        .find(|r| r.sequence == reject)
        .unwrap()
        .outcome
    {
        Outcome::Differs {
            replayed,
            differences,
            ..
        } => {
            assert_eq!(replayed.summary(), "deny(policy-deny)");
            assert!(differences.contains(&"decision"), "{differences:?}");
        }
        other => panic!("{other:?}"),
    }
    log.close().await;

    // The event log node-1's two allows were decided over, deleted from the database by
    // someone with access to it: replay fails for want of it, and verify names both.
    let evidence = site
        .records()
        .await
        .into_iter()
        .find(|r| r.sequence == enrolled.log_sequence)
        .and_then(|r| r.record.evidence_digest)
        .unwrap();
    let log = AttestationLog::open_read_only(&site.database, None)
        .await
        .unwrap();
    let evidence: serde_json::Value =
        serde_json::from_slice(&log.evidence(&evidence).await.unwrap().unwrap()).unwrap();
    log.close().await;
    let event_log = evidence["event_log_sha256"].as_str().unwrap().to_owned();
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&site.database)
        .await
        .unwrap();
    let deleted = sqlx::query("DELETE FROM evidence WHERE digest = $1")
        .bind(&event_log)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 1);
    sqlx::Connection::close(conn).await.unwrap();
    let log = AttestationLog::open_read_only(&site.database, None)
        .await
        .unwrap();
    let (summary, records) = replay_all(&log, &roots, &options()).await;
    assert!(!summary.reproduced(), "{summary:?}");
    assert_eq!(summary.evidence_altered, 2, "{records:#?}");
    let report = garrison_audit::verify(&log, &roots).await.unwrap();
    let missing: Vec<u64> = report
        .problems
        .iter()
        .filter_map(|p| match p {
            garrison_audit::Problem::EventLogMissing { sequence, digest }
                if *digest == event_log =>
            {
                Some(*sequence)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        missing,
        [enrolled.log_sequence, renewed.log_sequence],
        "{report:?}"
    );
    assert_eq!(report.problems.len(), 2, "{report:?}");
    log.close().await;
    site.stop().await;
}
