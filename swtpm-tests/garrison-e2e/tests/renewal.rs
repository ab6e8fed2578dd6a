//! Attacks on renewal: another node's SVID, a revoked SVID or node, an expired SVID. Each is
//! refused (or never gets past TLS), and nothing is issued.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use std::time::Duration as StdDuration;

use common::*;
use garrison_agent::client::RenewalCalls;
use garrison_agent::evidence::{self, MissingAk};
use garrison_ca::SpiffeId;
use garrison_log::{Decision, RecordKind, Revocation, RevocationTarget};
use garrison_spiffe_tls::Identity;
use garrison_tpm::{EkSource, Tpm, TpmConfig};

/// A renewal channel presenting `svid_of`'s SVID as client certificate.
fn renewal_calls(site: &Running, svid_of: &str) -> RenewalCalls {
    let svid_dir = site.node(svid_of).dir.join("svid");
    let identity = Identity::from_pem(
        &std::fs::read(svid_dir.join("svid.pem")).unwrap(),
        &std::fs::read(svid_dir.join("svid.key")).unwrap(),
    )
    .unwrap();
    RenewalCalls::new(site.channel(Some(identity)), RPC_TIMEOUT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_with_another_nodes_svid_is_refused() {
    let site = Running::start(&[good("node-1"), good("node-2")], "").await;
    garrison_agent::enroll_once(&site.agent_config("node-1"))
        .await
        .unwrap();
    garrison_agent::enroll_once(&site.agent_config("node-2"))
        .await
        .unwrap();

    // node-2's TPM and AK, but node-1's SVID (stolen key) on the connection.
    let mut calls = renewal_calls(&site, "node-1");
    let challenge = calls.begin().await.unwrap();
    let mut tpm = Tpm::open(&TpmConfig {
        tcti: site.node("node-2").tpm.tcti(),
    })
    .unwrap();
    let blob = site.agent_config("node-2").ak_blob_path();
    let keys = evidence::load_keys(
        &mut tpm,
        EkSource::Persistent {
            handle: 0x8101_0001,
        },
        &blob,
        MissingAk::Refuse,
    )
    .unwrap();
    let log = std::fs::read(site.node("node-2").dir.join("binary_bios_measurements")).unwrap();
    let csr = garrison_agent::node_key::NodeKey::generate(&ring::rand::SystemRandom::new())
        .unwrap()
        .csr_der()
        .unwrap();
    let request = evidence::renewal_request(&mut tpm, &keys.ak, &challenge, log, csr).unwrap();
    let err = calls.complete(request).await.unwrap_err();
    assert_eq!(reason(&err), "ak-mismatch");
    let records = site.records().await;
    let last = records.last().unwrap();
    assert_eq!(
        (last.record.kind, last.record.decision),
        (RecordKind::Reject, Decision::Deny)
    );
    assert_eq!(last.record.reasons[0], "ak-mismatch");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_certificates_and_nodes_are_refused() {
    let site = Running::start(&[good("node-1")], "").await;
    let config = site.agent_config("node-1");
    garrison_agent::enroll_once(&config).await.unwrap();
    let (serial, _, _) = leaf_of(&config.svid_dir.join("svid.pem"));
    let node_id = site.records().await[0].record.node_id.clone().unwrap();

    let log = site.log().await;
    let revocation = |target| Revocation {
        time: time::OffsetDateTime::now_utc(),
        site: "site-a".into(),
        target,
        reasons: vec!["key compromise (test)".into()],
        policy_digest: None,
    };
    log.revoke(revocation(RevocationTarget::Serial(serial)))
        .await
        .unwrap();
    let err = garrison_agent::renew_once(&config).await.unwrap_err();
    assert_eq!(reason(&err), "revoked");

    // A fresh enrollment is possible after a certificate revocation (the TPM proves itself
    // again), but not once the node itself is revoked.
    garrison_agent::enroll_once(&config).await.unwrap();
    log.revoke(revocation(RevocationTarget::Node(node_id)))
        .await
        .unwrap();
    let err = garrison_agent::enroll_once(&config).await.unwrap_err();
    assert_eq!(reason(&err), "revoked");
    let err = garrison_agent::renew_once(&config).await.unwrap_err();
    assert_eq!(reason(&err), "revoked");
    log.close().await;

    let records = site.records().await;
    let kinds: Vec<_> = records.iter().map(|r| r.record.kind).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == RecordKind::Revoke).count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == RecordKind::Enroll).count(),
        2,
        "{kinds:?}"
    );
    assert!(
        records
            .iter()
            .filter(|r| r.record.kind == RecordKind::Reject)
            .all(|r| r.record.reasons[0] == "revoked")
    );
    site.stop().await;
}

/// The attestor reads the node's status before it decides and commits its allow
/// milliseconds later. A revocation committed in between (by another handle on the log: an
/// operator's `garrison log revoke`) refuses the renewal: the certificate is withheld and
/// the log records the refusal after the revocation, not an allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_committed_while_a_renewal_is_decided_refuses_it() {
    revoked_while_decided(Step::Renewal).await;
}

/// [`a_revocation_committed_while_a_renewal_is_decided_refuses_it`] for a node enrolling
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_committed_while_an_enrollment_is_decided_refuses_it() {
    revoked_while_decided(Step::Enrollment).await;
}

#[derive(Clone, Copy)]
enum Step {
    Enrollment,
    Renewal,
}

async fn revoked_while_decided(step: Step) {
    use sqlx::Connection as _;
    let site = Running::start(&[good("node-1")], "").await;
    let config = site.agent_config("node-1");
    garrison_agent::enroll_once(&config).await.unwrap();
    let (serial, _, _) = leaf_of(&config.svid_dir.join("svid.pem"));
    let records = site.records().await;
    let enroll = records
        .iter()
        .find(|r| r.record.kind == RecordKind::Enroll)
        .unwrap();
    let node_id = enroll.record.node_id.clone().unwrap();
    let attestor = std::sync::Arc::clone(site.attestor.as_ref().unwrap());
    let postgres = !site.database.starts_with("sqlite");

    // Another handle writes to the log: it holds SQLite's write lock (PostgreSQL: the log's
    // row), so the attestor's next batch waits for it.
    sqlx::any::install_default_drivers();
    let mut other = sqlx::AnyConnection::connect(&site.database).await.unwrap();
    let reads_before = attestor.log().stats().status_reads_on_writer;
    if postgres {
        sqlx::query("BEGIN").execute(&mut other).await.unwrap();
        sqlx::query("UPDATE logs SET next_sequence = next_sequence")
            .execute(&mut other)
            .await
            .unwrap();
    } else {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
    }
    let attempt = tokio::spawn({
        let config = config.clone();
        async move {
            match step {
                Step::Renewal => garrison_agent::renew_once(&config).await.map(|_| ()),
                Step::Enrollment => garrison_agent::enroll_once(&config).await.map(|_| ()),
            }
        }
    });
    // Until the attestor has read the node's status (a renewal in its Begin, an enrollment
    // in its Complete; on SQLite the log's writer answers those reads, and counts them) or,
    // on PostgreSQL, its writer waits for the log's row.
    let mut read = false;
    for _ in 0..1000 {
        read = if postgres {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut other)
            .await
            .unwrap();
            waiting > 0
        } else {
            attestor.log().stats().status_reads_on_writer > reads_before
        };
        if read {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert!(read, "the attestor never read the node's status");
    // The other handle revokes the node, and commits.
    sqlx::query(
        "INSERT INTO revocations (log_id, sequence, serial, node_id, time_us) \
         VALUES ((SELECT MIN(id) FROM logs), $1, NULL, $2, 0)",
    )
    .bind(i64::try_from(enroll.sequence).unwrap())
    .bind(node_id.clone())
    .execute(&mut other)
    .await
    .unwrap();
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();

    let err = attempt.await.unwrap().unwrap_err();
    assert_eq!(reason(&err), "revoked");
    assert_eq!(
        leaf_of(&config.svid_dir.join("svid.pem")).0,
        serial,
        "no new SVID"
    );
    let records = site.records().await;
    let last = records.last().unwrap();
    assert_eq!(
        (last.record.kind, last.record.decision),
        (RecordKind::Reject, Decision::Deny),
        "{last:?}"
    );
    assert_eq!(last.record.reasons[0], "revoked");
    assert!(
        last.record.reasons[1].contains("revoked before the decision was committed"),
        "{last:?}"
    );
    let allowed = records
        .iter()
        .filter(|r| r.record.decision == Decision::Allow)
        .count();
    assert_eq!(allowed, 1, "only the first enrollment was committed");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_svid_does_not_get_past_tls() {
    // Policy asks for 15 minutes; this site caps SVIDs at 2 seconds.
    let site = Running::start(&[good("node-1")], "max_svid_ttl = \"2s\"\n").await;
    let config = site.agent_config("node-1");
    let enrolled = garrison_agent::enroll_once(&config).await.unwrap();
    let lifetime = enrolled
        .not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        lifetime <= StdDuration::from_secs(2),
        "SVID lives {lifetime:?}"
    );
    tokio::time::sleep(lifetime + StdDuration::from_millis(1500)).await;
    let mut calls = renewal_calls(&site, "node-1");
    let err = calls.begin().await.unwrap_err();
    assert!(
        err.reason_code().is_none(),
        "refused in the TLS handshake, before any RPC: {err:?}"
    );
    let records = site.records().await;
    assert_eq!(
        records.len(),
        1,
        "only the enrollment: {:?}",
        records.iter().map(|r| r.record.kind).collect::<Vec<_>>()
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_svid_from_another_site_ca_does_not_get_past_tls() {
    // A second site CA under the same hub (so the same root) issues an SVID of its own site
    // (it cannot issue one under this site's path: garrison-ca refuses, and a forged one would
    // fail the containment rule too). The attestor only accepts client certificates from its
    // own site CA.
    let site = Running::start(&[good("node-1")], "").await;
    let now = time::OffsetDateTime::now_utc();
    let rng = ring::rand::SystemRandom::new();
    let hub = garrison_attestor::server::load_authority(&site.site.dir.join("ca/hub")).unwrap();
    let other_site = garrison_ca::Authority::from_issued(
        hub.issue_intermediate(
            garrison_ca::IntermediateParams {
                name: "site-b".into(),
                role: garrison_ca::CaRole::Site("site-b".into()),
                ttl: time::Duration::days(7),
                path_len: garrison_ca::PathLen::OneBelowIssuer,
                subject_key: garrison_ca::SubjectKey::Generate(
                    garrison_ca::KeyAlgorithm::EcdsaP256,
                ),
            },
            now,
            &rng,
        )
        .unwrap(),
    )
    .unwrap();
    let forged = other_site
        .issue_svid(
            garrison_ca::SvidParams {
                spiffe_id: SpiffeId::parse("spiffe://example.org/site/site-b/node/forged").unwrap(),
                ttl: time::Duration::hours(1),
                max_ttl: time::Duration::hours(1),
                subject_key: garrison_ca::SubjectKey::Generate(
                    garrison_ca::KeyAlgorithm::EcdsaP256,
                ),
            },
            now,
            &rng,
        )
        .unwrap();
    let identity = Identity::from_pem(
        garrison_ca::certificates_to_pem(&forged.chain).as_bytes(),
        forged
            .key
            .as_ref()
            .unwrap()
            .to_pkcs8_pem()
            .expose()
            .as_bytes(),
    )
    .unwrap();
    let mut calls = RenewalCalls::new(site.channel(Some(identity)), RPC_TIMEOUT);
    let err = calls.begin().await.unwrap_err();
    assert!(
        err.reason_code().is_none(),
        "refused in the TLS handshake, before any RPC: {err:?}"
    );
    assert!(site.records().await.is_empty(), "nothing was decided");
    site.stop().await;
}
