//! The crate's one error type.

use garrison_eventlog::HashAlg;

/// Why evidence was rejected. Variants are named after the check that failed and carry what
/// was expected and what was found, so a log line says exactly which byte was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    // ---- Parsing TPM structures ----
    /// The input ended inside a structure.
    #[error("{what}: truncated, needed {needed} bytes, {remaining} left")]
    Truncated {
        /// Structure or field being read.
        what: &'static str,
        /// Bytes the field needed.
        needed: usize,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// A structure was followed by bytes that belong to nothing.
    #[error("{what}: {count} trailing bytes")]
    TrailingBytes {
        /// Structure that should have ended the input.
        what: &'static str,
        /// Number of unread bytes.
        count: usize,
    },
    /// A size or count field exceeds what the structure allows.
    #[error("{what}: size {got} exceeds the maximum {max}")]
    SizeTooLarge {
        /// Structure or field.
        what: &'static str,
        /// Largest allowed value.
        max: usize,
        /// Value found.
        got: usize,
    },
    /// A TPM_ALG_ID we do not implement, or that is not allowed in this field.
    #[error("{what}: unsupported algorithm 0x{got:04x}")]
    UnsupportedAlgorithm {
        /// Field holding the algorithm id.
        what: &'static str,
        /// TPM_ALG_ID found.
        got: u16,
    },
    /// TPMT_PUBLIC.type is neither RSA nor ECC.
    #[error("unsupported object type 0x{got:04x} (only RSA and ECC keys)")]
    UnsupportedObjectType {
        /// TPM_ALG_ID found.
        got: u16,
    },
    /// TPMS_ECC_PARMS.curveID is not a curve we know.
    #[error("unsupported ECC curve 0x{got:04x}")]
    UnsupportedCurve {
        /// TPM_ECC_CURVE found.
        got: u16,
    },
    /// The RSA modulus length disagrees with keyBits.
    #[error("RSA modulus is {got_bytes} bytes but keyBits is {expected_bits}")]
    RsaModulusSize {
        /// keyBits from the parameters.
        expected_bits: u16,
        /// Modulus length found.
        got_bytes: usize,
    },
    /// TPMS_ATTEST.magic is not TPM_GENERATED_VALUE.
    #[error("attestation magic: expected 0x{expected:08x}, got 0x{got:08x}")]
    AttestMagic {
        /// TPM_GENERATED_VALUE.
        expected: u32,
        /// Value found.
        got: u32,
    },
    /// TPMS_ATTEST.type is not the expected TPM_ST_ATTEST_*.
    #[error("attestation type: expected 0x{expected:04x}, got 0x{got:04x}")]
    AttestType {
        /// The structure tag we need.
        expected: u16,
        /// Tag found.
        got: u16,
    },
    /// A TPMI_YES_NO field holds something other than 0 or 1.
    #[error("{what}: expected 0 or 1, got {got}")]
    InvalidBoolean {
        /// Field.
        what: &'static str,
        /// Value found.
        got: u8,
    },
    /// The same PCR bank appears twice in one TPML_PCR_SELECTION.
    #[error("PCR selection lists bank {bank} twice")]
    DuplicatePcrBank {
        /// The repeated bank.
        bank: HashAlg,
    },
    /// A PCR value has the wrong length for its bank, or a PCR index is out of range.
    #[error("PCR {bank}:{index}: {problem}")]
    InvalidPcrValue {
        /// Bank.
        bank: HashAlg,
        /// PCR index.
        index: u32,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A tpm2-tools PCR file's digests do not line up with its selection.
    #[error(
        "tpm2-tools PCR file: selection names {expected} PCRs but the file holds {got} digests"
    )]
    PcrFileCount {
        /// PCRs selected.
        expected: usize,
        /// Digests present.
        got: usize,
    },

    // ---- Signatures ----
    /// The signature's scheme or hash is not the one the AK is bound to.
    #[error("signature scheme: AK requires {expected}, signature uses {got}")]
    SignatureSchemeMismatch {
        /// Scheme the AK was created with.
        expected: String,
        /// Scheme of the signature.
        got: String,
    },
    /// The signature does not verify under the AK.
    #[error("signature does not verify under the AK ({scheme})")]
    SignatureInvalid {
        /// Scheme used.
        scheme: String,
    },

    // ---- AK checks ----
    /// An objectAttributes bit the AK must have is clear.
    #[error("AK attribute {attribute} is required but not set (attributes 0x{attributes:08x})")]
    AkAttributeMissing {
        /// Name of the TPMA_OBJECT bit.
        attribute: &'static str,
        /// All attributes found.
        attributes: u32,
    },
    /// An objectAttributes bit the AK must not have is set.
    #[error("AK attribute {attribute} must not be set (attributes 0x{attributes:08x})")]
    AkAttributeForbidden {
        /// Name of the TPMA_OBJECT bit.
        attribute: &'static str,
        /// All attributes found.
        attributes: u32,
    },
    /// The AK's key type, size, curve, scheme or hash is not on the allowed list.
    #[error("AK algorithm not allowed: {got}")]
    AkAlgorithmNotAllowed {
        /// Description of what the AK uses.
        got: String,
    },

    // ---- EK checks ----
    /// An objectAttributes bit the EK template sets is clear.
    #[error("EK attribute {attribute} is required but not set (attributes 0x{attributes:08x})")]
    EkAttributeMissing {
        /// Name of the TPMA_OBJECT bit.
        attribute: &'static str,
        /// All attributes found.
        attributes: u32,
    },
    /// An objectAttributes bit the EK template clears is set.
    #[error("EK attribute {attribute} must not be set (attributes 0x{attributes:08x})")]
    EkAttributeForbidden {
        /// Name of the TPMA_OBJECT bit.
        attribute: &'static str,
        /// All attributes found.
        attributes: u32,
    },
    /// A certificate (EK, intermediate or root) is not DER X.509 we can parse.
    #[error("{which}: not a parseable X.509 certificate")]
    CertificateParse {
        /// Which certificate.
        which: String,
        /// Parser error.
        #[source]
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    /// A PEM file did not decode.
    #[error("{which}: invalid PEM")]
    CertificatePem {
        /// Which file.
        which: String,
        /// Decoder error.
        #[source]
        source: x509_parser::error::PEMError,
    },
    /// A root or intermediate used as an issuer is not a CA certificate.
    #[error("{subject}: not a CA certificate, cannot issue")]
    IssuerNotCa {
        /// Subject of the would-be issuer.
        subject: String,
    },
    /// A root or intermediate used as an issuer lacks the keyUsage bit that lets its key
    /// verify certificate signatures (RFC 5280 §4.2.1.3).
    #[error("{subject}: keyUsage must include {expected}, got {got}")]
    IssuerKeyUsage {
        /// Subject of the would-be issuer.
        subject: String,
        /// The bit required (`keyCertSign`).
        expected: &'static str,
        /// The bits present, comma-separated, or `no keyUsage extension`.
        got: String,
    },
    /// An issuer's pathLenConstraint allows fewer intermediate CAs below it than the chain
    /// has (RFC 5280 §4.2.1.9; self-issued intermediates do not count).
    #[error(
        "{subject}: pathLenConstraint allows {max} intermediate CAs below it, the chain has {got}"
    )]
    IssuerPathLength {
        /// Subject of the constrained issuer.
        subject: String,
        /// Its pathLenConstraint.
        max: u32,
        /// Non-self-issued intermediates between it and the EK certificate.
        got: usize,
    },
    /// A CA certificate's basicConstraints or keyUsage extension is malformed or repeated.
    #[error("{subject}: {extension} extension is malformed or repeated")]
    IssuerExtension {
        /// Subject of the would-be issuer.
        subject: String,
        /// Which extension.
        extension: &'static str,
        /// Parser error.
        #[source]
        source: x509_parser::error::X509Error,
    },
    /// A certificate in the chain is outside its validity period at the given time.
    #[error("{subject}: not valid at {at} (valid {not_before} .. {not_after})")]
    CertificateNotValidAt {
        /// Subject.
        subject: String,
        /// Unix seconds checked.
        at: i64,
        /// notBefore, unix seconds.
        not_before: i64,
        /// notAfter, unix seconds.
        not_after: i64,
    },
    /// No chain from the EK certificate to a configured manufacturer root.
    #[error("EK certificate (issuer {issuer}) does not chain to a configured manufacturer root")]
    EkChainUntrusted {
        /// Issuer of the certificate where chain building stopped.
        issuer: String,
    },
    /// Neither a certificate nor an allow-listed hash was presented for the EK.
    #[error("an EK certificate is required by the configured trust")]
    EkCertificateMissing,
    /// The EK certificate's public key is not the EK public area's key.
    #[error("EK certificate key does not match the EK public area: {detail}")]
    EkKeyMismatch {
        /// Which component differs.
        detail: &'static str,
    },
    /// The EK's public-key hash is not on the insecure allow-list.
    #[error("EK hash {got} is not allow-listed")]
    EkNotAllowListed {
        /// The EK hash, hex.
        got: String,
    },

    // ---- Credential activation ----
    /// The EK cannot be used for MakeCredential (no AES-CFB symmetric, unsupported hash ...).
    #[error("MakeCredential: EK unusable: {reason}")]
    EkUnusableForCredential {
        /// Why.
        reason: &'static str,
    },
    /// The credential secret is empty or longer than the EK's nameAlg digest.
    #[error("MakeCredential: secret must be 1..={max} bytes, got {got}")]
    CredentialSecretSize {
        /// nameAlg digest size.
        max: usize,
        /// Secret length.
        got: usize,
    },
    /// RSA-OAEP encryption of the seed failed.
    #[error("MakeCredential: RSA-OAEP encryption of the seed failed")]
    SeedEncryption {
        /// The rsa crate's error.
        #[source]
        source: rsa::Error,
    },
    /// ECDH with the EK's point failed (invalid point).
    #[error("MakeCredential: ECDH with the EK public point failed")]
    SeedAgreement,
    /// The random number generator failed.
    #[error("random number generator failed")]
    Randomness,
    /// The secret returned by ActivateCredential is not the one we sealed.
    #[error("activated secret does not match the challenge")]
    ActivationSecretMismatch,

    // ---- Quote checks ----
    /// TPMS_ATTEST.extraData is not the nonce we issued.
    #[error("quote nonce: expected {expected}, got {got}")]
    NonceMismatch {
        /// Nonce issued, hex.
        expected: String,
        /// extraData found, hex.
        got: String,
    },
    /// A PCR value was supplied that the quote does not cover.
    #[error("PCR {bank}:{index} was supplied but is not in the quote's selection")]
    PcrNotSelected {
        /// Bank.
        bank: HashAlg,
        /// Index.
        index: u32,
    },
    /// The quote covers a PCR whose value was not supplied.
    #[error("PCR {bank}:{index} is in the quote's selection but no value was supplied")]
    PcrMissing {
        /// Bank.
        bank: HashAlg,
        /// Index.
        index: u32,
    },
    /// The digest of the supplied PCR values is not the quote's pcrDigest.
    #[error("PCR digest ({alg}): quote has {expected}, supplied values give {got}")]
    PcrDigestMismatch {
        /// Hash used (the AK signing scheme's).
        alg: HashAlg,
        /// pcrDigest from the quote, hex.
        expected: String,
        /// Digest of supplied values, hex.
        got: String,
    },
}

impl EvidenceError {
    /// A stable, short name of the check that failed: what an operator sees in
    /// `garrison evidence verify-quote` and what an agent receives as a refusal reason code.
    /// Names never change once published; new variants get new names.
    pub fn check(&self) -> &'static str {
        self.check_kind().as_str()
    }

    /// The check that failed, as a type: what callers map to their own codes by an
    /// exhaustive match, never by comparing names.
    pub fn check_kind(&self) -> Check {
        use EvidenceError as E;
        match self {
            E::Truncated { .. }
            | E::TrailingBytes { .. }
            | E::SizeTooLarge { .. }
            | E::UnsupportedAlgorithm { .. }
            | E::UnsupportedObjectType { .. }
            | E::UnsupportedCurve { .. }
            | E::RsaModulusSize { .. }
            | E::InvalidBoolean { .. }
            | E::DuplicatePcrBank { .. }
            | E::InvalidPcrValue { .. }
            | E::PcrFileCount { .. } => Check::MalformedEvidence,
            E::AttestMagic { .. } | E::AttestType { .. } => Check::AttestStructure,
            E::SignatureSchemeMismatch { .. } | E::SignatureInvalid { .. } => Check::QuoteSignature,
            E::AkAttributeMissing { .. }
            | E::AkAttributeForbidden { .. }
            | E::AkAlgorithmNotAllowed { .. } => Check::AkAttributes,
            E::EkAttributeMissing { .. }
            | E::EkAttributeForbidden { .. }
            | E::EkUnusableForCredential { .. } => Check::EkAttributes,
            E::CertificateParse { .. }
            | E::CertificatePem { .. }
            | E::IssuerNotCa { .. }
            | E::IssuerKeyUsage { .. }
            | E::IssuerPathLength { .. }
            | E::IssuerExtension { .. }
            | E::CertificateNotValidAt { .. }
            | E::EkChainUntrusted { .. }
            | E::EkCertificateMissing
            | E::EkNotAllowListed { .. } => Check::EkTrust,
            E::EkKeyMismatch { .. } => Check::EkCertificateMismatch,
            E::CredentialSecretSize { .. }
            | E::SeedEncryption { .. }
            | E::SeedAgreement
            | E::Randomness => Check::MakeCredential,
            E::ActivationSecretMismatch => Check::CredentialActivation,
            E::NonceMismatch { .. } => Check::Nonce,
            E::PcrNotSelected { .. } | E::PcrMissing { .. } => Check::PcrSelection,
            E::PcrDigestMismatch { .. } => Check::PcrDigest,
        }
    }
}

/// The checks evidence verification makes; each [`EvidenceError`] belongs to one
/// ([`EvidenceError::check_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// Structure, sizes, algorithms: the bytes are not well-formed evidence.
    MalformedEvidence,
    /// TPMS_ATTEST magic or type.
    AttestStructure,
    /// The quote's signature.
    QuoteSignature,
    /// The AK's attributes and algorithm.
    AkAttributes,
    /// The EK's attributes.
    EkAttributes,
    /// The EK certificate chain and its trust.
    EkTrust,
    /// The EK certificate names another key.
    EkCertificateMismatch,
    /// Making the credential for the EK (including a failed random draw).
    MakeCredential,
    /// The activated secret.
    CredentialActivation,
    /// The quote's nonce.
    Nonce,
    /// Which PCRs were quoted.
    PcrSelection,
    /// The quote's PCR digest against the supplied values.
    PcrDigest,
}

impl Check {
    /// Every check, in declaration order.
    pub const ALL: [Check; 12] = [
        Check::MalformedEvidence,
        Check::AttestStructure,
        Check::QuoteSignature,
        Check::AkAttributes,
        Check::EkAttributes,
        Check::EkTrust,
        Check::EkCertificateMismatch,
        Check::MakeCredential,
        Check::CredentialActivation,
        Check::Nonce,
        Check::PcrSelection,
        Check::PcrDigest,
    ];

    /// The stable name ([`EvidenceError::check`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Check::MalformedEvidence => "malformed-evidence",
            Check::AttestStructure => "attest-structure",
            Check::QuoteSignature => "quote-signature",
            Check::AkAttributes => "ak-attributes",
            Check::EkAttributes => "ek-attributes",
            Check::EkTrust => "ek-trust",
            Check::EkCertificateMismatch => "ek-certificate-mismatch",
            Check::MakeCredential => "make-credential",
            Check::CredentialActivation => "credential-activation",
            Check::Nonce => "nonce",
            Check::PcrSelection => "pcr-selection",
            Check::PcrDigest => "pcr-digest",
        }
    }
}
