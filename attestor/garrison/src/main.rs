//! `garrison`: the Garrison server and operator CLI.
//!
//! `main` parses arguments into typed commands and hands them to the command modules; all
//! trust decisions live in the library crates.
#![forbid(unsafe_code)]

/// `println!` that ends the process quietly when stdout is closed (`garrison … | head`):
/// std's panics on a broken pipe. Defined before the modules so that they use it.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($arg)*) {
            crate::stdout_failed(&e);
        }
    }};
}

/// `print!`, likewise.
macro_rules! print {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = write!(out, $($arg)*) {
            crate::stdout_failed(&e);
        }
    }};
}

/// Nobody reads stdout any more: exit at once, as a command in a pipeline does (status 0 for a
/// closed pipe, 1 for any other failure to write).
fn stdout_failed(error: &std::io::Error) -> ! {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("garrison: writing to stdout: {error}");
    std::process::exit(1);
}

mod attestor_cmd;
mod audit_cmd;
mod audit_remote;
mod ca_cmd;
mod doc_cmd;
mod duration;
mod evidence_cmd;
mod hub_cmd;
mod log_cmd;
mod node_cmd;
mod outdir;
mod policy_cmd;
mod site_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Garrison: zero-trust enrollment and attestation for edge fleets.
#[derive(Debug, Parser)]
#[command(name = "garrison", version, about, propagate_version = true)]
struct Cli {
    /// Log lines on stderr as `text` (colour only on a terminal) or `json` (one object per
    /// line). Default: $GARRISON_LOG_FORMAT, else text. Filter with RUST_LOG (default info).
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<garrison_ops::logging::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Certificate authority: root, intermediates, SVIDs, bundles, inspection.
    #[command(subcommand)]
    Ca(ca_cmd::CaCommand),
    /// TPM evidence: event logs and quotes, checked with the attestor's verifier.
    #[command(subcommand)]
    Evidence(evidence_cmd::EvidenceCommand),
    /// Site attestor: enrollment and renewal service.
    #[command(subcommand)]
    Attestor(attestor_cmd::AttestorCommand),
    /// The hub: serve sites, import and export air-gap files, publish policy, see alarms.
    #[command(subcommand)]
    Hub(hub_cmd::HubCommand),
    /// A site's side of air-gap sync: export its log, import what the hub wrote for it.
    #[command(subcommand)]
    Site(site_cmd::SiteCommand),
    /// Attestation log: query records.
    #[command(subcommand)]
    Log(log_cmd::LogCommand),
    /// The auditor's view of an attestation log: query, verify, prove, export.
    #[command(subcommand)]
    Audit(Box<audit_cmd::AuditCommand>),
    /// Nodes: list, show, revoke (at a site or the hub), reset after TPM2_Clear.
    #[command(subcommand)]
    Node(node_cmd::NodeCommand),
    /// Admission policy: test case files, evaluate, sign and verify bundles, draft allow-lists.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Print a shell completion script for garrison (e.g. `garrison completions bash >
    /// /usr/share/bash-completion/completions/garrison`).
    Completions {
        /// The shell.
        shell: garrison_docgen::Shell,
    },
    /// Write the man pages, one per command and subcommand (garrison.1,
    /// garrison-attestor-serve.1, ...).
    Man {
        /// Directory to write them into (created if missing), e.g. /usr/local/share/man/man1.
        #[arg(long)]
        out_dir: std::path::PathBuf,
    },
    /// Print the reference of site.toml and hub.toml (Markdown), generated from the code; with
    /// `garrison-agent config-reference` it makes docs/configuration.md.
    ConfigReference,
}

/// Run an async command on a multi-threaded runtime (only the commands that need one).
fn block_on(future: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)?
        .block_on(future)
}

fn main() -> ExitCode {
    garrison_spiffe_tls::install_ring_provider();
    let cli = Cli::parse();
    garrison_ops::logging::init(None, cli.log_format);
    let result = match cli.command {
        Command::Ca(command) => ca_cmd::run(command),
        Command::Evidence(command) => match evidence_cmd::run(command) {
            Ok(true) => Ok(()),
            // The evidence was read and refused: the report already says which check failed.
            Ok(false) => return ExitCode::FAILURE,
            Err(err) => Err(err),
        },
        Command::Policy(command) => policy_cmd::run(command),
        Command::Attestor(command) => block_on(attestor_cmd::run(command)),
        Command::Log(command) => block_on(log_cmd::run(command)),
        Command::Audit(command) => {
            let mut ok = true;
            match block_on(async {
                ok = audit_cmd::run(*command).await?;
                Ok(())
            }) {
                Ok(()) if !ok => return ExitCode::FAILURE,
                other => other,
            }
        }
        Command::Node(command) => block_on(node_cmd::run(command)),
        Command::Hub(command) => block_on(hub_cmd::run(command)),
        Command::Site(command) => block_on(site_cmd::run(command)),
        Command::Completions { shell } => {
            doc_cmd::completions(<Cli as clap::CommandFactory>::command(), shell);
            Ok(())
        }
        Command::Man { out_dir } => {
            doc_cmd::man_pages(<Cli as clap::CommandFactory>::command(), &out_dir)
        }
        Command::ConfigReference => doc_cmd::config_reference(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
