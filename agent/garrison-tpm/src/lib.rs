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

/// Authorization for every object this crate uses with authValue: the password session
/// (TPM_RS_PW) with the empty auth value. EK, AK, PCRs, the EK certificate indices and the
/// endorsement/owner hierarchies all have empty auth here.
///
/// Why not a (reused) HMAC session: an unsalted, unbound HMAC session over an empty auth
/// value protects nothing an attacker on the bus could not recompute, yet ESYS pays for it
/// on every command. Measured on swtpm (release): quote 0.8 ms with the password session,
/// 3.5 ms with one reused HMAC session, 5.6 ms with an HMAC session started and flushed per
/// call. Nothing is started per command, so nothing can leak or go stale after a TPM restart.
/// Only ActivateCredential needs a real session (the EK's policy session), and it is
/// flushed before returning.
const EMPTY_AUTH: AuthSession = AuthSession::Password;

/// An open TPM: owns its ESYS context and nothing else process-wide. Transient keys handed
/// out as [`Ek`] / [`Ak`] go back through [`Tpm::flush_ek`] / [`Tpm::flush_ak`]; whatever a
/// caller forgets is flushed when the `Tpm` (its ESYS context) is dropped.
#[derive(Debug)]
pub struct Tpm {
    context: Context,
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
            nv_buffer_max: None,
        })
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
