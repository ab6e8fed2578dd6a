//! File formats written by tpm2-tools 5.4 that are not plain TPM marshalling.
//!
//! `tpm2_quote -o FILE` (default `-F values`) writes the tool's in-memory C structures with
//! `fwrite`, so the file is in the writer's byte order and padding. On x86-64 and aarch64
//! Linux (little-endian) the layout, confirmed by running the tool against swtpm, is:
//!
//! ```text
//! TPML_PCR_SELECTION as a C struct     132 bytes
//!   u32 LE count (<= 16)
//!   16 x { u16 LE hash, u8 sizeofSelect, u8 pcrSelect[4], u8 padding }
//! u32 LE n = number of TPML_DIGEST chunks
//! n x TPML_DIGEST as a C struct         532 bytes each
//!   u32 LE count (<= 8)
//!   8 x { u16 LE size, u8 buffer[64] }
//! ```
//!
//! The digests, taken chunk after chunk (`count` valid entries each), are the selected PCRs
//! in selection order: banks in order, PCRs ascending. Big-endian writers and
//! `-F serialized` are not supported.

use crate::EvidenceError;
use crate::pcr::{PcrSelection, PcrValues};
use crate::wire::Reader;

const SELECTION_SLOTS: usize = 16;
const SELECTION_SLOT_LEN: usize = 8;
const SELECTION_STRUCT_LEN: usize = 4 + SELECTION_SLOTS * SELECTION_SLOT_LEN;
const DIGEST_SLOTS: usize = 8;
const DIGEST_SLOT_LEN: usize = 2 + 64;
const DIGEST_LIST_LEN: usize = 4 + DIGEST_SLOTS * DIGEST_SLOT_LEN;
/// tpm2-tools' TPM2_MAX_PCRS bound on chunks (4 banks x 24 PCRs / 8 = 12 in practice).
const MAX_CHUNKS: usize = 32;

/// The content of a `tpm2_quote -o` / `tpm2_pcrread -o` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tpm2ToolsPcrFile {
    /// The selection the values were read for.
    pub selection: PcrSelection,
    /// The values.
    pub values: PcrValues,
}

impl Tpm2ToolsPcrFile {
    /// Parses the file. Every selected PCR must have exactly one digest of its bank's size.
    pub fn parse(bytes: &[u8]) -> Result<Self, EvidenceError> {
        let mut reader = Reader::new(bytes);
        let selection = read_selection(&mut reader)?;
        let digests = read_digests(&mut reader)?;
        reader.finish("tpm2-tools PCR file")?;
        if digests.len() != selection.len() {
            return Err(EvidenceError::PcrFileCount {
                expected: selection.len(),
                got: digests.len(),
            });
        }
        let mut values = PcrValues::new();
        for ((bank, index), digest) in selection.iter().zip(digests) {
            values.insert(bank, index, digest.to_vec())?;
        }
        Ok(Self { selection, values })
    }
}

impl PcrValues {
    /// The values of a `tpm2_quote -o` / `tpm2_pcrread -o` file (see [`Tpm2ToolsPcrFile`]).
    pub fn from_tpm2_tools_pcrs(bytes: &[u8]) -> Result<Self, EvidenceError> {
        Tpm2ToolsPcrFile::parse(bytes).map(|file| file.values)
    }
}

fn le_u16(bytes: [u8; 2]) -> u16 {
    u16::from_le_bytes(bytes)
}

fn le_u32(reader: &mut Reader<'_>, what: &'static str) -> Result<u32, EvidenceError> {
    Ok(u32::from_le_bytes(reader.array(what)?))
}

/// Rewrites the little-endian C struct as a marshalled TPML_PCR_SELECTION and parses that,
/// so the selection rules live in one place.
fn read_selection(reader: &mut Reader<'_>) -> Result<PcrSelection, EvidenceError> {
    let mut block =
        Reader::new(reader.bytes(SELECTION_STRUCT_LEN, "tpm2-tools TPML_PCR_SELECTION")?);
    let count = le_u32(&mut block, "tpm2-tools TPML_PCR_SELECTION.count")?;
    if count as usize > SELECTION_SLOTS {
        return Err(EvidenceError::SizeTooLarge {
            what: "tpm2-tools TPML_PCR_SELECTION.count",
            max: SELECTION_SLOTS,
            got: count as usize,
        });
    }
    let mut marshalled = count.to_be_bytes().to_vec();
    for _ in 0..count {
        let slot: [u8; SELECTION_SLOT_LEN] = block.array("tpm2-tools TPMS_PCR_SELECTION")?;
        let [h0, h1, size, s0, s1, s2, s3, _pad] = slot;
        if size > 4 {
            return Err(EvidenceError::SizeTooLarge {
                what: "tpm2-tools TPMS_PCR_SELECTION.sizeofSelect",
                max: 4,
                got: usize::from(size),
            });
        }
        marshalled.extend_from_slice(&le_u16([h0, h1]).to_be_bytes());
        marshalled.push(size);
        marshalled.extend_from_slice(
            [s0, s1, s2, s3]
                .get(..usize::from(size))
                .unwrap_or_default(),
        );
    }
    PcrSelection::from_bytes(&marshalled)
}

fn read_digests<'a>(reader: &mut Reader<'a>) -> Result<Vec<&'a [u8]>, EvidenceError> {
    let chunks = le_u32(reader, "tpm2-tools PCR file chunk count")? as usize;
    if chunks > MAX_CHUNKS {
        return Err(EvidenceError::SizeTooLarge {
            what: "tpm2-tools PCR file chunk count",
            max: MAX_CHUNKS,
            got: chunks,
        });
    }
    let mut digests = Vec::new();
    for _ in 0..chunks {
        let mut list = Reader::new(reader.bytes(DIGEST_LIST_LEN, "tpm2-tools TPML_DIGEST")?);
        let count = le_u32(&mut list, "tpm2-tools TPML_DIGEST.count")? as usize;
        if count > DIGEST_SLOTS {
            return Err(EvidenceError::SizeTooLarge {
                what: "tpm2-tools TPML_DIGEST.count",
                max: DIGEST_SLOTS,
                got: count,
            });
        }
        for _ in 0..count {
            let size = usize::from(le_u16(list.array("tpm2-tools TPM2B_DIGEST.size")?));
            let buffer = list.bytes(64, "tpm2-tools TPM2B_DIGEST.buffer")?;
            let digest = buffer.get(..size).ok_or(EvidenceError::SizeTooLarge {
                what: "tpm2-tools TPM2B_DIGEST.size",
                max: 64,
                got: size,
            })?;
            digests.push(digest);
        }
    }
    Ok(digests)
}
