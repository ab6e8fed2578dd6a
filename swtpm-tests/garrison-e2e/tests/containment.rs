//! A site's trust decisions cannot be borrowed: a node is never handed a role identity, an
//! attestor on another site's CA does not start, and the attestor's own SVID is re-issued
//! while it runs, so agents keep enrolling past its first lifetime.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use std::sync::Arc;

use common::*;
use garrison_agent::client::EnrollmentCalls;
use garrison_agent::evidence::{self, MissingAk};
use garrison_agent::node_key::NodeKey;
use garrison_ca::SpiffeId;
use garrison_log::{Decision, RecordKind};
use garrison_tpm::{EkSource, KeyAlgorithm, Tpm, TpmConfig};
use ring::rand::SystemRandom;

/// Sign `rego` (with the testbed's policy data) as bundle `sequence` with the testbed's
/// policy signer, over the site's bundle file.
fn replace_policy(site: &Running, rego: &str, sequence: u64) {
    let dir = &site.site.dir;
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
    let signer = garrison_policy::BundleSigner::from_pem(
        &read("ca/policy-signer/key.pem"),
        &read("ca/policy-signer/chain.pem"),
    )
    .unwrap();
    let mut files = garrison_policy::BundleFiles::new();
    files.insert("admission.rego".into(), rego.as_bytes().to_vec());
    files.insert("data.json".into(), read("policy/data.json").into_bytes());
    let signed = signer
        .sign(
            &files,
            "containment-test",
            sequence,
            time::OffsetDateTime::now_utc(),
            &SystemRandom::new(),
        )
        .unwrap();
    std::fs::write(
        site.site.policy_bundle(),
        garrison_policy::encode_archive(&signed),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_cannot_hand_a_node_the_attestor_id() {
    let mut site = Running::start(&[good("node-1")], "").await;
    let greedy = garrison_testbed::STRICT_POLICY.replace(
        "spiffe_path := sprintf(\"/site/%s/node/%s\", [input.site.id, substring(input.tpm.ek_sha256, 0, 32)])",
        "spiffe_path := sprintf(\"/site/%s/attestor\", [input.site.id])",
    );
    assert_ne!(
        greedy,
        garrison_testbed::STRICT_POLICY,
        "the policy line moved"
    );
    replace_policy(&site, &greedy, 2);
    site.restart().await;

    let err = garrison_agent::enroll_once(&site.agent_config("node-1"))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "policy-scope");
    assert!(!site.node("node-1").dir.join("svid.pem").exists());
    let records = site.records().await;
    let rejects: Vec<_> = records
        .iter()
        .filter(|r| r.record.kind == RecordKind::Reject)
        .collect();
    assert_eq!(rejects.len(), 1, "{records:?}");
    assert_eq!(rejects[0].record.decision, Decision::Deny);
    assert_eq!(rejects[0].record.reasons[0], "policy-scope");
    assert!(
        records.iter().all(|r| r.record.cert_serial.is_none()),
        "nothing was issued"
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestor_on_another_sites_ca_does_not_start() {
    let site = Running::start(&[good("node-1")], "").await;
    // The site-a CA, configured as site-b's attestor.
    let mut config = garrison_attestor::SiteConfig::load(&site.site.dir.join("site.toml")).unwrap();
    config.site = "site-b".into();
    let clock: Arc<dyn garrison_attestor::Clock> = site.clock.clone();
    let err = garrison_attestor::server::build(&config, Arc::clone(&clock))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            garrison_attestor::server::StartError::WrongSiteCa { .. }
        ),
        "{err}"
    );
    let site_a =
        garrison_attestor::site_ca::SiteCa::load(&config.ca_dir, "site-a", config.max_svid_ttl)
            .unwrap();
    assert!(
        garrison_attestor::server::attestor_identity(&config, Arc::new(site_a), clock).is_err()
    );
    site.stop().await;
}

/// rustls's time source following the site's moved clock, as an agent whose clock moved
/// with the attestor's would see it.
#[derive(Debug)]
struct SiteTime(Arc<ShiftedClock>);

impl rustls::time_provider::TimeProvider for SiteTime {
    fn current_time(&self) -> Option<rustls_pki_types::UnixTime> {
        use garrison_attestor::Clock as _;
        let seconds = u64::try_from(self.0.now().unix_timestamp()).ok()?;
        Some(rustls_pki_types::UnixTime::since_unix_epoch(
            std::time::Duration::from_secs(seconds),
        ))
    }
}

/// Enroll `node` with its own TPM over a connection whose certificate checks (of the
/// attestor's SVID) use the site's clock.
async fn enroll_at_site_time(site: &Running, node: &str) -> Result<(), String> {
    let bundle = std::fs::read(site.site.bundle_pem()).unwrap();
    let id = SpiffeId::parse(&site.site.attestor_id()).unwrap();
    let verifier = Arc::new(garrison_spiffe_tls::SpiffeServerVerifier::new(&bundle, id).unwrap());
    let config = garrison_spiffe_tls::client_config_at(
        verifier,
        None,
        Arc::new(SiteTime(Arc::clone(&site.clock))),
    )
    .unwrap();
    let channel = garrison_spiffe_tls::connect(&site.url(), config).unwrap();
    let mut calls = EnrollmentCalls::new(channel, RPC_TIMEOUT);
    let mut tpm = Tpm::open(&TpmConfig {
        tcti: site.node(node).tpm.tcti(),
    })
    .unwrap();
    let keys = evidence::load_keys(
        &mut tpm,
        EkSource::Persistent {
            handle: 0x8101_0001,
        },
        &site.node(node).dir.join("ak.blob"),
        MissingAk::Create(KeyAlgorithm::EccP256),
    )
    .unwrap();
    let begin =
        evidence::begin_request(&mut tpm, &keys, 0x01c0_0002, vec![], &Default::default()).unwrap();
    let challenge = calls
        .begin(begin)
        .await
        .map_err(|e| garrison_agent::error_chain(&e))?;
    let csr = NodeKey::generate(&SystemRandom::new())
        .unwrap()
        .csr_der()
        .unwrap();
    let event_log = std::fs::read(site.node(node).dir.join("binary_bios_measurements")).unwrap();
    let complete = evidence::complete_request(&mut tpm, &keys, &challenge, event_log, csr).unwrap();
    calls
        .complete(complete)
        .await
        .map_err(|e| garrison_agent::error_chain(&e))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_keep_enrolling_after_the_attestors_first_svid_expired() {
    // The attestor's own SVID lives 24 h by default; the site's clock runs on for 3 days.
    let site = Running::start(&[good("node-1")], "").await;
    enroll_at_site_time(&site, "node-1").await.unwrap();
    for day in 1..=3 {
        site.clock.advance(time::Duration::hours(25));
        enroll_at_site_time(&site, "node-1")
            .await
            .unwrap_or_else(|e| panic!("day {day}: {e}"));
    }
    let enrolled = site
        .records()
        .await
        .iter()
        .filter(|r| r.record.kind == RecordKind::Enroll)
        .count();
    assert_eq!(enrolled, 4);
    site.stop().await;
}
