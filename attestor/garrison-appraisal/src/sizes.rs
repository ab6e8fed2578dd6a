//! Field size limits, checked before anything else is done with a request (or stored). The
//! limits themselves are the protocol's (`garrison_proto::limits`); the host passes them in
//! so that this crate does not link the gRPC stack.

use std::collections::HashMap;

use crate::appraisal::Quote;
use crate::refusal::{Reason, Refusal};

/// The longest digest of any PCR bank (SHA-512, SM3 and SHA3-512 included).
pub const MAX_PCR_DIGEST: usize = 64;

/// Largest size of each field, bytes (or count, where said).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLimits {
    /// TPM2B_PUBLIC (EK and AK).
    pub public_area: usize,
    /// One certificate.
    pub certificate: usize,
    /// Certificates in an EK chain (count).
    pub ek_chain: usize,
    /// Self-reported facts (count).
    pub asserted_facts: usize,
    /// One self-reported fact's key or value.
    pub asserted_len: usize,
    /// TPMS_ATTEST or TPMT_SIGNATURE.
    pub attest: usize,
    /// PCR values in a quote (count).
    pub pcr_values: usize,
    /// Measured-boot event log.
    pub event_log: usize,
    /// CSR.
    pub csr: usize,
    /// Activated secret.
    pub secret: usize,
}

/// What an enrollment begins with: the node's keys, its EK certificate and chain, and what it
/// says about itself.
#[derive(Debug, Clone, Copy)]
pub struct BeginEvidence<'a> {
    /// EK public area (TPM2B_PUBLIC).
    pub ek_public: &'a [u8],
    /// EK certificate, DER (empty when none was sent).
    pub ek_certificate: &'a [u8],
    /// Intermediates between the EK certificate and a manufacturer root, DER.
    pub ek_chain: &'a [Vec<u8>],
    /// AK public area (TPM2B_PUBLIC).
    pub ak_public: &'a [u8],
    /// Self-reported facts (never trusted; shown to policy as `node.asserted`).
    pub asserted: &'a HashMap<String, String>,
}

fn too_big(what: &str, len: usize, max: usize) -> Result<(), Refusal> {
    if len > max {
        return Err(Refusal::new(
            Reason::MalformedRequest,
            format!("{what} is {len} bytes; at most {max}"),
        ));
    }
    Ok(())
}

/// Every field of an enrollment's first step.
pub fn check_begin_sizes(limits: &FieldLimits, r: &BeginEvidence<'_>) -> Result<(), Refusal> {
    too_big("ek_public", r.ek_public.len(), limits.public_area)?;
    too_big("ak_public", r.ak_public.len(), limits.public_area)?;
    too_big("ek_certificate", r.ek_certificate.len(), limits.certificate)?;
    too_big("ek_chain", r.ek_chain.len(), limits.ek_chain)?;
    for cert in r.ek_chain {
        too_big("ek_chain certificate", cert.len(), limits.certificate)?;
    }
    too_big("asserted facts", r.asserted.len(), limits.asserted_facts)?;
    for (k, v) in r.asserted {
        too_big("asserted fact", k.len().max(v.len()), limits.asserted_len)?;
    }
    Ok(())
}

/// The activated secret of an enrollment's second step.
pub fn check_secret_size(limits: &FieldLimits, activated_secret: &[u8]) -> Result<(), Refusal> {
    too_big("activated secret", activated_secret.len(), limits.secret)
}

/// The AK public area a renewal sends.
pub fn check_ak_size(limits: &FieldLimits, ak_public: &[u8]) -> Result<(), Refusal> {
    too_big("ak_public", ak_public.len(), limits.public_area)
}

/// Every field of an answer to a challenge.
pub fn check_answer_sizes(
    limits: &FieldLimits,
    quote: Option<&Quote>,
    event_log: &[u8],
    csr: &[u8],
) -> Result<(), Refusal> {
    if let Some(quote) = quote {
        too_big("quote attest", quote.attest.len(), limits.attest)?;
        too_big("quote signature", quote.signature.len(), limits.attest)?;
        too_big("quote PCR values", quote.pcrs.len(), limits.pcr_values)?;
        for pcr in &quote.pcrs {
            too_big("quote PCR value", pcr.digest.len(), MAX_PCR_DIGEST)?;
        }
    }
    too_big("event log", event_log.len(), limits.event_log)?;
    too_big("CSR", csr.len(), limits.csr)
}
