//! The one error type of this crate.

use std::path::PathBuf;

/// A failed TPM operation. Variants are named after the operation; TPM and TSS failures are
/// kept as the `#[source]` so the response code stays inspectable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// The TCTI string in [`crate::TpmConfig`] is not one tss-esapi understands.
    #[error("invalid TCTI configuration {tcti:?}")]
    ParseTcti {
        tcti: String,
        #[source]
        source: tss_esapi::Error,
    },
    /// The TPM could not be reached through the TCTI (no device, nothing listening, ...).
    #[error("cannot open TPM through TCTI {tcti:?}")]
    Open {
        tcti: String,
        #[source]
        source: tss_esapi::Error,
    },
    /// Starting or satisfying the EK's policy session (PolicySecret(TPM_RH_ENDORSEMENT)).
    #[error("cannot start the EK policy session")]
    StartPolicySession {
        #[source]
        source: tss_esapi::Error,
    },
    /// A session could not be flushed after use.
    #[error("cannot flush a TPM session")]
    FlushSession {
        #[source]
        source: tss_esapi::Error,
    },
    /// A transient key could not be flushed.
    #[error("cannot flush a TPM key")]
    FlushKey {
        #[source]
        source: tss_esapi::Error,
    },
    /// The configured handle is not a persistent-object handle (0x81xxxxxx).
    #[error("{handle:#010x} is not a persistent handle")]
    InvalidPersistentHandle {
        handle: u32,
        #[source]
        source: tss_esapi::Error,
    },
    /// Loading the EK from its persistent handle failed (for example: nothing there).
    #[error("cannot load the EK from persistent handle {handle:#010x}")]
    LoadPersistentEk {
        handle: u32,
        #[source]
        source: tss_esapi::Error,
    },
    /// Creating the EK from the TCG default template failed.
    #[error("cannot create the {algorithm:?} EK from the default template")]
    CreateEk {
        algorithm: crate::KeyAlgorithm,
        #[source]
        source: tss_esapi::Error,
    },
    /// Reading back the public area (and name) of a loaded key failed.
    #[error("cannot read the public area of a loaded key")]
    ReadPublic {
        #[source]
        source: tss_esapi::Error,
    },
    /// A public area could not be marshalled to TPMT_PUBLIC.
    #[error("cannot marshal a public area")]
    MarshalPublic {
        #[source]
        source: tss_esapi::Error,
    },
    /// The NV index holds no EK certificate (the TPM answered TPM_RC_HANDLE).
    #[error("no EK certificate at NV index {nv_index:#010x}")]
    EkCertificateAbsent { nv_index: u32 },
    /// Reading the EK certificate's NV index failed for another reason.
    #[error("cannot read the EK certificate at NV index {nv_index:#010x}")]
    ReadEkCertificate {
        nv_index: u32,
        #[source]
        source: tss_esapi::Error,
    },
    /// The NV index content does not start with a DER SEQUENCE that fits in it.
    #[error("NV index {nv_index:#010x} does not hold a DER certificate ({len} bytes)")]
    EkCertificateNotDer { nv_index: u32, len: usize },
    /// Creating the AK under the EK failed.
    #[error("cannot create the {algorithm:?} AK")]
    CreateAk {
        algorithm: crate::KeyAlgorithm,
        #[source]
        source: tss_esapi::Error,
    },
    /// The bytes handed to [`crate::AkBlob::from_bytes`] are not TPM2B_PRIVATE || TPM2B_PUBLIC.
    #[error("AK blob is malformed: {reason}")]
    AkBlobMalformed { reason: &'static str },
    /// The AK blob parsed but tss-esapi rejected its private or public part.
    #[error("AK blob holds an invalid {part}")]
    AkBlobInvalid {
        part: &'static str,
        #[source]
        source: tss_esapi::Error,
    },
    /// Loading the AK blob under the EK failed (wrong EK, different TPM, ...).
    #[error("cannot load the AK under the EK")]
    LoadAk {
        #[source]
        source: tss_esapi::Error,
    },
    /// Making the AK persistent with EvictControl failed.
    #[error("cannot persist the AK at {handle:#010x}")]
    PersistAk {
        handle: u32,
        #[source]
        source: tss_esapi::Error,
    },
    /// Loading the AK from its persistent handle failed.
    #[error("cannot load the AK from persistent handle {handle:#010x}")]
    LoadPersistentAk {
        handle: u32,
        #[source]
        source: tss_esapi::Error,
    },
    /// A PCR index outside 0..=23.
    #[error("PCR index {index} is out of range 0..=23")]
    PcrIndexOutOfRange { index: u8 },
    /// An empty PCR selection.
    #[error("the PCR selection is empty")]
    PcrSelectionEmpty,
    /// Building the tss-esapi PCR selection failed.
    #[error("cannot build the PCR selection")]
    BuildPcrSelection {
        #[source]
        source: tss_esapi::Error,
    },
    /// TPM2_PCR_Read failed.
    #[error("cannot read PCRs")]
    ReadPcrs {
        #[source]
        source: tss_esapi::Error,
    },
    /// TPM2_PCR_Read returned other PCRs than asked (bank inactive?).
    #[error("PCR read returned {got} values for {expected} selected PCRs")]
    PcrReadIncomplete { expected: usize, got: usize },
    /// The digest given to [`crate::Tpm::extend_pcr`] has the wrong length for the bank.
    #[error("PCR extend digest is {got} bytes, the bank needs {expected}")]
    ExtendDigestLength { expected: usize, got: usize },
    /// TPM2_PCR_Extend failed.
    #[error("cannot extend PCR {index}")]
    ExtendPcr {
        index: u8,
        #[source]
        source: tss_esapi::Error,
    },
    /// The quote nonce is longer than a TPM2B_DATA can hold.
    #[error("quote nonce is {len} bytes, longer than a TPM2B_DATA allows")]
    QuoteNonceTooLong {
        len: usize,
        #[source]
        source: tss_esapi::Error,
    },
    /// TPM2_Quote failed.
    #[error("cannot quote")]
    Quote {
        #[source]
        source: tss_esapi::Error,
    },
    /// The quote's TPMS_ATTEST or TPMT_SIGNATURE could not be marshalled.
    #[error("cannot marshal the quote")]
    MarshalQuote {
        #[source]
        source: tss_esapi::Error,
    },
    /// The credential blob or encrypted secret could not be taken as TPM2B contents.
    #[error("invalid {part} for ActivateCredential ({len} bytes)")]
    CredentialInput {
        part: &'static str,
        len: usize,
        #[source]
        source: tss_esapi::Error,
    },
    /// The EK's authPolicy is not PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256 (policy A),
    /// which is the only EK policy this crate can satisfy.
    #[error("EK authPolicy is not the TCG default SHA-256 policy A")]
    UnsupportedEkPolicy,
    /// TPM2_ActivateCredential failed (wrong EK or AK, tampered blob, ...).
    #[error("cannot activate the credential")]
    ActivateCredential {
        #[source]
        source: tss_esapi::Error,
    },
    /// The event log file could not be opened or read.
    #[error("cannot read event log {path}")]
    ReadEventLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The event log file is larger than the configured limit.
    #[error("event log {path} is larger than {limit} bytes")]
    EventLogTooLarge { path: PathBuf, limit: u64 },
}

impl TpmError {
    /// Whether the TPM refused a stored AK as not its own: TPM_RC_INTEGRITY when loading the
    /// blob under the EK. The blob was made under an endorsement hierarchy this TPM no longer
    /// has (TPM2_Clear renews its proof value, so every old blob fails) or was altered. No
    /// retry will load it; only a new AK helps.
    pub fn is_foreign_ak_blob(&self) -> bool {
        use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
        matches!(
            self,
            TpmError::LoadAk {
                source: tss_esapi::Error::Tss2Error(code),
            } if code.kind() == Some(Tss2ResponseCodeKind::Integrity)
        )
    }
}
