//! TPMS_ATTEST for quotes (TPM 2.0 Part 2, §10.12).

use crate::EvidenceError;
use crate::pcr::PcrSelection;
use crate::wire::Reader;

/// TPM_GENERATED_VALUE: every TPMS_ATTEST produced by a TPM starts with it.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_QUOTE.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// sizeof(TPMS_ATTEST) bound: TPM2B_ATTEST's buffer.
const MAX_ATTEST: usize = 2048;
/// TPM2B_NAME: 2-byte algorithm + SHA-512 digest.
const MAX_NAME: usize = 2 + 64;
/// TPM2B_DATA / TPM2B_DIGEST: at most a SHA-512 digest.
const MAX_DATA: usize = 64;

/// TPMS_CLOCK_INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered (since the last TPM2_Clear).
    pub clock: u64,
    /// TPM resets since the last TPM2_Clear.
    pub reset_count: u32,
    /// TPM restarts (resume from hibernate) since the last reset.
    pub restart_count: u32,
    /// Whether `clock` is known not to have gone backwards.
    pub safe: bool,
}

/// A parsed TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE, with its marshalled bytes (what the AK
/// signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteAttest {
    /// qualifiedSigner: the AK's qualified name (TPM2B_NAME contents).
    pub qualified_signer: Vec<u8>,
    /// extraData: the caller's nonce.
    pub extra_data: Vec<u8>,
    /// clockInfo.
    pub clock_info: ClockInfo,
    /// firmwareVersion (vendor-defined).
    pub firmware_version: u64,
    /// TPMS_QUOTE_INFO.pcrSelect.
    pub selection: PcrSelection,
    /// TPMS_QUOTE_INFO.pcrDigest.
    pub pcr_digest: Vec<u8>,
    raw: Vec<u8>,
}

impl QuoteAttest {
    /// Parses a TPMS_ATTEST (as `tpm2_quote -m` writes it), or a TPM2B_ATTEST (u16 size
    /// prefix, as some tools and TSS wrappers store it). The two cannot be confused: a
    /// TPMS_ATTEST starts with 0xff54, and a TPM2B_ATTEST's size is at most 2048.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EvidenceError> {
        match bytes {
            [0xff, 0x54, ..] => Self::from_tpms(bytes),
            _ => Self::from_tpm2b(bytes),
        }
    }

    /// Parses a TPM2B_ATTEST. Nothing may follow it.
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, EvidenceError> {
        let mut reader = Reader::new(bytes);
        let inner = reader.tpm2b(MAX_ATTEST, "TPM2B_ATTEST")?;
        reader.finish("TPM2B_ATTEST")?;
        Self::from_tpms(inner)
    }

    /// Parses a bare TPMS_ATTEST. Nothing may follow it.
    pub fn from_tpms(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() > MAX_ATTEST {
            return Err(EvidenceError::SizeTooLarge {
                what: "TPMS_ATTEST",
                max: MAX_ATTEST,
                got: bytes.len(),
            });
        }
        let mut reader = Reader::new(bytes);
        let magic = reader.u32("TPMS_ATTEST.magic")?;
        if magic != TPM_GENERATED_VALUE {
            return Err(EvidenceError::AttestMagic {
                expected: TPM_GENERATED_VALUE,
                got: magic,
            });
        }
        let attest_type = reader.u16("TPMS_ATTEST.type")?;
        if attest_type != TPM_ST_ATTEST_QUOTE {
            return Err(EvidenceError::AttestType {
                expected: TPM_ST_ATTEST_QUOTE,
                got: attest_type,
            });
        }
        let qualified_signer = reader
            .tpm2b(MAX_NAME, "TPMS_ATTEST.qualifiedSigner")?
            .to_vec();
        let extra_data = reader.tpm2b(MAX_DATA, "TPMS_ATTEST.extraData")?.to_vec();
        let clock_info = read_clock_info(&mut reader)?;
        let firmware_version = reader.u64("TPMS_ATTEST.firmwareVersion")?;
        let selection = PcrSelection::read(&mut reader)?;
        let pcr_digest = reader
            .tpm2b(MAX_DATA, "TPMS_QUOTE_INFO.pcrDigest")?
            .to_vec();
        reader.finish("TPMS_ATTEST")?;
        Ok(Self {
            qualified_signer,
            extra_data,
            clock_info,
            firmware_version,
            selection,
            pcr_digest,
            raw: bytes.to_vec(),
        })
    }

    /// The marshalled TPMS_ATTEST: the bytes the signature covers.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.raw
    }
}

fn read_clock_info(reader: &mut Reader<'_>) -> Result<ClockInfo, EvidenceError> {
    let clock = reader.u64("TPMS_CLOCK_INFO.clock")?;
    let reset_count = reader.u32("TPMS_CLOCK_INFO.resetCount")?;
    let restart_count = reader.u32("TPMS_CLOCK_INFO.restartCount")?;
    let safe = match reader.u8("TPMS_CLOCK_INFO.safe")? {
        0 => false,
        1 => true,
        got => {
            return Err(EvidenceError::InvalidBoolean {
                what: "TPMS_CLOCK_INFO.safe",
                got,
            });
        }
    };
    Ok(ClockInfo {
        clock,
        reset_count,
        restart_count,
        safe,
    })
}
