//! `garrison-demo`: Garrison's main job end to end on one machine (see [`demo`]). It lives
//! here, beside the test bed whose fixtures it embeds, so that the production `garrison`
//! binary links no test code; `scripts/demo.sh` builds and runs it.
#![forbid(unsafe_code)]

mod demo;

use std::process::ExitCode;

use clap::Parser;

/// Run the whole job on this machine: CAs, a signed policy, an attestor, TPM-backed agents,
/// the attestation log.
#[derive(Debug, Parser)]
#[command(name = "garrison-demo", version, about)]
struct Cli {
    #[command(flatten)]
    args: demo::DemoArgs,
}

fn main() -> ExitCode {
    garrison_spiffe_tls::install_ring_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("garrison-demo: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo::run(cli.args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("garrison-demo: {error:#}");
            ExitCode::FAILURE
        }
    }
}
