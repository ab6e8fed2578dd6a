//! Attacks on enrollment and renewal: each is refused with its reason code, issues nothing,
//! and (where the attacker got far enough to be identified) leaves a record in the log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use common::*;
use garrison_agent::client::EnrollmentCalls;
use garrison_agent::evidence::{self, MissingAk, TpmKeys};
use garrison_agent::node_key::NodeKey;
use garrison_ca::SpiffeId;
use garrison_log::RecordKind;
use garrison_proto::v1;
use garrison_tpm::{EkSource, KeyAlgorithm, Tpm, TpmConfig};
use ring::rand::SystemRandom;

struct Session {
    tpm: Tpm,
    keys: TpmKeys,
}

fn open(site: &Running, node: &str, ak_blob: &str) -> Session {
    let mut tpm = Tpm::open(&TpmConfig {
        tcti: site.node(node).tpm.tcti(),
    })
    .unwrap();
    let blob = site.node(node).dir.join(ak_blob);
    let keys = evidence::load_keys(
        &mut tpm,
        EkSource::Persistent {
            handle: 0x8101_0001,
        },
        &blob,
        MissingAk::Create(KeyAlgorithm::EccP256),
    )
    .unwrap();
    Session { tpm, keys }
}

async fn calls(site: &Running) -> EnrollmentCalls {
    EnrollmentCalls::new(site.channel(None), RPC_TIMEOUT)
}

fn csr() -> Vec<u8> {
    NodeKey::generate(&SystemRandom::new())
        .unwrap()
        .csr_der()
        .unwrap()
}

fn log_of(site: &Running, node: &str) -> Vec<u8> {
    std::fs::read(site.node(node).dir.join("binary_bios_measurements")).unwrap()
}

async fn begin(site: &Running, calls: &mut EnrollmentCalls, s: &mut Session) -> v1::BeginResponse {
    let request = evidence::begin_request(
        &mut s.tpm,
        &s.keys,
        0x01c0_0002,
        vec![],
        &Default::default(),
    )
    .unwrap();
    let _ = site;
    calls.begin(request).await.unwrap()
}

fn code(err: &garrison_agent::AgentError) -> String {
    reason(err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_answers_once_and_expires() {
    let site = Running::start(&[good("node-1")], "").await;
    let mut calls = calls(&site).await;
    let mut s = open(&site, "node-1", "ak.blob");
    let response = begin(&site, &mut calls, &mut s).await;
    let complete = evidence::complete_request(
        &mut s.tpm,
        &s.keys,
        &response,
        log_of(&site, "node-1"),
        csr(),
    )
    .unwrap();
    calls.complete(complete.clone()).await.unwrap();
    // Replaying the same answer: the challenge is gone.
    let err = calls.complete(complete).await.unwrap_err();
    assert_eq!(code(&err), "challenge-unknown");

    // An answer after the challenge expired.
    let response = begin(&site, &mut calls, &mut s).await;
    let complete = evidence::complete_request(
        &mut s.tpm,
        &s.keys,
        &response,
        log_of(&site, "node-1"),
        csr(),
    )
    .unwrap();
    site.clock.advance(time::Duration::seconds(61));
    let err = calls.complete(complete).await.unwrap_err();
    assert_eq!(code(&err), "challenge-expired");
    let records = site.records().await;
    let kinds: Vec<_> = records
        .iter()
        .map(|r| (r.record.kind, r.record.reasons.first().cloned()))
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|(k, _)| *k == RecordKind::Enroll)
            .count(),
        1,
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(RecordKind::Reject, Some("challenge-unknown".into()))),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(RecordKind::Reject, Some("challenge-expired".into()))),
        "{kinds:?}"
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_from_another_tpm_or_another_ak_is_refused() {
    let site = Running::start(&[good("node-1"), good("node-2")], "").await;
    let mut calls = calls(&site).await;
    let mut a = open(&site, "node-1", "ak.blob");
    let mut b = open(&site, "node-2", "ak.blob");

    // Begin as node-1, activate on node-1, but quote with node-2's TPM.
    let response = begin(&site, &mut calls, &mut a).await;
    let mut complete = evidence::complete_request(
        &mut a.tpm,
        &a.keys,
        &response,
        log_of(&site, "node-1"),
        csr(),
    )
    .unwrap();
    let challenge = response.challenge.clone().unwrap();
    complete.quote = Some(evidence::quote_challenge(&mut b.tpm, &b.keys.ak, &challenge).unwrap());
    let err = calls.complete(complete).await.unwrap_err();
    assert_eq!(code(&err), "quote-signature");

    // AK swapped between Begin and Complete: a second AK in the same TPM signs the quote.
    let mut a2 = open(&site, "node-1", "second-ak.blob");
    let response = begin(&site, &mut calls, &mut a).await;
    let mut complete = evidence::complete_request(
        &mut a.tpm,
        &a.keys,
        &response,
        log_of(&site, "node-1"),
        csr(),
    )
    .unwrap();
    let challenge = response.challenge.clone().unwrap();
    complete.quote = Some(evidence::quote_challenge(&mut a2.tpm, &a2.keys.ak, &challenge).unwrap());
    let err = calls.complete(complete).await.unwrap_err();
    assert_eq!(code(&err), "quote-signature");

    // A credential answered without the TPM: a guessed secret.
    let response = begin(&site, &mut calls, &mut a).await;
    let mut complete = evidence::complete_request(
        &mut a.tpm,
        &a.keys,
        &response,
        log_of(&site, "node-1"),
        csr(),
    )
    .unwrap();
    complete.activated_secret = vec![0u8; 32];
    let err = calls.complete(complete).await.unwrap_err();
    assert_eq!(code(&err), "credential-activation");

    // Another machine's (innocent-looking) log does not replay to this TPM's PCRs.
    let response = begin(&site, &mut calls, &mut a).await;
    let complete = evidence::complete_request(
        &mut a.tpm,
        &a.keys,
        &response,
        garrison_testbed::INSECURE_BOOT_LOG.to_vec(),
        csr(),
    )
    .unwrap();
    let err = calls.complete(complete).await.unwrap_err();
    assert_eq!(code(&err), "eventlog-replay");

    // Event data edited under valid digests: replay still matches, but the edited event fails
    // its digest check, its claim is not believed, and the strict policy refuses.
    let response = begin(&site, &mut calls, &mut a).await;
    let mut forged = log_of(&site, "node-1");
    let at = forged.len() - 40;
    forged[at] ^= 0x01;
    let complete =
        evidence::complete_request(&mut a.tpm, &a.keys, &response, forged, csr()).unwrap();
    let err = calls.complete(complete).await.unwrap_err();
    assert_eq!(code(&err), "policy-deny");

    let records = site.records().await;
    assert!(
        records
            .iter()
            .all(|r| r.record.kind == RecordKind::Reject && r.record.cert_serial.is_none())
    );
    assert_eq!(records.len(), 5, "every refused attempt is recorded");
    assert!(
        records[4].record.reasons[1].contains("is unverifiable"),
        "{:?}",
        records[4].record.reasons
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csr_asking_for_another_identity_gets_the_nodes_own() {
    let site = Running::start(&[good("node-1")], "").await;
    let mut calls = calls(&site).await;
    let mut s = open(&site, "node-1", "ak.blob");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let claim = "spiffe://example.org/site/site-a/attestor";
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![rcgen::SanType::URI(claim.to_owned().try_into().unwrap())];
    let greedy_csr = params.serialize_request(&key).unwrap().der().to_vec();
    let response = begin(&site, &mut calls, &mut s).await;
    let complete = evidence::complete_request(
        &mut s.tpm,
        &s.keys,
        &response,
        log_of(&site, "node-1"),
        greedy_csr,
    )
    .unwrap();
    let svid = calls.complete(complete).await.unwrap();
    assert_ne!(svid.spiffe_id, claim);
    assert!(
        svid.spiffe_id
            .starts_with("spiffe://example.org/site/site-a/node/")
    );
    assert_eq!(
        garrison_spiffe_tls::spiffe_id_of(&svid.certificate_chain[0])
            .unwrap()
            .to_string(),
        svid.spiffe_id
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_before_any_work() {
    let site = Running::start(&[good("node-1")], "").await;
    let mut calls = calls(&site).await;
    let mut s = open(&site, "node-1", "ak.blob");
    // Over the transport limit: refused by the server before decoding.
    let mut request = evidence::begin_request(
        &mut s.tpm,
        &s.keys,
        0x01c0_0002,
        vec![],
        &Default::default(),
    )
    .unwrap();
    request
        .asserted
        .insert("padding".into(), "x".repeat(2 * 1024 * 1024));
    let bundle = std::fs::read(site.site.bundle_pem()).unwrap();
    let id = SpiffeId::parse(&site.site.attestor_id()).unwrap();
    let tls = garrison_spiffe_tls::client_config(&bundle, id, None).unwrap();
    let channel = garrison_spiffe_tls::connect(&site.url(), tls).unwrap();
    let mut raw = v1::enrollment_client::EnrollmentClient::new(channel)
        .max_encoding_message_size(8 * 1024 * 1024);
    let status = raw.begin(request.clone()).await.unwrap_err();
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted | tonic::Code::InvalidArgument
        ),
        "{status:?}"
    );
    // Under the transport limit but over a field limit: a reason code.
    request.asserted.insert("padding".into(), "x".repeat(4096));
    let status = raw.begin(request).await.unwrap_err();
    assert_eq!(
        status.metadata().get("garrison-reason").unwrap(),
        "malformed-request"
    );
    let _ = &mut calls;
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_tls_gets_nowhere() {
    let site = Running::start(&[good("node-1")], "").await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", site.addr))
        .unwrap()
        .connect()
        .await;
    let result = match channel {
        Err(_) => Err(()),
        Ok(channel) => v1::enrollment_client::EnrollmentClient::new(channel)
            .begin(v1::BeginRequest::default())
            .await
            .map(|_| ())
            .map_err(|_| ()),
    };
    assert!(result.is_err(), "a plaintext client must not get an answer");
    assert!(
        site.records().await.is_empty(),
        "nothing reached the attestor"
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestor_impostor_is_not_trusted_by_the_agent() {
    let site = Running::start(&[good("node-1")], "").await;
    let mut config = site.agent_config("node-1");
    config.attestor_spiffe_id =
        SpiffeId::parse("spiffe://example.org/site/site-b/attestor").unwrap();
    let err = garrison_agent::enroll_once(&config).await.unwrap_err();
    assert!(
        err.reason_code().is_none(),
        "the TLS handshake fails before any request"
    );
    assert!(site.records().await.is_empty());
    site.stop().await;
}

/// The attestor keeps no TLS sessions and sends no tickets: a client that would resume (the
/// rustls default) gets a full handshake every time, so every connection is authenticated by
/// the certificate it presents now, never by a session remembered from an earlier one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_session_is_never_resumed() {
    use tokio::io::AsyncReadExt as _;

    let site = Running::start(&[good("node-1")], "").await;
    let bundle = std::fs::read(site.site.bundle_pem()).unwrap();
    let id = SpiffeId::parse(&site.site.attestor_id()).unwrap();
    // Resumption is left at rustls's default: an in-memory cache that resumes when it can.
    let config = garrison_spiffe_tls::client_config(&bundle, id, None).unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    for attempt in 0..2 {
        let tcp = tokio::net::TcpStream::connect(site.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        assert_eq!(
            tls.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Full),
            "handshake {attempt} was not a full one"
        );
        // Read the server's first HTTP/2 bytes: tickets, if any were sent, come before them
        // and would now be stored in the client's session cache.
        let mut first = [0u8; 9];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tls.read_exact(&mut first),
        )
        .await
        .unwrap()
        .unwrap();
    }
    site.stop().await;
}
