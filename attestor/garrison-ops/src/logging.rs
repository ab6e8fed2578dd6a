//! Log output: stderr, filtered by a `tracing` directive, as text or JSON lines.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines; colour codes only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`), for journald
    /// or a log shipper.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?}: expected text or json"
            )),
        }
    }
}

/// Installs the process's subscriber: `directive` (e.g. `info`, `garrison_agent=debug`), else
/// `RUST_LOG`, else `info`; `format` from the command line, else `GARRISON_LOG_FORMAT`
/// (`text` or `json`), else text. An unusable `GARRISON_LOG_FORMAT` is reported on stderr and
/// text is used.
pub fn init(directive: Option<&str>, format: Option<LogFormat>) {
    let filter = match directive {
        Some(directive) => EnvFilter::new(directive),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let format = format.unwrap_or_else(|| match std::env::var("GARRISON_LOG_FORMAT") {
        Ok(value) => value.parse().unwrap_or_else(|problem: String| {
            eprintln!("GARRISON_LOG_FORMAT: {problem}; writing text");
            LogFormat::Text
        }),
        Err(_) => LogFormat::Text,
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    if let Err(error) = result {
        eprintln!("logging is already set up: {error}");
    }
}
