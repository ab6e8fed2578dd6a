//! The site's log key: Ed25519, stored as PKCS#8, named by the log's origin.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SecureRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

use crate::TransparencyError;

/// The signed-note algorithm byte of Ed25519 keys (C2SP signed-note).
pub(crate) const ALG_ED25519: u8 = 0x01;

/// An Ed25519 key that signs one log's checkpoints. `Debug` shows the origin and key id only.
pub struct LogKey {
    origin: String,
    pair: Ed25519KeyPair,
    key_id: u32,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey")
            .field("origin", &self.origin)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl LogKey {
    /// A new key as PKCS#8 DER, drawn from `rng`. A failed draw is an error, never a weak key.
    pub fn generate_pkcs8(rng: &dyn SecureRandom) -> Result<Vec<u8>, TransparencyError> {
        generate_ed25519_pkcs8(rng)
    }

    /// Loads a PKCS#8 (v1 or v2) Ed25519 key that signs for `origin`.
    pub fn from_pkcs8(origin: &str, pkcs8: &[u8]) -> Result<Self, TransparencyError> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(TransparencyError::Key {
                reason: "the origin is not a valid signed-note key name",
            });
        }
        let pair = load_ed25519_pkcs8(pkcs8)?;
        let key_id = signed_note::key_id(origin, &note_public_key(&public_of(&pair)));
        Ok(LogKey {
            origin: origin.to_owned(),
            pair,
            key_id,
        })
    }

    /// The log's origin, which is also the key's name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        public_of(&self.pair)
    }

    /// The signed-note verifier key (`<origin>+<key id>+<base64>`), which other note tooling
    /// reads.
    pub fn verifier_key(&self) -> String {
        verifier_key(&self.origin, &self.public_key())
    }

    /// Signs the checkpoint of the tree of `size` records with root `root`: the C2SP
    /// tlog-checkpoint body (origin, size, base64 root) and one signature line.
    pub fn sign_checkpoint(&self, size: u64, root: &[u8; 32]) -> Result<String, TransparencyError> {
        let sign_err = |reason: String| TransparencyError::Sign { reason };
        let body = tlog_tiles::Checkpoint::new(&self.origin, size, tlog_tiles::Hash(*root), "")
            .map_err(|e| sign_err(e.to_string()))?
            .to_bytes();
        let mut note = signed_note::Note::new(&body, &[]).map_err(|e| sign_err(e.to_string()))?;
        note.add_sigs(&[self])
            .map_err(|e| sign_err(e.to_string()))?;
        String::from_utf8(note.to_bytes()).map_err(|e| sign_err(e.to_string()))
    }

    /// Signs the JWS signing input `ASCII(BASE64URL(header)) || '.' || ASCII(BASE64URL(payload))`
    /// (RFC 7515 §5.1) with Ed25519 (`alg: EdDSA`, RFC 8037): the attestor's signed
    /// attestation results. Anything else is refused, so the key signs exactly two kinds of
    /// message that cannot be taken for one another: a checkpoint body always has lines (a
    /// newline after the origin), a JWS signing input never has one (base64url has no
    /// newline), and a checkpoint never has a '.' outside its origin line while a JWS input is
    /// two base64url segments around one '.'.
    pub fn sign_jws(&self, signing_input: &str) -> Result<Vec<u8>, TransparencyError> {
        let segment = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        match signing_input.split_once('.') {
            Some((header, payload)) if segment(header) && segment(payload) => {
                Ok(self.pair.sign(signing_input.as_bytes()).as_ref().to_vec())
            }
            _ => Err(TransparencyError::Sign {
                reason: "not a JWS signing input (two base64url segments joined by '.')".to_owned(),
            }),
        }
    }
}

impl signed_note::Signer for LogKey {
    fn name(&self) -> &str {
        &self.origin
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.pair.sign(msg).as_ref().to_vec())
    }
}

/// A new Ed25519 key as PKCS#8 DER, drawn from `rng`.
pub(crate) fn generate_ed25519_pkcs8(rng: &dyn SecureRandom) -> Result<Vec<u8>, TransparencyError> {
    Ed25519KeyPair::generate_pkcs8(rng)
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| TransparencyError::Key {
            reason: "generating an Ed25519 key failed (no randomness?)",
        })
}

/// A PKCS#8 (v1 or v2) Ed25519 key.
pub(crate) fn load_ed25519_pkcs8(pkcs8: &[u8]) -> Result<Ed25519KeyPair, TransparencyError> {
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| TransparencyError::Key {
        reason: "not an Ed25519 PKCS#8 key",
    })
}

/// Does `signature` verify over `message` with the Ed25519 key `public`?
pub(crate) fn ed25519_verifies(public: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public)
        .verify(message, signature)
        .is_ok()
}

pub(crate) fn public_of(pair: &Ed25519KeyPair) -> [u8; 32] {
    let mut public = [0u8; 32];
    let bytes = pair.public_key().as_ref();
    if bytes.len() == 32 {
        public.copy_from_slice(bytes);
    }
    public
}

/// `0x01 || public`: the key bytes signed-note hashes into key ids.
pub(crate) fn note_public_key(public: &[u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(ALG_ED25519);
    key.extend_from_slice(public);
    key
}

/// The signed-note verifier key of an Ed25519 public key named `name`.
pub fn verifier_key(name: &str, public: &[u8; 32]) -> String {
    let key = note_public_key(public);
    format!(
        "{name}+{:08x}+{}",
        signed_note::key_id(name, &key),
        B64.encode(&key)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use ring::rand::SystemRandom;

    use super::*;

    #[test]
    fn the_log_key_signs_jws_inputs_and_nothing_that_could_be_a_note() {
        let pkcs8 = LogKey::generate_pkcs8(&SystemRandom::new()).unwrap();
        let key = LogKey::from_pkcs8("garrison.example.org/site/s1", &pkcs8).unwrap();
        let input = "eyJhbGciOiJFZERTQSJ9.eyJpYXQiOjF9";
        let signature = key.sign_jws(input).unwrap();
        assert!(ed25519_verifies(
            &key.public_key(),
            input.as_bytes(),
            &signature
        ));
        for refused in [
            "garrison.example.org/site/s1\n3\nAAAA\n",
            "eyJhbGciOiJFZERTQSJ9",
            "eyJhbGciOiJFZERTQSJ9.",
            ".eyJpYXQiOjF9",
            "a.b.c",
            "a b.c",
            "a+/.c",
        ] {
            assert!(key.sign_jws(refused).is_err(), "{refused:?}");
        }
    }
}
