//! What the attestor checks before it serves, in one place: [`startup_checks`] is what
//! `garrison attestor serve` runs at start ([`crate::server::build`]) and what `garrison
//! attestor check-config` runs ([`check_config`]), so the two cannot disagree.
//!
//! Each check ends in a [`Finding`]: passed (with what was found), failed (the [`StartError`]
//! that stops `serve`) or a [`StartWarning`]: something that weakens the site or will stop it
//! issuing, which `serve` logs as one line and starts anyway. `serve` stops at the first
//! failure; the check runs every check whose inputs loaded (a bad EK root does not hide a bad
//! policy bundle), binds no port and writes no record: it opens the log as `serve` does (a
//! missing SQLite file or an empty database gets the schema `serve` would give it) and proves
//! it writable with a rolled-back write.

use std::fmt;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use garrison_ca::Authority;
use garrison_evidence::EkTrust;
use garrison_log::{AttestationLog, LogError, ServingLock};
use garrison_policy::PolicyService;
use ring::rand::SystemRandom;
use time::{Duration, OffsetDateTime};

use crate::Clock;
use crate::config::SiteConfig;
use crate::server::StartError;
use crate::site_ca::{SiteCa, human};

/// Whether the checks start an attestor or only look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `serve`: stop at the first failure; put the CA schedule and the policy in force, with
    /// their records.
    Serve,
    /// `check-config`: run every check that can run, change nothing.
    Check,
}

impl Mode {
    /// `serve` stops at a failure (`Err`); `check-config` goes on with the checks that do not
    /// need what failed (`Ok` of the failure).
    fn stop_at<T>(
        self,
        result: Result<T, StartError>,
    ) -> Result<Result<T, StartError>, StartError> {
        match (self, result) {
            (Mode::Serve, Err(e)) => Err(e),
            (_, result) => Ok(result),
        }
    }
}

/// A finding at start that does not stop the attestor. Each is one line in the attestor's
/// log (`serve`) and in `check-config`'s report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartWarning {
    /// A switch of `[insecure]` is on.
    InsecureOption {
        /// Its name, `insecure.<switch>`.
        switch: &'static str,
    },
    /// The policy bundle in force says in its name that it is insecure (the shipped
    /// `lab-permissive-INSECURE`, or any name containing "insecure").
    InsecurePolicy {
        /// The bundle's name.
        name: String,
        /// Its sequence.
        sequence: u64,
    },
    /// The site CA has the shape of a root: self-signed, one of the roots itself, or with a
    /// root's path length (2 or more).
    RootShapedSiteCa {
        /// The CA directory.
        dir: PathBuf,
        /// Which of the three.
        shape: &'static str,
    },
    /// Less than a quarter (then a tenth, a thirtieth) of the site CA's lifetime is left
    /// ([`garrison_ca::lifecycle::budget_warning`]).
    CaNearExpiry {
        /// Its notAfter.
        not_after: OffsetDateTime,
        /// What is left.
        left: Duration,
        /// The warning level crossed, as a fraction of the lifetime.
        fraction: (i32, i32),
    },
    /// The site CA has expired: the attestor starts (to keep logging and to sync its way to
    /// a new CA) but issues nothing.
    CaExpired {
        /// Its notAfter.
        not_after: OffsetDateTime,
    },
    /// The site CA is not valid yet (a wrong clock, or a CA dated ahead).
    CaNotYetValid {
        /// Its notBefore.
        not_before: OffsetDateTime,
    },
    /// An SVID from the site CA would not verify against the roots as agents check it.
    ChainRefused {
        /// The CA directory.
        dir: PathBuf,
        /// Why.
        problem: String,
    },
    /// A file holding a private key or the log is open to group or others.
    OpenToOthers {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The database also holds the logs of other origins: the site's log from before its
    /// name or trust domain changed, or other sites sharing the database. Their revocations
    /// are enforced here too; their records are verified under their own origins.
    OtherOrigins {
        /// Their origins.
        others: Vec<String>,
    },
    /// Another process serves the log now (`check-config` only: `serve` refuses to start).
    LogInUse {
        /// The lock file.
        lock: PathBuf,
        /// Who holds it, as it wrote.
        holder: String,
    },
}

impl StartWarning {
    /// True when the attestor, started like this, would not issue anything agents accept.
    pub fn stops_issuance(&self) -> bool {
        matches!(
            self,
            StartWarning::CaExpired { .. }
                | StartWarning::CaNotYetValid { .. }
                | StartWarning::ChainRefused { .. }
        )
    }

    /// Warnings that [`SiteCa::tick`], run at start and every minute after, logs itself
    /// (each level once): `serve` leaves them to it rather than log them twice.
    fn logged_by_ca_tick(&self) -> bool {
        matches!(
            self,
            StartWarning::CaNearExpiry { .. } | StartWarning::CaExpired { .. }
        )
    }
}

impl fmt::Display for StartWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartWarning::InsecureOption { switch } => write!(
                f,
                "INSECURE option enabled: {switch} weakens the attestor's checks"
            ),
            StartWarning::InsecurePolicy { name, sequence } => write!(
                f,
                "INSECURE policy in force: bundle {name:?} #{sequence} is named insecure; it is \
                 meant for labs, not for admitting real nodes"
            ),
            StartWarning::RootShapedSiteCa { dir, shape } => write!(
                f,
                "the site CA in {} is shaped like a root ({shape}): a site CA is an \
                 intermediate below the hub with path length 0, and a root's key belongs offline",
                dir.display()
            ),
            StartWarning::CaNearExpiry {
                not_after,
                left,
                fraction: (n, d),
            } => write!(
                f,
                "the site CA expires at {} ({} left, under {n}/{d} of its lifetime): \
                 without a new intermediate from the hub the site stops issuing then",
                Rfc3339Time(*not_after),
                human(*left)
            ),
            StartWarning::CaExpired { not_after } => write!(
                f,
                "the site CA expired at {}: the attestor logs and syncs but issues nothing \
                 (ca-unavailable) until a new intermediate is installed",
                Rfc3339Time(*not_after)
            ),
            StartWarning::CaNotYetValid { not_before } => write!(
                f,
                "the site CA is not valid before {} (is the clock right?): the attestor \
                 issues nothing agents accept until then",
                Rfc3339Time(*not_before)
            ),
            StartWarning::ChainRefused { dir, problem } => write!(
                f,
                "agents would refuse what the site CA in {} issues: {problem}",
                dir.display()
            ),
            StartWarning::OpenToOthers { what, path, mode } => write!(
                f,
                "{what} {} is open to group or others (mode {mode:03o}): chmod go-rwx it",
                path.display()
            ),
            StartWarning::OtherOrigins { others } => write!(
                f,
                "the log database also holds the logs of {} (this site before a rename, or \
                 sites sharing the database): this attestor appends to its own log, enforces \
                 the revocations of every log there, and an auditor verifies each origin's log \
                 on its own",
                others.join(", ")
            ),
            StartWarning::LogInUse { lock, holder } => write!(
                f,
                "the log is served now by {holder} (it holds {}): `serve` refuses to start \
                 beside it",
                lock.display()
            ),
        }
    }
}

/// The outcome of one check.
#[derive(Debug)]
pub enum Outcome {
    /// Passed; what was found.
    Passed(String),
    /// Something that does not stop the attestor.
    Warned(StartWarning),
    /// What stops `serve`: the error, with its causes, as one line.
    Failed(String),
}

/// One check and its outcome.
#[derive(Debug)]
pub struct Finding {
    /// What was checked (`site CA`, `log database`, ...).
    pub check: &'static str,
    /// What came of it.
    pub outcome: Outcome,
}

/// Every finding, in the order the checks ran.
#[derive(Debug, Default)]
pub struct StartReport {
    findings: Vec<Finding>,
}

impl StartReport {
    /// The findings, in order.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &StartWarning> {
        self.findings.iter().filter_map(|f| match &f.outcome {
            Outcome::Warned(warning) => Some(warning),
            _ => None,
        })
    }

    /// How many checks failed (`serve` would refuse to start).
    pub fn failures(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| matches!(f.outcome, Outcome::Failed(_)))
            .count()
    }

    /// Logs each warning as one line (`serve`), but those the CA tick logs itself.
    pub fn log_warnings(&self) {
        for warning in self.warnings().filter(|w| !w.logged_by_ca_tick()) {
            tracing::warn!("{warning}");
        }
    }

    fn fail(&mut self, check: &'static str, error: &StartError) {
        self.push(check, Outcome::Failed(error_chain(error)));
    }

    fn pass(&mut self, check: &'static str, detail: String) {
        self.push(check, Outcome::Passed(detail));
    }

    fn warn(&mut self, check: &'static str, warning: StartWarning) {
        self.push(check, Outcome::Warned(warning));
    }

    /// Records `result` (passed with `detail`, or failed) and hands it back.
    fn check<T>(
        &mut self,
        check: &'static str,
        result: Result<T, StartError>,
        detail: impl FnOnce(&T) -> String,
    ) -> Result<T, StartError> {
        match &result {
            Ok(value) => self.pass(check, detail(value)),
            Err(e) => self.fail(check, e),
        }
        result
    }

    fn push(&mut self, check: &'static str, outcome: Outcome) {
        self.findings.push(Finding { check, outcome });
    }
}

/// What the checks loaded, for `serve`.
pub(crate) struct Started {
    pub site_ca: Arc<SiteCa>,
    pub ek_trust: EkTrust,
    pub log: AttestationLog,
    pub policy: PolicyService,
}

/// Every check `serve` makes before it serves, in order: the `[insecure]` switches, the site
/// CA (loaded, this site's, the lifetime rule; its shape, validity and chain; its key files),
/// the EK roots, the log (opened, writable, its files), the policy bundle (verified, against
/// the rollback floor, its name). `check-config` adds the serving lock, the log key and the
/// TLS configuration, which `serve` meets later on its way to serving. In [`Mode::Check`] the
/// log is closed again and the `Err` (if any) is only the first failure that ended the
/// checks: the report holds them all.
pub(crate) async fn startup_checks(
    config: &SiteConfig,
    clock: &Arc<dyn Clock>,
    mode: Mode,
    report: &mut StartReport,
) -> Result<Started, StartError> {
    let now = clock.now();
    for switch in config.insecure.enabled() {
        report.warn("insecure options", StartWarning::InsecureOption { switch });
    }
    if mode == Mode::Check {
        check_log_lock(config, report);
    }
    let site_ca = report.check("site CA", load_site_ca(config, mode), |ca| {
        describe_ca(config, ca, now)
    });
    if let Ok(ca) = &site_ca {
        site_ca_warnings(config, ca, now, report);
    }
    let site_ca = mode.stop_at(site_ca)?;
    let ek_trust = report.check("EK roots", crate::server::ek_trust(config), describe_ek);
    let ek_trust = mode.stop_at(ek_trust)?;
    let site_ca = Arc::new(site_ca?);
    if mode == Mode::Check {
        check_log_key(config, &site_ca.active(), report);
        check_tls(config, &site_ca, clock, report);
    }
    let opened = open_log(config, &site_ca, mode).await;
    let (log, _, others) = report.check("log database", opened, |(_, records, _)| {
        format!(
            "{}: opened, writable, {records} records",
            garrison_log::url_for_display(&config.database)
        )
    })?;
    if !others.is_empty() {
        report.warn("log database", StartWarning::OtherOrigins { others });
    }
    let mut secrets = vec![("log key", config.log_key.clone())];
    secrets.extend(
        ca_key_files(&config.ca_dir)
            .into_iter()
            .map(|k| ("site CA key", k)),
    );
    for warning in permission_warnings(&secrets, &config.database) {
        report.warn("file permissions", warning);
    }
    let policy = policy_in_force(config, &site_ca, &log, now, mode, report).await;
    if mode == Mode::Check {
        log.clone().close().await;
    }
    Ok(Started {
        policy: policy?,
        ek_trust: ek_trust?,
        site_ca,
        log,
    })
}

/// `check-config`: the report of [`startup_checks`] in [`Mode::Check`], and the addresses
/// `serve` would listen on (not bound here).
pub async fn check_config(config: &SiteConfig, clock: Arc<dyn Clock>) -> StartReport {
    let mut report = StartReport::default();
    // Every failure is in the report.
    let _ = startup_checks(config, &clock, Mode::Check, &mut report).await;
    report.pass(
        "listen",
        format!("{} (not bound by check-config)", config.listen),
    );
    if let Some(audit) = config.audit_listen {
        report.pass(
            "audit listen",
            format!("{audit} (not bound by check-config)"),
        );
    }
    report
}

/// The serving lock of the configured log ([`ServingLock`]): `serve` holds it while it runs.
pub fn serving_lock(config: &SiteConfig, holder: &str) -> Result<Option<ServingLock>, StartError> {
    ServingLock::acquire(&config.database, holder).map_err(|source| StartError::OpenLog {
        database: garrison_log::url_for_display(&config.database),
        source,
    })
}

fn load_site_ca(config: &SiteConfig, mode: Mode) -> Result<SiteCa, StartError> {
    match mode {
        Mode::Serve => crate::server::load_site_ca(config),
        // The same checks, without deleting retired keys.
        Mode::Check => crate::server::open_site_ca(config),
    }
}

fn describe_ca(config: &SiteConfig, ca: &SiteCa, now: OffsetDateTime) -> String {
    let state = ca.state();
    let validity = state.active.validity();
    format!(
        "{}: {} of site {}, valid until {} ({} left); lifetime {} >= 6 x max_svid_ttl {}",
        config.ca_dir.display(),
        state.active_name,
        config.site,
        Rfc3339Time(validity.not_after),
        human(validity.remaining(now).max(Duration::ZERO)),
        human(validity.lifetime()),
        human(config.max_svid_ttl),
    )
}

fn describe_ek(trust: &EkTrust) -> String {
    match trust {
        EkTrust::ManufacturerRoots(roots) => {
            format!("{} manufacturer CA certificate(s)", roots.len())
        }
        EkTrust::InsecureAllowListedEkHashes(hashes) => {
            format!("{} EK hashes allow-listed (no certificates)", hashes.len())
        }
        _ => "loaded".to_owned(),
    }
}

/// The site CA's shape, validity and chain, and its key files' permissions.
fn site_ca_warnings(
    config: &SiteConfig,
    ca: &SiteCa,
    now: OffsetDateTime,
    report: &mut StartReport,
) {
    let active = ca.active();
    if let Some(shape) = root_shape(&active) {
        let dir = config.ca_dir.clone();
        report.warn("site CA", StartWarning::RootShapedSiteCa { dir, shape });
    }
    let validity = active.validity();
    if now < validity.not_before {
        let not_before = validity.not_before;
        report.warn("site CA", StartWarning::CaNotYetValid { not_before });
    } else if now > validity.not_after {
        let not_after = validity.not_after;
        report.warn("site CA", StartWarning::CaExpired { not_after });
    } else {
        if let Some(fraction) = garrison_ca::lifecycle::budget_warning(validity, now) {
            let (not_after, left) = (validity.not_after, validity.remaining(now));
            let warning = StartWarning::CaNearExpiry {
                not_after,
                left,
                fraction,
            };
            report.warn("site CA", warning);
        }
        if let Err(problem) = ca.check_active_chain(now, &SystemRandom::new()) {
            let dir = config.ca_dir.clone();
            report.warn("site CA", StartWarning::ChainRefused { dir, problem });
        }
    }
}

/// How a CA looks like a root, if it does.
fn root_shape(ca: &Authority) -> Option<&'static str> {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    if ca
        .roots()
        .iter()
        .any(|root| root.as_slice() == ca.certificate())
    {
        return Some("it is one of the trust domain's roots");
    }
    let (_, cert) = X509Certificate::from_der(ca.certificate()).ok()?;
    if cert.subject() == cert.issuer() {
        return Some("self-signed");
    }
    garrison_ca::is_root_shaped(&cert).then_some("path length 2 or more, as a root has")
}

/// The site CA's key files: the provisioned one and every generation's under `rotation/`.
fn ca_key_files(ca_dir: &Path) -> Vec<PathBuf> {
    let mut keys = vec![ca_dir.join("key.pem")];
    if let Ok(entries) = std::fs::read_dir(ca_dir.join("rotation")) {
        keys.extend(entries.flatten().map(|e| e.path().join("key.pem")));
    }
    keys.retain(|key| key.is_file());
    keys.sort();
    keys
}

/// The files among `secrets` (what each is, and its path; missing ones are skipped) and an
/// SQLite log's files (the database, its -wal and -shm) that grant group or others any
/// access. The hub's start checks its own the same way.
pub fn permission_warnings(
    secrets: &[(&'static str, PathBuf)],
    database_url: &str,
) -> Vec<StartWarning> {
    let mut files = secrets.to_vec();
    if let Ok(Some(database)) = garrison_log::sqlite_file(database_url) {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = database.clone().into_os_string();
            name.push(suffix);
            files.push(("log database file", PathBuf::from(name)));
        }
    }
    files
        .into_iter()
        .filter_map(|(what, path)| {
            let mode = std::fs::metadata(&path).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then_some(StartWarning::OpenToOthers { what, path, mode })
        })
        .collect()
}

/// `check-config`: is another process serving the log? (`serve` takes the lock in
/// [`crate::server::run`] and holds it.)
fn check_log_lock(config: &SiteConfig, report: &mut StartReport) {
    match serving_lock(config, "garrison attestor check-config") {
        Ok(Some(lock)) => report.pass(
            "log lock",
            format!(
                "{}: free (held by serve while it runs)",
                lock.path().display()
            ),
        ),
        Ok(None) => report.pass(
            "log lock",
            "none: not an SQLite file (several processes may share this database)".to_owned(),
        ),
        Err(StartError::OpenLog {
            source: LogError::Locked { lock, holder, .. },
            ..
        }) => report.warn("log lock", StartWarning::LogInUse { lock, holder }),
        Err(e) => report.fail("log lock", &e),
    }
}

/// `check-config`: the log key loads (`serve` creates it, 0600, when missing).
fn check_log_key(config: &SiteConfig, ca: &Authority, report: &mut StartReport) {
    let path = &config.log_key;
    if !path.exists() {
        let detail = format!("{}: absent, created (0600) at first start", path.display());
        report.pass("log key", detail);
        return;
    }
    let origin = garrison_transparency::site_origin(ca.trust_domain().as_str(), &config.site);
    let loaded = crate::checkpoint::load_key(path, &origin).map_err(StartError::Checkpoint);
    let _ = report.check("log key", loaded, |key| {
        format!("{}: {}", path.display(), key.verifier_key())
    });
}

/// `check-config`: the attestor's own server SVID is issued and its TLS configurations built,
/// by the functions `serve` uses.
fn check_tls(
    config: &SiteConfig,
    ca: &Arc<SiteCa>,
    clock: &Arc<dyn Clock>,
    report: &mut StartReport,
) {
    let built = crate::server::attestor_identity(config, Arc::clone(ca), Arc::clone(clock))
        .and_then(|(identity, issuers)| {
            let tls_err = |e: crate::tls::TlsConfigError| StartError::Tls(e.to_string());
            crate::tls::rotating_server_config(identity.clone(), issuers, Arc::clone(clock))
                .map_err(tls_err)?;
            if config.audit_listen.is_some() {
                let roots = garrison_ca::certificates_to_pem(ca.active().roots());
                crate::tls::audit_server_config(identity, &roots, Arc::clone(clock))
                    .map_err(tls_err)?;
            }
            Ok(())
        });
    let _ = report.check("TLS", built, |()| {
        let audit = if config.audit_listen.is_some() {
            " and the Audit service's"
        } else {
            ""
        };
        format!(
            "server SVID spiffe://{}/site/{}/attestor issued; the server's TLS configuration{audit} built",
            ca.active().trust_domain().as_str(),
            config.site
        )
    });
}

/// The log, opened as `serve` opens it (created and migrated if need be) and proved
/// writable, and how many records it holds.
async fn open_log(
    config: &SiteConfig,
    ca: &SiteCa,
    mode: Mode,
) -> Result<(AttestationLog, u64, Vec<String>), StartError> {
    let origin =
        garrison_transparency::site_origin(ca.active().trust_domain().as_str(), &config.site);
    let (max_batch, max_connections) = match mode {
        Mode::Serve => (256, 8),
        Mode::Check => (1, 2),
    };
    let open_err = |source| StartError::OpenLog {
        database: garrison_log::url_for_display(&config.database),
        source,
    };
    let log = AttestationLog::open(&garrison_log::LogConfig {
        url: config.database.clone(),
        origin: Some(origin.clone()),
        max_batch,
        max_connections,
    })
    .await
    .map_err(open_err)?;
    if mode == Mode::Serve {
        log.set_commit_window(config.log_commit_window);
    }
    let checked = match log.check_writable().await {
        Ok(()) => log.tree_size().await,
        Err(e) => Err(e),
    };
    // A renamed site or trust domain opens a new log beside the old one.
    let checked = match checked {
        Ok(records) => log.origins().await.map(|origins| {
            let others = origins.into_iter().filter(|o| *o != origin).collect();
            (records, others)
        }),
        Err(e) => Err(e),
    };
    match checked {
        Ok((records, others)) => Ok((log, records, others)),
        Err(e) => {
            log.close().await;
            Err(open_err(e))
        }
    }
}

/// The policy bundle put in force (`serve`) or assessed (`check-config`), and a warning for
/// an insecure one.
async fn policy_in_force(
    config: &SiteConfig,
    ca: &SiteCa,
    log: &AttestationLog,
    now: OffsetDateTime,
    mode: Mode,
    report: &mut StartReport,
) -> Result<PolicyService, StartError> {
    if mode == Mode::Serve {
        // A restart after the CA expired with a successor certified meanwhile (an install
        // while the attestor was down): put it in force before anything is issued.
        ca.tick(log, now).await;
    }
    let policy = crate::server::start_policy(config, &ca.active(), log, now, mode).await;
    let policy = report.check("policy", policy, |policy| {
        let info = policy.current().info().clone();
        format!(
            "{}: {:?} #{} signed by {}, verified against the roots and the rollback floor",
            config.policy_bundle.display(),
            info.name,
            info.sequence,
            info.signer
        )
    })?;
    let info = policy.current().info().clone();
    if info.name.to_ascii_lowercase().contains("insecure") {
        let warning = StartWarning::InsecurePolicy {
            name: info.name,
            sequence: info.sequence,
        };
        report.warn("policy", warning);
    }
    Ok(policy)
}

/// A time as RFC 3339, for operators.
struct Rfc3339Time(OffsetDateTime);

impl fmt::Display for Rfc3339Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self
            .0
            .format(&time::format_description::well_known::Rfc3339)
        {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "{}", self.0),
        }
    }
}

/// An error and its causes, on one line (a cause that only repeats the end of the text so
/// far, as sqlx's database errors do, is left out).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
