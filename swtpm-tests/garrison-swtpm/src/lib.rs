//! Provisions and runs one private software TPM (swtpm) for tests and the demo.
//!
//! Each [`Swtpm`] owns everything it uses: its own state directory (a temporary directory by
//! default), its own local CA (written by `swtpm_setup`/`swtpm_localca` into that directory,
//! never into `/var/lib/swtpm-localca` or `/etc`), and its own pair of free TCP ports on
//! 127.0.0.1. Tests can therefore run in parallel without locks or shared state.
//!
//! The swtpm process is killed when the [`Swtpm`] is dropped. [`Swtpm::restart`] keeps the
//! state directory, so it plays the part of a reboot (the TPM's resetCount goes up).
//!
//! This crate must never be used to attest a real node: an swtpm and its local CA prove
//! nothing about hardware. It must never touch system-wide swtpm configuration or state.
#![forbid(unsafe_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Attempts at finding a free port pair and starting swtpm on it.
const START_ATTEMPTS: usize = 8;
/// Poll interval while waiting for swtpm to answer on its control port.
const READY_POLL: Duration = Duration::from_millis(10);
/// swtpm control-channel command `CMD_GET_CAPABILITY` (big-endian u32 on the wire).
const CMD_GET_CAPABILITY: u32 = 1;
/// Name swtpm_localca gives the self-signed root it creates next to `signingkey`.
const LOCALCA_ROOT_CERT: &str = "swtpm-localca-rootca-cert.pem";
/// Our name for the intermediate (`issuercert` in swtpm-localca.conf) that signs EK certs.
const LOCALCA_ISSUER_CERT: &str = "issuercert.pem";
/// TPM state file swtpm writes for a TPM 2.0; its presence means "already provisioned".
const TPM2_PERMANENT_STATE: &str = "tpm2-00.permall";

/// What can go wrong while provisioning, starting or stopping an swtpm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwtpmError {
    /// The temporary or kept state directory could not be created.
    #[error("cannot create swtpm state directory {path}")]
    CreateStateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A private swtpm_setup / swtpm_localca configuration file could not be written.
    #[error("cannot write swtpm configuration file {path}")]
    WriteConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `swtpm_setup` could not be executed at all.
    #[error("cannot run {program}")]
    RunSetup {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `swtpm_setup` ran and failed; `output` is its stdout and stderr.
    #[error("swtpm_setup failed with {status}: {output}")]
    Setup { status: ExitStatus, output: String },
    /// No pair of free consecutive ports could be reserved on 127.0.0.1.
    #[error("cannot reserve a free port pair on 127.0.0.1")]
    ReservePorts {
        #[source]
        source: std::io::Error,
    },
    /// The swtpm process could not be spawned.
    #[error("cannot spawn {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// swtpm exited during start-up on every attempt; `log` is its last log output.
    #[error("swtpm exited during start-up ({status}) after {attempts} attempts: {log}")]
    ExitedAtStart {
        status: ExitStatus,
        attempts: usize,
        log: String,
    },
    /// swtpm kept running but did not answer on its control port in time.
    #[error("swtpm did not answer on control port {ctrl_port} within {waited:?}")]
    NotReady { ctrl_port: u16, waited: Duration },
    /// Waiting for or killing the swtpm process failed.
    #[error("cannot stop swtpm (pid {pid})")]
    Stop {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    /// A local CA certificate could not be read from the state directory.
    #[error("cannot read local CA certificate {path}")]
    ReadCaCertificate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the swtpm keeps its state and local CA.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StateLocation {
    /// A fresh temporary directory, removed when the [`Swtpm`] is dropped (tests).
    #[default]
    Temp,
    /// A directory that outlives the process (the demo). If it already holds a provisioned
    /// TPM and local CA, they are reused; otherwise it is provisioned.
    KeepDir(PathBuf),
}

/// How to provision and run the swtpm. `Default` uses the Debian binaries from `PATH`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SwtpmOptions {
    /// Where state and the local CA live.
    pub state: StateLocation,
    /// The `swtpm` binary.
    pub swtpm: PathBuf,
    /// The `swtpm_setup` binary.
    pub swtpm_setup: PathBuf,
    /// The `swtpm_localca` binary, written into the private swtpm_setup.conf (absolute path).
    pub swtpm_localca: PathBuf,
    /// The `swtpm_ioctl` binary, used for an orderly shutdown in [`Swtpm::stop`].
    pub swtpm_ioctl: PathBuf,
    /// How long to wait for swtpm to answer after it is spawned.
    pub start_timeout: Duration,
}

impl Default for SwtpmOptions {
    fn default() -> Self {
        Self {
            state: StateLocation::Temp,
            swtpm: PathBuf::from("swtpm"),
            swtpm_setup: PathBuf::from("swtpm_setup"),
            swtpm_localca: PathBuf::from("/usr/bin/swtpm_localca"),
            swtpm_ioctl: PathBuf::from("swtpm_ioctl"),
            start_timeout: Duration::from_secs(10),
        }
    }
}

impl SwtpmOptions {
    /// Default options with the state kept under `dir` (see [`StateLocation::KeepDir`]).
    pub fn keep_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            state: StateLocation::KeepDir(dir.into()),
            ..Self::default()
        }
    }
}

/// The directory tree one swtpm owns.
#[derive(Debug)]
enum StateRoot {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl StateRoot {
    fn path(&self) -> &Path {
        match self {
            Self::Temp(dir) => dir.path(),
            Self::Kept(path) => path,
        }
    }
}

/// A running (or stopped, between [`Swtpm::stop`] and [`Swtpm::restart`]) private swtpm.
#[derive(Debug)]
pub struct Swtpm {
    options: SwtpmOptions,
    root: StateRoot,
    child: Option<Child>,
    port: u16,
}

impl Swtpm {
    /// Provisions the TPM (EK certificates from a private local CA, sha256 PCR bank, NV
    /// locked) unless a kept directory is already provisioned, then starts swtpm on free
    /// ports and waits until it answers.
    pub fn start(options: &SwtpmOptions) -> Result<Self, SwtpmError> {
        let root = create_root(&options.state)?;
        let layout = Layout::new(root.path());
        layout.write_configs(options)?;
        if !layout.is_provisioned() {
            layout.provision(options)?;
        }
        let mut swtpm = Self {
            options: options.clone(),
            root,
            child: None,
            port: 0,
        };
        swtpm.spawn_on_free_ports(None)?;
        Ok(swtpm)
    }

    /// TCTI configuration string for this TPM, e.g. `swtpm:host=127.0.0.1,port=40123`.
    /// The port can change across [`Swtpm::restart`]: read it again afterwards.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// TPM command port (the control port is `port() + 1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding `tpm/` (swtpm state), `localca/` (the local CA) and configs.
    pub fn state_dir(&self) -> &Path {
        self.root.path()
    }

    /// The swtpm process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// PEM of the local CA that issued the EK certificates: the intermediate (issuer of the
    /// EK certificates) followed by the self-signed root. The verifier uses the root as the
    /// manufacturer trust anchor and the intermediate as chain.
    pub fn manufacturer_ca_pem(&self) -> Result<String, SwtpmError> {
        let mut pem = self.manufacturer_intermediate_pem()?;
        pem.push_str(&self.manufacturer_root_pem()?);
        Ok(pem)
    }

    /// PEM of the self-signed local CA root (`localca/swtpm-localca-rootca-cert.pem`).
    pub fn manufacturer_root_pem(&self) -> Result<String, SwtpmError> {
        read_pem(&Layout::new(self.state_dir()).ca_dir.join(LOCALCA_ROOT_CERT))
    }

    /// PEM of the local CA intermediate that signs EK certificates (`localca/issuercert.pem`).
    pub fn manufacturer_intermediate_pem(&self) -> Result<String, SwtpmError> {
        read_pem(
            &Layout::new(self.state_dir())
                .ca_dir
                .join(LOCALCA_ISSUER_CERT),
        )
    }

    /// Orderly shutdown through the control channel (TPM state is saved), falling back to a
    /// kill if swtpm does not exit within a second. State is kept; see [`Swtpm::restart`].
    pub fn stop(&mut self) -> Result<(), SwtpmError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let ctrl = format!("127.0.0.1:{}", self.port.saturating_add(1));
        // An orderly shutdown is best effort: the kill below is the guarantee.
        let _ = Command::new(&self.options.swtpm_ioctl)
            .args(["--tcp", &ctrl, "-s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            thread::sleep(READY_POLL);
        }
        kill_child(&mut child)
    }

    /// Kills swtpm at once, like pulling the power cord. State on disk is kept.
    pub fn kill(&mut self) -> Result<(), SwtpmError> {
        match self.child.take() {
            Some(mut child) => kill_child(&mut child),
            None => Ok(()),
        }
    }

    /// Stops swtpm if running and starts it again on the same state (a reboot). Tries the
    /// previous ports first; if they were taken meanwhile, new ones are picked.
    pub fn restart(&mut self) -> Result<(), SwtpmError> {
        self.stop()?;
        let previous = self.port;
        self.spawn_on_free_ports(Some(previous))
    }

    fn spawn_on_free_ports(&mut self, preferred: Option<u16>) -> Result<(), SwtpmError> {
        let mut last_exit = None;
        for attempt in 0..START_ATTEMPTS {
            let port = match preferred.filter(|_| attempt == 0) {
                Some(port) => port,
                None => reserve_port_pair()?,
            };
            match self.spawn_and_wait(port)? {
                None => return Ok(()),
                Some(status) => last_exit = Some(status),
            }
        }
        Err(SwtpmError::ExitedAtStart {
            status: last_exit.unwrap_or_default(),
            attempts: START_ATTEMPTS,
            log: Layout::new(self.state_dir()).log_tail(),
        })
    }

    /// Spawns swtpm on `port`/`port + 1`. `Ok(Some(status))` means it exited at start-up
    /// (usually: a port was taken after we released it), and the caller should retry.
    fn spawn_and_wait(&mut self, port: u16) -> Result<Option<ExitStatus>, SwtpmError> {
        let layout = Layout::new(self.state_dir());
        let mut child = layout.spawn_swtpm(&self.options.swtpm, port)?;
        let ctrl_port = port.saturating_add(1);
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(Some(status));
            }
            if ctrl_answers(ctrl_port) {
                self.child = Some(child);
                self.port = port;
                return Ok(None);
            }
            if started.elapsed() > self.options.start_timeout {
                let _ = kill_child(&mut child);
                return Err(SwtpmError::NotReady {
                    ctrl_port,
                    waited: started.elapsed(),
                });
            }
            thread::sleep(READY_POLL);
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill_child(&mut child);
        }
    }
}

/// File names inside one swtpm's state root.
struct Layout {
    tpm_dir: PathBuf,
    ca_dir: PathBuf,
    setup_conf: PathBuf,
    localca_conf: PathBuf,
    localca_options: PathBuf,
    log: PathBuf,
    stderr: PathBuf,
}

impl Layout {
    fn new(root: &Path) -> Self {
        Self {
            tpm_dir: root.join("tpm"),
            ca_dir: root.join("localca"),
            setup_conf: root.join("swtpm_setup.conf"),
            localca_conf: root.join("swtpm-localca.conf"),
            localca_options: root.join("swtpm-localca.options"),
            log: root.join("swtpm.log"),
            stderr: root.join("swtpm.stderr"),
        }
    }

    fn is_provisioned(&self) -> bool {
        self.tpm_dir.join(TPM2_PERMANENT_STATE).is_file()
            && self.ca_dir.join(LOCALCA_ISSUER_CERT).is_file()
    }

    /// Writes private swtpm_setup.conf, swtpm-localca.conf and swtpm-localca.options that
    /// point every CA file into `localca/`. swtpm_localca creates the root CA
    /// (`swtpm-localca-rootca-*.pem`) next to `signingkey` on first use.
    fn write_configs(&self, options: &SwtpmOptions) -> Result<(), SwtpmError> {
        create_dir(&self.tpm_dir)?;
        create_dir(&self.ca_dir)?;
        let ca = self.ca_dir.display();
        let localca = format!(
            "statedir = {ca}\nsigningkey = {ca}/signkey.pem\n\
             issuercert = {ca}/{LOCALCA_ISSUER_CERT}\ncertserial = {ca}/certserial\n"
        );
        write_file(&self.localca_conf, &localca)?;
        let localca_options = "--platform-manufacturer Garrison\n\
                               --platform-version 2.1\n--platform-model swtpm\n";
        write_file(&self.localca_options, localca_options)?;
        let setup = format!(
            "create_certs_tool = {}\ncreate_certs_tool_config = {}\n\
             create_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
            options.swtpm_localca.display(),
            self.localca_conf.display(),
            self.localca_options.display()
        );
        write_file(&self.setup_conf, &setup)
    }

    fn provision(&self, options: &SwtpmOptions) -> Result<(), SwtpmError> {
        let output = Command::new(&options.swtpm_setup)
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(&self.tpm_dir)
            .args(["--create-ek-cert", "--create-platform-cert", "--lock-nvram"])
            .args(["--pcr-banks", "sha256", "--overwrite", "--config"])
            .arg(&self.setup_conf)
            // Keep swtpm tools away from the user's ~/.config.
            .env("XDG_CONFIG_HOME", &self.ca_dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| SwtpmError::RunSetup {
                program: options.swtpm_setup.clone(),
                source,
            })?;
        if output.status.success() {
            return Ok(());
        }
        Err(SwtpmError::Setup {
            status: output.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }

    fn spawn_swtpm(&self, program: &Path, port: u16) -> Result<Child, SwtpmError> {
        let spawn_error = |source| SwtpmError::Spawn {
            program: program.to_path_buf(),
            source,
        };
        let stderr = fs::File::create(&self.stderr).map_err(spawn_error)?;
        Command::new(program)
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", self.tpm_dir.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!(
                "type=tcp,port={},bindaddr=127.0.0.1",
                port.saturating_add(1)
            ))
            .args(["--flags", "not-need-init,startup-clear", "--log"])
            .arg(format!("file={}", self.log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(spawn_error)
    }

    /// The end of swtpm's log and stderr, for error messages.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        for path in [&self.log, &self.stderr] {
            if let Ok(content) = fs::read_to_string(path) {
                text.push_str(&content);
            }
        }
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or_default().trim().to_owned()
    }
}

fn create_root(state: &StateLocation) -> Result<StateRoot, SwtpmError> {
    match state {
        StateLocation::Temp => tempfile::Builder::new()
            .prefix("garrison-swtpm-")
            .tempdir()
            .map(StateRoot::Temp)
            .map_err(|source| SwtpmError::CreateStateDir {
                path: std::env::temp_dir(),
                source,
            }),
        StateLocation::KeepDir(path) => {
            create_dir(path)?;
            Ok(StateRoot::Kept(path.clone()))
        }
    }
}

fn create_dir(path: &Path) -> Result<(), SwtpmError> {
    fs::create_dir_all(path).map_err(|source| SwtpmError::CreateStateDir {
        path: path.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, content: &str) -> Result<(), SwtpmError> {
    fs::write(path, content).map_err(|source| SwtpmError::WriteConfig {
        path: path.to_path_buf(),
        source,
    })
}

fn read_pem(path: &Path) -> Result<String, SwtpmError> {
    fs::read_to_string(path).map_err(|source| SwtpmError::ReadCaCertificate {
        path: path.to_path_buf(),
        source,
    })
}

/// Finds a port P such that P and P + 1 are both free on 127.0.0.1, by binding both and
/// releasing them. Another process can still grab them before swtpm binds; the caller
/// retries when swtpm exits at start-up.
fn reserve_port_pair() -> Result<u16, SwtpmError> {
    let mut last_error = None;
    for _ in 0..64 {
        let first = bind_localhost(0).map_err(|source| SwtpmError::ReservePorts { source })?;
        let port = first
            .local_addr()
            .map_err(|source| SwtpmError::ReservePorts { source })?
            .port();
        let Some(next) = port.checked_add(1) else {
            continue;
        };
        match bind_localhost(next) {
            Ok(_second) => return Ok(port),
            Err(error) => last_error = Some(error),
        }
    }
    Err(SwtpmError::ReservePorts {
        source: last_error.unwrap_or_else(|| std::io::Error::other("no port pair found")),
    })
}

fn bind_localhost(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// True if something on `ctrl_port` answers swtpm's `CMD_GET_CAPABILITY` with success.
/// Checking the answer (not just the connect) makes sure the port is ours, not a stranger's.
fn ctrl_answers(ctrl_port: u16) -> bool {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, ctrl_port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .is_err()
        || stream.write_all(&CMD_GET_CAPABILITY.to_be_bytes()).is_err()
    {
        return false;
    }
    let mut answer = [0u8; 8];
    stream.read_exact(&mut answer).is_ok() && answer.starts_with(&[0, 0, 0, 0])
}

fn kill_child(child: &mut Child) -> Result<(), SwtpmError> {
    let pid = child.id();
    if let Ok(Some(_)) = child.try_wait() {
        return Ok(());
    }
    child
        .kill()
        .and_then(|()| child.wait())
        .map(drop)
        .map_err(|source| SwtpmError::Stop { pid, source })
}
