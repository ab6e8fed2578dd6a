//! PCR selections, reads, extends and quotes.

use tss_esapi::{
    handles::PcrHandle,
    interface_types::algorithm::HashingAlgorithm,
    structures::{Data, Digest, DigestValues, PcrSelectionList, PcrSlot, SignatureScheme},
    traits::Marshall,
};

use crate::{Ak, EMPTY_AUTH, Tpm, TpmError};

/// Highest PCR index of a PC Client TPM.
const MAX_PCR_INDEX: u8 = 23;
/// TPM2_PCR_Read returns at most 8 digests per call (TPML_DIGEST).
const PCRS_PER_READ: usize = 8;

/// A PCR bank (hash algorithm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PcrBank {
    Sha1,
    Sha256,
    Sha384,
}

impl PcrBank {
    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
        }
    }

    fn hashing_algorithm(self) -> HashingAlgorithm {
        match self {
            Self::Sha1 => HashingAlgorithm::Sha1,
            Self::Sha256 => HashingAlgorithm::Sha256,
            Self::Sha384 => HashingAlgorithm::Sha384,
        }
    }
}

/// PCRs of one bank, kept sorted ascending and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PcrSelectionSpec {
    bank: PcrBank,
    indices: Vec<u8>,
}

impl PcrSelectionSpec {
    /// Selects `indices` (0..=23, any order, duplicates ignored) of `bank`.
    pub fn new(bank: PcrBank, indices: &[u8]) -> Result<Self, TpmError> {
        if let Some(&index) = indices.iter().find(|&&index| index > MAX_PCR_INDEX) {
            return Err(TpmError::PcrIndexOutOfRange { index });
        }
        let mut indices = indices.to_vec();
        indices.sort_unstable();
        indices.dedup();
        if indices.is_empty() {
            return Err(TpmError::PcrSelectionEmpty);
        }
        Ok(Self { bank, indices })
    }

    /// Selects `indices` of the SHA-256 bank.
    pub fn sha256(indices: &[u8]) -> Result<Self, TpmError> {
        Self::new(PcrBank::Sha256, indices)
    }

    /// The bank.
    pub fn bank(&self) -> PcrBank {
        self.bank
    }

    /// The indices, ascending.
    pub fn indices(&self) -> &[u8] {
        &self.indices
    }

    fn tss_selection(&self, indices: &[u8]) -> Result<PcrSelectionList, TpmError> {
        let build_error = |source| TpmError::BuildPcrSelection { source };
        let slots = indices
            .iter()
            .map(|&index| PcrSlot::try_from(1u32 << index))
            .collect::<Result<Vec<_>, _>>()
            .map_err(build_error)?;
        PcrSelectionList::builder()
            .with_selection(self.bank.hashing_algorithm(), &slots)
            .build()
            .map_err(build_error)
    }
}

/// One PCR value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrValue {
    pub index: u8,
    pub digest: Vec<u8>,
}

/// A quote as the TPM produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Marshalled TPMS_ATTEST (magic, type TPM_ST_ATTEST_QUOTE, qualifiedSigner, extraData =
    /// the nonce, clockInfo, firmwareVersion, TPMS_QUOTE_INFO), **without** the u16 size of
    /// the TPM2B_ATTEST that carried it. These are exactly the bytes the AK signed.
    pub attest: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE: sigAlg (u16), hash (u16), then the scheme's signature
    /// (ECDSA: TPM2B r, TPM2B s; RSASSA: TPM2B signature).
    pub signature: Vec<u8>,
}

impl Tpm {
    /// Reads the selected PCRs; values come back in ascending index order. Not atomic with a
    /// later quote: the verifier must compare the quote's pcrDigest with these values.
    pub fn read_pcrs(&mut self, selection: &PcrSelectionSpec) -> Result<Vec<PcrValue>, TpmError> {
        let mut values = Vec::with_capacity(selection.indices().len());
        for chunk in selection.indices().chunks(PCRS_PER_READ) {
            let list = selection.tss_selection(chunk)?;
            let (_, _, digests) = self
                .context
                .execute_without_session(|ctx| ctx.pcr_read(list))
                .map_err(|source| TpmError::ReadPcrs { source })?;
            if digests.value().len() != chunk.len() {
                return Err(TpmError::PcrReadIncomplete {
                    expected: selection.indices().len(),
                    got: values.len() + digests.value().len(),
                });
            }
            values.extend(
                chunk
                    .iter()
                    .zip(digests.value())
                    .map(|(&index, digest)| PcrValue {
                        index,
                        digest: digest.value().to_vec(),
                    }),
            );
        }
        Ok(values)
    }

    /// Extends PCR `index` of `bank` with `digest` (TPM2_PCR_Extend with one digest).
    pub fn extend_pcr(&mut self, bank: PcrBank, index: u8, digest: &[u8]) -> Result<(), TpmError> {
        if digest.len() != bank.digest_len() {
            return Err(TpmError::ExtendDigestLength {
                expected: bank.digest_len(),
                got: digest.len(),
            });
        }
        let extend_error = |source| TpmError::ExtendPcr { index, source };
        if index > MAX_PCR_INDEX {
            return Err(TpmError::PcrIndexOutOfRange { index });
        }
        let handle = PcrHandle::try_from(u32::from(index)).map_err(extend_error)?;
        let mut values = DigestValues::new();
        values.set(
            bank.hashing_algorithm(),
            Digest::try_from(digest.to_vec()).map_err(extend_error)?,
        );
        self.context
            .execute_with_session(Some(EMPTY_AUTH), |ctx| ctx.pcr_extend(handle, values))
            .map_err(extend_error)
    }

    /// Quotes `selection` with `ak`, putting `nonce` into TPMS_ATTEST.extraData. Uses the
    /// AK's own signing scheme. Authorized by the AK's empty auth value through the password
    /// session: no session is started or flushed per quote (see [`crate::Tpm`]).
    pub fn quote(
        &mut self,
        ak: &Ak,
        nonce: &[u8],
        selection: &PcrSelectionSpec,
    ) -> Result<Quote, TpmError> {
        let qualifying =
            Data::try_from(nonce.to_vec()).map_err(|source| TpmError::QuoteNonceTooLong {
                len: nonce.len(),
                source,
            })?;
        let list = selection.tss_selection(selection.indices())?;
        let result = self.context.execute_with_session(Some(EMPTY_AUTH), |ctx| {
            ctx.quote(ak.handle(), qualifying, SignatureScheme::Null, list)
        });
        let (attest, signature) = result.map_err(|source| TpmError::Quote { source })?;
        let marshal_error = |source| TpmError::MarshalQuote { source };
        Ok(Quote {
            attest: attest.marshall().map_err(marshal_error)?,
            signature: signature.marshall().map_err(marshal_error)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_sorts_dedups_and_checks_range() {
        let spec = PcrSelectionSpec::sha256(&[7, 0, 7, 4]).unwrap();
        assert_eq!(spec.indices(), [0, 4, 7]);
        assert!(matches!(
            PcrSelectionSpec::sha256(&[24]),
            Err(TpmError::PcrIndexOutOfRange { index: 24 })
        ));
        assert!(matches!(
            PcrSelectionSpec::sha256(&[]),
            Err(TpmError::PcrSelectionEmpty)
        ));
    }
}
