//! End to end: the agent's TPM layer (garrison-tpm) produces evidence on a real swtpm, the
//! pure verifier (garrison-evidence) and the event-log replayer (garrison-eventlog) judge it.
//!
//! Every test starts and kills its own swtpm (own state dir, own ports, own local CA), so
//! tests run in parallel. swtpm serves one client at a time: a [`Tpm`] handle is dropped
//! before its swtpm is restarted or opened again.
//!
//! ESYS logs the TPM errors the refusal tests provoke; run with `TSS2_LOG=all+none`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use garrison_eventlog::claims::CommandLineSource;
use garrison_eventlog::{BootClaims, EventLog, LogPrefix, ReplayReport};
use garrison_evidence::{
    AkIdentity, AkPolicy, EkEvidence, EkIdentity, EkTrust, EkTrustBasis, EvidenceError, HashAlg,
    ManufacturerRoots, PcrValues, QuoteVerdict, TpmPublic, check_ak, make_credential,
    verify_activation, verify_ek, verify_quote,
};
use garrison_swtpm::{Swtpm, SwtpmOptions};
use garrison_tpm::{
    Ak, AkBlob, Ek, EkSource, KeyAlgorithm, PcrBank, PcrSelectionSpec, PcrValue, Quote, Tpm,
    TpmConfig, TpmError, ek_nv_index,
};
use ring::rand::{SecureRandom as _, SystemRandom};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use x509_parser::{certificate::X509Certificate, prelude::FromDer as _};

/// swtpm_setup persists the RSA-2048 EK here; its certificate is at NV 0x01c00002.
const SWTPM_RSA_EK: EkSource = EkSource::Persistent {
    handle: 0x8101_0001,
};
/// The PCRs a boot quote covers in these tests.
const BOOT_PCRS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
/// A real crypto-agile log (GCE Ubuntu 21.04, no StartupLocality event, SHA-256 bank).
const GCE_UBUNTU_LOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/eventlogs/tpm2tools-event-gce-ubuntu-2104-log.bin"
);

/// One node: its swtpm, an open agent TPM layer, the RSA EK and an ECC P-256 AK.
struct Node {
    swtpm: Swtpm,
    tpm: Tpm,
    ek: Ek,
    ak: Ak,
    ak_blob: AkBlob,
    ek_certificate: Vec<u8>,
}

impl Node {
    fn start() -> Self {
        let swtpm = Swtpm::start(&SwtpmOptions::default()).unwrap();
        let mut tpm = Tpm::open(&TpmConfig { tcti: swtpm.tcti() }).unwrap();
        let ek = tpm.load_ek(SWTPM_RSA_EK).unwrap();
        let ek_certificate = tpm.ek_certificate(ek_nv_index::RSA_2048).unwrap();
        let (ak, ak_blob) = tpm.create_ak(&ek, KeyAlgorithm::EccP256).unwrap();
        Self {
            swtpm,
            tpm,
            ek,
            ak,
            ak_blob,
            ek_certificate,
        }
    }

    /// The node's swtpm local CA as the verifier's trust configuration (root only).
    fn manufacturer_trust(&self) -> EkTrust {
        let root = self.swtpm.manufacturer_root_pem().unwrap();
        EkTrust::ManufacturerRoots(
            ManufacturerRoots::from_pem_or_der(&[("swtpm-localca-root.pem", root.as_bytes())])
                .unwrap(),
        )
    }

    /// The local CA intermediate (issuer of the EK certificates), DER.
    fn intermediate_der(&self) -> Vec<u8> {
        pem_to_der(&self.swtpm.manufacturer_intermediate_pem().unwrap())
    }

    fn quote(&mut self, nonce: &[u8], pcrs: &[u8]) -> Quote {
        let selection = PcrSelectionSpec::sha256(pcrs).unwrap();
        self.tpm.quote(&self.ak, nonce, &selection).unwrap()
    }

    fn read(&mut self, pcrs: &[u8]) -> Vec<PcrValue> {
        self.tpm
            .read_pcrs(&PcrSelectionSpec::sha256(pcrs).unwrap())
            .unwrap()
    }
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let (rest, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    assert!(rest.iter().all(u8::is_ascii_whitespace), "one PEM block");
    pem.contents
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).unwrap();
    bytes
}

/// garrison-tpm's PCR values as the verifier's (SHA-256 bank).
fn evidence_pcrs(values: &[PcrValue]) -> PcrValues {
    PcrValues::from_entries(
        values
            .iter()
            .map(|v| (HashAlg::Sha256, u32::from(v.index), v.digest.as_slice())),
    )
    .unwrap()
}

/// Verified quote values as the event-log replayer's input (SHA-256 bank).
fn eventlog_pcrs(values: &[PcrValue]) -> garrison_eventlog::PcrValues {
    let mut out = garrison_eventlog::PcrValues::new();
    for value in values {
        out.insert(
            HashAlg::Sha256,
            u32::from(value.index),
            value.digest.clone(),
        )
        .unwrap();
    }
    out
}

fn verify_node_ek(node: &Node, trust: &EkTrust) -> Result<EkIdentity, EvidenceError> {
    let intermediate = node.intermediate_der();
    verify_ek(
        &EkEvidence {
            public_area: node.ek.public_area(),
            certificate: Some(&node.ek_certificate),
            intermediates: &[&intermediate],
        },
        trust,
        OffsetDateTime::now_utc(),
    )
}

fn verify(
    ak: &AkIdentity,
    quote: &Quote,
    nonce: &[u8],
    values: &[PcrValue],
) -> Result<QuoteVerdict, EvidenceError> {
    verify_quote(
        ak,
        &quote.attest,
        &quote.signature,
        nonce,
        &evidence_pcrs(values),
    )
}

fn sha256_selection(pcrs: &[u8]) -> Vec<(HashAlg, u32)> {
    pcrs.iter()
        .map(|&i| (HashAlg::Sha256, u32::from(i)))
        .collect()
}

/// Enrollment and one attestation round, every step through the agent's TPM layer and the
/// verifier; then a reboot, after which the stored AK blob still attests and the verdict's
/// resetCount moves on.
#[test]
fn agent_evidence_passes_the_verifier_end_to_end() {
    let mut node = Node::start();

    // EK: the certificate from NV chains through the local CA intermediate to its root.
    let ek = verify_node_ek(&node, &node.manufacturer_trust()).unwrap();
    assert_eq!(ek.basis, EkTrustBasis::ManufacturerCertificate);
    assert_eq!(ek.issuer.as_deref(), Some("CN=swtpm-localca"));
    // The EK hash is SHA-256 over the certificate's SubjectPublicKeyInfo, as openssl has it.
    let (_, cert) = X509Certificate::from_der(&node.ek_certificate).unwrap();
    assert_eq!(
        ek.ek_hash,
        hex::encode(Sha256::digest(cert.public_key().raw))
    );
    let manufacturer = ek.manufacturer.as_ref().unwrap();
    assert_eq!(manufacturer.model.as_deref(), Some("swtpm"));

    // AK: restricted ECC P-256 signing key; the verifier computes the same name as the TPM.
    let ak = check_ak(node.ak.public_area(), &AkPolicy::default()).unwrap();
    assert_eq!(ak.name().as_bytes(), node.ak.name());
    assert_eq!(ak.scheme().hash(), HashAlg::Sha256);

    // Credential activation: sealed by the verifier to the verified EK and the checked AK
    // name, opened by the TPM.
    let secret = random_bytes::<32>();
    let credential = make_credential(&ek.public, ak.name(), &secret, &SystemRandom::new()).unwrap();
    let returned = node
        .tpm
        .activate_credential(
            &node.ak,
            &node.ek,
            credential.id_object_contents(),
            credential.encrypted_secret_contents(),
        )
        .unwrap();
    verify_activation(&secret, returned.expose_secret()).unwrap();
    let err = verify_activation(&random_bytes::<32>(), returned.expose_secret()).unwrap_err();
    assert!(
        matches!(err, EvidenceError::ActivationSecretMismatch),
        "{err:?}"
    );

    // Quote over SHA-256 PCRs 0-7 with a fresh nonce, values read by the agent.
    let nonce = random_bytes::<32>();
    let values = node.read(&BOOT_PCRS);
    let quote = node.quote(&nonce, &BOOT_PCRS);
    let first = verify(&ak, &quote, &nonce, &values).unwrap();
    assert_eq!(
        first.selection.iter().collect::<Vec<_>>(),
        sha256_selection(&BOOT_PCRS)
    );
    assert_eq!(first.pcr_digest_alg, HashAlg::Sha256);
    // qualifiedSigner: SHA-256 qualified name of the AK (0x000b || 32 bytes).
    assert_eq!(first.qualified_signer.len(), 34);
    assert_eq!(first.qualified_signer[..2], [0x00, 0x0b]);
    // A fresh swtpm: no TPM Restart/Resume since the last Reset, few Resets at all.
    assert_eq!(first.restart_count, 0, "{first:?}");
    assert!(first.reset_count < 16, "{first:?}");

    // A second quote in the same boot: same counters, the clock does not go back.
    let nonce2 = random_bytes::<32>();
    let quote = node.quote(&nonce2, &BOOT_PCRS);
    let second = verify(&ak, &quote, &nonce2, &values).unwrap();
    assert_eq!(
        (second.reset_count, second.restart_count),
        (first.reset_count, first.restart_count)
    );
    assert!(second.clock >= first.clock, "{first:?} {second:?}");

    // Reboot: the stored AK blob reloads under the same EK, the verifier's AK identity still
    // verifies its quotes, and resetCount went up by one.
    let Node {
        mut swtpm,
        tpm,
        ak_blob,
        ..
    } = node;
    drop(tpm);
    swtpm.restart().unwrap();
    let mut tpm = Tpm::open(&TpmConfig { tcti: swtpm.tcti() }).unwrap();
    let ek_handle = tpm.load_ek(SWTPM_RSA_EK).unwrap();
    let reloaded = tpm.load_ak(&ek_handle, &ak_blob).unwrap();
    assert_eq!(reloaded.name(), ak.name().as_bytes());
    let selection = PcrSelectionSpec::sha256(&BOOT_PCRS).unwrap();
    let values = tpm.read_pcrs(&selection).unwrap();
    let nonce3 = random_bytes::<32>();
    let quote = tpm.quote(&reloaded, &nonce3, &selection).unwrap();
    let rebooted = verify(&ak, &quote, &nonce3, &values).unwrap();
    assert_eq!(rebooted.reset_count, first.reset_count + 1, "{rebooted:?}");
    assert_eq!(rebooted.restart_count, 0);
}

/// Every way a quote can be wrong is refused with the check that caught it.
#[test]
fn quote_refusals_name_the_failed_check() {
    let mut node = Node::start();
    let ak = check_ak(node.ak.public_area(), &AkPolicy::default()).unwrap();
    let nonce = random_bytes::<32>();
    let values = node.read(&BOOT_PCRS);
    let quote = node.quote(&nonce, &BOOT_PCRS);
    verify(&ak, &quote, &nonce, &values).unwrap();

    // A nonce other than the one issued (e.g. a replayed quote).
    let other_nonce = random_bytes::<32>();
    let err = verify(&ak, &quote, &other_nonce, &values).unwrap_err();
    match &err {
        EvidenceError::NonceMismatch { expected, got } => {
            assert_eq!(*expected, hex::encode(other_nonce));
            assert_eq!(*got, hex::encode(nonce));
        }
        _ => panic!("{err:?}"),
    }

    // The supplied PCR 7 value is not the one quoted (tampered by the node).
    let mut tampered = values.clone();
    tampered[7].digest[0] ^= 1;
    let err = verify(&ak, &quote, &nonce, &tampered).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::PcrDigestMismatch {
                alg: HashAlg::Sha256,
                ..
            }
        ),
        "{err:?}"
    );

    // Fewer or more PCRs than quoted.
    let err = verify(&ak, &quote, &nonce, &values[..7]).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::PcrMissing {
                bank: HashAlg::Sha256,
                index: 7
            }
        ),
        "{err:?}"
    );
    let with_pcr8 = [values.clone(), node.read(&[8])].concat();
    let err = verify(&ak, &quote, &nonce, &with_pcr8).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::PcrNotSelected {
                bank: HashAlg::Sha256,
                index: 8
            }
        ),
        "{err:?}"
    );

    // PCR 7 extended between quote and read: the honest read no longer matches the quote.
    let nonce = random_bytes::<32>();
    let quote = node.quote(&nonce, &BOOT_PCRS);
    node.tpm
        .extend_pcr(PcrBank::Sha256, 7, &random_bytes::<32>())
        .unwrap();
    let after = node.read(&BOOT_PCRS);
    assert_ne!(after[7], values[7]);
    let err = verify(&ak, &quote, &nonce, &after).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::PcrDigestMismatch {
                alg: HashAlg::Sha256,
                ..
            }
        ),
        "{err:?}"
    );
    // ... while the values from before the extend still verify that quote.
    verify(&ak, &quote, &nonce, &values).unwrap();

    // A quote signed by another AK of the same TPM, verified with the first AK's identity.
    let (other_ak, _) = node.tpm.create_ak(&node.ek, KeyAlgorithm::EccP256).unwrap();
    assert_ne!(other_ak.name(), node.ak.name());
    let nonce = random_bytes::<32>();
    let selection = PcrSelectionSpec::sha256(&BOOT_PCRS).unwrap();
    let foreign = node.tpm.quote(&other_ak, &nonce, &selection).unwrap();
    let err = verify(&ak, &foreign, &nonce, &after).unwrap_err();
    assert!(
        matches!(err, EvidenceError::SignatureInvalid { .. }),
        "{err:?}"
    );
    // It is a good quote, just not by this AK.
    let other_identity = check_ak(other_ak.public_area(), &AkPolicy::default()).unwrap();
    verify(&other_identity, &foreign, &nonce, &after).unwrap();
    node.tpm.flush_ak(other_ak).unwrap();

    // The EK presented as AK: a restricted decryption key, not a signing key.
    let err = check_ak(node.ek.public_area(), &AkPolicy::default()).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::AkAttributeMissing {
                attribute: "sign",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Two TPMs, A and B: EK certificates from the wrong CA or for the wrong key are refused,
/// and a credential sealed to A's EK and AK cannot be activated by B or by another AK on A.
#[test]
fn ek_and_credential_refusals_across_two_tpms() {
    let mut a = Node::start();
    let mut b = Node::start();
    verify_node_ek(&a, &a.manufacturer_trust()).unwrap();
    let b_ek = verify_node_ek(&b, &b.manufacturer_trust()).unwrap();

    // A's certificate checked against B's local CA: no chain to a trusted root.
    let err = verify_node_ek(&a, &b.manufacturer_trust()).unwrap_err();
    assert!(
        matches!(err, EvidenceError::EkChainUntrusted { .. }),
        "{err:?}"
    );
    // Even with B's intermediate offered as well.
    let (a_int, b_int) = (a.intermediate_der(), b.intermediate_der());
    let err = verify_ek(
        &EkEvidence {
            public_area: a.ek.public_area(),
            certificate: Some(&a.ek_certificate),
            intermediates: &[&b_int, &a_int],
        },
        &b.manufacturer_trust(),
        OffsetDateTime::now_utc(),
    )
    .unwrap_err();
    assert!(
        matches!(err, EvidenceError::EkChainUntrusted { .. }),
        "{err:?}"
    );
    // Without the intermediate A's own root cannot be reached either.
    let err = verify_ek(
        &EkEvidence {
            public_area: a.ek.public_area(),
            certificate: Some(&a.ek_certificate),
            intermediates: &[],
        },
        &a.manufacturer_trust(),
        OffsetDateTime::now_utc(),
    )
    .unwrap_err();
    assert!(
        matches!(err, EvidenceError::EkChainUntrusted { .. }),
        "{err:?}"
    );

    // A's (valid, trusted) certificate presented with B's EK public area.
    let err = verify_ek(
        &EkEvidence {
            public_area: b.ek.public_area(),
            certificate: Some(&a.ek_certificate),
            intermediates: &[&a_int],
        },
        &a.manufacturer_trust(),
        OffsetDateTime::now_utc(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::EkKeyMismatch {
                detail: "RSA modulus"
            }
        ),
        "{err:?}"
    );

    // A credential for A's EK and A's AK name.
    let a_ek = TpmPublic::from_tpm2b_or_tpmt(a.ek.public_area()).unwrap();
    let a_ak = check_ak(a.ak.public_area(), &AkPolicy::default()).unwrap();
    let secret = random_bytes::<32>();
    let credential = make_credential(&a_ek, a_ak.name(), &secret, &SystemRandom::new()).unwrap();
    let (id_object, encrypted_secret) = (
        credential.id_object_contents(),
        credential.encrypted_secret_contents(),
    );

    // B cannot open it with its own EK and AK: the seed is sealed to A's EK.
    let err = b
        .tpm
        .activate_credential(&b.ak, &b.ek, id_object, encrypted_secret)
        .unwrap_err();
    assert!(
        matches!(err, TpmError::ActivateCredential { .. }),
        "{err:?}"
    );

    // Nor can A with another AK: the integrity HMAC binds the AK name.
    let (other_ak, _) = a.tpm.create_ak(&a.ek, KeyAlgorithm::EccP256).unwrap();
    let err = a
        .tpm
        .activate_credential(&other_ak, &a.ek, id_object, encrypted_secret)
        .unwrap_err();
    assert!(
        matches!(err, TpmError::ActivateCredential { .. }),
        "{err:?}"
    );
    a.tpm.flush_ak(other_ak).unwrap();

    // A credential B's TPM did open, but for B's EK while the verifier expected A's secret.
    let b_ak = check_ak(b.ak.public_area(), &AkPolicy::default()).unwrap();
    let b_secret = random_bytes::<32>();
    let b_credential =
        make_credential(&b_ek.public, b_ak.name(), &b_secret, &SystemRandom::new()).unwrap();
    let opened = b
        .tpm
        .activate_credential(
            &b.ak,
            &b.ek,
            b_credential.id_object_contents(),
            b_credential.encrypted_secret_contents(),
        )
        .unwrap();
    verify_activation(&b_secret, opened.expose_secret()).unwrap();
    let err = verify_activation(&secret, opened.expose_secret()).unwrap_err();
    assert!(
        matches!(err, EvidenceError::ActivationSecretMismatch),
        "{err:?}"
    );

    // And the right TPM with the right AK still opens A's credential.
    let opened = a
        .tpm
        .activate_credential(&a.ak, &a.ek, id_object, encrypted_secret)
        .unwrap();
    verify_activation(&secret, opened.expose_secret()).unwrap();
}

/// A real boot log extended into swtpm's PCRs: the quote verifies, the log replays to every
/// quoted PCR, and boot claims come out; one extra measurement in PCR 4 is then pinned on
/// PCR 4 alone.
#[test]
fn replayed_real_boot_log_verifies_and_extra_measurement_diverges() {
    let log = EventLog::parse(&std::fs::read(GCE_UBUNTU_LOG).unwrap()).unwrap();
    // swtpm starts at locality 0; a log with StartupLocality 3 could not be reproduced.
    assert_eq!(log.startup_locality().unwrap_or(0), 0);
    assert!(log.banks().contains(&HashAlg::Sha256));

    let mut node = Node::start();
    let mut extended = 0;
    for event in log.events().iter().filter(|e| e.is_extended()) {
        let digest = event.digest(HashAlg::Sha256).unwrap();
        let pcr = u8::try_from(event.pcr).unwrap();
        node.tpm.extend_pcr(PcrBank::Sha256, pcr, digest).unwrap();
        extended += 1;
    }
    let mut pcrs: Vec<u8> = log
        .events()
        .iter()
        .filter(|e| e.is_extended())
        .map(|e| u8::try_from(e.pcr).unwrap())
        .collect();
    pcrs.sort_unstable();
    pcrs.dedup();
    assert_eq!(pcrs, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14]);
    assert!(extended > 100, "{extended} events extended");

    let ak = check_ak(node.ak.public_area(), &AkPolicy::default()).unwrap();
    let nonce = random_bytes::<32>();
    let quote = node.quote(&nonce, &pcrs);
    let values = node.read(&pcrs);
    verify(&ak, &quote, &nonce, &values).unwrap();

    let report = ReplayReport::compare(&log, &eventlog_pcrs(&values));
    assert!(report.all_match(), "{report}");
    assert_eq!(
        report.verified.iter().collect::<Vec<_>>(),
        sha256_selection(&pcrs)
    );
    // The TPM's values are exactly the log's own replay.
    let replayed = log.replay();
    for value in &values {
        assert_eq!(
            replayed.value(HashAlg::Sha256, u32::from(value.index)),
            Some(value.digest.as_slice()),
            "PCR {}",
            value.index
        );
    }

    let claims = BootClaims::extract(&log, &report.verified);
    let paths: Vec<&str> = claims
        .boot_applications
        .iter()
        .filter_map(|a| a.device_path_unverified.as_deref())
        .collect();
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("\\EFI\\ubuntu\\grubx64.efi")),
        "{paths:?}"
    );
    assert!(
        claims
            .boot_applications
            .iter()
            .all(|a| a.pcr == 4 && a.bank == HashAlg::Sha256)
    );
    // GRUB's `linux` command and its kernel_cmdline both state the command line.
    let sources: Vec<(u32, CommandLineSource)> = claims
        .kernel_command_lines
        .iter()
        .map(|c| (c.pcr, c.source))
        .collect();
    assert_eq!(
        sources,
        [
            (8, CommandLineSource::GrubLoaderCommand),
            (8, CommandLineSource::Grub)
        ],
        "{claims:?}"
    );
    let cmdline = &claims.kernel_command_lines[1];
    assert!(cmdline.text.contains("root="), "{}", cmdline.text);
    assert_eq!(claims.kernel_command_lines[0].text, cmdline.text);
    assert!(claims.separators_missing.is_empty(), "{claims:?}");
    assert!(claims.unverifiable.is_empty(), "{:?}", claims.unverifiable);

    // One measurement the log does not have, extended into PCR 4 after the boot.
    node.tpm
        .extend_pcr(PcrBank::Sha256, 4, &random_bytes::<32>())
        .unwrap();
    let nonce = random_bytes::<32>();
    let quote = node.quote(&nonce, &pcrs);
    let tampered_values = node.read(&pcrs);
    // The TPM really quoted it: the quote still verifies.
    verify(&ak, &quote, &nonce, &tampered_values).unwrap();
    let report = ReplayReport::compare(&log, &eventlog_pcrs(&tampered_values));
    assert!(!report.all_match());
    assert_eq!(report.divergences.len(), 1, "{report}");
    let divergence = &report.divergences[0];
    assert_eq!((divergence.alg, divergence.pcr), (HashAlg::Sha256, 4));
    assert_eq!(
        divergence.prefix,
        LogPrefix::NoPrefixMatches,
        "{divergence}"
    );
    assert_eq!(
        divergence.replayed.as_deref(),
        replayed.value(HashAlg::Sha256, 4)
    );
    assert_eq!(divergence.quoted, tampered_values[4].digest);
    let pcr4_events: Vec<usize> = log
        .events()
        .iter()
        .filter(|e| e.is_extended() && e.pcr == 4)
        .map(|e| e.index)
        .collect();
    assert_eq!(divergence.extended_by, pcr4_events);
    assert!(!report.verified.contains(HashAlg::Sha256, 4));
    assert_eq!(report.verified.iter().count(), pcrs.len() - 1);

    // Nothing measured into PCR 4 is believed any more; the rest still is.
    let claims = BootClaims::extract(&log, &report.verified);
    assert!(claims.boot_applications.is_empty(), "{claims:?}");
    assert_eq!(claims.kernel_command_lines.len(), 2);
}
