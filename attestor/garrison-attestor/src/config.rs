//! The site attestor's configuration (`site.toml`): parsed into typed values once, in
//! `main`, and passed in. Paths are relative to the configuration file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::Duration;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or missing keys.
    #[error("parsing {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: toml::de::Error,
    },
    /// A duration is not `<whole number><s|m|h|d>`.
    #[error("{field}: {value:?} is not a duration like 90s, 45m, 1h or 30d")]
    Duration {
        /// Which setting.
        field: &'static str,
        /// What it said.
        value: String,
    },
    /// A value is out of its allowed range.
    #[error("{field}: {problem}")]
    Invalid {
        /// Which setting.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Security-weakening switches. Each is off unless named in `[insecure]`, and each one that
/// is on is logged as a warning at start.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InsecureOptions {
    /// Accept AKs that sign with RSASSA-SHA1.
    #[serde(default)]
    pub allow_sha1_ak: bool,
    /// Accept EKs by public-key hash (SHA-256 hex) without any certificate.
    #[serde(default)]
    pub allow_listed_ek_hashes: Vec<String>,
}

impl InsecureOptions {
    /// The names of the switches that are on, for the start-up warning.
    pub fn enabled(&self) -> Vec<&'static str> {
        let mut on = Vec::new();
        if self.allow_sha1_ak {
            on.push("insecure.allow_sha1_ak");
        }
        if !self.allow_listed_ek_hashes.is_empty() {
            on.push("insecure.allow_listed_ek_hashes");
        }
        on
    }
}

// The doc comments of this struct and its fields are the file's reference (`garrison
// config-reference`, docs/configuration.md): written for operators.
/// The site attestor's configuration, read by `garrison attestor serve --config` and by the
/// operator commands that take `--config`. Relative paths are relative to the file's
/// directory.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// The site's name, `<site>` in `spiffe://<td>/site/<site>/...`: one SPIFFE path segment
    /// of `[a-zA-Z0-9.-_]`. The site CA must have the role `site/<site>`.
    site: String,
    /// Where the Enrollment and Renewal services are served (TLS), e.g. `0.0.0.0:8443`.
    #[schemars(extend("x-toml-type" = "socket address"))]
    listen: SocketAddr,
    /// The site intermediate CA: `cert.pem`, `key.pem`, `chain.pem`, `bundle.pem` (the root).
    /// The attestor writes below it: the next CA's key and certificate under `rotation/`.
    #[schemars(extend("x-toml-type" = "path"))]
    ca_dir: PathBuf,
    /// The attestation log: `sqlite://FILE` (a relative FILE is beside this file; created if
    /// missing) or `postgres://user:password@host/database`.
    #[schemars(extend("x-toml-type" = "database URL"))]
    database: String,
    /// TPM manufacturer CA certificates (roots or intermediates), PEM or DER, that EK
    /// certificates must chain to. At least one, unless `insecure.allow_listed_ek_hashes` is
    /// set.
    #[schemars(extend("x-toml-type" = "array of paths"))]
    ek_roots: Vec<PathBuf>,
    /// The signed admission-policy bundle (`garrison policy sign`), verified against the
    /// root. Replace the file and send SIGHUP to put a new one in force.
    #[schemars(extend("x-toml-type" = "path"))]
    policy_bundle: PathBuf,
    /// The longest SVID lifetime handed out, whatever policy asks. The site CA must live at
    /// least 6 times as long.
    #[schemars(extend("x-toml-type" = "duration"))]
    max_svid_ttl: String,
    /// How long a challenge may be answered.
    #[serde(default = "default_challenge_ttl")]
    #[schemars(extend("x-toml-type" = "duration"))]
    challenge_ttl: String,
    /// The SHA-256 PCRs (0 to 23) every quote must cover.
    #[serde(default = "default_pcrs")]
    pcrs: Vec<u32>,
    /// Most challenges outstanding at once; beyond it, Begin is shed with
    /// `RESOURCE_EXHAUSTED` (`overloaded`).
    #[serde(default = "default_max_pending")]
    max_pending_challenges: usize,
    /// Most requests worked on at once; beyond it, requests are shed with `overloaded`.
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    /// Most client connections open (or in their TLS handshake) at once; beyond it new ones
    /// wait in the listen backlog. Unset: as many as `max_in_flight`.
    #[serde(default)]
    max_connections: Option<usize>,
    /// Lifetime of the attestor's own server SVID (`spiffe://<td>/site/<site>/attestor`),
    /// issued from the site CA at start and again at half life.
    #[serde(default = "default_attestor_svid_ttl")]
    #[schemars(extend("x-toml-type" = "duration"))]
    attestor_svid_ttl: String,
    /// The Ed25519 key (PKCS#8 PEM) that signs the log's checkpoints, created 0600 at the
    /// first start if missing.
    #[serde(default = "default_log_key")]
    #[schemars(extend("x-toml-type" = "path"))]
    log_key: PathBuf,
    /// Where to serve the read-only Audit service (mutual TLS, auditor SVIDs only). Unset: not
    /// served.
    #[serde(default)]
    #[schemars(extend("x-toml-type" = "socket address"))]
    audit_listen: Option<SocketAddr>,
    /// Where `/livez`, `/readyz` and `/metrics` (Prometheus) are served over plain HTTP, e.g.
    /// `127.0.0.1:9464`. Keep it on loopback or a management network: it answers anyone.
    /// Unset: not served (the gRPC health service is always on).
    #[serde(default)]
    #[schemars(extend("x-toml-type" = "socket address"))]
    ops_listen: Option<SocketAddr>,
    /// How long, in milliseconds (0 to 1000), the log's writer holds a transaction open after
    /// its first decision so that the decisions arriving meanwhile share it: one commit (and
    /// one fsync) for several records. Adds up to this much latency to a decision; a window
    /// that gathers nothing is skipped for the next 64 commits, so a quiet site rarely pays
    /// it. 0 commits each batch at once.
    #[serde(default = "default_log_commit_window_ms")]
    log_commit_window_ms: u64,
    /// A checkpoint of the log is signed at least this often while records arrive.
    #[serde(default = "default_checkpoint_interval")]
    #[schemars(extend("x-toml-type" = "duration"))]
    checkpoint_interval: String,
    /// The hub to sync with; the site opens every connection. Without it the site syncs by
    /// files only (`garrison site export` / `import`).
    #[serde(default)]
    hub: Option<RawHub>,
    /// Switches that weaken security: each is off unless set here, and each one that is on is
    /// logged as a warning at start.
    #[serde(default)]
    insecure: InsecureOptions,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawHub {
    /// `host:port` of the hub's Sync service.
    address: String,
    /// Time between sync rounds while the hub answers.
    #[serde(default = "default_sync_interval")]
    #[schemars(extend("x-toml-type" = "duration"))]
    sync_interval: String,
    /// The longest wait between attempts while it does not (exponential backoff with jitter
    /// up to this).
    #[serde(default = "default_max_backoff")]
    #[schemars(extend("x-toml-type" = "duration"))]
    max_backoff: String,
    /// How long connecting, and each call, may take before the round is given up.
    #[serde(default = "default_hub_timeout")]
    #[schemars(extend("x-toml-type" = "duration"))]
    timeout: String,
}

fn default_hub_timeout() -> String {
    "30s".to_owned()
}

fn default_sync_interval() -> String {
    "30s".to_owned()
}
fn default_max_backoff() -> String {
    "10m".to_owned()
}

/// Where the site's hub is and how often to sync with it (`[hub]` in `site.toml`). The site
/// opens every connection; a site without `[hub]` never connects and syncs by files only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubLink {
    /// `host:port` of the hub's Sync service.
    pub address: String,
    /// Time between rounds while the hub answers (default 30s).
    pub sync_interval: Duration,
    /// Longest wait between attempts while it does not (exponential backoff with jitter up
    /// to this; default 10m).
    pub max_backoff: Duration,
    /// How long connecting, and each call, may take before the round is given up (a hub
    /// whose port is black-holed never answers; default 30s).
    pub timeout: Duration,
}

fn default_challenge_ttl() -> String {
    "60s".to_owned()
}
fn default_pcrs() -> Vec<u32> {
    (0..=9).collect()
}
fn default_max_pending() -> usize {
    10_000
}
fn default_max_in_flight() -> usize {
    128
}
fn default_attestor_svid_ttl() -> String {
    "24h".to_owned()
}
fn default_log_key() -> PathBuf {
    PathBuf::from("log-key.pem")
}
fn default_log_commit_window_ms() -> u64 {
    10
}
fn default_checkpoint_interval() -> String {
    "60s".to_owned()
}

/// A site attestor's configuration, validated.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// Site name: the `<site>` in `spiffe://<td>/site/<site>/...`.
    pub site: String,
    /// Address to serve gRPC/TLS on.
    pub listen: SocketAddr,
    /// Directory of the site intermediate CA (cert.pem, key.pem, chain.pem, bundle.pem).
    pub ca_dir: PathBuf,
    /// Attestation log URL: `sqlite:///path` or `postgres://...`.
    pub database: String,
    /// Manufacturer root (and intermediate) certificates for EK certificates, PEM or DER.
    pub ek_roots: Vec<PathBuf>,
    /// Signed admission-policy bundle (archive written by `garrison policy sign`).
    pub policy_bundle: PathBuf,
    /// The longest SVID lifetime handed out, whatever policy asks for.
    pub max_svid_ttl: Duration,
    /// How long a challenge may be answered.
    pub challenge_ttl: Duration,
    /// SHA-256 PCRs every quote must cover.
    pub pcrs: Vec<u32>,
    /// Most challenges outstanding at once; beyond it Begin requests are shed.
    pub max_pending_challenges: usize,
    /// Most requests worked on at once; beyond it requests are shed with `overloaded`.
    pub max_in_flight: usize,
    /// Most client connections open (or in their TLS handshake) at once; beyond it the
    /// attestor stops accepting and new connections wait in the listen backlog. Defaults to
    /// `max_in_flight`: an agent has one request in flight on its connection, so a connection
    /// admitted beyond that would only be shed after costing a TLS handshake (measured in a
    /// 10,000-agent storm: 128 → none shed in 12 s, 512 → 615–2,308 shed in 14–17 s and 25 %
    /// more CPU per enrollment; docs/performance.md).
    pub max_connections: usize,
    /// Lifetime of the attestor's own server SVID, issued from the site CA at start.
    pub attestor_svid_ttl: Duration,
    /// The Ed25519 key that signs the log's checkpoints (PKCS#8 PEM), created at first start
    /// if missing. Default `log-key.pem` beside the configuration file.
    pub log_key: PathBuf,
    /// A checkpoint is signed at least this often while records arrive (default 60s).
    pub checkpoint_interval: Duration,
    /// The log writer's commit window (default 10 ms; zero: none). See
    /// `garrison_log::AttestationLog::set_commit_window`.
    pub log_commit_window: std::time::Duration,
    /// Where to serve the read-only Audit service (mutual TLS, auditor SVIDs only); not
    /// served when absent.
    pub audit_listen: Option<SocketAddr>,
    /// Where `/livez`, `/readyz` and `/metrics` are served (plain HTTP); not served when
    /// absent.
    pub ops_listen: Option<SocketAddr>,
    /// The hub to sync with, if any.
    pub hub: Option<HubLink>,
    /// Security-weakening switches (all off by default).
    pub insecure: InsecureOptions,
}

impl SiteConfig {
    /// The JSON Schema of `site.toml`: every key with its type, default and description,
    /// for the configuration reference.
    pub fn file_schema() -> schemars::Schema {
        schemars::schema_for!(RawConfig)
    }

    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (raw, base): (RawConfig, _) = read_toml(path)?;
        Self::from_raw(raw, &base)
    }

    fn from_raw(raw: RawConfig, base: &Path) -> Result<Self, ConfigError> {
        // The site name is one SPIFFE path segment: `spiffe://<td>/site/<site>/...`.
        let one_segment = !raw.site.contains('/')
            && garrison_ca::SpiffeId::parse(&format!("spiffe://x/site/{}", raw.site)).is_ok();
        if !one_segment {
            return Err(ConfigError::Invalid {
                field: "site",
                problem: format!(
                    "{:?} is not one SPIFFE path segment of [a-zA-Z0-9.-_]",
                    raw.site
                ),
            });
        }
        if let Some(bad) = raw.pcrs.iter().find(|p| **p > 23) {
            return Err(ConfigError::Invalid {
                field: "pcrs",
                problem: format!("PCR {bad} > 23"),
            });
        }
        if raw.log_commit_window_ms > 1000 {
            return Err(ConfigError::Invalid {
                field: "log_commit_window_ms",
                problem: format!(
                    "{} ms would hold every decision that long; at most 1000",
                    raw.log_commit_window_ms
                ),
            });
        }
        if raw.ek_roots.is_empty() && raw.insecure.allow_listed_ek_hashes.is_empty() {
            return Err(ConfigError::Invalid {
                field: "ek_roots",
                problem: "at least one manufacturer root is required".to_owned(),
            });
        }
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let hub = raw
            .hub
            .map(|hub| {
                Ok::<_, ConfigError>(HubLink {
                    sync_interval: parse_duration("hub.sync_interval", &hub.sync_interval)?,
                    max_backoff: parse_duration("hub.max_backoff", &hub.max_backoff)?,
                    timeout: parse_duration("hub.timeout", &hub.timeout)?,
                    address: hub.address,
                })
            })
            .transpose()?;
        Ok(SiteConfig {
            hub,
            max_svid_ttl: parse_duration("max_svid_ttl", &raw.max_svid_ttl)?,
            challenge_ttl: parse_duration("challenge_ttl", &raw.challenge_ttl)?,
            attestor_svid_ttl: parse_duration("attestor_svid_ttl", &raw.attestor_svid_ttl)?,
            checkpoint_interval: parse_duration("checkpoint_interval", &raw.checkpoint_interval)?,
            log_commit_window: std::time::Duration::from_millis(raw.log_commit_window_ms),
            log_key: resolve(raw.log_key),
            audit_listen: raw.audit_listen,
            ops_listen: raw.ops_listen,
            site: raw.site,
            listen: raw.listen,
            ca_dir: resolve(raw.ca_dir),
            database: resolve_sqlite(&raw.database, base),
            ek_roots: raw.ek_roots.into_iter().map(resolve).collect(),
            policy_bundle: resolve(raw.policy_bundle),
            pcrs: raw.pcrs,
            max_pending_challenges: raw.max_pending_challenges.max(1),
            max_in_flight: raw.max_in_flight.max(1),
            max_connections: raw.max_connections.unwrap_or(raw.max_in_flight).max(1),
            insecure: raw.insecure,
        })
    }
}

/// A TOML file parsed into `T`, and the directory its relative paths are relative to.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(T, PathBuf), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let raw = toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new(".")).to_owned();
    Ok((raw, base))
}

/// Relative SQLite paths are relative to the configuration file, like every other path.
pub fn resolve_sqlite(url: &str, base: &Path) -> String {
    match url.strip_prefix("sqlite://") {
        Some(path) if !path.starts_with('/') => format!("sqlite://{}", base.join(path).display()),
        _ => url.to_owned(),
    }
}

/// Parse `<positive whole number><s|m|h|d>`.
pub fn parse_duration(field: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let bad = || ConfigError::Duration {
        field,
        value: value.to_owned(),
    };
    let split = value.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = value.split_at(split);
    let number: i64 = digits.parse().map_err(|_| bad())?;
    let per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let seconds = number
        .checked_mul(per_unit)
        .filter(|s| *s > 0)
        .ok_or_else(bad)?;
    Ok(Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
site = "site-a"
listen = "127.0.0.1:8443"
ca_dir = "site"
database = "sqlite://log.db"
ek_roots = ["ek-root.pem"]
policy_bundle = "policy.bundle"
max_svid_ttl = "24h"
"#;

    fn parse(text: &str) -> Result<SiteConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: "site.toml".into(),
            source,
        })?;
        SiteConfig::from_raw(raw, Path::new("/etc/garrison"))
    }

    #[test]
    fn minimal_config_resolves_paths_and_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.ca_dir, Path::new("/etc/garrison/site"));
        assert_eq!(c.database, "sqlite:///etc/garrison/log.db");
        assert_eq!(c.challenge_ttl, Duration::seconds(60));
        assert_eq!(c.pcrs, (0..=9).collect::<Vec<_>>());
        assert!(
            c.insecure.enabled().is_empty(),
            "insecure switches default off"
        );
    }

    #[test]
    fn the_log_commit_window_defaults_to_10_ms_and_is_bounded() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.log_commit_window, std::time::Duration::from_millis(10));
        let c = parse(&format!("{MINIMAL}\nlog_commit_window_ms = 0")).unwrap();
        assert!(c.log_commit_window.is_zero());
        let c = parse(&format!("{MINIMAL}\nlog_commit_window_ms = 1000")).unwrap();
        assert_eq!(c.log_commit_window, std::time::Duration::from_secs(1));
        assert!(matches!(
            parse(&format!("{MINIMAL}\nlog_commit_window_ms = 1001")),
            Err(ConfigError::Invalid {
                field: "log_commit_window_ms",
                ..
            })
        ));
    }

    #[test]
    fn connections_follow_requests_in_flight_unless_set() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!((c.max_in_flight, c.max_connections), (128, 128));
        let c = parse(&format!(
            "{MINIMAL}
max_in_flight = 300"
        ))
        .unwrap();
        assert_eq!((c.max_in_flight, c.max_connections), (300, 300));
        let c = parse(&format!(
            "{MINIMAL}
max_in_flight = 300
max_connections = 40"
        ))
        .unwrap();
        assert_eq!((c.max_in_flight, c.max_connections), (300, 40));
        let c = parse(&format!(
            "{MINIMAL}
max_connections = 0"
        ))
        .unwrap();
        assert_eq!(c.max_connections, 1, "never zero: the attestor must accept");
    }

    #[test]
    fn refuses_unknown_keys_bad_durations_and_bad_pcrs() {
        assert!(matches!(
            parse(&format!("{MINIMAL}\ntypo = 1")),
            Err(ConfigError::Parse { .. })
        ));
        let bad_ttl = MINIMAL.replace("\"24h\"", "\"1 day\"");
        assert!(matches!(
            parse(&bad_ttl),
            Err(ConfigError::Duration {
                field: "max_svid_ttl",
                ..
            })
        ));
        assert!(matches!(
            parse(&format!("{MINIMAL}\npcrs = [0, 24]")),
            Err(ConfigError::Invalid { field: "pcrs", .. })
        ));
        let bad_site = MINIMAL.replace("site-a", "site/a");
        assert!(matches!(
            parse(&bad_site),
            Err(ConfigError::Invalid { field: "site", .. })
        ));
    }

    #[test]
    fn insecure_switches_are_named_when_on() {
        let c = parse(&format!("{MINIMAL}\n[insecure]\nallow_sha1_ak = true")).unwrap();
        assert_eq!(c.insecure.enabled(), vec!["insecure.allow_sha1_ak"]);
    }
}
