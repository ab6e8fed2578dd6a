//! garrison-tpm against a real swtpm. Every test starts its own swtpm (own state dir, own
//! ports) and checks garrison-tpm's output with independent parsers: tss-esapi's
//! unmarshallers for TPM structures, x509-parser for certificates, sha2 for digests.
//!
//! ESYS logs expected TPM errors (absent NV index, killed swtpm) to stderr; run with
//! `TSS2_LOG=all+none` to silence them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use garrison_swtpm::{Swtpm, SwtpmOptions};
use garrison_tpm::{
    Ak, AkBlob, Ek, EkSource, KeyAlgorithm, PcrBank, PcrSelectionSpec, Tpm, TpmConfig, TpmError,
    ek_nv_index,
};
use sha2::{Digest as _, Sha256};
use tss_esapi::{
    Context,
    interface_types::{algorithm::HashingAlgorithm, resource_handles::Hierarchy},
    structures::{
        Attest, AttestInfo, Digest, Name, PcrSelectionList, PcrSlot, Public, PublicBuffer,
        Signature,
    },
    tcti_ldr::TctiNameConf,
    traits::UnMarshall,
};
use x509_parser::{certificate::X509Certificate, prelude::FromDer, public_key::PublicKey};

/// swtpm_setup persists the RSA-2048 EK here (and the P-384 EK at 0x81010016).
const SWTPM_RSA_EK_HANDLE: u32 = 0x8101_0001;
const SWTPM_P384_EK_HANDLE: u32 = 0x8101_0016;

fn start() -> Swtpm {
    Swtpm::start(&SwtpmOptions::default()).unwrap()
}

fn open(swtpm: &Swtpm) -> Tpm {
    Tpm::open(&TpmConfig { tcti: swtpm.tcti() }).unwrap()
}

fn ecc_ek(tpm: &mut Tpm) -> Ek {
    tpm.load_ek(EkSource::Template {
        algorithm: KeyAlgorithm::EccP256,
    })
    .unwrap()
}

/// Parses TPM2B_PUBLIC the way the verifier does: u16 size, then exactly TPMT_PUBLIC.
fn parse_tpm2b_public(bytes: &[u8]) -> Public {
    let size = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
    assert_eq!(size, bytes.len() - 2, "TPM2B_PUBLIC size prefix");
    let public = Public::unmarshall(&bytes[2..]).unwrap();
    // tss-esapi's own TPM2B_PUBLIC unmarshaller must agree.
    let via_buffer = Public::try_from(PublicBuffer::unmarshall(bytes).unwrap()).unwrap();
    assert_eq!(public, via_buffer);
    public
}

/// The raw key from a TPM public area: RSA modulus, or uncompressed ECC point 04||x||y.
fn tpm_public_key(public: &Public) -> Vec<u8> {
    match public {
        Public::Rsa { unique, .. } => unique.value().to_vec(),
        Public::Ecc { unique, .. } => {
            let mut point = vec![0x04];
            point.extend_from_slice(unique.x().value());
            point.extend_from_slice(unique.y().value());
            point
        }
        other => panic!("unexpected EK type {other:?}"),
    }
}

/// The same from an X.509 certificate (modulus without DER sign byte).
fn cert_public_key(der: &[u8]) -> Vec<u8> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty(), "EK certificate has trailing bytes");
    match cert.public_key().parsed().unwrap() {
        PublicKey::RSA(rsa) => {
            let modulus = rsa.modulus;
            modulus[modulus.iter().take_while(|&&b| b == 0).count()..].to_vec()
        }
        PublicKey::EC(point) => point.data().to_vec(),
        _ => panic!("unexpected EK certificate key type"),
    }
}

fn sha256_selection(indices: &[u8]) -> PcrSelectionList {
    let slots: Vec<PcrSlot> = indices
        .iter()
        .map(|&i| PcrSlot::try_from(1u32 << i).unwrap())
        .collect();
    PcrSelectionList::builder()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .unwrap()
}

fn quoted_pcr_digest(attest: &Attest) -> Vec<u8> {
    match attest.attested() {
        AttestInfo::Quote { info } => info.pcr_digest().value().to_vec(),
        other => panic!("not a quote: {other:?}"),
    }
}

#[test]
fn rsa_ek_public_matches_its_certificate() {
    let swtpm = start();
    let mut tpm = open(&swtpm);
    let ek = tpm
        .load_ek(EkSource::Template {
            algorithm: KeyAlgorithm::Rsa2048,
        })
        .unwrap();
    let public = parse_tpm2b_public(ek.public_area());
    let cert = tpm.ek_certificate(ek_nv_index::RSA_2048).unwrap();
    assert_eq!(cert_public_key(&cert), tpm_public_key(&public));
    assert_eq!(tpm_public_key(&public).len(), 256);

    // swtpm_setup persisted the same EK (same default template, same seed).
    let persistent = tpm
        .load_ek(EkSource::Persistent {
            handle: SWTPM_RSA_EK_HANDLE,
        })
        .unwrap();
    assert_eq!(persistent.persistent_handle(), Some(SWTPM_RSA_EK_HANDLE));
    assert_eq!(
        tpm_public_key(&parse_tpm2b_public(persistent.public_area())),
        tpm_public_key(&public)
    );
    tpm.flush_ek(persistent).unwrap();
    tpm.flush_ek(ek).unwrap();
}

#[test]
fn p384_ek_certificate_matches_persistent_ecc_ek() {
    let swtpm = start();
    let mut tpm = open(&swtpm);
    let ek = tpm
        .load_ek(EkSource::Persistent {
            handle: SWTPM_P384_EK_HANDLE,
        })
        .unwrap();
    let point = tpm_public_key(&parse_tpm2b_public(ek.public_area()));
    assert_eq!(point.len(), 1 + 2 * 48);
    let cert = tpm.ek_certificate(ek_nv_index::ECC_P384).unwrap();
    assert_eq!(cert_public_key(&cert), point);
    tpm.flush_ek(ek).unwrap();
}

#[test]
fn ek_certificate_chains_to_manufacturer_ca() {
    let swtpm = start();
    let mut tpm = open(&swtpm);
    let cert = tpm.ek_certificate(ek_nv_index::RSA_2048).unwrap();
    let (_, cert) = X509Certificate::from_der(&cert).unwrap();
    let pem = swtpm.manufacturer_intermediate_pem().unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let intermediate = pem.parse_x509().unwrap();
    assert_eq!(cert.issuer(), intermediate.subject());
    cert.verify_signature(Some(intermediate.public_key()))
        .unwrap();
    let root_pem = swtpm.manufacturer_root_pem().unwrap();
    let (_, root_pem) = x509_parser::pem::parse_x509_pem(root_pem.as_bytes()).unwrap();
    let root = root_pem.parse_x509().unwrap();
    intermediate
        .verify_signature(Some(root.public_key()))
        .unwrap();
}

#[test]
fn absent_p256_ek_certificate_is_a_typed_error() {
    let swtpm = start();
    let mut tpm = open(&swtpm);
    let err = tpm.ek_certificate(ek_nv_index::ECC_P256).unwrap_err();
    assert!(
        matches!(err, TpmError::EkCertificateAbsent { nv_index } if nv_index == ek_nv_index::ECC_P256),
        "{err:?}"
    );
    // The handle is still usable afterwards.
    assert!(tpm.ek_certificate(ek_nv_index::RSA_2048).is_ok());
}

#[test]
fn ak_blob_reloads_after_restart_with_same_name() {
    let mut swtpm = start();
    let (name, public_area, stored) = {
        let mut tpm = open(&swtpm);
        let ek = ecc_ek(&mut tpm);
        let (ak, blob) = tpm.create_ak(&ek, KeyAlgorithm::EccP256).unwrap();
        let out = (
            ak.name().to_vec(),
            ak.public_area().to_vec(),
            blob.to_bytes(),
        );
        assert_eq!(blob.public_area(), ak.public_area());
        tpm.flush_ak(ak).unwrap();
        tpm.flush_ek(ek).unwrap();
        out
    };
    swtpm.restart().unwrap();
    let mut tpm = open(&swtpm);
    let ek = ecc_ek(&mut tpm);
    let blob = AkBlob::from_bytes(&stored).unwrap();
    let ak = tpm.load_ak(&ek, &blob).unwrap();
    assert_eq!(ak.name(), name);
    assert_eq!(ak.public_area(), public_area);

    // The AK is what the verifier expects: restricted, fixedTPM, fixedParent signing key,
    // and its name is SHA-256 over TPMT_PUBLIC.
    let public = parse_tpm2b_public(ak.public_area());
    let attributes = public.object_attributes();
    assert!(attributes.restricted() && attributes.sign_encrypt() && !attributes.decrypt());
    assert!(attributes.fixed_tpm() && attributes.fixed_parent());
    let mut expected_name = vec![0x00, 0x0b];
    expected_name.extend_from_slice(&Sha256::digest(&ak.public_area()[2..]));
    assert_eq!(ak.name(), expected_name);
    assert!(AkBlob::from_bytes(&stored[..stored.len() - 1]).is_err());
}

#[test]
fn persistent_ak_survives_restart() {
    let mut swtpm = start();
    let name = {
        let mut tpm = open(&swtpm);
        let ek = ecc_ek(&mut tpm);
        let (ak, _) = tpm.create_ak(&ek, KeyAlgorithm::EccP256).unwrap();
        let ak = tpm.persist_ak(ak, 0x8100_0100).unwrap();
        assert_eq!(ak.persistent_handle(), Some(0x8100_0100));
        let name = ak.name().to_vec();
        tpm.flush_ak(ak).unwrap();
        tpm.flush_ek(ek).unwrap();
        name
    };
    swtpm.restart().unwrap();
    let mut tpm = open(&swtpm);
    let ak = tpm.load_persistent_ak(0x8100_0100).unwrap();
    assert_eq!(ak.name(), name);
    let selection = PcrSelectionSpec::sha256(&[0]).unwrap();
    tpm.quote(&ak, b"nonce", &selection).unwrap();
}

fn check_quote(tpm: &mut Tpm, ak: &Ak, nonce: &[u8], indices: &[u8]) -> Attest {
    let selection = PcrSelectionSpec::sha256(indices).unwrap();
    let values = tpm.read_pcrs(&selection).unwrap();
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(values.iter().map(|v| v.index).collect::<Vec<_>>(), sorted);
    let quote = tpm.quote(ak, nonce, &selection).unwrap();
    let attest = Attest::unmarshall(&quote.attest).unwrap();
    assert_eq!(attest.extra_data().value(), nonce);
    let AttestInfo::Quote { info } = attest.attested() else {
        panic!("not a quote");
    };
    assert_eq!(info.pcr_selection(), &sha256_selection(&sorted));
    let mut hasher = Sha256::new();
    for value in &values {
        assert_eq!(value.digest.len(), 32);
        hasher.update(&value.digest);
    }
    assert_eq!(info.pcr_digest().value(), hasher.finalize().as_slice());
    // The AK's qualified name is the signer; the signature parses as TPMT_SIGNATURE.
    let signature = Signature::unmarshall(&quote.signature).unwrap();
    assert!(matches!(
        signature,
        Signature::EcDsa(_) | Signature::RsaSsa(_)
    ));
    attest
}

#[test]
fn quote_carries_nonce_selection_and_pcr_digest() {
    let swtpm = start();
    let mut tpm = open(&swtpm);
    let ek = ecc_ek(&mut tpm);
    let (ak, _) = tpm.create_ak(&ek, KeyAlgorithm::EccP256).unwrap();
    let nonce: Vec<u8> = (0u8..32).collect();
    // More than 8 PCRs: PCR_Read must be chunked.
    check_quote(
        &mut tpm,
        &ak,
        &nonce,
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 23],
    );
    check_quote(&mut tpm, &ak, b"short", &[7, 0]);

    let (rsa_ak, _) = tpm.create_ak(&ek, KeyAlgorithm::Rsa2048).unwrap();
    let quote = tpm
        .quote(&rsa_ak, &nonce, &PcrSelectionSpec::sha256(&[0]).unwrap())
        .unwrap();
    assert!(matches!(
        Signature::unmarshall(&quote.signature).unwrap(),
        Signature::RsaSsa(_)
    ));
    tpm.flush_ak(rsa_ak).unwrap();
    tpm.flush_ak(ak).unwrap();
    tpm.flush_ek(ek).unwrap();
}

#[test]
fn pcr_extend_changes_value_and_quoted_digest() {
    let swtpm = start();
    let mut tpm = open(&swtpm);
    let ek = ecc_ek(&mut tpm);
    let (ak, _) = tpm.create_ak(&ek, KeyAlgorithm::EccP256).unwrap();
    let selection = PcrSelectionSpec::sha256(&[0, 16]).unwrap();
    let before_values = tpm.read_pcrs(&selection).unwrap();
    let before = check_quote(&mut tpm, &ak, b"n1", &[0, 16]);

    let event_digest = Sha256::digest(b"an event");
    tpm.extend_pcr(PcrBank::Sha256, 16, &event_digest).unwrap();

    let after_values = tpm.read_pcrs(&selection).unwrap();
    let mut expected = Sha256::new();
    expected.update(&before_values[1].digest);
    expected.update(event_digest);
    assert_eq!(after_values[1].digest, expected.finalize().as_slice());
    assert_eq!(after_values[0], before_values[0]);
    let after = check_quote(&mut tpm, &ak, b"n2", &[0, 16]);
    assert_ne!(quoted_pcr_digest(&before), quoted_pcr_digest(&after));

    assert!(matches!(
        tpm.extend_pcr(PcrBank::Sha256, 16, &[0u8; 20]),
        Err(TpmError::ExtendDigestLength {
            expected: 32,
            got: 20
        })
    ));
    assert!(matches!(
        tpm.extend_pcr(PcrBank::Sha256, 24, &event_digest),
        Err(TpmError::PcrIndexOutOfRange { index: 24 })
    ));
}

#[test]
fn restart_increments_reset_count() {
    let mut swtpm = start();
    let reset_count = |swtpm: &Swtpm| {
        let mut tpm = open(swtpm);
        let ek = ecc_ek(&mut tpm);
        let (ak, _) = tpm.create_ak(&ek, KeyAlgorithm::EccP256).unwrap();
        let attest = check_quote(&mut tpm, &ak, b"n", &[0]);
        attest.clock_info().reset_count()
    };
    let first = reset_count(&swtpm);
    swtpm.restart().unwrap();
    assert!(reset_count(&swtpm) > first);
}

/// TPM-side MakeCredential through a raw tss-esapi context (the agent's Tpm must be closed:
/// swtpm serves one client connection at a time).
fn tpm_make_credential(
    tcti: &str,
    ek_public: &[u8],
    ak_name: &[u8],
    secret: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let mut context = Context::new(TctiNameConf::from_str(tcti).unwrap()).unwrap();
    let public = parse_tpm2b_public(ek_public);
    let ek = context
        .execute_without_session(|ctx| ctx.load_external_public(public, Hierarchy::Null))
        .unwrap();
    let (id_object, encrypted_secret) = context
        .execute_without_session(|ctx| {
            ctx.make_credential(
                ek,
                Digest::try_from(secret.to_vec()).unwrap(),
                Name::try_from(ak_name.to_vec()).unwrap(),
            )
        })
        .unwrap();
    context.flush_context(ek.into()).unwrap();
    (
        id_object.value().to_vec(),
        encrypted_secret.value().to_vec(),
    )
}

use std::str::FromStr as _;

fn activate_credential_round_trip(ek_algorithm: KeyAlgorithm) {
    let swtpm = start();
    let ek_source = EkSource::Template {
        algorithm: ek_algorithm,
    };
    let (ek_public, ak_name, blob) = {
        let mut tpm = open(&swtpm);
        let ek = tpm.load_ek(ek_source).unwrap();
        let (ak, blob) = tpm.create_ak(&ek, KeyAlgorithm::EccP256).unwrap();
        (ek.public_area().to_vec(), ak.name().to_vec(), blob)
    };
    let secret = b"0123456789abcdef0123456789abcdef";
    let (id_object, encrypted_secret) =
        tpm_make_credential(&swtpm.tcti(), &ek_public, &ak_name, secret);

    let mut tpm = open(&swtpm);
    let ek = tpm.load_ek(ek_source).unwrap();
    let ak = tpm.load_ak(&ek, &blob).unwrap();
    let recovered = tpm
        .activate_credential(&ak, &ek, &id_object, &encrypted_secret)
        .unwrap();
    assert_eq!(recovered.expose_secret(), secret);
    assert!(!format!("{recovered:?}").contains("0123"));

    // A tampered credential blob is a typed error, and the handle stays usable.
    let mut tampered = id_object.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let err = tpm
        .activate_credential(&ak, &ek, &tampered, &encrypted_secret)
        .unwrap_err();
    assert!(
        matches!(err, TpmError::ActivateCredential { .. }),
        "{err:?}"
    );
    // Prefixed input (the wrong convention) must not silently work.
    let mut prefixed = (u16::try_from(id_object.len()).unwrap())
        .to_be_bytes()
        .to_vec();
    prefixed.extend_from_slice(&id_object);
    assert!(
        tpm.activate_credential(&ak, &ek, &prefixed, &encrypted_secret)
            .is_err()
    );
    let again = tpm
        .activate_credential(&ak, &ek, &id_object, &encrypted_secret)
        .unwrap();
    assert_eq!(again.expose_secret(), secret);
}

#[test]
fn activate_credential_round_trips_with_ecc_ek() {
    activate_credential_round_trip(KeyAlgorithm::EccP256);
}

#[test]
fn activate_credential_round_trips_with_rsa_ek() {
    activate_credential_round_trip(KeyAlgorithm::Rsa2048);
}

#[test]
fn fifty_quotes_and_repeated_loads_do_not_exhaust_slots() {
    let swtpm = start();
    let mut tpm = open(&swtpm);
    let selection = PcrSelectionSpec::sha256(&[0, 1, 2, 3, 7]).unwrap();
    let ek = ecc_ek(&mut tpm);
    let (ak, blob) = tpm.create_ak(&ek, KeyAlgorithm::EccP256).unwrap();
    for i in 0u32..50 {
        tpm.quote(&ak, &i.to_be_bytes(), &selection).unwrap();
    }
    tpm.flush_ak(ak).unwrap();
    tpm.flush_ek(ek).unwrap();
    // swtpm has 3 transient object slots: loading without flushing would fail by round 2.
    for _ in 0..10 {
        let ek = ecc_ek(&mut tpm);
        let ak = tpm.load_ak(&ek, &blob).unwrap();
        tpm.quote(&ak, b"n", &selection).unwrap();
        tpm.flush_ak(ak).unwrap();
        tpm.flush_ek(ek).unwrap();
    }
}

#[test]
fn killed_swtpm_gives_typed_errors_and_recovers_after_restart() {
    let mut swtpm = start();
    let selection = PcrSelectionSpec::sha256(&[0]).unwrap();
    let mut tpm = open(&swtpm);
    let ek = ecc_ek(&mut tpm);
    let (ak, blob) = tpm.create_ak(&ek, KeyAlgorithm::EccP256).unwrap();
    tpm.quote(&ak, b"before", &selection).unwrap();

    swtpm.kill().unwrap();
    let err = tpm.quote(&ak, b"after", &selection).unwrap_err();
    assert!(matches!(err, TpmError::Quote { .. }), "{err:?}");
    assert!(matches!(
        tpm.read_pcrs(&selection),
        Err(TpmError::ReadPcrs { .. })
    ));
    assert!(matches!(
        tpm.ek_certificate(ek_nv_index::RSA_2048),
        Err(TpmError::ReadEkCertificate { .. })
    ));
    drop(tpm);

    let closed = Tpm::open(&TpmConfig { tcti: swtpm.tcti() });
    assert!(matches!(closed, Err(TpmError::Open { .. })), "{closed:?}");
    assert!(matches!(
        Tpm::open(&TpmConfig {
            tcti: "nonsense:x".into()
        }),
        Err(TpmError::ParseTcti { .. } | TpmError::Open { .. })
    ));

    swtpm.restart().unwrap();
    let mut tpm = open(&swtpm);
    let ek = ecc_ek(&mut tpm);
    let ak = tpm.load_ak(&ek, &blob).unwrap();
    tpm.quote(&ak, b"again", &selection).unwrap();
}

fn time<T>(label: &str, runs: u32, mut f: impl FnMut() -> T) -> Duration {
    let started = Instant::now();
    for _ in 0..runs {
        f();
    }
    let each = started.elapsed() / runs;
    eprintln!("timing: {label:<42} {:>8.2} ms", each.as_secs_f64() * 1e3);
    each
}

/// Prints per-operation times (`cargo test ... timings -- --nocapture`). Asserts only that
/// garrison-tpm quotes (no per-call session) beat quotes that start their own session.
#[test]
fn timings() {
    let swtpm = start();
    let mut tpm = open(&swtpm);
    let rsa = EkSource::Template {
        algorithm: KeyAlgorithm::Rsa2048,
    };
    let ecc = EkSource::Template {
        algorithm: KeyAlgorithm::EccP256,
    };
    time("EK create RSA-2048 (+flush)", 5, || {
        let ek = tpm.load_ek(rsa).unwrap();
        tpm.flush_ek(ek).unwrap();
    });
    time("EK create ECC P-256 (+flush)", 5, || {
        let ek = tpm.load_ek(ecc).unwrap();
        tpm.flush_ek(ek).unwrap();
    });
    time("EK cert read RSA (NV 0x01c00002)", 5, || {
        tpm.ek_certificate(ek_nv_index::RSA_2048).unwrap()
    });
    let ek = tpm.load_ek(ecc).unwrap();
    time("AK create ECC P-256 (+load, flush)", 5, || {
        let (ak, _) = tpm.create_ak(&ek, KeyAlgorithm::EccP256).unwrap();
        tpm.flush_ak(ak).unwrap();
    });
    time("AK create RSA-2048 (+load, flush)", 3, || {
        let (ak, _) = tpm.create_ak(&ek, KeyAlgorithm::Rsa2048).unwrap();
        tpm.flush_ak(ak).unwrap();
    });
    let (ak, blob) = tpm.create_ak(&ek, KeyAlgorithm::EccP256).unwrap();
    time("AK load from blob (+flush)", 5, || {
        let ak = tpm.load_ak(&ek, &blob).unwrap();
        tpm.flush_ak(ak).unwrap();
    });
    let selection = PcrSelectionSpec::sha256(&[0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
    let reused = time("quote 8 PCRs (garrison-tpm, no session setup)", 20, || {
        tpm.quote(&ak, b"nonce", &selection).unwrap()
    });
    time("PCR read 8 PCRs", 20, || tpm.read_pcrs(&selection).unwrap());
    let (ek_public, ak_name) = (ek.public_area().to_vec(), ak.name().to_vec());
    tpm.flush_ak(ak).unwrap();
    tpm.flush_ek(ek).unwrap();
    drop(tpm);

    let (id_object, secret) = tpm_make_credential(&swtpm.tcti(), &ek_public, &ak_name, b"s3cret");
    let mut tpm = open(&swtpm);
    let ek = tpm.load_ek(ecc).unwrap();
    let ak = tpm.load_ak(&ek, &blob).unwrap();
    time("ActivateCredential (ECC EK)", 10, || {
        tpm.activate_credential(&ak, &ek, &id_object, &secret)
            .unwrap()
    });
    tpm.flush_ak(ak).unwrap();
    tpm.flush_ek(ek).unwrap();
    drop(tpm);

    // For comparison: a quote that starts and flushes its own HMAC session each time.
    let mut context = Context::new(TctiNameConf::from_str(&swtpm.tcti()).unwrap()).unwrap();
    let ek = tss_esapi::abstraction::ek::create_ek_object_2(
        &mut context,
        tss_esapi::abstraction::AsymmetricAlgorithmSelection::Ecc(
            tss_esapi::interface_types::ecc::EccCurve::NistP256,
        ),
        tss_esapi::abstraction::DefaultKey,
    )
    .unwrap();
    let (ak_private, ak_public) = {
        let parts = AkBlob::from_bytes(&blob.to_bytes()).unwrap();
        let bytes = parts.to_bytes();
        let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        (
            tss_esapi::structures::Private::try_from(bytes[2..2 + len].to_vec()).unwrap(),
            parse_tpm2b_public(&bytes[2 + len..]),
        )
    };
    let ak =
        tss_esapi::abstraction::ak::load_ak(&mut context, ek, None, ak_private, ak_public).unwrap();
    let fresh = time("quote 8 PCRs, new session per call", 20, || {
        context
            .execute_with_nullauth_session(|ctx| {
                ctx.quote(
                    ak,
                    tss_esapi::structures::Data::try_from(b"nonce".to_vec()).unwrap(),
                    tss_esapi::structures::SignatureScheme::Null,
                    sha256_selection(&[0, 1, 2, 3, 4, 5, 6, 7]),
                )
            })
            .unwrap()
    });
    // And one HMAC session started once and reused (what garrison-tpm did at first).
    let hmac = context
        .start_auth_session(
            None,
            None,
            None,
            tss_esapi::constants::SessionType::Hmac,
            tss_esapi::structures::SymmetricDefinition::Null,
            HashingAlgorithm::Sha256,
        )
        .unwrap()
        .unwrap();
    time("quote 8 PCRs, one reused HMAC session (raw)", 20, || {
        context
            .execute_with_session(Some(hmac), |ctx| {
                ctx.quote(
                    ak,
                    tss_esapi::structures::Data::try_from(b"nonce".to_vec()).unwrap(),
                    tss_esapi::structures::SignatureScheme::Null,
                    sha256_selection(&[0, 1, 2, 3, 4, 5, 6, 7]),
                )
            })
            .unwrap()
    });
    eprintln!(
        "timing: garrison-tpm quote saves {:.2} ms over a session per call",
        (fresh.as_secs_f64() - reused.as_secs_f64()) * 1e3
    );
    assert!(reused < fresh, "reused {reused:?} vs fresh {fresh:?}");
}
