//! The hub's witness key: Ed25519, stored as PKCS#8, named `garrison.<td>/hub`.
//!
//! It signs exactly two kinds of message, which cannot be taken for one another:
//!
//! * cosignatures ([`WitnessKey::cosign`]): `cosignature/v1\ntime <t>\n` followed by a
//!   checkpoint body, under the C2SP tlog-cosignature key ID (signature type `0x04`);
//! * revocation lists ([`WitnessKey::sign_revocations`]): a note body whose first line is
//!   `garrison.<td>/revocations`, under the plain signed-note Ed25519 key ID (type `0x01`).
//!
//! A revocation list never starts with `cosignature/v1`, and the key cosigns only bodies that
//! parse as checkpoints, whose third line is a base64 hash, never `issued <t>`.

use ring::rand::SecureRandom;
use ring::signature::Ed25519KeyPair;

use crate::TransparencyError;
use crate::cosignature::{cosign, cosignature_key_id};
use crate::key::{generate_ed25519_pkcs8, load_ed25519_pkcs8, note_public_key, public_of};
use crate::revocation::{RevocationList, sign_revocations};

/// The name of a trust domain's hub witness, as cosigner and as revocation-list signer:
/// `garrison.<trust-domain>/hub`.
pub fn hub_witness_name(trust_domain: &str) -> String {
    format!("garrison.{trust_domain}/hub")
}

/// `trust_domain` if it is a valid SPIFFE trust domain (lowercase; nothing that could
/// smuggle a path, a space or a `+` into a note name).
pub(crate) fn checked_trust_domain(trust_domain: &str) -> Result<&str, TransparencyError> {
    garrison_ca::TrustDomain::new(trust_domain)
        .map(|_| trust_domain)
        .map_err(|source| TransparencyError::TrustDomainInvalid {
            trust_domain: trust_domain.chars().take(300).collect(),
            source,
        })
}

/// The hub's Ed25519 witness key for one trust domain. `Debug` shows the name and key IDs
/// only, never the key.
pub struct WitnessKey {
    trust_domain: String,
    name: String,
    pair: Ed25519KeyPair,
    public: [u8; 32],
}

impl std::fmt::Debug for WitnessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessKey")
            .field("name", &self.name)
            .field("note_key_id", &format_args!("{:08x}", self.note_key_id()))
            .field(
                "cosignature_key_id",
                &format_args!("{:08x}", cosignature_key_id(&self.name, &self.public)),
            )
            .finish_non_exhaustive()
    }
}

impl WitnessKey {
    /// A new key as PKCS#8 DER, drawn from `rng`. A failed draw is an error, never a weak key.
    pub fn generate_pkcs8(rng: &dyn SecureRandom) -> Result<Vec<u8>, TransparencyError> {
        generate_ed25519_pkcs8(rng)
    }

    /// Loads a PKCS#8 (v1 or v2) Ed25519 key as the witness of `trust_domain`.
    pub fn from_pkcs8(trust_domain: &str, pkcs8: &[u8]) -> Result<Self, TransparencyError> {
        let trust_domain = checked_trust_domain(trust_domain)?;
        let pair = load_ed25519_pkcs8(pkcs8)?;
        Ok(WitnessKey {
            trust_domain: trust_domain.to_owned(),
            name: hub_witness_name(trust_domain),
            public: public_of(&pair),
            pair,
        })
    }

    /// The witness name, `garrison.<td>/hub` ([`hub_witness_name`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The trust domain this key witnesses for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The raw Ed25519 public key (what the hub CA certifies).
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// `checkpoint_note` with this witness's C2SP `cosignature/v1` line appended (replacing
    /// an earlier line by this key). `timestamp_unix` is the time of cosigning, at most
    /// 2^63 - 1; the body must be a checkpoint. The caller must have checked the log's
    /// signature and the checkpoint's consistency with the last one it cosigned: the
    /// cosignature says so.
    pub fn cosign(
        &self,
        checkpoint_note: &str,
        timestamp_unix: u64,
    ) -> Result<String, TransparencyError> {
        cosign(self, checkpoint_note, timestamp_unix)
    }

    /// The revocation list as a note signed by this witness (see [`RevocationList`]).
    /// Entries are written sorted and without duplicates; an entry that is not exactly
    /// lowercase hex of the right length is refused, as is a list for another trust domain.
    pub fn sign_revocations(&self, list: &RevocationList) -> Result<String, TransparencyError> {
        sign_revocations(self, list)
    }

    /// The signed-note key ID of this key's plain Ed25519 signatures (revocation lists).
    pub(crate) fn note_key_id(&self) -> u32 {
        signed_note::key_id(&self.name, &note_public_key(&self.public))
    }

    /// An Ed25519 signature over `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}
