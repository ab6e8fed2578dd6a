//! The agent's evidence gathering on a real swtpm, judged by the attestor's pure verifier
//! (garrison-evidence) playing the server: MakeCredential to the EK and AK name the agent
//! sent, ActivateCredential by the agent, quote verification with the nonce and selection
//! of the challenge. No network.
//!
//! Every test starts and kills its own swtpm. Run with `TSS2_LOG=all+none` to silence ESYS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use garrison_agent::evidence::{
    self, MissingAk, TpmKeys, begin_request, complete_request, load_keys, renewal_request,
};
use garrison_agent::{AgentError, TpmSettings, TpmWorker};
use garrison_evidence::{
    AkIdentity, AkPolicy, HashAlg, PcrValues, TpmPublic, check_ak, make_credential,
    verify_activation, verify_quote,
};
use garrison_proto::v1::{BeginResponse, Challenge, PcrSelection, Quote};
use garrison_swtpm::{Swtpm, SwtpmOptions};
use garrison_tpm::{EkSource, KeyAlgorithm, Tpm, TpmConfig, ek_nv_index};
use ring::rand::{SecureRandom as _, SystemRandom};
use x509_parser::prelude::{FromDer as _, X509Certificate, X509CertificationRequest};

/// swtpm_setup persists the RSA-2048 EK here; its certificate is at NV 0x01c00002.
const SWTPM_RSA_EK: EkSource = EkSource::Persistent {
    handle: 0x8101_0001,
};
const TPM_ALG_SHA256: u32 = 0x000B;

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).unwrap();
    bytes
}

fn challenge(nonce: &[u8], pcrs: &[u32]) -> Challenge {
    Challenge {
        challenge_id: random::<16>().to_vec(),
        nonce: nonce.to_vec(),
        pcr_selection: vec![PcrSelection {
            hash_alg: TPM_ALG_SHA256,
            pcrs: pcrs.to_vec(),
        }],
        expires_at_unix: 0,
    }
}

/// What the attestor would do with a quote: verify it against the AK, nonce and values.
fn verify(ak: &AkIdentity, quote: &Quote, nonce: &[u8]) -> garrison_evidence::QuoteVerdict {
    assert!(quote.pcrs.iter().all(|v| v.hash_alg == TPM_ALG_SHA256));
    let values = PcrValues::from_entries(
        quote
            .pcrs
            .iter()
            .map(|v| (HashAlg::Sha256, v.index, v.digest.as_slice())),
    )
    .unwrap();
    verify_quote(ak, &quote.attest, &quote.signature, nonce, &values).unwrap()
}

fn open(swtpm: &Swtpm) -> Tpm {
    Tpm::open(&TpmConfig { tcti: swtpm.tcti() }).unwrap()
}

fn asserted() -> BTreeMap<String, String> {
    BTreeMap::from([("hostname".to_owned(), "node-1".to_owned())])
}

/// Enrollment evidence end to end: Begin carries an EK the verifier can seal to and an AK
/// it accepts; the agent's Complete carries the sealed secret and a quote that verifies.
/// After a restart the stored AK is reused and its renewal quotes verify under the AK
/// identity established at enrollment.
#[test]
fn enrollment_and_renewal_evidence_satisfy_the_verifier() {
    let mut swtpm = Swtpm::start(&SwtpmOptions::default()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let blob_path = state.path().join("state/ak.blob");
    let mut tpm = open(&swtpm);
    let keys = load_keys(
        &mut tpm,
        SWTPM_RSA_EK,
        &blob_path,
        MissingAk::Create(KeyAlgorithm::EccP256),
    )
    .unwrap();
    let mode = std::fs::metadata(&blob_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "AK blob is private");

    // Begin: what the attestor receives.
    let begin = begin_request(&mut tpm, &keys, ek_nv_index::RSA_2048, vec![], &asserted()).unwrap();
    assert_eq!(
        begin.asserted.get("hostname").map(String::as_str),
        Some("node-1")
    );
    let (_, ek_cert) = X509Certificate::from_der(&begin.ek_certificate).unwrap();
    assert!(ek_cert.issuer().to_string().contains("swtpm-localca"));
    let ek_public = TpmPublic::from_tpm2b(&begin.ek_public).unwrap();
    let ak = check_ak(&begin.ak_public, &AkPolicy::default()).unwrap();

    // The attestor's answer: a credential sealed to that EK and AK name, and a challenge.
    let secret = random::<32>();
    let credential = make_credential(&ek_public, ak.name(), &secret, &SystemRandom::new()).unwrap();
    let nonce = random::<32>();
    let response = BeginResponse {
        challenge: Some(challenge(&nonce, &[0, 1, 2, 3, 4, 5, 6, 7])),
        id_object: credential.id_object_contents().to_vec(),
        encrypted_secret: credential.encrypted_secret_contents().to_vec(),
    };

    // Complete: the agent's proof.
    let key = garrison_agent::node_key::NodeKey::generate(&SystemRandom::new()).unwrap();
    let csr = key.csr_der().unwrap();
    let complete = complete_request(&mut tpm, &keys, &response, vec![9, 9], csr.clone()).unwrap();
    verify_activation(&secret, &complete.activated_secret).unwrap();
    assert_eq!(
        complete.challenge_id,
        response.challenge.as_ref().unwrap().challenge_id
    );
    assert_eq!(complete.event_log, [9, 9]);
    let quote = complete.quote.as_ref().unwrap();
    assert_eq!(quote.pcrs.len(), 8);
    let first = verify(&ak, quote, &nonce);
    let (_, parsed_csr) = X509CertificationRequest::from_der(&complete.csr).unwrap();
    parsed_csr.verify_signature().unwrap();

    // A credential sealed to another AK name does not activate.
    let other = random::<32>();
    let mut wrong_name = ak.name().as_bytes().to_vec();
    wrong_name[5] ^= 1;
    let wrong_name = garrison_evidence::ObjectName(wrong_name);
    let forged = make_credential(&ek_public, &wrong_name, &other, &SystemRandom::new()).unwrap();
    let forged_response = BeginResponse {
        id_object: forged.id_object_contents().to_vec(),
        encrypted_secret: forged.encrypted_secret_contents().to_vec(),
        ..response.clone()
    };
    assert!(matches!(
        complete_request(&mut tpm, &keys, &forged_response, vec![], csr.clone()),
        Err(AgentError::ActivateCredential { .. })
    ));
    evidence::release_keys(&mut tpm, keys);
    drop(tpm);

    // Reboot: the stored AK is loaded (never recreated) and renewal quotes verify with the
    // AK identity from enrollment.
    swtpm.restart().unwrap();
    let mut tpm = open(&swtpm);
    let keys: TpmKeys = load_keys(&mut tpm, SWTPM_RSA_EK, &blob_path, MissingAk::Refuse).unwrap();
    assert_eq!(keys.ak.name(), ak.name().as_bytes());
    let nonce = random::<32>();
    let renewal =
        renewal_request(&mut tpm, &keys.ak, &challenge(&nonce, &[7, 0]), vec![], csr).unwrap();
    assert_eq!(renewal.ak_public, begin.ak_public);
    let rebooted = verify(&ak, renewal.quote.as_ref().unwrap(), &nonce);
    assert_eq!(rebooted.reset_count, first.reset_count + 1);
    evidence::release_keys(&mut tpm, keys);
}

/// Renewal never creates a new AK: without the blob it fails with `AkBlobMissing`, which
/// sends the agent back to enrollment.
#[test]
fn renewal_refuses_to_create_an_ak() {
    let swtpm = Swtpm::start(&SwtpmOptions::default()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let blob_path = state.path().join("ak.blob");
    let mut tpm = open(&swtpm);
    let error = load_keys(&mut tpm, SWTPM_RSA_EK, &blob_path, MissingAk::Refuse).unwrap_err();
    assert!(
        matches!(error, AgentError::AkBlobMissing { .. }),
        "{error:?}"
    );
    assert_eq!(error.disposition(), garrison_agent::Disposition::Reenroll);
    assert!(!blob_path.exists());

    // A corrupt blob is a typed, non-retryable error (the operator must act).
    std::fs::write(&blob_path, [0, 1, 2]).unwrap();
    let error = load_keys(&mut tpm, SWTPM_RSA_EK, &blob_path, MissingAk::Refuse).unwrap_err();
    assert!(matches!(error, AgentError::ParseAkBlob { .. }), "{error:?}");
    assert_eq!(error.disposition(), garrison_agent::Disposition::Fatal);
}

/// Template EKs (recreated from the TCG template) work too, the worker thread keeps the
/// keys loaded across calls, and it adds up the time spent in the TPM: opening it and
/// loading the keys, then each job, never more than the wall time around them.
#[tokio::test]
async fn worker_runs_jobs_with_a_template_ek() {
    let swtpm = Swtpm::start(&SwtpmOptions::default()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let settings = TpmSettings {
        tcti: swtpm.tcti(),
        ek: EkSource::Template {
            algorithm: KeyAlgorithm::Rsa2048,
        },
        ak_blob: state.path().join("ak.blob"),
        missing_ak: MissingAk::Create(KeyAlgorithm::EccP256),
    };
    let started = Instant::now();
    let worker = TpmWorker::start(settings.clone()).await.unwrap();
    let after_start = worker.tpm_time();
    assert!(after_start > Duration::ZERO);
    assert!(after_start <= started.elapsed());
    let begin = worker
        .run(|tpm, keys| begin_request(tpm, keys, ek_nv_index::RSA_2048, vec![], &BTreeMap::new()))
        .await
        .unwrap();
    let after_begin = worker.tpm_time();
    assert!(after_begin > after_start);
    let ek_public = TpmPublic::from_tpm2b(&begin.ek_public).unwrap();
    let ak = check_ak(&begin.ak_public, &AkPolicy::default()).unwrap();
    let secret = random::<16>();
    let credential = make_credential(&ek_public, ak.name(), &secret, &SystemRandom::new()).unwrap();
    let nonce = random::<20>();
    let response = BeginResponse {
        challenge: Some(challenge(&nonce, &[0, 7])),
        id_object: credential.id_object_contents().to_vec(),
        encrypted_secret: credential.encrypted_secret_contents().to_vec(),
    };
    let complete = worker
        .run(move |tpm, keys| complete_request(tpm, keys, &response, vec![], vec![]))
        .await
        .unwrap();
    verify_activation(&secret, &complete.activated_secret).unwrap();
    verify(&ak, complete.quote.as_ref().unwrap(), &nonce);
    let after_complete = worker.tpm_time();
    assert!(after_complete > after_begin);
    assert!(after_complete <= started.elapsed());
    drop(worker);

    // A second worker reloads the same AK under the recreated template EK (swtpm serves one
    // client at a time, so this also shows the first worker closed the TPM).
    let worker = TpmWorker::start(TpmSettings {
        missing_ak: MissingAk::Refuse,
        ..settings
    })
    .await
    .unwrap();
    let name = worker
        .run(|_, keys| Ok(keys.ak.name().to_vec()))
        .await
        .unwrap();
    assert_eq!(name, ak.name().as_bytes());
}

/// An unreachable TPM is a typed, retryable error.
#[tokio::test]
async fn unreachable_tpm_is_retryable() {
    let state = tempfile::tempdir().unwrap();
    let error = TpmWorker::start(TpmSettings {
        tcti: "swtpm:host=127.0.0.1,port=1".to_owned(),
        ek: SWTPM_RSA_EK,
        ak_blob: state.path().join("ak.blob"),
        missing_ak: MissingAk::Create(KeyAlgorithm::EccP256),
    })
    .await
    .unwrap_err();
    assert!(matches!(error, AgentError::OpenTpm { .. }), "{error:?}");
    assert!(matches!(
        error.disposition(),
        garrison_agent::Disposition::Retry { .. }
    ));
    assert!(!Path::new(&state.path().join("ak.blob")).exists());
}
