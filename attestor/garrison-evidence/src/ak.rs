//! Attestation key checks: is this public area a TPM-resident, restricted signing key with an
//! algorithm we accept?

use garrison_eventlog::HashAlg;

use crate::EvidenceError;
use crate::public::{ObjectAttributes, ObjectName, PublicKey, TpmPublic};
use crate::signature::{PreparedKey, SignatureScheme, TpmSignature, Verifier};

/// Which AKs [`check_ak`] accepts beyond the strict default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AkPolicy {
    /// INSECURE: also accept RSASSA with SHA-1 as the AK's scheme. Some fleets (e.g. GCE
    /// Windows images via go-attestation) still create such AKs; SHA-1 signatures are
    /// forgeable in principle. Off by default; turning it on should be logged loudly.
    pub insecure_allow_sha1_signatures: bool,
}

/// An AK that passed [`check_ak`]: its public area, name, and signing scheme. Fields are
/// read-only so a checked AK cannot be altered into an unchecked one.
#[derive(Debug, Clone)]
pub struct AkIdentity {
    name: ObjectName,
    public: TpmPublic,
    scheme: SignatureScheme,
    prepared: PreparedKey,
}

impl AkIdentity {
    /// The object name (nameAlg || H(TPMT_PUBLIC)): what MakeCredential binds the secret to.
    pub fn name(&self) -> &ObjectName {
        &self.name
    }

    /// The parsed public area.
    pub fn public(&self) -> &TpmPublic {
        &self.public
    }

    /// The scheme every signature of this AK must use; its hash is also the pcrDigest hash.
    pub fn scheme(&self) -> SignatureScheme {
        self.scheme
    }

    pub(crate) fn verify(
        &self,
        message: &[u8],
        signature: &TpmSignature,
    ) -> Result<(), EvidenceError> {
        self.prepared.verify(message, signature)
    }
}

/// Attributes an AK must have: tpm2_createak and tss-esapi's `create_ak` set all of these
/// (plus userWithAuth, which we do not require: policy-only AKs are fine).
const AK_REQUIRED: [(u32, &str); 5] = [
    (ObjectAttributes::FIXED_TPM, "fixedTPM"),
    (ObjectAttributes::FIXED_PARENT, "fixedParent"),
    (
        ObjectAttributes::SENSITIVE_DATA_ORIGIN,
        "sensitiveDataOrigin",
    ),
    (ObjectAttributes::RESTRICTED, "restricted"),
    (ObjectAttributes::SIGN, "sign"),
];

/// Parses a TPM2B_PUBLIC (or bare TPMT_PUBLIC) and checks it is an acceptable AK.
pub fn check_ak(public_area: &[u8], policy: &AkPolicy) -> Result<AkIdentity, EvidenceError> {
    check_ak_public(TpmPublic::from_tpm2b_or_tpmt(public_area)?, policy)
}

/// Checks an already parsed public area is an acceptable AK: restricted, sign, fixedTPM,
/// fixedParent, sensitiveDataOrigin, not decrypt; RSA ≥ 2048 bits with RSASSA/RSAPSS and
/// SHA-256/384/512, or ECC P-256/P-384 with ECDSA and SHA-256/384; nameAlg SHA-256 or stronger.
pub fn check_ak_public(public: TpmPublic, policy: &AkPolicy) -> Result<AkIdentity, EvidenceError> {
    check_ak_attributes(public.attributes)?;
    if matches!(public.name_alg, HashAlg::Sha1) {
        return Err(EvidenceError::AkAlgorithmNotAllowed {
            got: format!("nameAlg {}", public.name_alg),
        });
    }
    let scheme = ak_scheme(&public)?;
    check_key_strength(&public.key)?;
    let not_allowed = || EvidenceError::AkAlgorithmNotAllowed {
        got: format!("{scheme} on {}", key_description(&public.key)),
    };
    let verifier = Verifier::for_key(scheme, &public.key, policy.insecure_allow_sha1_signatures)
        .ok_or_else(not_allowed)?;
    let prepared = PreparedKey::new(verifier, &public.key).ok_or_else(not_allowed)?;
    Ok(AkIdentity {
        name: public.name(),
        public,
        scheme,
        prepared,
    })
}

fn check_ak_attributes(attributes: ObjectAttributes) -> Result<(), EvidenceError> {
    if let Some((_, attribute)) = AK_REQUIRED
        .iter()
        .find(|(bit, _)| !attributes.contains(*bit))
    {
        return Err(EvidenceError::AkAttributeMissing {
            attribute,
            attributes: attributes.0,
        });
    }
    if attributes.contains(ObjectAttributes::DECRYPT) {
        return Err(EvidenceError::AkAttributeForbidden {
            attribute: "decrypt",
            attributes: attributes.0,
        });
    }
    Ok(())
}

/// A restricted signing key must carry its scheme in the public area (TPM 2.0 Part 1,
/// §25.2.2); we require it so the quote's signature scheme is fixed by the AK itself.
fn ak_scheme(public: &TpmPublic) -> Result<SignatureScheme, EvidenceError> {
    let scheme = public
        .scheme
        .ok_or_else(|| EvidenceError::AkAlgorithmNotAllowed {
            got: "scheme TPM_ALG_NULL".to_owned(),
        })?;
    let unsupported = || EvidenceError::AkAlgorithmNotAllowed {
        got: format!("scheme 0x{:04x}", scheme.algorithm),
    };
    let hash = scheme.hash.ok_or_else(unsupported)?;
    SignatureScheme::from_tpm(scheme.algorithm, hash).ok_or_else(unsupported)
}

fn check_key_strength(key: &PublicKey) -> Result<(), EvidenceError> {
    match key {
        PublicKey::Rsa { key_bits, .. } if *key_bits < 2048 => {
            Err(EvidenceError::AkAlgorithmNotAllowed {
                got: format!("RSA-{key_bits}"),
            })
        }
        _ => Ok(()),
    }
}

fn key_description(key: &PublicKey) -> String {
    match key {
        PublicKey::Rsa { key_bits, .. } => format!("RSA-{key_bits}"),
        PublicKey::Ecc { curve, .. } => format!("ECC {curve:?}"),
    }
}
