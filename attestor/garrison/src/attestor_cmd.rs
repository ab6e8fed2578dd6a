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
