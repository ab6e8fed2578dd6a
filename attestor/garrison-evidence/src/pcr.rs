//! PCR selections (TPML_PCR_SELECTION) and PCR values supplied alongside a quote.

use std::collections::BTreeMap;

use garrison_eventlog::HashAlg;

use crate::EvidenceError;
use crate::public::read_hash_alg;
use crate::wire::Reader;

/// TPM2_NUM_PCR_BANKS: a selection never names more banks than this.
const MAX_BANKS: u32 = 16;
/// Largest sizeofSelect we accept (64 PCRs; real TPMs have 24 and use 3).
const MAX_SIZEOF_SELECT: u8 = 8;
/// PCR indices are below this.
pub const MAX_PCR_INDEX: u32 = 64;

/// One TPMS_PCR_SELECTION: a bank and the PCRs selected in it, ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrBankSelection {
    /// The bank (hash).
    pub bank: HashAlg,
    /// sizeofSelect as marshalled.
    pub size_of_select: u8,
    /// Selected PCR indices, ascending.
    pub indices: Vec<u32>,
}

/// A TPML_PCR_SELECTION: banks in the order given, PCRs ascending within each. This order
/// is the order the TPM hashes PCR values into a quote's pcrDigest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrSelection {
    banks: Vec<PcrBankSelection>,
}

impl PcrSelection {
    /// A selection of `indices` in each of `banks` (in that order), e.g. for a challenge.
    pub fn new(banks: &[(HashAlg, &[u32])]) -> Result<Self, EvidenceError> {
        let mut out = Vec::with_capacity(banks.len());
        for (bank, indices) in banks {
            if out.iter().any(|b: &PcrBankSelection| b.bank == *bank) {
                return Err(EvidenceError::DuplicatePcrBank { bank: *bank });
            }
            let mut sorted: Vec<u32> = indices.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            if let Some(index) = sorted.iter().copied().find(|i| *i >= MAX_PCR_INDEX) {
                return Err(EvidenceError::InvalidPcrValue {
                    bank: *bank,
                    index,
                    problem: "index out of range",
                });
            }
            let max = sorted.last().copied().unwrap_or(0);
            // At least 3 bytes, as TPMs with 24 PCRs expect.
            let size_of_select = u8::try_from((max / 8 + 1).max(3)).unwrap_or(MAX_SIZEOF_SELECT);
            out.push(PcrBankSelection {
                bank: *bank,
                size_of_select,
                indices: sorted,
            });
        }
        Ok(Self { banks: out })
    }

    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, EvidenceError> {
        let count = reader.u32("TPML_PCR_SELECTION.count")?;
        if count > MAX_BANKS {
            return Err(EvidenceError::SizeTooLarge {
                what: "TPML_PCR_SELECTION.count",
                max: MAX_BANKS as usize,
                got: count as usize,
            });
        }
        let mut banks: Vec<PcrBankSelection> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let bank = read_hash_alg(reader, "TPMS_PCR_SELECTION.hash")?;
            let size_of_select = reader.u8("TPMS_PCR_SELECTION.sizeofSelect")?;
            if size_of_select > MAX_SIZEOF_SELECT {
                return Err(EvidenceError::SizeTooLarge {
                    what: "TPMS_PCR_SELECTION.sizeofSelect",
                    max: usize::from(MAX_SIZEOF_SELECT),
                    got: usize::from(size_of_select),
                });
            }
            let bitmap =
                reader.bytes(usize::from(size_of_select), "TPMS_PCR_SELECTION.pcrSelect")?;
            if banks.iter().any(|b| b.bank == bank) {
                return Err(EvidenceError::DuplicatePcrBank { bank });
            }
            banks.push(PcrBankSelection {
                bank,
                size_of_select,
                indices: indices_from_bitmap(bitmap),
            });
        }
        Ok(Self { banks })
    }

    /// Parses a marshalled TPML_PCR_SELECTION (big-endian). Nothing may follow it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EvidenceError> {
        let mut reader = Reader::new(bytes);
        let selection = Self::read(&mut reader)?;
        reader.finish("TPML_PCR_SELECTION")?;
        Ok(selection)
    }

    /// The marshalled TPML_PCR_SELECTION.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // At most MAX_BANKS banks: the count fits.
        out.extend_from_slice(&u32::try_from(self.banks.len()).unwrap_or(0).to_be_bytes());
        for bank in &self.banks {
            out.extend_from_slice(&bank.bank.tpm_alg_id().to_be_bytes());
            out.push(bank.size_of_select);
            let mut bitmap = vec![0u8; usize::from(bank.size_of_select)];
            for index in &bank.indices {
                if let Some(byte) = bitmap.get_mut((index / 8) as usize) {
                    *byte |= 1 << (index % 8);
                }
            }
            out.extend_from_slice(&bitmap);
        }
        out
    }

    /// The banks, in selection order.
    pub fn banks(&self) -> &[PcrBankSelection] {
        &self.banks
    }

    /// Every selected (bank, index), in pcrDigest order.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u32)> + '_ {
        self.banks
            .iter()
            .flat_map(|b| b.indices.iter().map(move |i| (b.bank, *i)))
    }

    /// Whether (bank, index) is selected.
    pub fn contains(&self, bank: HashAlg, index: u32) -> bool {
        self.banks
            .iter()
            .any(|b| b.bank == bank && b.indices.contains(&index))
    }

    /// Number of selected PCRs over all banks.
    pub fn len(&self) -> usize {
        self.banks.iter().map(|b| b.indices.len()).sum()
    }

    /// Whether no PCR is selected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn indices_from_bitmap(bitmap: &[u8]) -> Vec<u32> {
    let mut indices = Vec::new();
    for (byte_index, byte) in (0u32..).zip(bitmap) {
        for bit in 0..8u32 {
            if byte & (1 << bit) != 0 {
                indices.push(byte_index * 8 + bit);
            }
        }
    }
    indices
}

/// PCR values by bank and index, as supplied by the node for a quote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrValues {
    banks: BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>>,
}

impl PcrValues {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Values from (bank, index, digest) triples. Fails on a wrong digest length, an index
    /// out of range, or the same PCR given twice.
    pub fn from_entries<'a>(
        entries: impl IntoIterator<Item = (HashAlg, u32, &'a [u8])>,
    ) -> Result<Self, EvidenceError> {
        let mut values = Self::new();
        for (bank, index, digest) in entries {
            values.insert(bank, index, digest.to_vec())?;
        }
        Ok(values)
    }

    /// Adds one value. Fails on a wrong digest length, an index out of range, or a PCR
    /// already present.
    pub fn insert(
        &mut self,
        bank: HashAlg,
        index: u32,
        digest: Vec<u8>,
    ) -> Result<(), EvidenceError> {
        let problem = if index >= MAX_PCR_INDEX {
            Some("index out of range")
        } else if digest.len() != bank.digest_len() {
            Some("digest length does not match the bank")
        } else if self.value(bank, index).is_some() {
            Some("supplied twice")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(EvidenceError::InvalidPcrValue {
                bank,
                index,
                problem,
            });
        }
        self.banks.entry(bank).or_default().insert(index, digest);
        Ok(())
    }

    /// The value of one PCR, if supplied.
    pub fn value(&self, bank: HashAlg, index: u32) -> Option<&[u8]> {
        self.banks.get(&bank)?.get(&index).map(Vec::as_slice)
    }

    /// All values of one bank, by index.
    pub fn bank(&self, bank: HashAlg) -> Option<&BTreeMap<u32, Vec<u8>>> {
        self.banks.get(&bank)
    }

    /// Every (bank, index, value), banks in TPM_ALG_ID order, indices ascending.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u32, &[u8])> + '_ {
        self.banks
            .iter()
            .flat_map(|(bank, values)| values.iter().map(move |(i, v)| (*bank, *i, v.as_slice())))
    }

    /// Number of values over all banks.
    pub fn len(&self) -> usize {
        self.banks.values().map(BTreeMap::len).sum()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
