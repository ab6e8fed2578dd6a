//! Endorsement key, its certificate, the attestation key, and ActivateCredential.

use std::fmt;

use tss_esapi::{
    Context,
    abstraction::{AsymmetricAlgorithmSelection, DefaultKey, ak, ek},
    constants::{SessionType, response_code::Tss2ResponseCodeKind},
    handles::{
        AuthHandle, KeyHandle, NvIndexHandle, NvIndexTpmHandle, ObjectHandle, PersistentTpmHandle,
        SessionHandle, TpmHandle,
    },
    interface_types::{
        algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm},
        dynamic_handles::Persistent,
        ecc::EccCurve,
        key_bits::RsaKeyBits,
        resource_handles::{NvAuth, Provision},
        session_handles::{AuthSession, PolicySession},
    },
    structures::{EncryptedSecret, IdObject, Private, Public},
    traits::UnMarshall,
};

use crate::tpm2b::{der_sequence_len, prefixed, split_tpm2b, tpm2b_public};
use crate::{EMPTY_AUTH, Tpm, TpmError, start_session};

/// TCG EK Credential Profile NV indices of EK certificates.
pub mod ek_nv_index {
    /// RSA 2048 EK certificate (low range). swtpm_setup writes this one.
    pub const RSA_2048: u32 = 0x01c0_0002;
    /// ECC NIST P-256 EK certificate (low range). swtpm_setup does not write it.
    pub const ECC_P256: u32 = 0x01c0_000a;
    /// ECC NIST P-384 EK certificate (high range). swtpm_setup writes this one.
    pub const ECC_P384: u32 = 0x01c0_0016;
}

/// TCG default EK authPolicy "A" for SHA-256: PolicySecret(TPM_RH_ENDORSEMENT). Used by the
/// default RSA-2048 and ECC P-256 EK templates (TCG EK Credential Profile, B.3.3).
const EK_POLICY_A_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// Key algorithms for the EK template and the AK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// RSA 2048. As AK: RSASSA-PKCS1-v1_5 with SHA-256.
    Rsa2048,
    /// ECC NIST P-256. As AK: ECDSA with SHA-256 (the default AK).
    EccP256,
}

impl KeyAlgorithm {
    fn selection(self) -> AsymmetricAlgorithmSelection {
        match self {
            Self::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            Self::EccP256 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
        }
    }

    fn signature_scheme(self) -> SignatureSchemeAlgorithm {
        match self {
            Self::Rsa2048 => SignatureSchemeAlgorithm::RsaSsa,
            Self::EccP256 => SignatureSchemeAlgorithm::EcDsa,
        }
    }
}

/// Where the EK comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EkSource {
    /// An EK already persisted by the manufacturer or provisioning (e.g. `0x81010001`).
    Persistent { handle: u32 },
    /// Recreated as a primary key from the TCG default template (deterministic per TPM).
    Template { algorithm: KeyAlgorithm },
}

/// Whether a loaded key must be flushed (transient) or only closed (persistent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Residency {
    Transient,
    Persistent(u32),
}

/// A loaded endorsement key. Give it back to [`Tpm::flush_ek`] when done; anything left
/// loaded is flushed when the [`Tpm`] is dropped.
#[derive(Debug)]
pub struct Ek {
    handle: KeyHandle,
    residency: Residency,
    public: Public,
    public_area: Vec<u8>,
}

impl Ek {
    /// The EK public area as marshalled TPM2B_PUBLIC (u16 size || TPMT_PUBLIC).
    pub fn public_area(&self) -> &[u8] {
        &self.public_area
    }

    /// The persistent handle it was loaded from, if any.
    pub fn persistent_handle(&self) -> Option<u32> {
        match self.residency {
            Residency::Persistent(handle) => Some(handle),
            Residency::Transient => None,
        }
    }
}

/// A loaded attestation key. Give it back to [`Tpm::flush_ak`] when done.
#[derive(Debug)]
pub struct Ak {
    handle: KeyHandle,
    residency: Residency,
    public_area: Vec<u8>,
    name: Vec<u8>,
}

impl Ak {
    pub(crate) fn handle(&self) -> KeyHandle {
        self.handle
    }

    /// The AK public area as marshalled TPM2B_PUBLIC (u16 size || TPMT_PUBLIC).
    pub fn public_area(&self) -> &[u8] {
        &self.public_area
    }

    /// The AK's TPM name: nameAlg (u16, big-endian) || digest of TPMT_PUBLIC.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The persistent handle it lives at, if any.
    pub fn persistent_handle(&self) -> Option<u32> {
        match self.residency {
            Residency::Persistent(handle) => Some(handle),
            Residency::Transient => None,
        }
    }
}

/// A created AK in loadable form, to be stored in the agent's state directory and handed
/// back to [`Tpm::load_ak`] on later boots. The private part is encrypted by the TPM under
/// the EK; it is useless on any other TPM or under any other parent.
#[derive(Clone, PartialEq, Eq)]
pub struct AkBlob {
    /// TPM2B_PRIVATE contents (no size prefix).
    private: Vec<u8>,
    /// Marshalled TPM2B_PUBLIC (with size prefix).
    public_area: Vec<u8>,
}

impl fmt::Debug for AkBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AkBlob")
            .field("private_len", &self.private.len())
            .field("public_area_len", &self.public_area.len())
            .finish()
    }
}

impl AkBlob {
    /// The AK public area as marshalled TPM2B_PUBLIC.
    pub fn public_area(&self) -> &[u8] {
        &self.public_area
    }

    /// Serializes as TPM2B_PRIVATE || TPM2B_PUBLIC (both with their u16 size prefix), the
    /// same layout as a tpm2-tools "loadable" key.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.private.len() + self.public_area.len());
        out.extend_from_slice(&u16::try_from(self.private.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.private);
        out.extend_from_slice(&self.public_area);
        out
    }

    /// Parses [`AkBlob::to_bytes`] output. Checks framing only; the TPM checks the rest.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TpmError> {
        let malformed = |reason| TpmError::AkBlobMalformed { reason };
        let (private, rest) = split_tpm2b(bytes).ok_or(malformed("truncated TPM2B_PRIVATE"))?;
        let (public, rest) = split_tpm2b(rest).ok_or(malformed("truncated TPM2B_PUBLIC"))?;
        if !rest.is_empty() {
            return Err(malformed("trailing bytes after TPM2B_PUBLIC"));
        }
        if private.is_empty() || public.is_empty() {
            return Err(malformed("empty private or public part"));
        }
        Ok(Self {
            private: private.to_vec(),
            public_area: prefixed(public).ok_or(malformed("public part too large"))?,
        })
    }

    fn tss_parts(&self) -> Result<(Private, Public), TpmError> {
        let private =
            Private::try_from(self.private.clone()).map_err(|source| TpmError::AkBlobInvalid {
                part: "TPM2B_PRIVATE",
                source,
            })?;
        let invalid_public = |source| TpmError::AkBlobInvalid {
            part: "TPM2B_PUBLIC",
            source,
        };
        let tpmt = split_tpm2b(&self.public_area)
            .map(|(contents, _)| contents)
            .ok_or(invalid_public(tss_esapi::Error::WrapperError(
                tss_esapi::WrapperErrorKind::WrongParamSize,
            )))?;
        let public = Public::unmarshall(tpmt).map_err(invalid_public)?;
        Ok((private, public))
    }
}

/// The secret recovered by ActivateCredential. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret bytes (the TPM2B_DIGEST contents the verifier put in MakeCredential).
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([redacted; {} bytes])", self.0.len())
    }
}

impl Tpm {
    /// Loads the EK from its persistent handle, or creates it from the TCG default template.
    pub fn load_ek(&mut self, source: EkSource) -> Result<Ek, TpmError> {
        let (handle, residency) = match source {
            EkSource::Persistent { handle } => (
                self.open_persistent(handle)
                    .map_err(|source| TpmError::LoadPersistentEk { handle, source })?,
                Residency::Persistent(handle),
            ),
            EkSource::Template { algorithm } => (self.create_ek(algorithm)?, Residency::Transient),
        };
        let public = match self.read_public(handle) {
            Ok((public, _)) => public,
            Err(error) => {
                let _ = self.release(handle, residency);
                return Err(error);
            }
        };
        let public_area = tpm2b_public(&public)?;
        Ok(Ek {
            handle,
            residency,
            public,
            public_area,
        })
    }

    /// Reads the DER EK certificate at `nv_index` (see [`ek_nv_index`]). A missing index is
    /// [`TpmError::EkCertificateAbsent`]. Zero padding after the certificate is cut off.
    pub fn ek_certificate(&mut self, nv_index: u32) -> Result<Vec<u8>, TpmError> {
        let read_error = |source| TpmError::ReadEkCertificate { nv_index, source };
        let tpm_handle = NvIndexTpmHandle::new(nv_index).map_err(read_error)?;
        let mut object = self
            .context
            .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(tpm_handle)))
            .map_err(|source| match source {
                tss_esapi::Error::Tss2Error(rc)
                    if rc.kind() == Some(Tss2ResponseCodeKind::Handle) =>
                {
                    TpmError::EkCertificateAbsent { nv_index }
                }
                source => read_error(source),
            })?;
        let contents = self.read_nv(NvIndexHandle::from(object));
        let closed = self.context.tr_close(&mut object);
        let mut contents = contents.map_err(read_error)?;
        closed.map_err(read_error)?;
        let len = der_sequence_len(&contents)
            .filter(|&len| len <= contents.len())
            .ok_or(TpmError::EkCertificateNotDer {
                nv_index,
                len: contents.len(),
            })?;
        contents.truncate(len);
        Ok(contents)
    }

    /// Creates an AK under `ek` (restricted signing key, fixedTPM, fixedParent, userWithAuth,
    /// SHA-256 name and scheme), loads it, and returns it with its loadable blob.
    pub fn create_ak(
        &mut self,
        ek: &Ek,
        algorithm: KeyAlgorithm,
    ) -> Result<(Ak, AkBlob), TpmError> {
        let created = ak::create_ak_2(
            &mut self.context,
            ek.handle,
            HashingAlgorithm::Sha256,
            algorithm.selection(),
            algorithm.signature_scheme(),
            None,
            DefaultKey,
        )
        .map_err(|source| TpmError::CreateAk { algorithm, source })?;
        let blob = AkBlob {
            private: created.out_private.value().to_vec(),
            public_area: tpm2b_public(&created.out_public)?,
        };
        let ak = self.load_ak(ek, &blob)?;
        Ok((ak, blob))
    }

    /// Loads a previously created AK under `ek`.
    pub fn load_ak(&mut self, ek: &Ek, blob: &AkBlob) -> Result<Ak, TpmError> {
        let (private, public) = blob.tss_parts()?;
        let handle = ak::load_ak(&mut self.context, ek.handle, None, private, public)
            .map_err(|source| TpmError::LoadAk { source })?;
        self.ak_from_handle(handle, Residency::Transient)
    }

    /// Makes `ak` persistent at `handle` (EvictControl, owner hierarchy with empty auth) and
    /// returns it as a persistent AK; the transient copy is flushed.
    pub fn persist_ak(&mut self, ak: Ak, handle: u32) -> Result<Ak, TpmError> {
        let invalid = |source| TpmError::InvalidPersistentHandle { handle, source };
        let persistent = PersistentTpmHandle::new(handle).map_err(invalid)?;
        let result = self.context.execute_with_session(Some(EMPTY_AUTH), |ctx| {
            ctx.evict_control(
                Provision::Owner,
                ak.handle.into(),
                Persistent::Persistent(persistent),
            )
        });
        let evicted = result;
        self.flush_ak(ak)?;
        let object = evicted.map_err(|source| TpmError::PersistAk { handle, source })?;
        self.ak_from_handle(KeyHandle::from(object), Residency::Persistent(handle))
    }

    /// Opens an AK persisted with [`Tpm::persist_ak`].
    pub fn load_persistent_ak(&mut self, handle: u32) -> Result<Ak, TpmError> {
        let key = self
            .open_persistent(handle)
            .map_err(|source| TpmError::LoadPersistentAk { handle, source })?;
        self.ak_from_handle(key, Residency::Persistent(handle))
    }

    /// Unloads the EK (flushes a transient EK; closes the ESYS handle of a persistent one).
    pub fn flush_ek(&mut self, ek: Ek) -> Result<(), TpmError> {
        self.release(ek.handle, ek.residency)
    }

    /// Unloads the AK (flushes a transient AK; closes the ESYS handle of a persistent one).
    pub fn flush_ak(&mut self, ak: Ak) -> Result<(), TpmError> {
        self.release(ak.handle, ak.residency)
    }

    /// Answers the enrollment challenge: TPM2_ActivateCredential with `ak` as the activated
    /// object and `ek` as the decryption key. `id_object` and `encrypted_secret` are the
    /// contents of TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET **without** their u16 size
    /// prefixes. The AK is authorized by its empty auth value; the EK by a fresh policy
    /// session (PolicySecret(TPM_RH_ENDORSEMENT)) that is flushed before returning.
    pub fn activate_credential(
        &mut self,
        ak: &Ak,
        ek: &Ek,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Secret, TpmError> {
        if ek.public.auth_policy().value() != EK_POLICY_A_SHA256 {
            return Err(TpmError::UnsupportedEkPolicy);
        }
        let credential =
            IdObject::try_from(id_object.to_vec()).map_err(|source| TpmError::CredentialInput {
                part: "TPM2B_ID_OBJECT contents",
                len: id_object.len(),
                source,
            })?;
        let secret = EncryptedSecret::try_from(encrypted_secret.to_vec()).map_err(|source| {
            TpmError::CredentialInput {
                part: "TPM2B_ENCRYPTED_SECRET contents",
                len: encrypted_secret.len(),
                source,
            }
        })?;
        let policy = self.endorsement_policy_session()?;
        let result = self
            .context
            .execute_with_sessions((Some(EMPTY_AUTH), Some(policy), None), |ctx| {
                ctx.activate_credential(ak.handle, ek.handle, credential, secret)
            });
        let flushed = self
            .context
            .flush_context(SessionHandle::from(policy).into());
        let digest = result.map_err(|source| TpmError::ActivateCredential { source })?;
        flushed.map_err(|source| TpmError::FlushSession { source })?;
        Ok(Secret(digest.value().to_vec()))
    }

    /// A policy session that has run PolicySecret(TPM_RH_ENDORSEMENT), authorized by the
    /// (empty) endorsement hierarchy auth. Flushed on failure.
    fn endorsement_policy_session(&mut self) -> Result<AuthSession, TpmError> {
        let policy = start_session(&mut self.context, SessionType::Policy)
            .map_err(|source| TpmError::StartPolicySession { source })?;
        let satisfied = self.context.execute_with_session(Some(EMPTY_AUTH), |ctx| {
            ctx.policy_secret(
                PolicySession::try_from(policy)?,
                AuthHandle::Endorsement,
                Default::default(),
                Default::default(),
                Default::default(),
                None,
            )
        });
        if let Err(source) = satisfied {
            let _ = self
                .context
                .flush_context(SessionHandle::from(policy).into());
            return Err(TpmError::StartPolicySession { source });
        }
        Ok(policy)
    }

    fn create_ek(&mut self, algorithm: KeyAlgorithm) -> Result<KeyHandle, TpmError> {
        let create_error = |source| TpmError::CreateEk { algorithm, source };
        let template =
            ek::create_ek_public_from_default_template_2(algorithm.selection(), DefaultKey)
                .map_err(create_error)?;
        let result = self.context.execute_with_session(Some(EMPTY_AUTH), |ctx| {
            ctx.create_primary(
                tss_esapi::interface_types::resource_handles::Hierarchy::Endorsement,
                template,
                None,
                None,
                None,
                None,
            )
        });
        Ok(result.map_err(create_error)?.key_handle)
    }

    fn open_persistent(&mut self, handle: u32) -> tss_esapi::Result<KeyHandle> {
        let persistent = PersistentTpmHandle::new(handle)?;
        self.context
            .execute_without_session(|ctx| {
                ctx.tr_from_tpm_public(TpmHandle::Persistent(persistent))
            })
            .map(KeyHandle::from)
    }

    fn ak_from_handle(&mut self, handle: KeyHandle, residency: Residency) -> Result<Ak, TpmError> {
        match self.read_public(handle) {
            Ok((public, name)) => Ok(Ak {
                handle,
                residency,
                public_area: tpm2b_public(&public)?,
                name,
            }),
            Err(error) => {
                let _ = self.release(handle, residency);
                Err(error)
            }
        }
    }

    fn read_public(&mut self, handle: KeyHandle) -> Result<(Public, Vec<u8>), TpmError> {
        let (public, name, _) = self
            .context
            .execute_without_session(|ctx| ctx.read_public(handle))
            .map_err(|source| TpmError::ReadPublic { source })?;
        Ok((public, name.value().to_vec()))
    }

    fn release(&mut self, handle: KeyHandle, residency: Residency) -> Result<(), TpmError> {
        let object = ObjectHandle::from(handle);
        match residency {
            Residency::Transient => self.context.flush_context(object),
            Residency::Persistent(_) => self.context.tr_close(&mut object.clone()),
        }
        .map_err(|source| TpmError::FlushKey { source })
    }

    /// Reads a whole NV index in chunks of at most the TPM's NV buffer size, authorizing
    /// with the index's own (empty) auth value.
    fn read_nv(&mut self, index: NvIndexHandle) -> tss_esapi::Result<Vec<u8>> {
        let (nv_public, _) = self
            .context
            .execute_without_session(|ctx| ctx.nv_read_public(index))?;
        let size = nv_public.data_size();
        let chunk = self.nv_buffer_max()?;
        let mut contents = Vec::with_capacity(size);
        while contents.len() < size {
            let offset = contents.len();
            let len = chunk.min(size - offset);
            let result = read_nv_chunk(&mut self.context, index, offset, len);
            contents.extend_from_slice(&result?);
        }
        Ok(contents)
    }

    fn nv_buffer_max(&mut self) -> tss_esapi::Result<usize> {
        if let Some(max) = self.nv_buffer_max {
            return Ok(max);
        }
        let max = tss_esapi::abstraction::nv::max_nv_buffer_size(&mut self.context)?;
        self.nv_buffer_max = Some(max);
        Ok(max)
    }
}

fn read_nv_chunk(
    context: &mut Context,
    index: NvIndexHandle,
    offset: usize,
    len: usize,
) -> tss_esapi::Result<Vec<u8>> {
    let too_big = |_| tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::WrongParamSize);
    let offset = u16::try_from(offset).map_err(too_big)?;
    let len = u16::try_from(len).map_err(too_big)?;
    let data = context.execute_with_session(Some(EMPTY_AUTH), |ctx| {
        ctx.nv_read(NvAuth::NvIndex(index), index, len, offset)
    })?;
    Ok(data.value().to_vec())
}
