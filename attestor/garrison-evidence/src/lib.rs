//! garrison-evidence: the pure verifier for TPM 2.0 evidence.
//!
//! Bytes in, typed verdict or typed [`EvidenceError`] out:
//!
//! * TPM structure parsing (big-endian, TPM 2.0 Part 2): [`TpmPublic`] (TPM2B_PUBLIC /
//!   TPMT_PUBLIC, RSA and ECC, with the object [`ObjectName`]), [`QuoteAttest`]
//!   (TPMS_ATTEST / TPM2B_ATTEST of a quote), [`TpmSignature`] (TPMT_SIGNATURE),
//!   [`PcrSelection`] (TPML_PCR_SELECTION), and tpm2-tools' PCR file
//!   ([`Tpm2ToolsPcrFile`]).
//! * [`verify_ek`]: EK certificate → manufacturer root chain (each issuer a CA with
//!   keyCertSign, within its pathLenConstraint), validity at a given time, key match with the
//!   EK public area, EK template attributes → [`EkIdentity`].
//! * [`check_ak`]: restricted, TPM-bound signing key with an accepted algorithm →
//!   [`AkIdentity`].
//! * [`make_credential`] / [`verify_activation`]: software TPM2_MakeCredential for RSA and
//!   ECC EKs, and the constant-time check of the activated secret.
//! * [`verify_quote`]: AK signature, nonce, PCR set and PCR digest → [`QuoteVerdict`].
//!
//! What this crate must never do: I/O of any kind (files, network, clocks, environment),
//! async, talking to a TPM, or panicking on any input. Time and randomness come in as
//! parameters; every length read from input is bounded before allocation. Hash algorithm
//! ids come from `garrison_eventlog::HashAlg` (and nothing else from that crate).
//!
//! # Performance
//!
//! `benches/quote.rs` (`taskset -c 0 cargo bench -p garrison-evidence -- --quick`) compares
//! a full [`verify_quote`] (ECC P-256 AK, 8 SHA-256 PCRs, parsing included) with one bare
//! ring ECDSA P-256/SHA-256 verification, in the same run: see the figures below.
//!
//! The figures are in `docs/performance.md` ("Per-crate benchmarks").
//!
//! # Wire formats at the agent boundary
//!
//! * [`make_credential`] returns `id_object` = TPM2B_ID_OBJECT and `encrypted_secret` =
//!   TPM2B_ENCRYPTED_SECRET, **both with their big-endian u16 size prefix**. tss-esapi's
//!   `IdObject::try_from(Vec<u8>)` / `EncryptedSecret::try_from(Vec<u8>)` take the contents:
//!   use [`MakeCredentialOutput::id_object_contents`] /
//!   [`MakeCredentialOutput::encrypted_secret_contents`] (or strip the first 2 bytes).
//! * [`verify_quote`] takes the TPMS_ATTEST bytes exactly as the TPM returned them (tss-esapi
//!   `Attest::marshall()` or `tpm2_quote -m`; a TPM2B_ATTEST with size prefix is also
//!   accepted), the TPMT_SIGNATURE bytes (`tpm2_quote -s`; tss-esapi `Signature::marshall()`),
//!   the nonce as issued, and [`PcrValues`] holding exactly the quoted PCRs.

#![forbid(unsafe_code)]

mod ak;
mod attest;
mod credential;
mod der;
mod ek;
mod error;
mod pcr;
mod public;
mod quote;
mod signature;
mod tpm2_tools;
mod wire;

pub use ak::{AkIdentity, AkPolicy, check_ak, check_ak_public};
pub use attest::{ClockInfo, QuoteAttest, TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE};
pub use credential::{MakeCredentialOutput, make_credential, verify_activation};
pub use ek::{
    EkEvidence, EkIdentity, EkTrust, EkTrustBasis, ManufacturerRoots, TpmManufacturer,
    ek_as_recorded, verify_ek,
};
pub use error::{Check, EvidenceError};
pub use garrison_eventlog::HashAlg;
pub use pcr::{MAX_PCR_INDEX, PcrBankSelection, PcrSelection, PcrValues};
pub use public::{
    EccCurve, ObjectAttributes, ObjectName, PublicKey, Scheme, SymmetricDef, TpmPublic,
};
pub use quote::{QuoteVerdict, verify_quote};
pub use signature::{SignatureScheme, TpmSignature};
pub use tpm2_tools::Tpm2ToolsPcrFile;
