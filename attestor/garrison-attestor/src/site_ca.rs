//! The site CA holder: the intermediate in force, its prepared successor and the old ones
//! still trusted, kept on disk under the CA directory and swapped while the attestor runs.
//!
//! The rules (when to prepare, when to activate, what may be activated) are
//! [`garrison_ca::lifecycle`]'s; this is the I/O around them. On disk, under `ca_dir`:
//! * `cert.pem`, `key.pem`, `chain.pem`, `bundle.pem`: the site CA as first provisioned
//!   (generation 0) and the trust domain's roots;
//! * `rotation/gen-<n>/`: each later generation: `key.pem` (0600, generated here: a site CA
//!   key never leaves the site), `csr.pem`, and, once the hub has signed it, `cert.pem` and
//!   `chain.pem`;
//! * `rotation/active`: the name of the generation in force (`gen-<n>`); absent, generation 0.
//!   It is replaced atomically, so a crash leaves one generation or the other in force,
//!   never a mix.
//!
//! Every step (prepared, certified, activated, refused) is a `rotate` record in the log. A
//! CA that has expired issues nothing: the attestor refuses with `ca-unavailable`, keeps
//! logging, and issues again as soon as a successor is installed and activated.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use garrison_ca::lifecycle::{self, LifecycleError, RotationStep, Successor, Validity};
use garrison_ca::{
    Authority, CaError, CaRole, KeyAlgorithm, PrivateKey, SiteRole, SpiffeId, SubjectKey,
    TrustDomain, certificates_from_pem, certificates_to_pem, validity_of_der,
};
use garrison_log::{AttestationLog, Decision, NewEntry, Record, RecordKind};
use ring::rand::SecureRandom;
use time::{Duration, OffsetDateTime};

/// Why the site CA could not be loaded, rotated or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiteCaError {
    /// A file under the CA directory could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key is unusable.
    #[error("{path}")]
    Ca {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: CaError,
    },
    /// The CA is not this site's.
    #[error("{path} is a CA for {role}, not for site {site}")]
    WrongSite {
        /// The CA directory.
        path: PathBuf,
        /// The configured site.
        site: String,
        /// The role the CA states.
        role: String,
    },
    /// A CA lifetime or successor breaks a lifecycle rule.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// A certificate for the successor does not fit it.
    #[error("the certificate offered for the new site CA is refused: {0}")]
    Refused(String),
    /// The rotation record could not be written.
    #[error("recording the rotation")]
    Log(#[source] garrison_log::LogError),
}

/// A CA no longer in force whose SVIDs may still be in use.
#[derive(Debug, Clone)]
pub struct OldCa {
    /// Its certificate, DER.
    pub certificate: Vec<u8>,
    /// Its validity: trusted until its notAfter, when the last SVID it issued has expired.
    pub validity: Validity,
}

/// A successor being prepared.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// `gen-<n>`.
    pub name: String,
    /// The PKCS#10 request the hub is asked to sign, DER.
    pub csr: Vec<u8>,
    /// Its certificate and chain (itself first, not the root), once signed.
    pub certified: Option<(Vec<Vec<u8>>, Validity)>,
}

/// What the holder holds at one moment.
#[derive(Debug, Clone)]
pub struct CaState {
    /// The CA in force.
    pub active: Arc<Authority>,
    /// Its generation name: `gen-0` for the provisioned one.
    pub active_name: String,
    /// The successor, if one is being prepared.
    pub prepared: Option<Prepared>,
    /// Older generations still within their validity.
    pub old: Vec<OldCa>,
    /// Activations since this process loaded the CA directory.
    pub epoch: u64,
    /// New roots announced by the hub (a root rotation), each cross-signed by one of the
    /// roots: sent to agents with the roots, and appended to chains that end at them.
    pub announced_roots: Vec<Vec<u8>>,
}

impl CaState {
    /// The site's offline budget at `now`: how long it can still issue without a new CA.
    pub fn offline_budget(&self, now: OffsetDateTime) -> Duration {
        lifecycle::offline_budget(self.active.validity(), now)
    }

    /// The CAs whose SVIDs are trusted at `now` (the active one first, then old ones still
    /// valid), DER.
    pub fn trusted_issuers(&self, now: OffsetDateTime) -> Vec<Vec<u8>> {
        std::iter::once(self.active.certificate().to_vec())
            .chain(
                self.old
                    .iter()
                    .filter(|old| old.validity.not_after >= now)
                    .map(|old| old.certificate.clone()),
            )
            .collect()
    }

    fn successor(&self) -> Successor {
        match &self.prepared {
            None => Successor::None,
            Some(Prepared {
                certified: None, ..
            }) => Successor::Requested,
            Some(Prepared {
                certified: Some((_, validity)),
                ..
            }) => Successor::Certified(*validity),
        }
    }
}

/// The site CA holder (see the module docs).
pub struct SiteCa {
    dir: PathBuf,
    site: String,
    max_svid_ttl: Duration,
    state: RwLock<Arc<CaState>>,
    /// Serialises rotation steps (prepare, install, activate) against each other.
    rotating: tokio::sync::Mutex<()>,
    /// The budget warning level last logged, so each is logged once.
    warned: Mutex<Option<(i32, i32)>>,
    /// Refusals recorded, so that one repeated every tick or round is recorded once (at most
    /// [`REFUSALS_REMEMBERED`]; then forgotten and recorded again).
    recorded_refusals: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for SiteCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteCa")
            .field("dir", &self.dir)
            .field("active", &self.state().active_name)
            .finish_non_exhaustive()
    }
}

const ROTATION_DIR: &str = "rotation";
const ACTIVE_FILE: &str = "active";
const PROVISIONED: &str = "gen-0";
const ANNOUNCED_ROOTS: &str = "cross-signed-roots.pem";
/// Distinct refusals remembered for deduplication.
const REFUSALS_REMEMBERED: usize = 64;

impl SiteCa {
    /// Loads the CA directory: the generation in force, its successor and the old ones. The
    /// CA in force must be this site's and live at least 6× `max_svid_ttl` (else the
    /// configuration is refused, with the reason). An expired CA loads: the attestor then
    /// refuses to issue until a successor arrives. Keys of retired generations are deleted.
    pub fn load(dir: &Path, site: &str, max_svid_ttl: Duration) -> Result<Self, SiteCaError> {
        let holder = Self::open(dir, site, max_svid_ttl)?;
        holder.delete_retired_keys(&holder.state());
        Ok(holder)
    }

    /// [`SiteCa::load`] without deleting anything: for checks that must leave the directory
    /// as they found it (`garrison attestor check-config`).
    pub fn open(dir: &Path, site: &str, max_svid_ttl: Duration) -> Result<Self, SiteCaError> {
        let holder = SiteCa {
            dir: dir.to_owned(),
            site: site.to_owned(),
            max_svid_ttl,
            state: RwLock::new(Arc::new(load_state(dir)?)),
            rotating: tokio::sync::Mutex::new(()),
            warned: Mutex::new(None),
            recorded_refusals: Mutex::new(std::collections::HashSet::new()),
        };
        let state = holder.state();
        check_site(&state.active, site, dir)?;
        lifecycle::check_ca_lifetime(state.active.validity().lifetime(), max_svid_ttl)?;
        Ok(holder)
    }

    /// Whether the CA in force, at `now`, issues an attestor SVID that agents accept: its chain
    /// checked against the roots as a client checks it (webpki and the containment rule, the
    /// cross-signed certificate of an announced root appended). `Err` says why not (a chain
    /// file that misses a CA, a CA above that has expired, ...).
    pub fn check_active_chain(
        &self,
        now: OffsetDateTime,
        rng: &(dyn SecureRandom + Sync),
    ) -> Result<(), String> {
        let state = self.state();
        let mut anchors = state.active.roots().to_vec();
        anchors.extend(state.announced_roots.iter().cloned());
        let chain = |issued: garrison_ca::Issued| self.complete_chain(issued.chain);
        issues_verifiable(&state.active, &anchors, &self.site, now, rng, chain)
    }

    /// What is held now.
    pub fn state(&self) -> Arc<CaState> {
        match self.state.read() {
            Ok(state) => Arc::clone(&state),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The CA in force.
    pub fn active(&self) -> Arc<Authority> {
        Arc::clone(&self.state().active)
    }

    /// The step due at `now`.
    pub fn step(&self, now: OffsetDateTime) -> RotationStep {
        let state = self.state();
        lifecycle::rotation_step(state.active.validity(), state.successor(), now)
    }

    /// The CSR of the successor awaiting its certificate, if any.
    pub fn pending_request(&self) -> Option<Vec<u8>> {
        let state = self.state();
        let prepared = state.prepared.as_ref()?;
        prepared.certified.is_none().then(|| prepared.csr.clone())
    }

    /// The lifetime to ask the hub for: the same as the CA in force (its notBefore was
    /// backdated by the clock-skew allowance, which is not asked for again).
    pub fn requested_lifetime(&self) -> Duration {
        let lifetime = self.active().validity().lifetime() - garrison_ca::CLOCK_SKEW_ALLOWANCE;
        lifetime.max(Duration::seconds(1))
    }

    /// Generates the successor's key (0600, never leaves the site) and its CSR, and records
    /// the step. Returns the CSR (DER). Does nothing and returns the pending CSR if one is
    /// already prepared.
    pub async fn prepare(
        &self,
        log: &AttestationLog,
        now: OffsetDateTime,
        rng: &(dyn SecureRandom + Sync),
    ) -> Result<Vec<u8>, SiteCaError> {
        let _guard = self.rotating.lock().await;
        if let Some(csr) = self.pending_request() {
            return Ok(csr);
        }
        let state = self.state();
        let name = next_generation(&self.dir, &state)?;
        let gen_dir = self.dir.join(ROTATION_DIR).join(&name);
        std::fs::create_dir_all(&gen_dir).map_err(|source| io(&gen_dir, source))?;
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, rng).map_err(|source| {
            SiteCaError::Ca {
                path: gen_dir.clone(),
                source,
            }
        })?;
        let csr = key
            .csr_der(&format!("{} {name}", self.site))
            .map_err(|source| SiteCaError::Ca {
                path: gen_dir.clone(),
                source,
            })?;
        let key_path = gen_dir.join("key.pem");
        crate::checkpoint::write_new_secret(&key_path, key.to_pkcs8_pem().expose().as_bytes())
            .map_err(|source| io(&key_path, source))?;
        let csr_pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", csr.clone()));
        write_replacing(&gen_dir.join("csr.pem"), csr_pem.as_bytes())?;
        self.swap(|s| {
            s.prepared = Some(Prepared {
                name: name.clone(),
                csr: csr.clone(),
                certified: None,
            });
        });
        let detail = format!(
            "prepared {name}: new key generated at the site, certificate requested for {}",
            human(self.requested_lifetime())
        );
        record(
            log,
            &self.site,
            now,
            Decision::Allow,
            "prepared",
            detail,
            None,
            Some(csr_pem.into_bytes()),
        )
        .await?;
        tracing::info!(generation = %name, "new site CA key prepared; certificate requested from the hub");
        Ok(csr.clone())
    }

    /// Installs the hub's certificate for the prepared successor (`chain`: the new CA first,
    /// then its issuers, not the root), after checking it certifies the prepared key, is
    /// this site's, chains to the roots, and may issue SVIDs that verify. Returns false when
    /// there is nothing to install it for (no successor awaiting one, or already installed).
    /// A refusal is recorded.
    pub async fn install(
        &self,
        log: &AttestationLog,
        chain: Vec<Vec<u8>>,
        now: OffsetDateTime,
        rng: &(dyn SecureRandom + Sync),
    ) -> Result<bool, SiteCaError> {
        let _guard = self.rotating.lock().await;
        let state = self.state();
        let Some(prepared) = state.prepared.as_ref().filter(|p| p.certified.is_none()) else {
            return Ok(false);
        };
        let gen_dir = self.dir.join(ROTATION_DIR).join(&prepared.name);
        let checked = self.check_successor(&gen_dir, &chain, &state, now, rng);
        let validity = match checked {
            Ok(Fit::Usable(validity)) => validity,
            Ok(Fit::Unusable(why)) => {
                // Our key, but certified so that it could never be put in force: not
                // installed; the same key is asked for again (the hub certifies it afresh).
                let detail = format!(
                    "{}: {why}; the certificate is asked for again",
                    prepared.name
                );
                self.record_refusal(log, now, "certificate-refused", detail, chain.first())
                    .await?;
                return Err(SiteCaError::Refused(why));
            }
            Err(e) => {
                self.record_refusal(log, now, "certificate-refused", e.to_string(), None)
                    .await?;
                return Err(e);
            }
        };
        let cert_pem = certificates_to_pem(std::slice::from_ref(first_of(&chain)?));
        write_replacing(
            &gen_dir.join("chain.pem"),
            certificates_to_pem(&chain).as_bytes(),
        )?;
        write_replacing(&gen_dir.join("cert.pem"), cert_pem.as_bytes())?;
        let name = prepared.name.clone();
        self.swap(|s| {
            if let Some(p) = s.prepared.as_mut() {
                p.certified = Some((chain.clone(), validity));
            }
        });
        let detail = format!(
            "certified {name}: valid {} to {}",
            validity.not_before, validity.not_after
        );
        record(
            log,
            &self.site,
            now,
            Decision::Allow,
            "certified",
            detail,
            chain.first(),
            Some(cert_pem.into_bytes()),
        )
        .await?;
        tracing::info!(generation = %name, not_after = %validity.not_after, "new site CA certificate installed");
        Ok(true)
    }

    /// Puts the certified successor in force if it is fit ([`lifecycle::check_activation`]);
    /// a refusal is recorded and leaves the active CA in force. Whether it is due is the
    /// caller's to decide ([`SiteCa::tick`] follows the schedule).
    pub async fn activate(
        &self,
        log: &AttestationLog,
        now: OffsetDateTime,
    ) -> Result<bool, SiteCaError> {
        let _guard = self.rotating.lock().await;
        let state = self.state();
        let Some(Prepared {
            name,
            certified: Some((chain, validity)),
            ..
        }) = state.prepared.clone()
        else {
            return Ok(false);
        };
        if let Err(e) =
            lifecycle::check_activation(validity, state.active.validity(), self.max_svid_ttl, now)
        {
            let permanent = matches!(
                e,
                LifecycleError::ShortLived { .. }
                    | LifecycleError::DoesNotOutliveActive { .. }
                    | LifecycleError::NearlyExpired { .. }
            );
            let detail = if permanent {
                format!("{name}: {e}; the certificate is asked for again")
            } else {
                format!("{name}: {e}")
            };
            self.record_refusal(log, now, "activation-refused", detail, chain.first())
                .await?;
            if permanent {
                // The key is good; its certificate is not: set aside, asked for again.
                self.reopen(&name)?;
            }
            return Err(e.into());
        }
        let gen_dir = self.dir.join(ROTATION_DIR).join(&name);
        let next = load_generation(&gen_dir, state.active.roots().to_vec())?;
        check_site(&next, &self.site, &gen_dir)?;
        write_replacing(
            &self.dir.join(ROTATION_DIR).join(ACTIVE_FILE),
            format!("{name}\n").as_bytes(),
        )?;
        let retired = OldCa {
            certificate: state.active.certificate().to_vec(),
            validity: state.active.validity(),
        };
        let retired_name = state.active_name.clone();
        self.swap(|s| {
            s.active = Arc::new(next);
            s.active_name = name.clone();
            s.prepared = None;
            s.old.insert(0, retired.clone());
            s.epoch += 1;
        });
        if let Ok(mut warned) = self.warned.lock() {
            *warned = None;
        }
        // The retired CA never signs again: its key goes (its certificate stays, for as long
        // as its SVIDs are trusted and for the record).
        let retired_key = if retired_name == PROVISIONED {
            self.dir.join("key.pem")
        } else {
            self.dir
                .join(ROTATION_DIR)
                .join(&retired_name)
                .join("key.pem")
        };
        match std::fs::remove_file(&retired_key) {
            Ok(()) => {
                tracing::info!(key = %retired_key.display(), "the retired site CA's key was deleted")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(error = %e, key = %retired_key.display(), "could not delete the retired site CA's key")
            }
        }
        let detail = format!(
            "activated {name} (valid to {}); {retired_name} stays trusted until {}",
            validity.not_after, retired.validity.not_after
        );
        record(
            log,
            &self.site,
            now,
            Decision::Allow,
            "activated",
            detail,
            chain.first(),
            None,
        )
        .await?;
        tracing::info!(generation = %name, retired = %retired_name, "new site CA in force");
        Ok(true)
    }

    /// The schedule's work at `now`: picks up a certificate installed by another process
    /// (`garrison site import`), prepares a successor when due, activates a certified one when
    /// due (at once when the CA in force has expired), and logs a warning on crossing each
    /// offline-budget level. Run periodically and in every sync round. Failures are logged;
    /// the CA in force keeps issuing as long as it is valid.
    pub async fn tick(&self, log: &AttestationLog, now: OffsetDateTime) {
        if let Err(e) = self.pick_up_certificate().await {
            tracing::error!(error = %e, "reading the new site CA's certificate failed");
        }
        let step = self.step(now);
        if step == RotationStep::Prepare
            && let Err(e) = self
                .prepare(log, now, &ring::rand::SystemRandom::new())
                .await
        {
            tracing::error!(error = %e, "preparing the next site CA failed");
        }
        let state = self.state();
        let expired = now > state.active.not_after();
        let certified = matches!(state.successor(), Successor::Certified(_));
        if certified
            && (step == RotationStep::Activate || expired)
            && let Err(e) = self.activate(log, now).await
        {
            tracing::error!(error = %e, "the new site CA was not put in force");
        }
        self.warn_budget(now);
    }

    /// What another process did on disk (`garrison attestor request-ca` preparing a key,
    /// `install-ca` installing its certificate) is taken as it is: that process checked and
    /// recorded it. Under the rotation lock, so it never undoes a step of this process.
    async fn pick_up_certificate(&self) -> Result<(), SiteCaError> {
        let _guard = self.rotating.lock().await;
        let state = self.state();
        let on_disk = load_state(&self.dir)?;
        if on_disk.active_name != state.active_name {
            return Ok(());
        }
        // What is on disk is what every process did (each writes before it changes its
        // memory): a generation another process prepared, certified or set aside.
        let key = |p: &Option<Prepared>| {
            p.as_ref().map(|p| {
                (
                    p.name.clone(),
                    p.certified.as_ref().map(|(chain, _)| chain.clone()),
                )
            })
        };
        let newer = key(&state.prepared) != key(&on_disk.prepared);
        if newer {
            self.swap(|s| s.prepared = on_disk.prepared.clone());
        }
        Ok(())
    }

    /// Records a refusal, unless it is the same as the last one recorded: a refusal that
    /// repeats every tick or round must not grow the log.
    async fn record_refusal(
        &self,
        log: &AttestationLog,
        now: OffsetDateTime,
        step: &str,
        detail: String,
        certificate: Option<&Vec<u8>>,
    ) -> Result<(), SiteCaError> {
        tracing::warn!(step, detail = %detail, "site CA rotation refused");
        if !self.first_time(&format!("{step} {detail}")) {
            return Ok(());
        }
        record(
            log,
            &self.site,
            now,
            Decision::Deny,
            step,
            detail,
            certificate,
            None,
        )
        .await
    }

    /// True the first time `what` is seen (see `recorded_refusals`).
    fn first_time(&self, what: &str) -> bool {
        let Ok(mut seen) = self.recorded_refusals.lock() else {
            return true;
        };
        if seen.contains(what) {
            return false;
        }
        if seen.len() >= REFUSALS_REMEMBERED {
            seen.clear();
        }
        seen.insert(what.to_owned());
        true
    }

    /// Sets aside the certificate of generation `name` (`cert.pem` and `chain.pem` renamed
    /// `*.refused`) and keeps its key and CSR, so the key is asked for again: a certified key
    /// is never thrown away for a certificate that does not fit (the hub certifies one
    /// successor key per CA).
    fn reopen(&self, name: &str) -> Result<(), SiteCaError> {
        let gen_dir = self.dir.join(ROTATION_DIR).join(name);
        for file in ["cert.pem", "chain.pem"] {
            let from = gen_dir.join(file);
            match std::fs::rename(&from, gen_dir.join(format!("{file}.refused"))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(io(&from, source)),
            }
        }
        self.swap(|s| {
            if let Some(p) = s.prepared.as_mut().filter(|p| p.name == name) {
                p.certified = None;
            }
        });
        tracing::warn!(
            generation = name,
            "the new site CA's certificate was set aside; asking for another"
        );
        Ok(())
    }

    /// Keys of generations older than the one in force never sign again: deleted (a crash
    /// between an activation and its key deletion leaves one behind).
    fn delete_retired_keys(&self, state: &CaState) {
        let active = generation_number(&state.active_name).unwrap_or(0);
        let mut keys: Vec<PathBuf> = Vec::new();
        if active > 0 {
            keys.push(self.dir.join("key.pem"));
        }
        if let Ok(found) = generations(&self.dir.join(ROTATION_DIR)) {
            keys.extend(
                found
                    .into_iter()
                    .filter(|(n, _)| *n > 0 && *n < active)
                    .map(|(_, name)| self.dir.join(ROTATION_DIR).join(name).join("key.pem")),
            );
        }
        for key in keys {
            match std::fs::remove_file(&key) {
                Ok(()) => {
                    tracing::info!(key = %key.display(), "a retired site CA's key was deleted")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(error = %e, key = %key.display(), "could not delete a retired site CA's key")
                }
            }
        }
    }

    fn warn_budget(&self, now: OffsetDateTime) {
        let state = self.state();
        let level = lifecycle::budget_warning(state.active.validity(), now);
        let Ok(mut warned) = self.warned.lock() else {
            return;
        };
        if level.is_none() || level == *warned {
            return;
        }
        *warned = level;
        let budget = state.offline_budget(now);
        if budget.is_zero() {
            tracing::error!(
                expired = %state.active.not_after(),
                "the site CA has expired: the site refuses to issue (ca-unavailable) until a new \
                 intermediate arrives from the hub (sync or file)"
            );
        } else {
            tracing::warn!(
                fails_closed_at = %state.active.not_after(),
                budget = %human(budget),
                pending_rotation = state.prepared.is_some(),
                "the site's offline budget is running out: without a new intermediate from the \
                 hub it stops issuing at the site CA's expiry"
            );
        }
    }

    /// Roots of the trust domain (from `bundle.pem`).
    pub fn roots(&self) -> Vec<Vec<u8>> {
        self.active().roots().to_vec()
    }

    /// What agents are sent as the trust bundle: the roots, then the new roots announced
    /// (cross-signed; an agent adds those its bootstrap anchors issued).
    pub fn trust_bundle(&self) -> Vec<Vec<u8>> {
        let state = self.state();
        let mut bundle = state.active.roots().to_vec();
        bundle.extend(state.announced_roots.iter().cloned());
        bundle
    }

    /// `chain` (leaf first, no root) with the cross-signed certificate of the new root it
    /// ends at appended, if it ends at an announced root: then a holder of the old root only
    /// (an agent's bootstrap bundle) can verify it.
    pub fn complete_chain(&self, mut chain: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        use x509_parser::prelude::FromDer as _;
        let state = self.state();
        let issuer_of_last = chain.last().and_then(|der| {
            x509_parser::certificate::X509Certificate::from_der(der)
                .ok()
                .map(|(_, c)| c.issuer().as_raw().to_vec())
        });
        let Some(issuer) = issuer_of_last else {
            return chain;
        };
        let cross = state.announced_roots.iter().find(|der| {
            x509_parser::certificate::X509Certificate::from_der(der)
                .is_ok_and(|(_, c)| c.subject().as_raw() == issuer.as_slice())
        });
        if let Some(cross) = cross {
            chain.push(cross.clone());
        }
        chain
    }

    /// Takes the new roots the hub announced: each one a current root cross-signed
    /// ([`garrison_ca::verify_cross_signed`]) is kept (`ca_dir/cross-signed-roots.pem`),
    /// recorded (`rotate` / `root-announced`) and sent to agents from then on; any other is
    /// refused and recorded. Returns how many are new.
    pub async fn accept_announced_roots(
        &self,
        log: &AttestationLog,
        announced: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Result<usize, SiteCaError> {
        let _guard = self.rotating.lock().await;
        let state = self.state();
        let mut kept = state.announced_roots.clone();
        let mut added = 0;
        // Cross-signed certificates first: a new root's self-signed twin is taken only beside
        // one of them.
        let (cross, twins): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) = announced.iter().partition(|der| {
            garrison_ca::verify_cross_signed(der, state.active.roots(), now).is_ok()
        });
        for der in cross.into_iter().chain(twins) {
            if kept.contains(der) {
                continue;
            }
            let checked = garrison_ca::verify_cross_signed(der, state.active.roots(), now)
                .or_else(|_| garrison_ca::verify_root_twin(der, &kept, now));
            if let Err(e) = checked {
                let detail = format!("a new root announced by the hub is refused: {e}");
                if !self.first_time(&format!("root-refused {detail}")) {
                    continue;
                }
                record(
                    log,
                    &self.site,
                    now,
                    Decision::Deny,
                    "root-refused",
                    detail,
                    Some(der),
                    None,
                )
                .await?;
                continue;
            }
            kept.push(der.clone());
            added += 1;
            let pem = certificates_to_pem(std::slice::from_ref(der));
            let detail =
                "a new root, cross-signed by a current one: sent to agents from now on".to_owned();
            record(
                log,
                &self.site,
                now,
                Decision::Allow,
                "root-announced",
                detail,
                Some(der),
                Some(pem.into_bytes()),
            )
            .await?;
        }
        if added > 0 {
            write_replacing(
                &self.dir.join(ANNOUNCED_ROOTS),
                certificates_to_pem(&kept).as_bytes(),
            )?;
            self.swap(|s| s.announced_roots = kept);
            tracing::info!(
                added,
                "new roots announced by the hub: agents receive them from now on"
            );
        }
        Ok(added)
    }

    fn check_successor(
        &self,
        gen_dir: &Path,
        chain: &[Vec<u8>],
        state: &CaState,
        now: OffsetDateTime,
        rng: &(dyn SecureRandom + Sync),
    ) -> Result<Fit, SiteCaError> {
        let refused = |what: String| SiteCaError::Refused(what);
        let key_path = gen_dir.join("key.pem");
        let key = PrivateKey::from_pkcs8_pem(&read_text(&key_path)?).map_err(|source| {
            SiteCaError::Ca {
                path: key_path,
                source,
            }
        })?;
        let first = chain
            .first()
            .ok_or_else(|| refused("the chain is empty".to_owned()))?;
        let candidate = Authority::new(
            first.clone(),
            key,
            chain.to_vec(),
            state.active.roots().to_vec(),
        )
        .map_err(|e| refused(format!("it does not certify the prepared key as a CA: {e}")))?;
        check_site(&candidate, &self.site, gen_dir).map_err(|e| refused(e.to_string()))?;
        let validity = candidate.validity();
        // The proof that it works: an SVID it issues now verifies against the roots through
        // the chain given, containment rule included.
        let mut anchors = state.active.roots().to_vec();
        anchors.extend(state.announced_roots.iter().cloned());
        let at = now.max(validity.not_before);
        issues_verifiable(&candidate, &anchors, &self.site, at, rng, |issued| {
            issued.chain
        })
        .map_err(refused)?;
        // Certified for our key, but it could never be put in force (checked again at
        // activation; not being valid yet is no reason to refuse it now).
        match lifecycle::check_activation(validity, state.active.validity(), self.max_svid_ttl, now)
        {
            Err(LifecycleError::NotValidNow { .. }) | Ok(()) => {}
            Err(e) => return Ok(Fit::Unusable(e.to_string())),
        }
        Ok(Fit::Usable(validity))
    }

    fn swap(&self, change: impl FnOnce(&mut CaState)) {
        let mut guard = match self.state.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut next = (**guard).clone();
        change(&mut next);
        *guard = Arc::new(next);
    }
}

/// What a certificate offered for the prepared key is good for.
enum Fit {
    /// It may be installed and, when due, put in force.
    Usable(Validity),
    /// It certifies the prepared key but could never be put in force (why).
    Unusable(String),
}

/// The site CAs whose SVIDs the attestor's TLS layer accepts as client certificates (renewal):
/// the one in force and old ones not yet expired, at the attestor's clock.
pub struct SiteCaIssuers {
    ca: Arc<SiteCa>,
    clock: Arc<dyn crate::Clock>,
}

impl SiteCaIssuers {
    /// Follows `ca` at `clock`'s time.
    pub fn new(ca: Arc<SiteCa>, clock: Arc<dyn crate::Clock>) -> Self {
        SiteCaIssuers { ca, clock }
    }
}

impl crate::tls::ClientIssuers for SiteCaIssuers {
    fn key(&self) -> u64 {
        let state = self.ca.state();
        let now = self.clock.now();
        let trusted_old = state
            .old
            .iter()
            .filter(|old| old.validity.not_after >= now)
            .count() as u64;
        (state.epoch << 16) | trusted_old.min(0xffff)
    }

    fn issuers(&self) -> Vec<Vec<u8>> {
        self.ca.state().trusted_issuers(self.clock.now())
    }
}

/// `ca` issues at `at` an attestor SVID whose chain (as `chain` makes it from the issued
/// certificate) verifies against `anchors` ([`verify_chain`]).
fn issues_verifiable(
    ca: &Authority,
    anchors: &[Vec<u8>],
    site: &str,
    at: OffsetDateTime,
    rng: &(dyn SecureRandom + Sync),
    chain: impl FnOnce(garrison_ca::Issued) -> Vec<Vec<u8>>,
) -> Result<(), String> {
    let probe = ca
        .issue_site_role_svid(
            SiteRole::Attestor,
            Duration::minutes(5),
            SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            at,
            rng,
        )
        .map_err(|e| format!("it cannot issue: {e}"))?;
    verify_chain(&chain(probe), anchors, at, ca.trust_domain().clone(), site)
        .map_err(|e| format!("it does not chain to the trust domain's roots: {e}"))
}

/// The SVIDs issued by a CA verify: `chain` (an SVID it issued, then the CA and its issuers)
/// checked by the attestor's own peer check (webpki against `roots` at `at`, containment over
/// the path built) must come out as this site's attestor.
fn verify_chain(
    chain: &[Vec<u8>],
    roots: &[Vec<u8>],
    at: OffsetDateTime,
    trust_domain: TrustDomain,
    site: &str,
) -> Result<(), String> {
    let (leaf, intermediates) = chain.split_first().ok_or("empty chain")?;
    let check = crate::tls::PeerCheck::new(roots, Arc::new(FixedTime(at)))?;
    let id = check.identity(leaf, intermediates)?;
    let expected = SpiffeId::from_path(&trust_domain, &format!("/site/{site}/attestor"))
        .map_err(|e| e.to_string())?;
    if id != expected {
        return Err(format!("it issued {id}, not {expected}"));
    }
    Ok(())
}

/// One moment, as a clock.
#[derive(Debug)]
struct FixedTime(OffsetDateTime);

impl crate::Clock for FixedTime {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

fn load_state(dir: &Path) -> Result<CaState, SiteCaError> {
    let roots = certificates_from_pem(&read_text(&dir.join("bundle.pem"))?).map_err(|source| {
        SiteCaError::Ca {
            path: dir.join("bundle.pem"),
            source,
        }
    })?;
    let rotation = dir.join(ROTATION_DIR);
    let active_name = match std::fs::read_to_string(rotation.join(ACTIVE_FILE)) {
        Ok(text) => text.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => PROVISIONED.to_owned(),
        Err(source) => return Err(io(&rotation.join(ACTIVE_FILE), source)),
    };
    let active_number = generation_number(&active_name).ok_or_else(|| SiteCaError::Io {
        path: rotation.join(ACTIVE_FILE),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{active_name:?} is not a generation name gen-<n>"),
        ),
    })?;
    let mut old = Vec::new();
    let mut prepared = None;
    for (number, name) in generations(&rotation)? {
        let gen_dir = rotation.join(&name);
        if number == active_number {
            continue;
        }
        let cert = read_optional(&gen_dir.join("cert.pem"))?;
        if number < active_number {
            if let Some(der) = cert
                .as_deref()
                .map(|t| first_certificate(t, &gen_dir))
                .transpose()?
            {
                old.push(old_ca(der, &gen_dir)?);
            }
        } else if prepared.is_none() && gen_dir.join("key.pem").exists() {
            prepared = Some(load_prepared(&gen_dir, &name)?);
        }
    }
    let active = if active_number == 0 {
        crate::server::load_authority(dir).map_err(|e| match e {
            crate::server::StartError::Ca { dir, source } => SiteCaError::Ca { path: dir, source },
            other => SiteCaError::Io {
                path: dir.to_owned(),
                source: std::io::Error::other(other.to_string()),
            },
        })?
    } else {
        // The provisioned CA is old now; its key may be gone (deleted at its retirement).
        let provisioned = first_certificate(&read_text(&dir.join("cert.pem"))?, dir)?;
        old.push(old_ca(provisioned, dir)?);
        load_generation(&rotation.join(&active_name), roots)?
    };
    old.sort_by_key(|o| std::cmp::Reverse(o.validity.not_after));
    Ok(CaState {
        active: Arc::new(active),
        active_name,
        prepared,
        old,
        epoch: 0,
        announced_roots: match read_optional(&dir.join(ANNOUNCED_ROOTS))? {
            Some(text) => certificates_from_pem(&text).map_err(|source| SiteCaError::Ca {
                path: dir.join(ANNOUNCED_ROOTS),
                source,
            })?,
            None => Vec::new(),
        },
    })
}

fn load_prepared(gen_dir: &Path, name: &str) -> Result<Prepared, SiteCaError> {
    let csr_path = gen_dir.join("csr.pem");
    let csr = match read_optional(&csr_path)? {
        Some(text) => pem::parse(text)
            .map_err(|e| {
                io(
                    &csr_path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            })?
            .into_contents(),
        // A crash between writing the key and its CSR: the CSR is made again from the key.
        None => {
            let key_path = gen_dir.join("key.pem");
            PrivateKey::from_pkcs8_pem(&read_text(&key_path)?)
                .and_then(|key| key.csr_der(name))
                .map_err(|source| SiteCaError::Ca {
                    path: key_path,
                    source,
                })?
        }
    };
    let certified = match read_optional(&gen_dir.join("chain.pem"))? {
        Some(text) if gen_dir.join("cert.pem").exists() => {
            let chain = certificates_from_pem(&text).map_err(|source| SiteCaError::Ca {
                path: gen_dir.join("chain.pem"),
                source,
            })?;
            let validity = chain
                .first()
                .map(|der| validity_of_der(der))
                .transpose()
                .map_err(|source| SiteCaError::Ca {
                    path: gen_dir.join("chain.pem"),
                    source,
                })?;
            validity.map(|v| (chain, v))
        }
        _ => None,
    };
    Ok(Prepared {
        name: name.to_owned(),
        csr,
        certified,
    })
}

fn load_generation(gen_dir: &Path, roots: Vec<Vec<u8>>) -> Result<Authority, SiteCaError> {
    let ca_err = |source| SiteCaError::Ca {
        path: gen_dir.to_owned(),
        source,
    };
    let cert = first_certificate(&read_text(&gen_dir.join("cert.pem"))?, gen_dir)?;
    let key = PrivateKey::from_pkcs8_pem(&read_text(&gen_dir.join("key.pem"))?).map_err(ca_err)?;
    let chain = certificates_from_pem(&read_text(&gen_dir.join("chain.pem"))?).map_err(ca_err)?;
    Authority::new(cert, key, chain, roots).map_err(ca_err)
}

fn old_ca(certificate: Vec<u8>, path: &Path) -> Result<OldCa, SiteCaError> {
    let validity = validity_of_der(&certificate).map_err(|source| SiteCaError::Ca {
        path: path.to_owned(),
        source,
    })?;
    Ok(OldCa {
        certificate,
        validity,
    })
}

fn first_of(chain: &[Vec<u8>]) -> Result<&Vec<u8>, SiteCaError> {
    chain
        .first()
        .ok_or_else(|| SiteCaError::Refused("the chain is empty".to_owned()))
}

fn first_certificate(text: &str, path: &Path) -> Result<Vec<u8>, SiteCaError> {
    certificates_from_pem(text)
        .and_then(|certs| certs.into_iter().next().ok_or(CaError::EmptyBundle))
        .map_err(|source| SiteCaError::Ca {
            path: path.to_owned(),
            source,
        })
}

/// The CA must state this site's role.
fn check_site(ca: &Authority, site: &str, path: &Path) -> Result<(), SiteCaError> {
    let role = ca.role().map_err(|source| SiteCaError::Ca {
        path: path.to_owned(),
        source,
    })?;
    if role.and_then(CaRole::site) == Some(site) {
        return Ok(());
    }
    Err(SiteCaError::WrongSite {
        path: path.to_owned(),
        site: site.to_owned(),
        role: role.map_or_else(|| "root".to_owned(), ToString::to_string),
    })
}

/// The generations under `rotation/`, by number.
fn generations(rotation: &Path) -> Result<Vec<(u64, String)>, SiteCaError> {
    let entries = match std::fs::read_dir(rotation) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io(rotation, source)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| io(rotation, source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(number) = generation_number(&name).filter(|_| entry.path().is_dir()) {
            found.push((number, name));
        }
    }
    found.sort();
    Ok(found)
}

fn generation_number(name: &str) -> Option<u64> {
    name.strip_prefix("gen-")?.parse().ok()
}

/// One above every generation on disk (a prepared one that was abandoned included).
fn next_generation(dir: &Path, state: &CaState) -> Result<String, SiteCaError> {
    let on_disk = generations(&dir.join(ROTATION_DIR))?
        .last()
        .map_or(0, |(n, _)| *n);
    let active = generation_number(&state.active_name).unwrap_or(0);
    Ok(format!("gen-{}", on_disk.max(active) + 1))
}

/// A `rotate` record: `step` first among the reasons, then the detail; the CA certificate's
/// serial and expiry when there is one; `evidence` (a CSR or certificate PEM) kept beside it.
#[allow(clippy::too_many_arguments)]
async fn record(
    log: &AttestationLog,
    site: &str,
    now: OffsetDateTime,
    decision: Decision,
    step: &str,
    detail: String,
    certificate: Option<&Vec<u8>>,
    evidence: Option<Vec<u8>>,
) -> Result<(), SiteCaError> {
    let facts = certificate.and_then(|der| {
        let summary = garrison_ca::CertificateSummary::from_der(der).ok()?;
        let serial: String = summary
            .serial
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        Some((serial.to_lowercase(), validity_of_der(der).ok()?.not_after))
    });
    let entry = NewEntry {
        record: Record {
            time: now,
            site: site.to_owned(),
            kind: RecordKind::Rotate,
            node_id: None,
            spiffe_id: None,
            decision,
            reasons: vec![step.to_owned(), detail],
            policy_digest: None,
            evidence_digest: None,
            cert_serial: facts.as_ref().map(|(serial, _)| serial.clone()),
            cert_not_after: facts.map(|(_, not_after)| not_after),
        },
        evidence,
        node_update: None,
    };
    log.append(entry)
        .await
        .map(|_| ())
        .map_err(SiteCaError::Log)
}

/// `3d 4h`, `5h 30m`, `12m`: for operators.
pub fn human(d: Duration) -> String {
    let s = d.whole_seconds().max(0);
    let (days, hours, minutes) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    match (days, hours) {
        (0, 0) => format!("{minutes}m"),
        (0, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

fn read_text(path: &Path) -> Result<String, SiteCaError> {
    std::fs::read_to_string(path).map_err(|source| io(path, source))
}

fn read_optional(path: &Path) -> Result<Option<String>, SiteCaError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io(path, source)),
    }
}

/// Writes `contents` to `path` atomically (temporary file, fsync, rename, directory fsync).
fn write_replacing(path: &Path, contents: &[u8]) -> Result<(), SiteCaError> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|source| io(path, source))
}

fn io(path: &Path, source: std::io::Error) -> SiteCaError {
    SiteCaError::Io {
        path: path.to_owned(),
        source,
    }
}
