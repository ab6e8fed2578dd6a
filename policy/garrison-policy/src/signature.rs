//! Signing and offline verification of bundles.
//!
//! The signer is a leaf X.509-SVID whose SPIFFE ID path starts with `/policy/`, issued below the
//! bundle root. The signature covers `SIGNED_CONTEXT || manifest.json bytes`; the manifest
//! binds every other file by SHA-256, so the bundle digest (SHA-256 of manifest.json) names
//! the whole bundle.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SecureRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PolicyError;
use crate::bundle::{
    BundleFiles, BundleLimits, MANIFEST_FILE, MANIFEST_FORMAT, Manifest, SIGNATURE_FILE,
    check_files, policy_files, sha256_hex,
};

/// Domain separation: prefixed to the manifest bytes before signing.
pub const SIGNED_CONTEXT: &[u8] = b"garrison policy bundle v1\n";
/// The SPIFFE ID path prefix a bundle signer must have.
pub const POLICY_SIGNER_PATH_PREFIX: &str = "/policy/";

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";

/// Signature algorithms a bundle may use, as named in `signature.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureAlgorithm {
    EcdsaP256Sha256,
    EcdsaP384Sha384,
    Ed25519,
}

/// `signature.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    algorithm: SignatureAlgorithm,
    /// base64 of the signature (ASN.1 DER for ECDSA).
    signature: String,
    /// base64 DER certificates: the signer first, then intermediates up to (excluding) the root.
    certificates: Vec<String>,
}

/// The roots a bundle signer must chain to, and the trust domain they anchor.
#[derive(Debug, Clone)]
pub struct PolicyTrust {
    roots: Vec<Vec<u8>>,
    trust_domain: String,
}

impl PolicyTrust {
    /// Roots from PEM text; the trust domain comes from the first root's `spiffe://` URI SAN.
    pub fn from_pem(text: &str) -> Result<Self, PolicyError> {
        let roots = certificates_from_pem(text).map_err(|reason| PolicyError::BundleRoot {
            reason: reason.to_owned(),
        })?;
        let first = roots.first().ok_or(PolicyError::BundleRoot {
            reason: "no certificate".to_owned(),
        })?;
        let cert = parse_certificate(first).map_err(|reason| PolicyError::BundleRoot {
            reason: reason.to_owned(),
        })?;
        let trust_domain = garrison_ca::spiffe_uri(&cert)
            .and_then(|uri| uri.strip_prefix("spiffe://").map(str::to_owned))
            .filter(|td| !td.is_empty() && !td.contains('/'))
            .ok_or(PolicyError::BundleRoot {
                reason: "root has no spiffe://<trust domain> URI SAN".to_owned(),
            })?;
        Ok(Self {
            roots,
            trust_domain,
        })
    }

    /// The trust domain the roots anchor.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }
}

/// A policy signing key with its certificate chain.
pub struct BundleSigner {
    key: SignerKey,
    chain: Vec<Vec<u8>>,
}

enum SignerKey {
    Ecdsa(EcdsaKeyPair, SignatureAlgorithm),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for BundleSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleSigner")
            .field("key", &"<redacted>")
            .field("chain_len", &self.chain.len())
            .finish()
    }
}

impl BundleSigner {
    /// A PKCS#8 PEM key (ECDSA P-256/P-384 or Ed25519) and its PEM chain, signer first.
    pub fn from_pem(key_pem: &str, chain_pem: &str) -> Result<Self, PolicyError> {
        let block = pem::parse(key_pem).map_err(|_| PolicyError::SigningKey {
            reason: "key is not PEM",
        })?;
        let key = signer_key(block.contents())?;
        let chain = certificates_from_pem(chain_pem)
            .map_err(|reason| PolicyError::SigningKey { reason })?;
        let leaf = chain.first().ok_or(PolicyError::SigningKey {
            reason: "certificate chain is empty",
        })?;
        let cert = parse_certificate(leaf).map_err(|reason| PolicyError::SigningKey { reason })?;
        let public = match &key {
            SignerKey::Ecdsa(pair, _) => pair.public_key().as_ref().to_vec(),
            SignerKey::Ed25519(pair) => pair.public_key().as_ref().to_vec(),
        };
        if cert.public_key().subject_public_key.data.as_ref() != public.as_slice() {
            return Err(PolicyError::SigningKey {
                reason: "key does not match the first certificate",
            });
        }
        Ok(Self { key, chain })
    }

    /// Hex SHA-256 of the signer certificate's SubjectPublicKeyInfo.
    pub fn key_id(&self) -> String {
        self.chain
            .first()
            .and_then(|der| {
                parse_certificate(der)
                    .ok()
                    .map(|c| sha256_hex(c.public_key().raw))
            })
            .unwrap_or_default()
    }

    /// Sign the policy files of `files` (`*.rego`, `data.json`) as bundle `name` at `sequence`:
    /// returns them with `manifest.json` and `signature.json` added.
    pub fn sign(
        &self,
        files: &BundleFiles,
        name: &str,
        sequence: u64,
        created: OffsetDateTime,
        rng: &dyn SecureRandom,
    ) -> Result<BundleFiles, PolicyError> {
        let mut out: BundleFiles = policy_files(files)
            .map(|(n, b)| (n.clone(), b.clone()))
            .collect();
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            name: name.to_owned(),
            sequence,
            created: created
                .format(&Rfc3339)
                .map_err(|_| PolicyError::ManifestMalformed {
                    reason: "created time cannot be formatted".to_owned(),
                })?,
            signing_key_id: self.key_id(),
            files: out
                .iter()
                .map(|(n, b)| (n.clone(), sha256_hex(b)))
                .collect(),
        };
        let manifest_bytes = manifest.to_bytes();
        let signature = self.sign_bytes(&signed_message(&manifest_bytes), rng)?;
        let signature_file = SignatureFile {
            algorithm: self.algorithm(),
            signature: B64.encode(signature),
            certificates: self.chain.iter().map(|der| B64.encode(der)).collect(),
        };
        let signature_bytes = serde_json::to_vec_pretty(&signature_file).unwrap_or_default();
        out.insert(MANIFEST_FILE.to_owned(), manifest_bytes);
        out.insert(SIGNATURE_FILE.to_owned(), signature_bytes);
        Ok(out)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match &self.key {
            SignerKey::Ecdsa(_, alg) => *alg,
            SignerKey::Ed25519(_) => SignatureAlgorithm::Ed25519,
        }
    }

    fn sign_bytes(&self, message: &[u8], rng: &dyn SecureRandom) -> Result<Vec<u8>, PolicyError> {
        match &self.key {
            SignerKey::Ecdsa(pair, _) => pair
                .sign(rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| PolicyError::SigningKey {
                    reason: "ECDSA signing failed",
                }),
            SignerKey::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

fn signer_key(pkcs8: &[u8]) -> Result<SignerKey, PolicyError> {
    let rng = ring::rand::SystemRandom::new();
    let ecdsa = [
        (
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            SignatureAlgorithm::EcdsaP256Sha256,
        ),
        (
            &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            SignatureAlgorithm::EcdsaP384Sha384,
        ),
    ];
    for (alg, name) in ecdsa {
        if let Ok(pair) = EcdsaKeyPair::from_pkcs8(alg, pkcs8, &rng) {
            return Ok(SignerKey::Ecdsa(pair, name));
        }
    }
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
        .map(SignerKey::Ed25519)
        .map_err(|_| PolicyError::SigningKey {
            reason: "key is not a PKCS#8 ECDSA P-256/P-384 or Ed25519 key",
        })
}

/// A bundle whose signature, chain and file digests have been checked.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// The manifest as signed.
    pub manifest: Manifest,
    /// Hex SHA-256 of manifest.json: names the whole bundle in log records.
    pub digest: String,
    /// The signer's SPIFFE ID.
    pub signer: String,
    /// The policy files (`*.rego`, `data.json`), each checked against the manifest.
    pub files: BundleFiles,
}

/// Verify a signed bundle offline at time `now`: file names and sizes, the signer's chain to
/// `trust` (rustls-webpki), its SPIFFE ID, the signature over the manifest, and every file's
/// digest. Rollback is checked by whoever holds the bundle in force ([`crate::PolicyService`]).
pub fn verify_bundle(
    files: &BundleFiles,
    trust: &PolicyTrust,
    now: OffsetDateTime,
    limits: &BundleLimits,
) -> Result<VerifiedBundle, PolicyError> {
    check_files(files, limits)?;
    let manifest_bytes = required(files, MANIFEST_FILE)?;
    let signature = parse_signature_file(required(files, SIGNATURE_FILE)?)?;
    let manifest = Manifest::parse(manifest_bytes)?;
    let chain = decode_chain(&signature)?;
    let leaf = chain.first().ok_or(PolicyError::SignatureMalformed {
        reason: "no signer certificate".to_owned(),
    })?;
    let path = verify_chain(leaf, chain.get(1..).unwrap_or_default(), trust, now)?;
    let cert = parse_certificate(leaf).map_err(|reason| PolicyError::SignerNotTrusted {
        reason: reason.to_owned(),
    })?;
    let signer = check_signer_id(&cert, trust)?;
    check_signer_scope(&signer, &path)?;
    let key_id = sha256_hex(cert.public_key().raw);
    if manifest.signing_key_id != key_id {
        return Err(PolicyError::SigningKeyIdMismatch {
            expected: manifest.signing_key_id,
            got: key_id,
        });
    }
    verify_signature(&cert, &signature, &signed_message(manifest_bytes))?;
    let policy = check_digests(files, &manifest)?;
    Ok(VerifiedBundle {
        digest: sha256_hex(manifest_bytes),
        manifest,
        signer,
        files: policy,
    })
}

fn required<'f>(files: &'f BundleFiles, name: &'static str) -> Result<&'f [u8], PolicyError> {
    files
        .get(name)
        .map(Vec::as_slice)
        .ok_or(PolicyError::BundleFileMissing { name })
}

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    [SIGNED_CONTEXT, manifest].concat()
}

fn parse_signature_file(bytes: &[u8]) -> Result<SignatureFile, PolicyError> {
    serde_json::from_slice(bytes).map_err(|e| PolicyError::SignatureMalformed {
        reason: e.to_string(),
    })
}

fn decode_chain(signature: &SignatureFile) -> Result<Vec<Vec<u8>>, PolicyError> {
    signature
        .certificates
        .iter()
        .map(|text| {
            B64.decode(text)
                .map_err(|_| PolicyError::SignatureMalformed {
                    reason: "certificate is not base64".to_owned(),
                })
        })
        .collect()
}

/// Verify the signer's chain to the roots; returns the intermediates of the path webpki
/// built (the signer's issuer first), which may differ from the list the bundle carries.
fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    trust: &PolicyTrust,
    now: OffsetDateTime,
) -> Result<SignerPath, PolicyError> {
    let untrusted = |e: webpki::Error| PolicyError::SignerNotTrusted {
        reason: format!("{e:?}"),
    };
    let root_ders: Vec<CertificateDer<'_>> = trust
        .roots
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let anchors = root_ders
        .iter()
        .map(|d| webpki::anchor_from_trusted_cert(d).map(|a| a.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PolicyError::BundleRoot {
            reason: format!("{e:?}"),
        })?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let leaf_der = CertificateDer::from(leaf);
    let end_entity = webpki::EndEntityCert::try_from(&leaf_der).map_err(untrusted)?;
    let seconds = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds));
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map(|path| SignerPath {
            intermediates: path
                .intermediate_certificates()
                .map(|c| c.der().to_vec())
                .collect(),
            anchor_subject: path.anchor().subject.as_ref().to_vec(),
        })
        .map_err(untrusted)
}

/// The path webpki built for a signer: the intermediates it used (the signer's issuer
/// first) and the subject of the anchor it ended at (as webpki keeps it).
struct SignerPath {
    intermediates: Vec<Vec<u8>>,
    anchor_subject: Vec<u8>,
}

/// A policy signer chains to the root directly or through policy CAs only: never through
/// a site CA (online at an exposed site) or the hub ([`garrison_ca::scope`]).
fn check_signer_scope(signer: &str, path: &SignerPath) -> Result<(), PolicyError> {
    let id = garrison_ca::SpiffeId::parse(signer).map_err(|e| PolicyError::SignerNotTrusted {
        reason: e.to_string(),
    })?;
    let out_of_scope = |e: garrison_ca::CaError| PolicyError::SignerOutOfScope {
        reason: e.to_string(),
    };
    let anchor =
        garrison_ca::CaRole::of_anchor_subject(&path.anchor_subject).map_err(out_of_scope)?;
    garrison_ca::check_path_scope_der(&id, path.intermediates.iter().map(Vec::as_slice), anchor)
        .map_err(out_of_scope)
}

fn check_signer_id(cert: &X509Certificate<'_>, trust: &PolicyTrust) -> Result<String, PolicyError> {
    let uri = garrison_ca::spiffe_uri(cert);
    let prefix = format!("spiffe://{}{POLICY_SIGNER_PATH_PREFIX}", trust.trust_domain);
    match uri {
        Some(id) if id.starts_with(&prefix) && id.len() > prefix.len() => Ok(id),
        got => Err(PolicyError::SignerNotPolicyKey {
            trust_domain: trust.trust_domain.clone(),
            got,
        }),
    }
}

fn verify_signature(
    cert: &X509Certificate<'_>,
    signature: &SignatureFile,
    message: &[u8],
) -> Result<(), PolicyError> {
    let spki = cert.public_key();
    let key_alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    let verifier: &dyn signature::VerificationAlgorithm =
        match (key_alg.as_str(), curve.as_deref(), signature.algorithm) {
            (OID_EC_PUBLIC_KEY, Some(OID_P256), SignatureAlgorithm::EcdsaP256Sha256) => {
                &signature::ECDSA_P256_SHA256_ASN1
            }
            (OID_EC_PUBLIC_KEY, Some(OID_P384), SignatureAlgorithm::EcdsaP384Sha384) => {
                &signature::ECDSA_P384_SHA384_ASN1
            }
            (OID_ED25519, _, SignatureAlgorithm::Ed25519) => &signature::ED25519,
            _ => return Err(PolicyError::UnsupportedKeyAlgorithm),
        };
    let sig = B64
        .decode(&signature.signature)
        .map_err(|_| PolicyError::SignatureMalformed {
            reason: "signature is not base64".to_owned(),
        })?;
    UnparsedPublicKey::new(verifier, spki.subject_public_key.data.as_ref())
        .verify(message, &sig)
        .map_err(|_| PolicyError::SignatureInvalid)
}

fn check_digests(files: &BundleFiles, manifest: &Manifest) -> Result<BundleFiles, PolicyError> {
    for (name, expected) in &manifest.files {
        let bytes = files
            .get(name)
            .ok_or_else(|| PolicyError::ListedFileMissing { name: name.clone() })?;
        let got = sha256_hex(bytes);
        if &got != expected {
            return Err(PolicyError::FileDigestMismatch {
                name: name.clone(),
                expected: expected.clone(),
                got,
            });
        }
    }
    let policy: BundleFiles = policy_files(files)
        .map(|(n, b)| (n.clone(), b.clone()))
        .collect();
    match policy.keys().find(|n| !manifest.files.contains_key(*n)) {
        Some(name) => Err(PolicyError::FileNotInManifest { name: name.clone() }),
        None => Ok(policy),
    }
}

fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, &'static str> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err("not a DER X.509 certificate"),
    }
}

fn certificates_from_pem(text: &str) -> Result<Vec<Vec<u8>>, &'static str> {
    let blocks = pem::parse_many(text).map_err(|_| "not PEM")?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.contents().to_vec())
        .collect();
    if certs.is_empty() {
        return Err("no CERTIFICATE in PEM");
    }
    Ok(certs)
}
