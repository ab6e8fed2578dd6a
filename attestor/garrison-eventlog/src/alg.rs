//! TPM hash algorithms as they name PCR banks in event logs, PCR selections and quotes.

use sm3::Digest as _;

/// A hash algorithm identified by its TPM_ALG_ID (TPM 2.0 Part 2, table 9).
///
/// Only algorithms Garrison can compute are listed; an event log may carry others, whose
/// digests are skipped by size (the Spec ID header says how long they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum HashAlg {
    /// TPM_ALG_SHA1 (0x0004). Still the only bank of older firmware logs.
    Sha1,
    /// TPM_ALG_SHA256 (0x000B).
    Sha256,
    /// TPM_ALG_SHA384 (0x000C).
    Sha384,
    /// TPM_ALG_SHA512 (0x000D).
    Sha512,
    /// TPM_ALG_SM3_256 (0x0012).
    Sm3_256,
}

impl HashAlg {
    /// Every algorithm Garrison computes, in TPM_ALG_ID order.
    pub const ALL: [HashAlg; 5] = [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
        HashAlg::Sm3_256,
    ];

    /// The algorithm for a TPM_ALG_ID, or `None` if Garrison cannot compute it.
    pub fn from_tpm_alg_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.tpm_alg_id() == id)
    }

    /// The TPM_ALG_ID of this algorithm.
    pub fn tpm_alg_id(self) -> u16 {
        match self {
            HashAlg::Sha1 => 0x0004,
            HashAlg::Sha256 => 0x000B,
            HashAlg::Sha384 => 0x000C,
            HashAlg::Sha512 => 0x000D,
            HashAlg::Sm3_256 => 0x0012,
        }
    }

    /// The digest size in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 | HashAlg::Sm3_256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// The bank name used in JSON output and policy input (`pcrs.<bank>.<index>`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
            HashAlg::Sm3_256 => "sm3_256",
        }
    }

    /// The algorithm for a bank name as produced by [`HashAlg::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// Hash the concatenation of `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        let ring_alg = match self {
            HashAlg::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha256 => &ring::digest::SHA256,
            HashAlg::Sha384 => &ring::digest::SHA384,
            HashAlg::Sha512 => &ring::digest::SHA512,
            HashAlg::Sm3_256 => {
                let mut hasher = sm3::Sm3::new();
                parts.iter().for_each(|part| hasher.update(part));
                return hasher.finalize().to_vec();
            }
        };
        let mut ctx = ring::digest::Context::new(ring_alg);
        parts.iter().for_each(|part| ctx.update(part));
        ctx.finish().as_ref().to_vec()
    }

    /// The PCR value after extending `current` with `digest`: `H(current || digest)`.
    pub fn extend(self, current: &[u8], digest: &[u8]) -> Vec<u8> {
        self.digest(&[current, digest])
    }
}

impl serde::Serialize for HashAlg {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl std::fmt::Display for HashAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sizes_match_outputs() {
        for alg in HashAlg::ALL {
            assert_eq!(HashAlg::from_tpm_alg_id(alg.tpm_alg_id()), Some(alg));
            assert_eq!(HashAlg::from_name(alg.name()), Some(alg));
            assert_eq!(alg.digest(&[b"abc"]).len(), alg.digest_len());
        }
        assert_eq!(HashAlg::from_tpm_alg_id(0x0010), None);
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            hex::encode(HashAlg::Sha256.digest(&[b"a", b"bc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // GB/T 32905-2016 example 1.
        assert_eq!(
            hex::encode(HashAlg::Sm3_256.digest(&[b"abc"])),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }
}
