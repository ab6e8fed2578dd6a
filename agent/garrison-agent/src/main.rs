//! `garrison-agent`: parses the command line and configuration, sets up logging and
//! signals, and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use garrison_agent::{AgentConfig, AgentError, error_chain};

/// Garrison node agent: enrolls this node with its TPM and keeps its SPIFFE SVID fresh.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log filter (tracing syntax, e.g. `info` or `garrison_agent=debug`). Overrides RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log lines on stderr as `text` (colour only on a terminal) or `json` (one object per
    /// line). Default: $GARRISON_LOG_FORMAT, else text.
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<garrison_ops::logging::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enroll (unless a valid SVID is on disk), then renew around half-life until SIGTERM/SIGINT.
    Run {
        /// Agent configuration (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Enroll once, write the SVID files, print the SPIFFE ID, expiry and log sequence.
    Enroll {
        /// Required: this command never loops (use `run` for that).
        #[arg(long, required = true)]
        once: bool,
        /// Agent configuration (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Attempts for transient failures (unreachable attestor, busy TPM). Refusals stop at once.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        attempts: u32,
    },
    /// Renew once over mTLS with the current SVID and a fresh quote by the enrolled AK, write
    /// the new SVID files, print the SPIFFE ID, expiry and log sequence. One attempt.
    Renew {
        /// Required: this command never loops (use `run` for that).
        #[arg(long, required = true)]
        once: bool,
        /// Agent configuration (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Print a shell completion script for garrison-agent (e.g. `garrison-agent completions
    /// bash > /usr/share/bash-completion/completions/garrison-agent`).
    Completions {
        /// The shell.
        shell: garrison_docgen::Shell,
    },
    /// Write the man pages, one per command (garrison-agent.1, garrison-agent-run.1, ...).
    Man {
        /// Directory to write them into (created if missing), e.g. /usr/local/share/man/man1.
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Print the reference of agent.toml (Markdown), generated from the code: the last part
    /// of docs/configuration.md.
    ConfigReference,
}

/// Exit status when the attestor refused the node (the reason code is printed).
const EXIT_REFUSED: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Documentation from the code: no logging, no runtime, no configuration.
    if let Some(status) = print_docs(&cli.command) {
        return status;
    }
    garrison_ops::logging::init(cli.log_level.as_deref(), cli.log_format);
    garrison_spiffe_tls::install_ring_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("garrison-agent: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(dispatch(cli.command))
}

/// Runs the documentation commands (`completions`, `man`, `config-reference`); `None` for
/// the others.
fn print_docs(command: &Command) -> Option<ExitCode> {
    let result = match command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            garrison_docgen::completions(
                <Cli as clap::CommandFactory>::command(),
                *shell,
                &mut script,
            );
            write_stdout(&script)
        }
        Command::Man { out_dir } => {
            garrison_docgen::man_pages(<Cli as clap::CommandFactory>::command(), out_dir)
                .map_err(|error| format!("writing man pages into {}: {error}", out_dir.display()))
                .and_then(|pages| {
                    let said = format!(
                        "{} man pages written to {}\n",
                        pages.len(),
                        out_dir.display()
                    );
                    write_stdout(said.as_bytes())
                })
        }
        Command::ConfigReference => {
            garrison_docgen::config_reference("agent.toml", &AgentConfig::file_schema())
                .map_err(|error| error.to_string())
                .and_then(|reference| write_stdout(reference.as_bytes()))
        }
        Command::Run { .. } | Command::Enroll { .. } | Command::Renew { .. } => return None,
    };
    Some(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("garrison-agent: {error}");
            ExitCode::FAILURE
        }
    })
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("writing to stdout: {error}"))
        }
        _ => Ok(()),
    }
}

async fn dispatch(command: Command) -> ExitCode {
    let result = match command {
        Command::Run { config } => run(&config).await,
        Command::Enroll {
            config, attempts, ..
        } => enroll(&config, attempts).await,
        Command::Renew { config, .. } => renew(&config).await,
        Command::Completions { .. } | Command::Man { .. } | Command::ConfigReference => {
            Ok(()) // handled by print_docs before the runtime starts
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error),
    }
}

async fn run(path: &std::path::Path) -> Result<(), AgentError> {
    let config = AgentConfig::load(path)?;
    garrison_agent::run(config, shutdown_signal()).await
}

async fn enroll(path: &std::path::Path, attempts: u32) -> Result<(), AgentError> {
    let config = AgentConfig::load(path)?;
    let mut agent = garrison_agent::Agent::system(config);
    let enrolled = agent.enroll_with_retry(Some(attempts)).await?;
    print_enrolled(&enrolled);
    Ok(())
}

async fn renew(path: &std::path::Path) -> Result<(), AgentError> {
    let config = AgentConfig::load(path)?;
    let renewed = garrison_agent::renew_once(&config).await?;
    print_enrolled(&renewed);
    Ok(())
}

fn print_enrolled(enrolled: &garrison_agent::Enrolled) {
    let expiry = time::OffsetDateTime::from(enrolled.not_after)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| {
            garrison_agent::lifecycle::unix_seconds(enrolled.not_after).to_string()
        });
    let text = format!(
        "spiffe_id: {}\nexpires: {expiry}\nlog_sequence: {}\nsvid: {}\n",
        enrolled.spiffe_id,
        enrolled.log_sequence,
        enrolled.files.svid.display()
    );
    // A closed stdout (`| head -1`) is not a failure: the SVID is written either way.
    if let Err(error) = write_stdout(text.as_bytes()) {
        eprintln!("garrison-agent: {error}");
    }
}

fn report(error: &AgentError) -> ExitCode {
    match error.reason_code() {
        Some(code) => {
            eprintln!("garrison-agent: refused: {code}");
            eprintln!("garrison-agent: {}", error_chain(error));
            if code == "clock-rollback" {
                eprintln!(
                    "garrison-agent: the TPM's counters went backwards since this node's last \
                     attestation. If its TPM was cleared (TPM2_Clear), the site operator can \
                     accept that with `garrison node reset --node <EK hash>`; the attestation \
                     log's reject record names the node."
                );
            }
            ExitCode::from(EXIT_REFUSED)
        }
        None => {
            eprintln!("garrison-agent: {}", error_chain(error));
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM or SIGINT. If the handlers cannot be installed the agent logs it
/// and runs until killed.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::error!(%error, "cannot install the SIGTERM handler");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        result = tokio::signal::ctrl_c() => match result {
            Ok(()) => tracing::info!("SIGINT received"),
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
        },
    }
}
