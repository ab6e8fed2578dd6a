//! The attestor under test: a testbed site (CAs, signed strict policy) whose EK roots are the
//! load generator's EK CA, served by `garrison attestor serve` as a child process (so its CPU
//! time and peak RSS can be read from /proc) or, for the smoke test, inside this process on
//! its own runtime threads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use garrison_attestor::{SiteConfig, SystemClock};
use garrison_testbed::Site;
use time::OffsetDateTime;

use crate::identity::EkCa;

/// Thread-name prefix of the in-process attestor's runtime (what its CPU time is summed over).
const IN_PROCESS_THREAD: &str = "attestor";
/// The start of the name sqlx gives each SQLite connection's thread (`sqlx-sqlite-worker-N`,
/// cut to 15 bytes by the kernel).
const SQLITE_THREAD: &str = "sqlx-sqlite";

/// A site directory ready to serve.
#[derive(Debug)]
pub struct SiteFiles {
    /// `site.toml`.
    pub config: PathBuf,
    /// The address it listens on.
    pub listen: SocketAddr,
    /// The trust bundle (root certificate), PEM.
    pub bundle_pem: Vec<u8>,
    /// The attestor's SPIFFE ID.
    pub attestor_id: String,
    /// The site CA directory (for the in-process crypto floor).
    pub site_ca_dir: PathBuf,
}

/// Create the site under `dir`: testbed CAs and strict policy, `ek_ca` as the only EK root,
/// `database` for the log, and `extra` TOML lines appended to `site.toml`.
pub fn create_site(
    dir: &Path,
    ek_ca: &EkCa,
    database: Option<&str>,
    extra: &str,
    now: OffsetDateTime,
) -> Result<SiteFiles> {
    let site = Site::create(dir, now).context("creating the testbed site")?;
    let listen = garrison_testbed::free_local_address()?;
    let ek_root = "ek-roots/loadgen-ek-ca.pem";
    write(&dir.join(ek_root), ek_ca.certificate_pem())?;
    let default_db = format!("sqlite://{}", dir.join("log.db").display());
    let toml = format!(
        "# Site attestor configuration written by garrison-loadgen.\n\
         site = \"{site_name}\"\nlisten = \"{listen}\"\nca_dir = \"ca/site\"\n\
         database = \"{db}\"\nek_roots = [\"{ek_root}\"]\n\
         policy_bundle = \"policy/strict.bundle\"\nmax_svid_ttl = \"1h\"\n{extra}\n",
        site_name = garrison_testbed::SITE,
        db = database.unwrap_or(&default_db),
    );
    let config = dir.join("site.toml");
    write(&config, toml)?;
    let bundle_pem = std::fs::read(site.bundle_pem()).context("reading the trust bundle")?;
    Ok(SiteFiles {
        config,
        listen,
        bundle_pem,
        attestor_id: site.attestor_id(),
        site_ca_dir: dir.join("ca/site"),
    })
}

/// A site made earlier by [`create_site`] (with `--site-dir`), served by an attestor this
/// process did not start, listening on `listen`.
pub fn open_site(dir: &Path, listen: SocketAddr) -> Result<SiteFiles> {
    let config = dir.join("site.toml");
    if !config.is_file() {
        bail!(
            "{} is not a prepared site (no site.toml): run `garrison-loadgen --prepare-only --site-dir {}` first",
            dir.display(),
            dir.display()
        );
    }
    let bundle_pem =
        std::fs::read(dir.join("ca/root/cert.pem")).context("reading the trust bundle")?;
    Ok(SiteFiles {
        config,
        listen,
        bundle_pem,
        attestor_id: format!(
            "spiffe://{}/site/{}/attestor",
            garrison_testbed::TRUST_DOMAIN,
            garrison_testbed::SITE
        ),
        site_ca_dir: dir.join("ca/site"),
    })
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// A running attestor whose resource use can be read.
#[derive(Debug)]
pub enum Attestor {
    /// `garrison attestor serve` as a child process.
    Child(Child),
    /// Served inside this process; stopped by dropping the sender.
    InProcess {
        /// Dropping it shuts the server down.
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        /// The server's thread.
        thread: Option<std::thread::JoinHandle<()>>,
    },
    /// Somebody else's attestor: nothing to measure.
    External,
}

impl Attestor {
    /// Start `garrison attestor serve --config <config>`, its output going to `log`.
    pub fn spawn_child(garrison: &Path, config: &Path, log: &Path) -> Result<Self> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file")?;
        let child = Command::new(garrison)
            .args(["attestor", "serve", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", garrison.display()))?;
        Ok(Attestor::Child(child))
    }

    /// Serve `config` inside this process on a dedicated 2-thread runtime.
    pub fn spawn_in_process(config: &Path) -> Result<Self> {
        let config = SiteConfig::load(config).context("loading site.toml")?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(IN_PROCESS_THREAD)
            .enable_all()
            .build()
            .context("attestor runtime")?;
        let thread = std::thread::Builder::new()
            .name(IN_PROCESS_THREAD.to_owned())
            .spawn(move || {
                let shutdown = async {
                    let _ = stopped.await;
                };
                let served = runtime.block_on(garrison_attestor::server::run(
                    config,
                    Arc::new(SystemClock),
                    shutdown,
                ));
                if let Err(e) = served {
                    eprintln!("in-process attestor stopped: {e:#}");
                }
            })
            .context("attestor thread")?;
        Ok(Attestor::InProcess {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Wait until `listen` accepts TCP connections (or the child died).
    pub fn wait_ready(&mut self, listen: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if std::net::TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Attestor::Child(child) = self
                && let Some(status) = child.try_wait().context("polling the attestor")?
            {
                bail!("the attestor exited during start-up: {status}");
            }
            if Instant::now() > deadline {
                bail!("the attestor did not listen on {listen} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// CPU time (user + system) the attestor has used so far, in clock ticks, if known.
    pub fn cpu_ticks(&self) -> Option<u64> {
        match self {
            Attestor::Child(child) => crate::procfs::process_cpu_ticks(child.id()),
            Attestor::InProcess { .. } => crate::procfs::own_threads_cpu_ticks(|name| {
                name.starts_with(IN_PROCESS_THREAD) || name.starts_with(SQLITE_THREAD)
            }),
            Attestor::External => None,
        }
    }

    /// CPU time the attestor's SQLite connection threads have used so far, in clock ticks:
    /// every statement on the attestation log (appends, commits, WAL checkpoints, node-state
    /// reads) runs on one of them (sqlx runs each SQLite connection on its own thread). With
    /// PostgreSQL the statements run in the server, so this is about zero.
    pub fn sqlite_cpu_ticks(&self) -> Option<u64> {
        let sqlite = |name: &str| name.starts_with(SQLITE_THREAD);
        match self {
            Attestor::Child(child) => {
                crate::procfs::threads_cpu_ticks(&child.id().to_string(), sqlite)
            }
            Attestor::InProcess { .. } => crate::procfs::own_threads_cpu_ticks(sqlite),
            Attestor::External => None,
        }
    }

    /// CPU time (user + system) this process has used so far apart from the attestor's
    /// threads when it runs in-process: the generator's own cost, in clock ticks.
    pub fn generator_cpu_ticks(&self) -> Option<u64> {
        let own = crate::procfs::process_cpu_ticks(std::process::id())?;
        match self {
            Attestor::InProcess { .. } => Some(own.saturating_sub(self.cpu_ticks()?)),
            Attestor::Child(_) | Attestor::External => Some(own),
        }
    }

    /// Peak resident set size (VmHWM) in KiB, if known. In-process it is the whole
    /// process's (load generator included).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        match self {
            Attestor::Child(child) => crate::procfs::peak_rss_kib(&child.id().to_string()),
            Attestor::InProcess { .. } => crate::procfs::peak_rss_kib("self"),
            Attestor::External => None,
        }
    }

    /// Stop the attestor and wait for it.
    pub fn stop(&mut self) {
        match self {
            Attestor::Child(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Attestor::InProcess { stop, thread } => {
                drop(stop.take());
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
            Attestor::External => {}
        }
    }
}

impl Drop for Attestor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `garrison` next to this executable (target/<profile>/), or in its parent (this is a test
/// binary in target/<profile>/deps/).
pub fn locate_garrison() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = exe.parent().context("executable without a directory")?;
    for candidate in [dir.join("garrison"), dir.join("../garrison")] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no `garrison` binary next to {} (build it: cargo build --release -p garrison), \
         or pass --garrison-bin, --in-process or --attestor",
        exe.display()
    )
}
