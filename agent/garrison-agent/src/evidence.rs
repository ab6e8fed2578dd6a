//! Evidence gathering: everything the agent asks of the TPM, turned into protocol messages.
//! No network here; the gRPC client sends what these functions build.
//!
//! The order of an enrollment is [`load_keys`] → [`begin_request`] → (attestor) →
//! [`complete_request`]; a renewal is [`load_keys`] → (attestor) → [`renewal_request`].

use std::collections::BTreeMap;
use std::path::Path;

use garrison_proto::limits;
use garrison_proto::v1::{
    BeginRequest, BeginResponse, Challenge, CompleteRenewalRequest, CompleteRequest, PcrSelection,
    PcrValue as WirePcrValue, Quote as WireQuote,
};
use garrison_tpm::{
    Ak, AkBlob, Ek, EkSource, KeyAlgorithm, PcrBank, PcrSelectionSpec, Tpm, TpmError,
};

use crate::AgentError;
use crate::files::{self, PRIVATE_MODE, STATE_DIR_MODE};

/// TPM_ALG_ID values of the PCR banks the agent can quote.
const TPM_ALG_SHA1: u32 = 0x0004;
const TPM_ALG_SHA256: u32 = 0x000B;
const TPM_ALG_SHA384: u32 = 0x000C;

/// The loaded EK and AK. Give them back with [`release_keys`].
#[derive(Debug)]
pub struct TpmKeys {
    /// The endorsement key.
    pub ek: Ek,
    /// The attestation key, created under the EK.
    pub ak: Ak,
}

/// What to do when there is no AK blob yet, or the TPM refuses the stored one as not its own
/// (TPM_RC_INTEGRITY: a cleared TPM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingAk {
    /// Create the AK under the EK (with this algorithm) and store its blob: enrollment.
    Create(KeyAlgorithm),
    /// Fail with [`AgentError::AkBlobMissing`]: renewal must use the enrolled AK.
    Refuse,
}

/// Loads the EK, then the AK from `ak_blob` under it. Without a blob, `missing` decides:
/// create the AK and store its blob (0600, atomically) before returning, or fail.
pub fn load_keys(
    tpm: &mut Tpm,
    ek_source: EkSource,
    ak_blob: &Path,
    missing: MissingAk,
) -> Result<TpmKeys, AgentError> {
    let ek = tpm
        .load_ek(ek_source)
        .map_err(|source| AgentError::LoadEk { source })?;
    match load_or_create_ak(tpm, &ek, ak_blob, missing) {
        Ok(ak) => Ok(TpmKeys { ek, ak }),
        Err(error) => {
            let _ = tpm.flush_ek(ek);
            Err(error)
        }
    }
}

/// Unloads both keys (best effort: the TPM context flushes leftovers when dropped).
pub fn release_keys(tpm: &mut Tpm, keys: TpmKeys) {
    if let Err(error) = tpm.flush_ak(keys.ak) {
        tracing::debug!(%error, "flushing the AK failed");
    }
    if let Err(error) = tpm.flush_ek(keys.ek) {
        tracing::debug!(%error, "flushing the EK failed");
    }
}

fn load_or_create_ak(
    tpm: &mut Tpm,
    ek: &Ek,
    path: &Path,
    missing: MissingAk,
) -> Result<Ak, AgentError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let blob = AkBlob::from_bytes(&bytes).map_err(|source| AgentError::ParseAkBlob {
                path: path.to_path_buf(),
                source,
            })?;
            match (tpm.load_ak(ek, &blob), missing) {
                (Ok(ak), _) => Ok(ak),
                // A cleared TPM (or an altered blob): the stored AK can never load again.
                // Enrollment proves a fresh AK from scratch, so it may replace it; renewal,
                // which must use the AK bound at enrollment, fails and the agent enrolls.
                (Err(source), MissingAk::Create(algorithm)) if source.is_foreign_ak_blob() => {
                    tracing::warn!(
                        path = %path.display(),
                        error = %source,
                        "the TPM refuses the stored AK as not its own (was the TPM cleared?): \
                         creating a new AK for this enrollment"
                    );
                    create_ak(tpm, ek, algorithm, path)
                }
                (Err(source), _) => Err(AgentError::LoadAk { source }),
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => match missing {
            MissingAk::Create(algorithm) => create_ak(tpm, ek, algorithm, path),
            MissingAk::Refuse => Err(AgentError::AkBlobMissing {
                path: path.to_path_buf(),
            }),
        },
        Err(source) => Err(AgentError::ReadAkBlob {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn create_ak(
    tpm: &mut Tpm,
    ek: &Ek,
    algorithm: KeyAlgorithm,
    path: &Path,
) -> Result<Ak, AgentError> {
    tracing::info!(path = %path.display(), ?algorithm, "no AK blob yet: creating the AK under the EK");
    let (ak, blob) = tpm
        .create_ak(ek, algorithm)
        .map_err(|source| AgentError::CreateAk { source })?;
    let stored = path
        .parent()
        .map_or(Ok(()), |dir| files::ensure_dir(dir, STATE_DIR_MODE))
        .and_then(|()| files::write_atomically(path, &blob.to_bytes(), PRIVATE_MODE));
    if let Err(error) = stored {
        let _ = tpm.flush_ak(ak);
        return Err(error);
    }
    Ok(ak)
}

/// Step 1 of enrollment: EK public area, EK certificate from NV `ek_certificate_nv` (empty,
/// with a warning, if the TPM has none), the EK chain, AK public area and asserted facts.
pub fn begin_request(
    tpm: &mut Tpm,
    keys: &TpmKeys,
    ek_certificate_nv: u32,
    ek_chain: Vec<Vec<u8>>,
    asserted: &BTreeMap<String, String>,
) -> Result<BeginRequest, AgentError> {
    let ek_certificate = match tpm.ek_certificate(ek_certificate_nv) {
        Ok(der) => der,
        Err(TpmError::EkCertificateAbsent { nv_index }) => {
            tracing::warn!(
                nv_index = format_args!("{nv_index:#010x}"),
                "the TPM holds no EK certificate; enrolling without one (the attestor must allow-list this EK)"
            );
            Vec::new()
        }
        Err(source) => return Err(AgentError::ReadEkCertificate { source }),
    };
    check_size(
        "ek_certificate",
        ek_certificate.len(),
        limits::MAX_CERTIFICATE,
    )?;
    check_size("ek_chain", ek_chain.len(), limits::MAX_EK_CHAIN)?;
    Ok(BeginRequest {
        ek_public: keys.ek.public_area().to_vec(),
        ek_certificate,
        ek_chain,
        ak_public: keys.ak.public_area().to_vec(),
        asserted: asserted.clone().into_iter().collect(),
    })
}

/// Step 2 of enrollment: activates the credential in `response`, quotes the challenge,
/// and packs the result with the event log and CSR.
pub fn complete_request(
    tpm: &mut Tpm,
    keys: &TpmKeys,
    response: &BeginResponse,
    event_log: Vec<u8>,
    csr: Vec<u8>,
) -> Result<CompleteRequest, AgentError> {
    let challenge = response
        .challenge
        .as_ref()
        .ok_or(AgentError::MissingField {
            message: "BeginResponse",
            field: "challenge",
        })?;
    let secret = tpm
        .activate_credential(
            &keys.ak,
            &keys.ek,
            &response.id_object,
            &response.encrypted_secret,
        )
        .map_err(|source| AgentError::ActivateCredential { source })?;
    let quote = quote_challenge(tpm, &keys.ak, challenge)?;
    check_request_sizes(&event_log, &csr)?;
    Ok(CompleteRequest {
        challenge_id: challenge.challenge_id.clone(),
        activated_secret: secret.expose_secret().to_vec(),
        quote: Some(quote),
        event_log,
        csr,
    })
}

/// The renewal answer: a fresh quote over `challenge` with the enrolled AK, the AK public
/// area (the attestor checks its name against the one bound at enrollment), the event log
/// and the CSR of a new key.
pub fn renewal_request(
    tpm: &mut Tpm,
    ak: &Ak,
    challenge: &Challenge,
    event_log: Vec<u8>,
    csr: Vec<u8>,
) -> Result<CompleteRenewalRequest, AgentError> {
    let quote = quote_challenge(tpm, ak, challenge)?;
    check_request_sizes(&event_log, &csr)?;
    Ok(CompleteRenewalRequest {
        challenge_id: challenge.challenge_id.clone(),
        quote: Some(quote),
        event_log,
        csr,
        ak_public: ak.public_area().to_vec(),
    })
}

/// Quotes the challenge's PCR selection with its nonce, then reads the quoted PCRs.
pub fn quote_challenge(
    tpm: &mut Tpm,
    ak: &Ak,
    challenge: &Challenge,
) -> Result<WireQuote, AgentError> {
    check_size("nonce", challenge.nonce.len(), limits::MAX_SECRET)?;
    let (alg, selection) = selection_spec(&challenge.pcr_selection)?;
    let quote = tpm
        .quote(ak, &challenge.nonce, &selection)
        .map_err(|source| AgentError::Quote { source })?;
    let values = tpm
        .read_pcrs(&selection)
        .map_err(|source| AgentError::ReadPcrs { source })?;
    Ok(WireQuote {
        attest: quote.attest,
        signature: quote.signature,
        pcrs: values
            .into_iter()
            .map(|value| WirePcrValue {
                hash_alg: alg,
                index: u32::from(value.index),
                digest: value.digest,
            })
            .collect(),
    })
}

/// The one-bank selection of a challenge, with its TPM_ALG_ID. A quote covers one
/// TPML_PCR_SELECTION; garrison-tpm quotes one bank per quote, so several banks are refused.
pub fn selection_spec(selection: &[PcrSelection]) -> Result<(u32, PcrSelectionSpec), AgentError> {
    let bank = match selection {
        [bank] => bank,
        [] => {
            return Err(AgentError::PcrSelection {
                problem: "no bank selected",
            });
        }
        _ => {
            return Err(AgentError::PcrSelection {
                problem: "more than one bank (this agent quotes one bank)",
            });
        }
    };
    let pcr_bank = match bank.hash_alg {
        TPM_ALG_SHA1 => PcrBank::Sha1,
        TPM_ALG_SHA256 => PcrBank::Sha256,
        TPM_ALG_SHA384 => PcrBank::Sha384,
        _ => {
            return Err(AgentError::PcrSelection {
                problem: "unknown hash algorithm",
            });
        }
    };
    let indices = bank
        .pcrs
        .iter()
        .map(|&index| u8::try_from(index))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| AgentError::PcrSelection {
            problem: "PCR index out of range",
        })?;
    let spec = PcrSelectionSpec::new(pcr_bank, &indices)
        .map_err(|source| AgentError::BuildPcrSelection { source })?;
    Ok((bank.hash_alg, spec))
}

/// The event log at `path`, or an empty log (with a warning) if there is none.
pub fn event_log(path: &Path) -> Result<Vec<u8>, AgentError> {
    let limit = u64::try_from(limits::MAX_EVENT_LOG).unwrap_or(u64::MAX);
    match garrison_tpm::read_event_log(path, limit) {
        Ok(log) => Ok(log),
        Err(TpmError::ReadEventLog { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            tracing::warn!(
                path = %path.display(),
                "no measured-boot event log; sending an empty one (boot claims cannot be checked)"
            );
            Ok(Vec::new())
        }
        Err(source) => Err(AgentError::ReadEventLog { source }),
    }
}

fn check_request_sizes(event_log: &[u8], csr: &[u8]) -> Result<(), AgentError> {
    check_size("event_log", event_log.len(), limits::MAX_EVENT_LOG)?;
    check_size("csr", csr.len(), limits::MAX_CSR)
}

fn check_size(field: &'static str, got: usize, max: usize) -> Result<(), AgentError> {
    if got > max {
        return Err(AgentError::RequestTooLarge { field, max, got });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bank(hash_alg: u32, pcrs: &[u32]) -> PcrSelection {
        PcrSelection {
            hash_alg,
            pcrs: pcrs.to_vec(),
        }
    }

    #[test]
    fn selection_maps_one_bank() {
        let (alg, spec) = selection_spec(&[bank(0x000B, &[7, 0, 4])]).unwrap();
        assert_eq!(alg, 0x000B);
        assert_eq!(spec.bank(), PcrBank::Sha256);
        assert_eq!(spec.indices(), [0, 4, 7]);
        assert_eq!(
            selection_spec(&[bank(0x0004, &[0])]).unwrap().1.bank(),
            PcrBank::Sha1
        );
    }

    #[test]
    fn unsupported_selections_are_refused() {
        for selection in [
            vec![],
            vec![bank(0x000B, &[0]), bank(0x0004, &[0])],
            vec![bank(0x0012, &[0])],
            vec![bank(0x000B, &[300])],
        ] {
            assert!(
                matches!(
                    selection_spec(&selection),
                    Err(AgentError::PcrSelection { .. })
                ),
                "{selection:?}"
            );
        }
        assert!(matches!(
            selection_spec(&[bank(0x000B, &[24])]),
            Err(AgentError::BuildPcrSelection { .. })
        ));
        assert!(matches!(
            selection_spec(&[bank(0x000B, &[])]),
            Err(AgentError::BuildPcrSelection { .. })
        ));
    }

    #[test]
    fn missing_event_log_is_empty_but_unreadable_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(event_log(&dir.path().join("absent")).unwrap().is_empty());
        std::fs::write(dir.path().join("log"), [1, 2, 3]).unwrap();
        assert_eq!(event_log(&dir.path().join("log")).unwrap(), [1, 2, 3]);
        // A directory is not a log.
        assert!(matches!(
            event_log(dir.path()),
            Err(AgentError::ReadEventLog { .. })
        ));
    }
}
