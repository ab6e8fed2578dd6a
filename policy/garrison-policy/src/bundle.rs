//! Bundle layout: the files, the manifest that lists their digests, and the one-file archive.
//!
//! A bundle is a map of file name → bytes. The caller reads it from a directory or decodes it
//! from an archive ([`decode_archive`]); nothing here touches the file system.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// File name → contents.
pub type BundleFiles = BTreeMap<String, Vec<u8>>;

/// The manifest's file name inside a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The signature's file name inside a bundle.
pub const SIGNATURE_FILE: &str = "signature.json";
/// The data document's file name inside a bundle.
pub const DATA_FILE: &str = "data.json";
/// `format` of every manifest this version writes and accepts.
pub const MANIFEST_FORMAT: &str = "garrison-policy-bundle/1";
/// `format` of the one-file archive.
pub const ARCHIVE_FORMAT: &str = "garrison-policy-archive/1";

/// Size limits applied to a bundle before anything in it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleLimits {
    /// Sum of all file sizes.
    pub max_total_bytes: usize,
    /// Number of files, manifest and signature included.
    pub max_files: usize,
}

impl Default for BundleLimits {
    fn default() -> Self {
        Self {
            max_total_bytes: 4 * 1024 * 1024,
            max_files: 64,
        }
    }
}

/// `manifest.json`: what the signature covers. Every other file is bound to it by SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Human name of the policy, e.g. `strict-default`.
    pub name: String,
    /// Monotonic sequence: a bundle with a lower one never replaces the one in force.
    pub sequence: u64,
    /// RFC 3339 creation time (informational; not used for any decision).
    pub created: String,
    /// Hex SHA-256 of the signer certificate's SubjectPublicKeyInfo (DER).
    pub signing_key_id: String,
    /// File name → hex SHA-256, for every file but the manifest and the signature.
    pub files: BTreeMap<String, String>,
}

impl Manifest {
    /// Parse and check the format tag.
    pub fn parse(bytes: &[u8]) -> Result<Self, PolicyError> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| PolicyError::ManifestMalformed {
                reason: e.to_string(),
            })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(PolicyError::ManifestMalformed {
                reason: format!(
                    "format is {:?}, expected {MANIFEST_FORMAT:?}",
                    manifest.format
                ),
            });
        }
        time::OffsetDateTime::parse(
            &manifest.created,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|_| PolicyError::ManifestMalformed {
            reason: "created is not an RFC 3339 time".to_owned(),
        })?;
        Ok(manifest)
    }

    /// The bytes to write as manifest.json (pretty JSON, fields in struct order, files
    /// sorted). Verification uses the bytes as stored, so no canonical form is needed.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing a struct of strings, integers and a BTreeMap cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes))
}

/// Check sizes, count and names of a bundle's files (signed or not).
pub fn check_files(files: &BundleFiles, limits: &BundleLimits) -> Result<(), PolicyError> {
    if files.len() > limits.max_files {
        return Err(PolicyError::BundleTooManyFiles {
            limit: limits.max_files,
            got: files.len(),
        });
    }
    let total: usize = files.values().map(Vec::len).sum();
    if total > limits.max_total_bytes {
        return Err(PolicyError::BundleTooLarge {
            limit: limits.max_total_bytes,
            got: total,
        });
    }
    match files.keys().find(|name| !allowed_name(name)) {
        Some(name) => Err(PolicyError::BundleFileName { name: name.clone() }),
        None => Ok(()),
    }
}

fn allowed_name(name: &str) -> bool {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    plain
        && (name.ends_with(".rego")
            || name == DATA_FILE
            || name == MANIFEST_FILE
            || name == SIGNATURE_FILE)
}

/// The policy files of a bundle: everything but the manifest and the signature.
pub fn policy_files(files: &BundleFiles) -> impl Iterator<Item = (&String, &Vec<u8>)> {
    files
        .iter()
        .filter(|(name, _)| name.as_str() != MANIFEST_FILE && name.as_str() != SIGNATURE_FILE)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Archive {
    format: String,
    files: BTreeMap<String, String>,
}

/// Encode a bundle as one JSON file: `{"format": ARCHIVE_FORMAT, "files": {name: base64}}`.
pub fn encode_archive(files: &BundleFiles) -> Vec<u8> {
    let archive = Archive {
        format: ARCHIVE_FORMAT.to_owned(),
        files: files
            .iter()
            .map(|(name, bytes)| (name.clone(), B64.encode(bytes)))
            .collect(),
    };
    serde_json::to_vec_pretty(&archive).unwrap_or_default()
}

/// Decode an archive written by [`encode_archive`], applying `limits` before decoding.
pub fn decode_archive(bytes: &[u8], limits: &BundleLimits) -> Result<BundleFiles, PolicyError> {
    // base64 inflates by 4/3; allow some JSON overhead on top.
    let ceiling = limits
        .max_total_bytes
        .saturating_mul(2)
        .saturating_add(64 * 1024);
    if bytes.len() > ceiling {
        return Err(PolicyError::BundleTooLarge {
            limit: ceiling,
            got: bytes.len(),
        });
    }
    let archive: Archive =
        serde_json::from_slice(bytes).map_err(|e| PolicyError::ArchiveMalformed {
            reason: e.to_string(),
        })?;
    if archive.format != ARCHIVE_FORMAT {
        return Err(PolicyError::ArchiveMalformed {
            reason: format!(
                "format is {:?}, expected {ARCHIVE_FORMAT:?}",
                archive.format
            ),
        });
    }
    let files = archive
        .files
        .into_iter()
        .map(|(name, text)| match B64.decode(text) {
            Ok(bytes) => Ok((name, bytes)),
            Err(_) => Err(PolicyError::ArchiveMalformed {
                reason: format!("{name} is not base64"),
            }),
        })
        .collect::<Result<BundleFiles, _>>()?;
    check_files(&files, limits)?;
    Ok(files)
}
