//! Trust bundles: the roots relying parties anchor on, as PEM or as a SPIFFE bundle (JWKS).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::error::CaError;

/// A set of trust anchors of one trust domain.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    roots: Vec<Vec<u8>>,
}

/// SPIFFE bundle metadata: monotonically increasing sequence and a refresh hint.
#[derive(Debug, Clone, Copy)]
pub struct BundleMetadata {
    /// `spiffe_sequence`: increases whenever the bundle content changes.
    pub sequence: u64,
    /// `spiffe_refresh_hint` in seconds: how often relying parties should re-fetch.
    pub refresh_hint_seconds: u64,
}

#[derive(Serialize)]
struct SpiffeBundleJson {
    keys: Vec<Jwk>,
    spiffe_sequence: u64,
    spiffe_refresh_hint: u64,
}

#[derive(Serialize)]
struct Jwk {
    #[serde(rename = "use")]
    use_: &'static str,
    kty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    x5c: Vec<String>,
}

impl TrustBundle {
    /// A bundle of DER root certificates. At least one is required.
    pub fn new(roots: Vec<Vec<u8>>) -> Result<Self, CaError> {
        if roots.is_empty() {
            return Err(CaError::EmptyBundle);
        }
        Ok(TrustBundle { roots })
    }

    /// The roots, DER.
    pub fn roots(&self) -> &[Vec<u8>] {
        &self.roots
    }

    /// The roots as concatenated PEM `CERTIFICATE` blocks.
    pub fn to_pem(&self) -> String {
        certificates_to_pem(&self.roots)
    }

    /// The bundle in the SPIFFE bundle format: a JWK Set with `use: "x509-svid"` entries, one
    /// certificate per `x5c`, plus `spiffe_sequence` and `spiffe_refresh_hint`.
    pub fn to_spiffe_json(&self, meta: BundleMetadata) -> Result<String, CaError> {
        let keys = self
            .roots
            .iter()
            .map(|der| jwk_for_certificate(der))
            .collect::<Result<Vec<_>, _>>()?;
        let doc = SpiffeBundleJson {
            keys,
            spiffe_sequence: meta.sequence,
            spiffe_refresh_hint: meta.refresh_hint_seconds,
        };
        serde_json::to_string_pretty(&doc).map_err(|_| CaError::JwkUnsupportedKey {
            reason: "JSON serialisation failed",
        })
    }
}

/// DER certificates as concatenated PEM `CERTIFICATE` blocks.
pub fn certificates_to_pem(ders: &[Vec<u8>]) -> String {
    ders.iter()
        .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())))
        .collect()
}

/// All `CERTIFICATE` blocks of a PEM text, DER. Other blocks are an error.
pub fn certificates_from_pem(text: &str) -> Result<Vec<Vec<u8>>, CaError> {
    let blocks = pem::parse_many(text).map_err(|source| CaError::PemMalformed { source })?;
    blocks
        .into_iter()
        .map(|block| match block.tag() {
            "CERTIFICATE" => Ok(block.into_contents()),
            _ => Err(CaError::PemMissing {
                label: "CERTIFICATE",
            }),
        })
        .collect()
}

fn jwk_for_certificate(der: &[u8]) -> Result<Jwk, CaError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|source| CaError::IssuerUnparseable { source })?;
    let parsed = cert
        .public_key()
        .parsed()
        .map_err(|_| CaError::JwkUnsupportedKey {
            reason: "public key does not parse",
        })?;
    let mut jwk = Jwk {
        use_: "x509-svid",
        kty: "EC",
        crv: None,
        x: None,
        y: None,
        n: None,
        e: None,
        x5c: vec![STANDARD.encode(der)],
    };
    match parsed {
        PublicKey::EC(point) => {
            let (crv, coord_len) = match point.key_size() {
                256 => ("P-256", 32),
                384 => ("P-384", 48),
                _ => {
                    return Err(CaError::JwkUnsupportedKey {
                        reason: "unsupported curve",
                    });
                }
            };
            let (x, y) = split_uncompressed_point(point.data(), coord_len)?;
            jwk.crv = Some(crv);
            jwk.x = Some(URL_SAFE_NO_PAD.encode(x));
            jwk.y = Some(URL_SAFE_NO_PAD.encode(y));
        }
        PublicKey::RSA(rsa) => {
            jwk.kty = "RSA";
            jwk.n = Some(URL_SAFE_NO_PAD.encode(strip_leading_zeros(rsa.modulus)));
            jwk.e = Some(URL_SAFE_NO_PAD.encode(strip_leading_zeros(rsa.exponent)));
        }
        _ => {
            return Err(CaError::JwkUnsupportedKey {
                reason: "not an EC or RSA key",
            });
        }
    }
    Ok(jwk)
}

fn split_uncompressed_point(point: &[u8], coord_len: usize) -> Result<(&[u8], &[u8]), CaError> {
    match point.split_first() {
        Some((0x04, xy)) if xy.len() == 2 * coord_len => Ok(xy.split_at(coord_len)),
        _ => Err(CaError::JwkUnsupportedKey {
            reason: "EC point is not uncompressed",
        }),
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}
