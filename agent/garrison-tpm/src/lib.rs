//! The node agent's TPM 2.0 layer: the only Garrison crate that links tss-esapi.
//!
//! [`Tpm::open`] returns an owned handle on one TPM (no global context, no locks). Through it
//! the agent loads or creates its endorsement key ([`Tpm::load_ek`]), reads the EK
//! certificate from NV ([`Tpm::ek_certificate`]), creates and reloads its attestation key
//! ([`Tpm::create_ak`], [`Tpm::load_ak`]), quotes PCRs ([`Tpm::quote`]), reads and extends
//! PCRs, answers the enrollment challenge ([`Tpm::activate_credential`]) and reads the
//! firmware event log ([`read_event_log`]).
//!
//! # Byte formats (all TPM structures big-endian, TPM 2.0 Part 2)
//! * EK / AK public ([`Ek::public_area`], [`Ak::public_area`], [`AkBlob::public_area`]):
//!   a marshalled **TPM2B_PUBLIC**: a `u16` size, then exactly that many bytes of TPMT_PUBLIC.
//! * AK name ([`Ak::name`]): TPM2B_NAME contents (no size prefix): `nameAlg` (u16) || digest.
//! * Quote ([`Quote`]): `attest` is a marshalled **TPMS_ATTEST** with no size prefix (the
//!   bytes the AK signed); `signature` is a marshalled **TPMT_SIGNATURE**.
//! * ActivateCredential inputs: the **contents** of TPM2B_ID_OBJECT and
//!   TPM2B_ENCRYPTED_SECRET, i.e. **without** their 2-byte size prefixes.
//! * EK certificate: DER, trimmed to the length its outer SEQUENCE declares.
//!
//! This crate must never decide trust: it produces evidence, it does not verify it. It must
//! never hold a process-wide TPM context, read environment variables, or leave transient
//! objects or sessions loaded after a [`Tpm`] is dropped.
#![forbid(unsafe_code)]

mod error;
mod eventlog;
mod keys;
mod pcr;
mod tpm2b;

use std::str::FromStr;

use tss_esapi::{
    Context,
    attributes::SessionAttributesBuilder,
    constants::SessionType,
    handles::SessionHandle,
    interface_types::{algorithm::HashingAlgorithm, session_handles::AuthSession},
    structures::SymmetricDefinition,
    tcti_ldr::TctiNameConf,
};

pub use error::TpmError;
pub use eventlog::{DEFAULT_EVENT_LOG_LIMIT, DEFAULT_EVENT_LOG_PATH, read_event_log};
pub use keys::{Ak, AkBlob, Ek, EkSource, KeyAlgorithm, Secret, ek_nv_index};
pub use pcr::{PcrBank, PcrSelectionSpec, PcrValue, Quote};

/// How to reach the TPM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmConfig {
    /// A TCTI configuration string: `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`,
    /// `tabrmd`, ...
    pub tcti: String,
}

/// An open TPM. Owns its ESYS context and one HMAC session that is started on first use
/// and reused by quotes, PCR extends and NV reads (starting and flushing a session per
/// command costs most of a quote's time). Dropping it flushes that session.
#[derive(Debug)]
pub struct Tpm {
    context: Context,
    hmac_session: Option<AuthSession>,
    nv_buffer_max: Option<usize>,
}

impl Tpm {
    /// Connects to the TPM described by `config`.
    pub fn open(config: &TpmConfig) -> Result<Self, TpmError> {
        let tcti = TctiNameConf::from_str(&config.tcti).map_err(|source| TpmError::ParseTcti {
            tcti: config.tcti.clone(),
            source,
        })?;
        let context = Context::new(tcti).map_err(|source| TpmError::Open {
            tcti: config.tcti.clone(),
            source,
        })?;
        Ok(Self {
            context,
            hmac_session: None,
            nv_buffer_max: None,
        })
    }

    /// The reused HMAC session, started on first use. Unbound and unsalted with empty
    /// auth values: it authorizes, it does not protect secrets (nothing sent is secret).
    fn hmac_session(&mut self) -> Result<AuthSession, TpmError> {
        if let Some(session) = self.hmac_session {
            return Ok(session);
        }
        let session = start_session(&mut self.context, SessionType::Hmac)
            .map_err(|source| TpmError::StartHmacSession { source })?;
        self.hmac_session = Some(session);
        Ok(session)
    }

    /// Passes `result` through; on error, forgets the reused session (flushing it if the
    /// TPM still answers) so the next call starts a fresh one. This keeps a TPM restart or
    /// a session-related failure from poisoning every later call.
    fn settle<T>(&mut self, result: tss_esapi::Result<T>) -> tss_esapi::Result<T> {
        if result.is_err() {
            self.discard_hmac_session();
        }
        result
    }

    fn discard_hmac_session(&mut self) {
        if let Some(session) = self.hmac_session.take() {
            // Best effort: after a TPM restart the session is already gone.
            let _ = self
                .context
                .flush_context(SessionHandle::from(session).into());
        }
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        self.discard_hmac_session();
    }
}

/// Starts a session of `kind` (SHA-256, no parameter encryption) that stays open after
/// each command (continueSession) until flushed.
fn start_session(context: &mut Context, kind: SessionType) -> tss_esapi::Result<AuthSession> {
    let session = context
        .start_auth_session(
            None,
            None,
            None,
            kind,
            SymmetricDefinition::Null,
            HashingAlgorithm::Sha256,
        )?
        .ok_or(tss_esapi::Error::WrapperError(
            tss_esapi::WrapperErrorKind::WrongValueFromTpm,
        ))?;
    let (attributes, mask) = SessionAttributesBuilder::new()
        .with_continue_session(true)
        .build();
    if let Err(error) = context.tr_sess_set_attributes(session, attributes, mask) {
        let _ = context.flush_context(SessionHandle::from(session).into());
        return Err(error);
    }
    Ok(session)
}
