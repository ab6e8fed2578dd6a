//! Signed checkpoints of the site's attestation log.
//!
//! The site's log key (Ed25519, `log_key` in the configuration, created at first start) signs
//! a C2SP checkpoint of the log's Merkle tree: at start, every `checkpoint_interval` while
//! records arrive, on demand (`garrison log checkpoint`), and when the attestor stops. Every
//! checkpoint is kept in the log database. At each start the site CA certifies the key as
//! `spiffe://<td>/site/<site>/log` and the certificate chain is kept beside the checkpoints,
//! so that an auditor holding only the root can check any of them.
//!
//! Nothing here reads the clock: the time a checkpoint was signed comes from the caller.

use garrison_ops::error_chain;
use std::path::Path;
use std::sync::Arc;

use garrison_ca::{Authority, SiteRole, SubjectKey, certificates_to_pem};
use garrison_ear::EarError;
use garrison_log::{AttestationLog, LogError, StoredCheckpoint};
use garrison_transparency::{LogKey, TransparencyError};
use ring::rand::SecureRandom;
use time::OffsetDateTime;

use crate::Clock;

/// What can go wrong setting up the log key or signing a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing the log key file failed.
    #[error("log key file {path}")]
    KeyFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The key file is not a usable key, or signing failed.
    #[error("log key {path}")]
    Key {
        path: std::path::PathBuf,
        #[source]
        source: TransparencyError,
    },
    /// The site CA would not certify the key.
    #[error("certifying the log key")]
    Certify(#[source] garrison_ca::CaError),
    /// The log has no origin (it was opened without one).
    #[error("the attestation log has no origin")]
    NoOrigin,
    /// Reading the tree or keeping the checkpoint failed.
    #[error("attestation log")]
    Log(#[source] LogError),
    /// Signing failed.
    #[error("signing the checkpoint")]
    Sign(#[source] TransparencyError),
}

/// Signs and keeps checkpoints of one log (and, with the same key, the log's attestation
/// results: [`CheckpointSigner::sign_attestation_result`]).
#[derive(Debug)]
pub struct CheckpointSigner {
    log: AttestationLog,
    key: LogKey,
    /// The key's certificate chain (DER, the key's certificate first) as the site CA issued
    /// it at start.
    chain: Vec<Vec<u8>>,
}

impl CheckpointSigner {
    /// Loads the log key from `key_path` (creating it, 0600, if the file does not exist),
    /// has `ca` certify it, and keeps the certificate chain in the log.
    pub async fn start(
        log: AttestationLog,
        key_path: &Path,
        ca: &Authority,
        now: OffsetDateTime,
        rng: &(dyn SecureRandom + Sync),
    ) -> Result<Self, CheckpointError> {
        let origin = log.origin().ok_or(CheckpointError::NoOrigin)?.to_owned();
        let key = load_or_create_key(key_path, &origin, rng)?;
        let issued = ca
            .issue_site_role_svid(
                SiteRole::Log,
                // Capped at the site CA's own expiry: the key is certified for as long as
                // the CA that vouches for it.
                time::Duration::days(3650),
                SubjectKey::LogKey(key.public_key()),
                now,
                rng,
            )
            .map_err(CheckpointError::Certify)?;
        let chain_pem = certificates_to_pem(&issued.chain);
        log.add_log_key_certificate(&key.public_key(), &chain_pem, now)
            .await
            .map_err(CheckpointError::Log)?;
        tracing::info!(origin, verifier_key = %key.verifier_key(), "log key certified by the site CA");
        Ok(CheckpointSigner {
            log,
            key,
            chain: issued.chain,
        })
    }

    /// Signs and keeps a checkpoint of the whole tree, unless the latest kept one already
    /// covers every record. Returns the new checkpoint, if any.
    pub async fn sign(
        &self,
        now: OffsetDateTime,
    ) -> Result<Option<StoredCheckpoint>, CheckpointError> {
        let size = self.log.tree_size().await.map_err(CheckpointError::Log)?;
        let latest = self
            .log
            .latest_checkpoint()
            .await
            .map_err(CheckpointError::Log)?;
        if latest.is_some_and(|c| c.size >= size) {
            return Ok(None);
        }
        let root = self
            .log
            .tree_root(size)
            .await
            .map_err(CheckpointError::Log)?;
        let note = self
            .key
            .sign_checkpoint(size, &root)
            .map_err(CheckpointError::Sign)?;
        let checkpoint = StoredCheckpoint {
            size,
            root_hash: root,
            signed: now,
            note,
        };
        self.log
            .store_checkpoint(&checkpoint)
            .await
            .map_err(CheckpointError::Log)?;
        tracing::debug!(size, "checkpoint signed");
        Ok(Some(checkpoint))
    }

    /// The log key's signed-note verifier key.
    pub fn verifier_key(&self) -> String {
        self.key.verifier_key()
    }

    /// `ear` as a JWT signed by the log key, with the key's certificate chain in `x5c`.
    pub fn sign_attestation_result(&self, ear: &ear::Ear) -> Result<String, EarError> {
        garrison_ear::sign_jwt(ear, &self.key, &self.chain)
    }
}

/// Signs a checkpoint every `interval` (if there are new records) until the returned handle
/// is aborted. A failure is logged and retried at the next tick: appends never wait on it.
pub fn spawn_periodic(
    signer: Arc<CheckpointSigner>,
    clock: Arc<dyn Clock>,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = signer.sign(clock.now()).await {
                tracing::error!(error = %error_chain(&e), "signing a checkpoint failed");
            }
        }
    })
}

const KEY_LABEL: &str = "PRIVATE KEY";

fn load_or_create_key(
    path: &Path,
    origin: &str,
    rng: &dyn SecureRandom,
) -> Result<LogKey, CheckpointError> {
    let pkcs8 = load_or_create_ed25519(path, rng).map_err(|e| match e {
        KeyFileError::Io(source) => CheckpointError::KeyFile {
            path: path.to_owned(),
            source,
        },
        KeyFileError::Generate(source) => CheckpointError::Key {
            path: path.to_owned(),
            source,
        },
    })?;
    LogKey::from_pkcs8(origin, &pkcs8).map_err(|source| CheckpointError::Key {
        path: path.to_owned(),
        source,
    })
}

/// Why an Ed25519 key file could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing the file failed, or it holds no PRIVATE KEY PEM block.
    #[error("key file")]
    Io(#[source] std::io::Error),
    /// Drawing a new key failed.
    #[error("generating a key")]
    Generate(#[source] garrison_transparency::TransparencyError),
}

/// The PKCS#8 Ed25519 key in the PEM file at `path`, created (0600, atomically) if the file
/// does not exist. A file that exists but cannot be read is an error, never replaced.
pub fn load_or_create_ed25519(
    path: &Path,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, KeyFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => key_from_pem(&text).map_err(KeyFileError::Io),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pkcs8 = LogKey::generate_pkcs8(rng).map_err(KeyFileError::Generate)?;
            let text = pem::encode(&pem::Pem::new(KEY_LABEL, pkcs8.clone()));
            write_new_secret(path, text.as_bytes()).map_err(KeyFileError::Io)?;
            tracing::info!(path = %path.display(), "new Ed25519 key created");
            Ok(pkcs8)
        }
        Err(e) => Err(KeyFileError::Io(e)),
    }
}

/// The PKCS#8 key of a PRIVATE KEY PEM block.
fn key_from_pem(text: &str) -> Result<Vec<u8>, std::io::Error> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let block = pem::parse(text).map_err(|e| invalid(e.to_string()))?;
    if block.tag() != KEY_LABEL {
        return Err(invalid("not a PRIVATE KEY PEM block".to_owned()));
    }
    Ok(block.into_contents())
}

/// The log key at `path`, for `origin`, without creating it: what `check-config` checks
/// [`CheckpointSigner::start`] will load.
pub(crate) fn load_key(path: &Path, origin: &str) -> Result<LogKey, CheckpointError> {
    let key_file = |source| CheckpointError::KeyFile {
        path: path.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(key_file)?;
    let pkcs8 = key_from_pem(&text).map_err(key_file)?;
    LogKey::from_pkcs8(origin, &pkcs8).map_err(|source| CheckpointError::Key {
        path: path.to_owned(),
        source,
    })
}

/// Writes a new file readable by its owner only, atomically (temporary file, fsync, rename),
/// refusing to replace an existing one.
pub(crate) fn write_new_secret(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    // A temporary file left by a crash mid-write holds no key anyone uses (the key file
    // itself does not exist, or we would not be here).
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    // Hard link then unlink: fails, rather than replaces, if the key appeared meanwhile.
    let linked = std::fs::hard_link(&tmp, path);
    let removed = std::fs::remove_file(&tmp);
    linked?;
    removed?;
    // A bare file name's parent is "": the current directory.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use garrison_ca::{CaRole, IntermediateParams, KeyAlgorithm, PathLen, RootParams, TrustDomain};
    use garrison_log::{Decision, LogConfig, NewEntry, Record, RecordKind};
    use ring::rand::SystemRandom;
    use time::Duration;

    use super::*;

    fn site_ca(now: OffsetDateTime) -> Authority {
        let rng = SystemRandom::new();
        let root = Authority::from_issued(
            Authority::new_root(
                &RootParams {
                    trust_domain: TrustDomain::new("example.org").unwrap(),
                    name: "root".into(),
                    ttl: Duration::days(10),
                    path_len: 2,
                    key_algorithm: KeyAlgorithm::EcdsaP256,
                },
                now,
                &rng,
            )
            .unwrap(),
        )
        .unwrap();
        let site = root
            .issue_intermediate(
                IntermediateParams {
                    name: "s1".into(),
                    role: CaRole::Site("s1".into()),
                    ttl: Duration::days(5),
                    path_len: PathLen::OneBelowIssuer,
                    subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
                },
                now,
                &rng,
            )
            .unwrap();
        Authority::from_issued(site).unwrap()
    }

    async fn log(dir: &Path) -> AttestationLog {
        AttestationLog::open(&LogConfig {
            url: format!("sqlite://{}", dir.join("log.db").display()),
            origin: Some("garrison.example.org/site/s1".into()),
            max_batch: 4,
            max_connections: 2,
        })
        .await
        .unwrap()
    }

    fn record(now: OffsetDateTime) -> NewEntry {
        NewEntry {
            record: Record {
                time: now,
                site: "s1".into(),
                kind: RecordKind::Reject,
                node_id: None,
                spiffe_id: None,
                decision: Decision::Deny,
                reasons: vec!["test".into()],
                policy_digest: None,
                evidence_digest: None,
                cert_serial: None,
                cert_not_after: None,
            },
            evidence: None,
            node_update: None,
        }
    }

    #[tokio::test]
    async fn the_key_is_created_private_kept_and_signs_only_new_trees() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let ca = site_ca(now);
        let key_path = dir.path().join("log-key.pem");
        let log = log(dir.path()).await;
        let rng = SystemRandom::new();
        let signer = CheckpointSigner::start(log.clone(), &key_path, &ca, now, &rng)
            .await
            .unwrap();
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let first = signer
            .sign(now)
            .await
            .unwrap()
            .expect("a checkpoint of the empty tree");
        assert_eq!(first.size, 0);
        assert!(
            signer.sign(now).await.unwrap().is_none(),
            "nothing new, nothing signed"
        );
        log.append(record(now)).await.unwrap();
        let second = signer
            .sign(now)
            .await
            .unwrap()
            .expect("a checkpoint of the new record");
        assert_eq!(second.size, 1);
        // Restarted: the same key, certified again.
        let again = CheckpointSigner::start(log.clone(), &key_path, &ca, now, &rng)
            .await
            .unwrap();
        assert_eq!(again.verifier_key(), signer.verifier_key());
        assert_eq!(log.log_key_certificates().await.unwrap().len(), 2);
        assert_eq!(log.checkpoints().await.unwrap().len(), 2);
        // A damaged key file stops the start; it is never replaced by a new key.
        std::fs::write(
            &key_path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let refused = CheckpointSigner::start(log.clone(), &key_path, &ca, now, &rng).await;
        assert!(
            matches!(refused, Err(CheckpointError::Key { .. })),
            "{refused:?}"
        );
        assert!(std::fs::read_to_string(&key_path).unwrap().contains("AAAA"));
        log.close().await;
    }
}
