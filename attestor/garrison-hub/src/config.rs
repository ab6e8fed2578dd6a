//! The hub's configuration (`hub.toml`): parsed into typed values once and passed in. Paths
//! are relative to the configuration file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use garrison_attestor::ConfigError;
use garrison_attestor::config::{parse_duration, read_toml, resolve_sqlite};
use serde::Deserialize;
use time::Duration;

// The doc comments of this struct and its fields are the file's reference (`garrison
// config-reference`, docs/configuration.md): written for operators.
/// The hub's configuration, read by `garrison hub serve --config` and by the operator
/// commands that take `--config` (`garrison hub status`, `publish-policy`, ...). Relative
/// paths are relative to the file's directory.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Where the Sync service is served (mutual TLS, site attestor SVIDs only), e.g.
    /// `0.0.0.0:7443`.
    #[schemars(extend("x-toml-type" = "socket address"))]
    listen: SocketAddr,
    /// The hub intermediate CA: `cert.pem`, `key.pem`, `chain.pem`, `bundle.pem` (the root).
    /// It certifies site CAs and the witness key, and issues the hub's server SVID.
    #[schemars(extend("x-toml-type" = "path"))]
    ca_dir: PathBuf,
    /// Every site's log: `postgres://user:password@host/database` (several hub processes may
    /// share one) or `sqlite://FILE` for a small deployment (a relative FILE is beside this
    /// file).
    #[schemars(extend("x-toml-type" = "database URL"))]
    database: String,
    /// The Ed25519 key (PKCS#8 PEM) that cosigns site checkpoints and signs revocation lists,
    /// created 0600 at the first start if missing.
    #[serde(default = "default_witness_key")]
    #[schemars(extend("x-toml-type" = "path"))]
    witness_key: PathBuf,
    /// Lifetime of the hub's server SVID (`spiffe://<td>/hub/sync`), re-issued at half life.
    #[serde(default = "default_server_svid_ttl")]
    #[schemars(extend("x-toml-type" = "duration"))]
    server_svid_ttl: String,
    /// Most site connections served at once; beyond it new ones wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    /// How long after its site CA expired a site may still sync and ask for its next CA with
    /// the expired credential (each such call is recorded as `rejoin-after-expiry`). `"off"`:
    /// never; such a site then needs `garrison hub certify-site`.
    #[serde(default = "default_rejoin_window")]
    #[schemars(extend("x-toml-type" = "duration or \"off\""))]
    rejoin_window: String,
    /// The longest lifetime a site CA is certified for; a longer request is shortened to it.
    #[serde(default = "default_max_site_ca_ttl")]
    #[schemars(extend("x-toml-type" = "duration"))]
    max_site_ca_ttl: String,
    /// Where `/livez`, `/readyz` and `/metrics` (Prometheus) are served over plain HTTP, e.g.
    /// `127.0.0.1:9464`. Keep it on loopback or a management network: it answers anyone.
    /// Unset: not served (the gRPC health service is always on).
    #[serde(default)]
    #[schemars(extend("x-toml-type" = "socket address"))]
    ops_listen: Option<SocketAddr>,
}

fn default_max_site_ca_ttl() -> String {
    "90d".to_owned()
}

fn default_rejoin_window() -> String {
    "30d".to_owned()
}

fn default_witness_key() -> PathBuf {
    PathBuf::from("witness-key.pem")
}
fn default_server_svid_ttl() -> String {
    "24h".to_owned()
}
fn default_max_connections() -> usize {
    64
}

/// A hub's configuration, validated.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Address the Sync service is served on (mutual TLS, site attestor SVIDs only).
    pub listen: SocketAddr,
    /// Directory of the hub intermediate CA (cert.pem, key.pem, chain.pem, bundle.pem). It
    /// certifies the hub's witness key and issues the hub's server SVID.
    pub ca_dir: PathBuf,
    /// The database of every site's log: `postgres://...` (the default for a hub; several
    /// hub processes may share one) or `sqlite:///path` for small deployments.
    pub database: String,
    /// The Ed25519 key that cosigns site checkpoints and signs revocation lists (PKCS#8
    /// PEM), created at first start if missing. Default `witness-key.pem` beside the
    /// configuration file.
    pub witness_key: PathBuf,
    /// Lifetime of the hub's server SVID (`spiffe://<td>/hub/sync`), re-issued at half life.
    pub server_svid_ttl: Duration,
    /// Most site connections served at once; beyond it new ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long after its site CA expired a site may still sync and ask for its next CA with
    /// the expired credential (default 30d; `"off"`: never, such a site then needs
    /// `garrison hub certify-site`). An expired CA cannot issue the site's client certificate
    /// any more, so without it a site cut off past its CA's expiry cannot recover by itself.
    /// Each such call is recorded (`rejoin-after-expiry` in `garrison hub events`).
    pub rejoin_window: Option<Duration>,
    /// The longest lifetime the hub certifies a site CA for (default 90d); a site asks for the
    /// lifetime of its current CA.
    pub max_site_ca_ttl: Duration,
    /// Where `/livez`, `/readyz` and `/metrics` are served (plain HTTP); not served when
    /// absent.
    pub ops_listen: Option<SocketAddr>,
}

impl HubConfig {
    /// The JSON Schema of `hub.toml`: every key with its type, default and description, for
    /// the configuration reference.
    pub fn file_schema() -> schemars::Schema {
        schemars::schema_for!(RawConfig)
    }

    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (raw, base): (RawConfig, _) = read_toml(path)?;
        Self::from_raw(raw, &base)
    }

    fn from_raw(raw: RawConfig, base: &Path) -> Result<Self, ConfigError> {
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        Ok(HubConfig {
            listen: raw.listen,
            ops_listen: raw.ops_listen,
            ca_dir: resolve(raw.ca_dir),
            database: resolve_sqlite(&raw.database, base),
            witness_key: resolve(raw.witness_key),
            server_svid_ttl: parse_duration("server_svid_ttl", &raw.server_svid_ttl)?,
            max_connections: raw.max_connections.max(1),
            max_site_ca_ttl: parse_duration("max_site_ca_ttl", &raw.max_site_ca_ttl)?,
            rejoin_window: match raw.rejoin_window.as_str() {
                "off" => None,
                text => Some(parse_duration("rejoin_window", text)?),
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_beside_the_file_and_defaults_apply() {
        let raw: RawConfig = toml::from_str(
            "listen = \"127.0.0.1:7443\"\nca_dir = \"hub-ca\"\ndatabase = \"sqlite://hub.db\"\n",
        )
        .unwrap();
        let c = HubConfig::from_raw(raw, Path::new("/etc/garrison")).unwrap();
        assert_eq!(c.ca_dir, Path::new("/etc/garrison/hub-ca"));
        assert_eq!(c.database, "sqlite:///etc/garrison/hub.db");
        assert_eq!(c.witness_key, Path::new("/etc/garrison/witness-key.pem"));
        assert_eq!(c.server_svid_ttl, Duration::hours(24));
        assert_eq!(c.rejoin_window, Some(Duration::days(30)));
    }

    #[test]
    fn the_rejoin_window_can_be_set_or_turned_off() {
        let with = |value: &str| {
            let raw: RawConfig = toml::from_str(&format!(
                "listen = \"127.0.0.1:7443\"\nca_dir = \"x\"\ndatabase = \"y\"\nrejoin_window = \"{value}\"\n"
            ))
            .unwrap();
            HubConfig::from_raw(raw, Path::new("/")).map(|c| c.rejoin_window)
        };
        assert_eq!(with("7d").unwrap(), Some(Duration::days(7)));
        assert_eq!(with("off").unwrap(), None);
        assert!(with("forever").is_err());
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_refused() {
        assert!(
            toml::from_str::<RawConfig>(
                "listen = \"127.0.0.1:7443\"\nca_dir = \"x\"\ndatabase = \"y\"\nlisten_all = true\n"
            )
            .is_err()
        );
        let raw: RawConfig = toml::from_str(
            "listen = \"127.0.0.1:7443\"\nca_dir = \"x\"\ndatabase = \"y\"\nserver_svid_ttl = \"1y\"\n",
        )
        .unwrap();
        assert!(HubConfig::from_raw(raw, Path::new("/")).is_err());
    }
}
