//! MakeCredential output shape and error cases. Compatibility with a real TPM's
//! ActivateCredential is checked by testdata/tpm2tools/check_make_credential.sh (swtpm).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test and bench code: helpers outside #[test] fns are not covered by clippy.toml's exemption"
)]

use garrison_evidence::{
    AkPolicy, EvidenceError, ObjectName, TpmPublic, check_ak, make_credential, verify_activation,
};
use ring::rand::SystemRandom;

const EK_RSA_PUB: &[u8] = include_bytes!("../testdata/tpm2tools/ek_rsa.pub");
const EK_ECC_PUB: &[u8] = include_bytes!("../testdata/tpm2tools/ek_ecc.pub");
const AK_ECC_PUB: &[u8] = include_bytes!("../testdata/tpm2tools/ak_ecc.pub");
const AK_ECC_NAME: &[u8] = include_bytes!("../testdata/tpm2tools/ak_ecc.name");

fn ak_name() -> ObjectName {
    ObjectName(AK_ECC_NAME.to_vec())
}

fn tpm2b_size(bytes: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([bytes[0], bytes[1]]))
}

#[test]
fn rsa_ek_output_layout() {
    let ek = TpmPublic::from_tpm2b(EK_RSA_PUB).unwrap();
    let out = make_credential(&ek, &ak_name(), b"0123456789abcdef", &SystemRandom::new()).unwrap();
    // TPM2B_ENCRYPTED_SECRET: size + RSA-2048 OAEP ciphertext.
    assert_eq!(tpm2b_size(&out.encrypted_secret), 256);
    assert_eq!(out.encrypted_secret.len(), 258);
    // TPM2B_ID_OBJECT: size + TPM2B_DIGEST(HMAC-SHA256) + encIdentity(2 + 16).
    assert_eq!(tpm2b_size(&out.id_object), out.id_object.len() - 2);
    assert_eq!(tpm2b_size(out.id_object_contents()), 32);
    assert_eq!(out.id_object_contents().len(), 2 + 32 + 2 + 16);
    assert_eq!(out.encrypted_secret_contents().len(), 256);
    let file = out.to_tpm2_tools_credential_file();
    assert_eq!(&file[..8], &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]);
}

#[test]
fn ecc_ek_output_layout() {
    let ek = TpmPublic::from_tpm2b(EK_ECC_PUB).unwrap();
    let out = make_credential(&ek, &ak_name(), &[7u8; 32], &SystemRandom::new()).unwrap();
    // TPM2B_ENCRYPTED_SECRET holding TPMS_ECC_POINT: TPM2B x (32) + TPM2B y (32).
    assert_eq!(out.encrypted_secret.len(), 2 + 2 + 32 + 2 + 32);
    assert_eq!(tpm2b_size(out.encrypted_secret_contents()), 32);
    assert_eq!(out.id_object_contents().len(), 2 + 32 + 2 + 32);
}

#[test]
fn outputs_are_randomised() {
    let ek = TpmPublic::from_tpm2b(EK_ECC_PUB).unwrap();
    let rng = SystemRandom::new();
    let a = make_credential(&ek, &ak_name(), b"secret", &rng).unwrap();
    let b = make_credential(&ek, &ak_name(), b"secret", &rng).unwrap();
    assert_ne!(a, b);
}

#[test]
fn secret_size_is_bounded_by_name_alg() {
    let ek = TpmPublic::from_tpm2b(EK_RSA_PUB).unwrap();
    let rng = SystemRandom::new();
    let err = make_credential(&ek, &ak_name(), &[0u8; 33], &rng).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::CredentialSecretSize { max: 32, got: 33 }
        ),
        "{err}"
    );
    let err = make_credential(&ek, &ak_name(), &[], &rng).unwrap_err();
    assert!(
        matches!(err, EvidenceError::CredentialSecretSize { .. }),
        "{err}"
    );
}

#[test]
fn an_ak_cannot_be_used_as_ek() {
    let ak = check_ak(AK_ECC_PUB, &AkPolicy::default()).unwrap();
    let err = make_credential(ak.public(), ak.name(), b"secret", &SystemRandom::new()).unwrap_err();
    assert!(
        matches!(err, EvidenceError::EkUnusableForCredential { .. }),
        "{err}"
    );
}

// ring seals `SecureRandom` (only ring's generators implement it), so the
// `EvidenceError::Randomness` path cannot be exercised from a test.

#[test]
fn activation_comparison() {
    verify_activation(b"challenge secret", b"challenge secret").unwrap();
    let err = verify_activation(b"challenge secret", b"challenge secreT").unwrap_err();
    assert!(matches!(err, EvidenceError::ActivationSecretMismatch));
    assert!(verify_activation(b"challenge secret", b"challenge").is_err());
    assert!(verify_activation(b"challenge secret", b"").is_err());
}
