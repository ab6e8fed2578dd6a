//! `garrison attestor serve`: run a site attestor.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use garrison_attestor::{SiteConfig, SystemClock};

/// Attestor commands.
#[derive(Debug, Subcommand)]
pub enum AttestorCommand {
    /// Serve enrollment and renewal over gRPC/TLS until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Show the site's autonomy: the hub link, last sync, the site CA's expiry and the time
    /// until the site fails closed (its offline budget), the rotation in progress, the policy
    /// in force and the revocation list held. Reads the CA directory and the database; the
    /// attestor need not be running. Exits 2 when the budget is exhausted.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Site configuration (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Site configuration (TOML); see the README for the keys.
    #[arg(long)]
    config: PathBuf,
}

/// Run an attestor command.
pub async fn run(command: AttestorCommand) -> anyhow::Result<()> {
    match command {
        AttestorCommand::Serve(args) => {
            let config = SiteConfig::load(&args.config)?;
            garrison_attestor::server::run(config, Arc::new(SystemClock), shutdown_signal())
                .await
                .context("attestor")
        }
        AttestorCommand::Status(args) => {
            let config = SiteConfig::load(&args.config)?;
            let now = time::OffsetDateTime::now_utc();
            let status = garrison_attestor::status::SiteStatus::read(&config, now)
                .await
                .context("reading the site's status")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.to_text(now));
            }
            if status.offline_budget_seconds <= 0 {
                std::process::exit(2);
            }
            Ok(())
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
