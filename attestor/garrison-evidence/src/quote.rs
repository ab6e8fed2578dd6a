//! Quote verification: AK signature, nonce, and the PCR digest over supplied values.

use garrison_eventlog::HashAlg;

use crate::EvidenceError;
use crate::ak::AkIdentity;
use crate::attest::{ClockInfo, QuoteAttest};
use crate::pcr::{PcrSelection, PcrValues};
use crate::signature::TpmSignature;

/// What a verified quote says. The clock fields are reported, not judged: callers enforce
/// per-node monotonicity (resetCount/restartCount never decrease, clock grows within one
/// boot) against what they stored last time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteVerdict {
    /// TPMS_CLOCK_INFO.clock (ms).
    pub clock: u64,
    /// TPMS_CLOCK_INFO.resetCount.
    pub reset_count: u32,
    /// TPMS_CLOCK_INFO.restartCount.
    pub restart_count: u32,
    /// TPMS_CLOCK_INFO.safe.
    pub safe: bool,
    /// firmwareVersion.
    pub firmware_version: u64,
    /// qualifiedSigner (TPM2B_NAME contents).
    pub qualified_signer: Vec<u8>,
    /// The PCRs the quote covers, in digest order.
    pub selection: PcrSelection,
    /// The hash the pcrDigest was computed with (the AK scheme's).
    pub pcr_digest_alg: HashAlg,
}

/// Verifies a quote.
///
/// * `attest` — TPMS_ATTEST as `tpm2_quote -m` writes it (TPM2B_ATTEST also accepted).
/// * `signature` — TPMT_SIGNATURE as `tpm2_quote -s` writes it.
/// * `nonce` — the exact bytes the verifier issued; must equal extraData.
/// * `pcrs` — the values the node claims; must be exactly the selected PCRs.
///
/// Order of checks: signature scheme, signature over the exact attest bytes, magic and
/// type, nonce, PCR set, PCR digest. The pcrDigest is H(values in selection order) with the
/// hash of the AK's signing scheme (TPM 2.0 Part 3, TPM2_Quote) — not the nameAlg.
pub fn verify_quote(
    ak: &AkIdentity,
    attest: &[u8],
    signature: &[u8],
    nonce: &[u8],
    pcrs: &PcrValues,
) -> Result<QuoteVerdict, EvidenceError> {
    let signature = TpmSignature::from_bytes(signature)?;
    if signature.scheme != ak.scheme() {
        return Err(EvidenceError::SignatureSchemeMismatch {
            expected: ak.scheme().to_string(),
            got: signature.scheme.to_string(),
        });
    }
    let signed = signed_bytes(attest);
    ak.verify(signed, &signature)?;
    let quote = QuoteAttest::from_bytes(attest)?;
    check_nonce(&quote, nonce)?;
    check_pcr_set(&quote.selection, pcrs)?;
    let pcr_digest_alg = ak.scheme().hash();
    check_pcr_digest(&quote, pcrs, pcr_digest_alg)?;
    Ok(verdict(quote, pcr_digest_alg))
}

/// The TPMS_ATTEST inside `attest`, stripping a TPM2B size prefix if there is one. Parsing
/// happens after the signature check, on the same bytes.
fn signed_bytes(attest: &[u8]) -> &[u8] {
    match attest {
        [0xff, 0x54, ..] => attest,
        [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() => rest,
        _ => attest,
    }
}

fn check_nonce(quote: &QuoteAttest, nonce: &[u8]) -> Result<(), EvidenceError> {
    if quote.extra_data == nonce {
        return Ok(());
    }
    Err(EvidenceError::NonceMismatch {
        expected: hex::encode(nonce),
        got: hex::encode(&quote.extra_data),
    })
}

/// Every supplied value must be selected, and every selected PCR supplied.
fn check_pcr_set(selection: &PcrSelection, pcrs: &PcrValues) -> Result<(), EvidenceError> {
    if let Some((bank, index, _)) = pcrs
        .iter()
        .find(|(bank, index, _)| !selection.contains(*bank, *index))
    {
        return Err(EvidenceError::PcrNotSelected { bank, index });
    }
    if let Some((bank, index)) = selection
        .iter()
        .find(|(bank, index)| pcrs.value(*bank, *index).is_none())
    {
        return Err(EvidenceError::PcrMissing { bank, index });
    }
    Ok(())
}

fn check_pcr_digest(
    quote: &QuoteAttest,
    pcrs: &PcrValues,
    alg: HashAlg,
) -> Result<(), EvidenceError> {
    let parts: Vec<&[u8]> = quote
        .selection
        .iter()
        .filter_map(|(bank, index)| pcrs.value(bank, index))
        .collect();
    let computed = alg.digest(&parts);
    if computed == quote.pcr_digest {
        return Ok(());
    }
    Err(EvidenceError::PcrDigestMismatch {
        alg,
        expected: hex::encode(&quote.pcr_digest),
        got: hex::encode(computed),
    })
}

fn verdict(quote: QuoteAttest, pcr_digest_alg: HashAlg) -> QuoteVerdict {
    let ClockInfo {
        clock,
        reset_count,
        restart_count,
        safe,
    } = quote.clock_info;
    QuoteVerdict {
        clock,
        reset_count,
        restart_count,
        safe,
        firmware_version: quote.firmware_version,
        qualified_signer: quote.qualified_signer,
        selection: quote.selection,
        pcr_digest_alg,
    }
}
