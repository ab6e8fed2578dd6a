//! Quotes built here and signed with ring: multi-bank selections, the digest order, and
//! encodings the swtpm fixtures do not cover.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test and bench code: helpers outside #[test] fns are not covered by clippy.toml's exemption"
)]

use garrison_evidence::{
    AkPolicy, EvidenceError, HashAlg, PcrSelection, PcrValues, check_ak, verify_quote,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

fn tpm2b(bytes: &[u8]) -> Vec<u8> {
    [&(bytes.len() as u16).to_be_bytes()[..], bytes].concat()
}

struct Signer {
    key: EcdsaKeyPair,
    public_area: Vec<u8>,
}

fn signer() -> Signer {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = key.public_key().as_ref();
    let mut tpmt = vec![0x00, 0x23, 0x00, 0x0b, 0x00, 0x05, 0x00, 0x72, 0x00, 0x00];
    tpmt.extend_from_slice(&[0x00, 0x10, 0x00, 0x18, 0x00, 0x0b, 0x00, 0x03, 0x00, 0x10]);
    tpmt.extend(tpm2b(&point[1..33]));
    tpmt.extend(tpm2b(&point[33..65]));
    Signer {
        key,
        public_area: tpm2b(&tpmt),
    }
}

fn attest(nonce: &[u8], selection: &PcrSelection, pcr_digest: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff, 0x54, 0x43, 0x47, 0x80, 0x18];
    out.extend(tpm2b(&[0x00, 0x0b, 1, 2, 3]));
    out.extend(tpm2b(nonce));
    out.extend_from_slice(&1234u64.to_be_bytes());
    out.extend_from_slice(&7u32.to_be_bytes());
    out.extend_from_slice(&2u32.to_be_bytes());
    out.push(1);
    out.extend_from_slice(&0x0001_0002_0003_0004u64.to_be_bytes());
    out.extend(selection.to_bytes());
    out.extend(tpm2b(pcr_digest));
    out
}

fn sign(signer: &Signer, message: &[u8]) -> Vec<u8> {
    let sig = signer.key.sign(&SystemRandom::new(), message).unwrap();
    let (r, s) = sig.as_ref().split_at(32);
    [&[0x00, 0x18, 0x00, 0x0b][..], &tpm2b(r), &tpm2b(s)].concat()
}

fn values() -> PcrValues {
    PcrValues::from_entries([
        (HashAlg::Sha256, 0, &[0xa0; 32][..]),
        (HashAlg::Sha256, 2, &[0xa2; 32][..]),
        (HashAlg::Sha1, 1, &[0xb1; 20][..]),
    ])
    .unwrap()
}

#[test]
fn two_banks_are_digested_in_selection_order() {
    let signer = signer();
    let ak = check_ak(&signer.public_area, &AkPolicy::default()).unwrap();
    let selection =
        PcrSelection::new(&[(HashAlg::Sha256, &[2, 0]), (HashAlg::Sha1, &[1])]).unwrap();
    let digest = HashAlg::Sha256.digest(&[&[0xa0; 32], &[0xa2; 32], &[0xb1; 20]]);
    let msg = attest(b"n", &selection, &digest);
    let verdict = verify_quote(&ak, &msg, &sign(&signer, &msg), b"n", &values()).unwrap();
    assert_eq!(verdict.clock, 1234);
    assert_eq!(verdict.reset_count, 7);
    assert_eq!(verdict.restart_count, 2);
    assert_eq!(verdict.firmware_version, 0x0001_0002_0003_0004);
    assert_eq!(verdict.qualified_signer, vec![0x00, 0x0b, 1, 2, 3]);
    assert_eq!(verdict.selection, selection);

    // Same PCRs, banks listed the other way round: the TPM would hash SHA-1 first.
    let swapped = PcrSelection::new(&[(HashAlg::Sha1, &[1]), (HashAlg::Sha256, &[0, 2])]).unwrap();
    let msg = attest(b"n", &swapped, &digest);
    let err = verify_quote(&ak, &msg, &sign(&signer, &msg), b"n", &values()).unwrap_err();
    assert!(
        matches!(err, EvidenceError::PcrDigestMismatch { .. }),
        "{err}"
    );
}

#[test]
fn tpm2b_attest_and_empty_selection() {
    let signer = signer();
    let ak = check_ak(&signer.public_area, &AkPolicy::default()).unwrap();
    let selection = PcrSelection::new(&[]).unwrap();
    let msg = attest(b"", &selection, &HashAlg::Sha256.digest(&[]));
    let sig = sign(&signer, &msg);
    verify_quote(&ak, &tpm2b(&msg), &sig, b"", &PcrValues::new()).unwrap();
}

#[test]
fn unsafe_clock_byte_other_than_0_or_1_is_rejected() {
    let signer = signer();
    let ak = check_ak(&signer.public_area, &AkPolicy::default()).unwrap();
    let selection = PcrSelection::new(&[]).unwrap();
    let mut msg = attest(b"", &selection, &HashAlg::Sha256.digest(&[]));
    let safe = 6 + 7 + 2 + 8 + 4 + 4;
    msg[safe] = 2;
    let err = verify_quote(&ak, &msg, &sign(&signer, &msg), b"", &PcrValues::new()).unwrap_err();
    assert!(
        matches!(err, EvidenceError::InvalidBoolean { got: 2, .. }),
        "{err}"
    );
}

#[test]
fn ak_attribute_checks() {
    let signer = signer();
    let flip = |mask: u32| {
        let mut public = signer.public_area.clone();
        let attrs = u32::from_be_bytes(public[6..10].try_into().unwrap()) ^ mask;
        public[6..10].copy_from_slice(&attrs.to_be_bytes());
        check_ak(&public, &AkPolicy::default()).unwrap_err()
    };
    assert!(matches!(
        flip(1 << 16),
        EvidenceError::AkAttributeMissing {
            attribute: "restricted",
            ..
        }
    ));
    assert!(matches!(
        flip(1 << 1),
        EvidenceError::AkAttributeMissing {
            attribute: "fixedTPM",
            ..
        }
    ));
    assert!(matches!(
        flip(1 << 4),
        EvidenceError::AkAttributeMissing {
            attribute: "fixedParent",
            ..
        }
    ));
    assert!(matches!(
        flip(1 << 5),
        EvidenceError::AkAttributeMissing {
            attribute: "sensitiveDataOrigin",
            ..
        }
    ));
    assert!(matches!(
        flip(1 << 18),
        EvidenceError::AkAttributeMissing {
            attribute: "sign",
            ..
        }
    ));
    assert!(matches!(
        flip(1 << 17),
        EvidenceError::AkAttributeForbidden {
            attribute: "decrypt",
            ..
        }
    ));
    // userWithAuth is not required.
    let mut public = signer.public_area.clone();
    public[9] &= !0x40;
    check_ak(&public, &AkPolicy::default()).unwrap();
}

#[test]
fn pcr_values_reject_bad_input() {
    let mut values = PcrValues::new();
    assert!(values.insert(HashAlg::Sha256, 0, vec![0; 20]).is_err());
    assert!(values.insert(HashAlg::Sha256, 64, vec![0; 32]).is_err());
    values.insert(HashAlg::Sha256, 0, vec![0; 32]).unwrap();
    assert!(values.insert(HashAlg::Sha256, 0, vec![1; 32]).is_err());
    assert_eq!(values.value(HashAlg::Sha256, 0), Some(&[0u8; 32][..]));
    assert!(PcrSelection::new(&[(HashAlg::Sha1, &[0]), (HashAlg::Sha1, &[1])]).is_err());
}
