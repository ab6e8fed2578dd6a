//! The agent's configuration: the TOML file format and the typed values the agent runs on.
//!
//! The file is parsed strictly (`deny_unknown_fields`) into [`ConfigFile`] and then checked
//! and converted into [`AgentConfig`]. Tests and embedders build [`AgentConfig`] directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use garrison_ca::SpiffeId;
use garrison_proto::limits;
use garrison_tpm::{DEFAULT_EVENT_LOG_PATH, EkSource, KeyAlgorithm, ek_nv_index};
use serde::Deserialize;

use crate::AgentError;
use crate::schedule::Backoff;
use crate::workload_api::WorkloadApiConfig;

/// Default exponential-backoff base.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Default exponential-backoff cap.
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Default time limit of one gRPC call.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the agent needs, already checked. Built from TOML by
/// [`AgentConfig::from_toml`] or directly by tests.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The site attestor, `https://host:port`.
    pub attestor: String,
    /// The SPIFFE ID the attestor's server certificate must carry.
    pub attestor_spiffe_id: SpiffeId,
    /// PEM file with the bootstrap trust bundle (the trust domain's root). The attestor is
    /// authenticated against it, and every issued SVID must chain to it.
    pub trust_bundle: PathBuf,
    /// TCTI configuration string (`device:/dev/tpmrm0`, `swtpm:host=...,port=...`).
    pub tcti: String,
    /// Where the EK comes from.
    pub ek: EkSource,
    /// NV index of the EK certificate.
    pub ek_certificate_nv: u32,
    /// PEM files with intermediates between the EK certificate and the manufacturer root.
    pub ek_chain: Vec<PathBuf>,
    /// The AK algorithm used when the AK is first created.
    pub ak_algorithm: KeyAlgorithm,
    /// The measured-boot event log; a missing file is sent as an empty log (with a warning).
    pub event_log: PathBuf,
    /// Directory for `ak.blob` (0700).
    pub state_dir: PathBuf,
    /// Directory for `svid.pem`, `svid.key`, `bundle.pem`.
    pub svid_dir: PathBuf,
    /// Self-reported facts sent at enrollment (untrusted by the attestor).
    pub asserted: BTreeMap<String, String>,
    /// Retry schedule for transient failures.
    pub backoff: Backoff,
    /// Time limit of each gRPC call.
    pub rpc_timeout: Duration,
    /// The SPIFFE Workload API, if served (`[workload_api]`).
    pub workload_api: Option<WorkloadApiConfig>,
    /// A program (absolute path, then its arguments) run after each new SVID is written.
    pub post_rotate_command: Option<Vec<String>>,
    /// How long `post_rotate_command` may run before it and its process group are killed.
    pub post_rotate_timeout: Duration,
    /// Where `/livez`, `/readyz` and `/metrics` are served (`host:port`), if anywhere.
    pub ops_listen: Option<String>,
}

// The TOML file as written by operators. The doc comments of these structs and their fields
// are the file's reference (`garrison-agent config-reference`, docs/configuration.md).
/// The node agent's configuration, read by `garrison-agent run --config` (and `enroll`,
/// `renew`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The site attestor, `https://host:port` (https only).
    #[schemars(extend("x-toml-type" = "URL"))]
    attestor: String,
    /// The SPIFFE ID the attestor's server certificate must carry, e.g.
    /// `spiffe://example.org/site/site-a/attestor`.
    #[schemars(extend("x-toml-type" = "SPIFFE ID"))]
    attestor_spiffe_id: String,
    /// The bootstrap trust bundle (PEM): the trust domain's root. The attestor is
    /// authenticated against it, and every SVID issued must chain to it.
    #[schemars(extend("x-toml-type" = "path"))]
    trust_bundle: PathBuf,
    /// How to reach the TPM (a TCTI configuration): `device:/dev/tpmrm0`, `tabrmd`, or
    /// `swtpm:host=127.0.0.1,port=2321`.
    tcti: String,
    /// Where the endorsement key comes from: `persistent:0x81xxxxxx` (a persistent handle),
    /// or `template:rsa` / `template:ecc` (made from the TCG default template).
    ek: String,
    /// NV index of the EK certificate: 0x01c00002 is the RSA-2048 EK's, 0x01c0000a the ECC
    /// P-256 EK's.
    #[serde(default = "default_ek_certificate_nv")]
    ek_certificate_nv: u32,
    /// PEM files with the certificates between the EK certificate and its manufacturer's
    /// root, sent to the attestor with it.
    #[serde(default)]
    #[schemars(extend("x-toml-type" = "array of paths"))]
    ek_chain: Vec<PathBuf>,
    /// The attestation key's algorithm, `ecc-p256` or `rsa-2048`; used only when the AK is
    /// created (at the first enrollment).
    #[serde(default = "default_ak")]
    ak: String,
    /// The firmware's measured-boot event log (TCG binary format). A missing file is sent as
    /// an empty log, with a warning.
    #[serde(default = "default_event_log")]
    #[schemars(extend("x-toml-type" = "path"))]
    event_log: PathBuf,
    /// Directory of the attestation key blob, `ak.blob` (created 0700 if missing).
    #[schemars(extend("x-toml-type" = "path"))]
    state_dir: PathBuf,
    /// Directory of `svid.pem`, `svid.key` (0600) and `bundle.pem` (created 0755 if missing).
    #[schemars(extend("x-toml-type" = "path"))]
    svid_dir: PathBuf,
    /// Facts the node states about itself, sent at enrollment (at most 32; keys and values at
    /// most 256 bytes). The attestor records them and policy may read them; nothing vouches
    /// for them.
    #[serde(default)]
    asserted: BTreeMap<String, String>,
    /// Retries of transient failures: exponential backoff with full jitter, attempt n waits a
    /// random time in [0, min(cap, base·2ⁿ)].
    #[serde(default)]
    backoff: BackoffFile,
    /// Time limit of each gRPC call, in milliseconds.
    #[serde(default = "default_rpc_timeout_ms")]
    rpc_timeout_ms: u64,
    /// Serve the SPIFFE Workload API on a Unix socket. Without this table the SVID is only
    /// written to files.
    #[serde(default)]
    workload_api: Option<WorkloadApiFile>,
    /// A program (an absolute path, then its arguments; no shell) run after each new SVID is
    /// written, e.g. `["/usr/bin/systemctl", "reload", "envoy"]`. Unset: none.
    #[serde(default)]
    post_rotate_command: Option<Vec<String>>,
    /// Milliseconds `post_rotate_command` may run; then it is killed, with every process it
    /// started (its process group). The agent waits for it before it goes on.
    #[serde(default = "default_post_rotate_timeout_ms")]
    post_rotate_timeout_ms: u64,
    /// Where `/livez`, `/readyz` and `/metrics` are served over HTTP (`ip:port`, e.g.
    /// `127.0.0.1:9465`). Unset: not served.
    #[serde(default)]
    #[schemars(extend("x-toml-type" = "socket address"))]
    ops_listen: Option<String>,
}

/// The optional `[workload_api]` table.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct WorkloadApiFile {
    /// The socket, as `SPIFFE_ENDPOINT_SOCKET` names it: `unix:///absolute/path` (Unix
    /// sockets only).
    #[serde(default = "default_workload_endpoint")]
    #[schemars(extend("x-toml-type" = "URL"))]
    socket: String,
    /// User ids of the callers served (the kernel names the caller: `SO_PEERCRED`). With
    /// `allowed_gids`, at least one entry in all.
    #[serde(default)]
    allowed_uids: Vec<u32>,
    /// Primary group ids of the callers served (supplementary groups are not seen).
    #[serde(default)]
    allowed_gids: Vec<u32>,
}

fn default_workload_endpoint() -> String {
    crate::workload_api::DEFAULT_ENDPOINT.to_owned()
}

/// The optional `[backoff]` table.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct BackoffFile {
    /// The base of the exponential backoff, in milliseconds.
    #[serde(default = "default_base_ms")]
    base_ms: u64,
    /// Its cap, in milliseconds; at least `base_ms`.
    #[serde(default = "default_cap_ms")]
    cap_ms: u64,
}

impl Default for BackoffFile {
    fn default() -> Self {
        Self {
            base_ms: default_base_ms(),
            cap_ms: default_cap_ms(),
        }
    }
}

fn default_ek_certificate_nv() -> u32 {
    ek_nv_index::RSA_2048
}
fn default_ak() -> String {
    "ecc-p256".to_owned()
}
fn default_event_log() -> PathBuf {
    PathBuf::from(DEFAULT_EVENT_LOG_PATH)
}
fn default_post_rotate_timeout_ms() -> u64 {
    millis(crate::lifecycle::POST_ROTATE_TIMEOUT)
}
fn default_rpc_timeout_ms() -> u64 {
    millis(DEFAULT_RPC_TIMEOUT)
}
fn default_base_ms() -> u64 {
    millis(DEFAULT_BACKOFF_BASE)
}
fn default_cap_ms() -> u64 {
    millis(DEFAULT_BACKOFF_CAP)
}
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl AgentConfig {
    /// The JSON Schema of the configuration file: every key with its type, default and
    /// description, for the configuration reference.
    pub fn file_schema() -> schemars::Schema {
        schemars::schema_for!(ConfigFile)
    }

    /// Reads and checks the TOML file at `path`.
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::ReadConfig {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parses and checks a TOML configuration text.
    pub fn from_toml(text: &str) -> Result<Self, AgentError> {
        let file: ConfigFile =
            toml::from_str(text).map_err(|source| AgentError::ParseConfig { source })?;
        file.check()
    }

    /// Where the AK blob lives.
    pub fn ak_blob_path(&self) -> PathBuf {
        self.state_dir.join("ak.blob")
    }
}

impl ConfigFile {
    /// Checks every value and converts to [`AgentConfig`].
    pub fn check(self) -> Result<AgentConfig, AgentError> {
        check_attestor(&self.attestor)?;
        check_asserted(&self.asserted)?;
        let attestor_spiffe_id = SpiffeId::parse(&self.attestor_spiffe_id).map_err(|source| {
            AgentError::AttestorSpiffeId {
                value: self.attestor_spiffe_id.clone(),
                source,
            }
        })?;
        if self.tcti.trim().is_empty() {
            return Err(config_value("tcti", &self.tcti, "must not be empty"));
        }
        Ok(AgentConfig {
            attestor: self.attestor,
            attestor_spiffe_id,
            trust_bundle: self.trust_bundle,
            tcti: self.tcti,
            ek: parse_ek_source(&self.ek)?,
            ek_certificate_nv: check_nv_index(self.ek_certificate_nv)?,
            ek_chain: self.ek_chain,
            ak_algorithm: parse_ak_algorithm(&self.ak)?,
            event_log: self.event_log,
            state_dir: self.state_dir,
            svid_dir: self.svid_dir,
            asserted: self.asserted,
            backoff: check_backoff(&self.backoff)?,
            rpc_timeout: check_rpc_timeout(self.rpc_timeout_ms)?,
            workload_api: self.workload_api.map(check_workload_api).transpose()?,
            post_rotate_command: self
                .post_rotate_command
                .map(check_post_rotate_command)
                .transpose()?,
            post_rotate_timeout: match self.post_rotate_timeout_ms {
                0 => {
                    return Err(config_value(
                        "post_rotate_timeout_ms",
                        "0",
                        "must be positive",
                    ));
                }
                ms => Duration::from_millis(ms),
            },
            ops_listen: self.ops_listen.map(check_ops_listen).transpose()?,
        })
    }
}

fn config_value(field: &'static str, value: &str, problem: &'static str) -> AgentError {
    AgentError::ConfigValue {
        field,
        value: value.to_owned(),
        problem,
    }
}

/// Parses `persistent:0x81xxxxxx`, `template:rsa` or `template:ecc`.
pub fn parse_ek_source(value: &str) -> Result<EkSource, AgentError> {
    const EXPECTED: &str = "expected persistent:0x81xxxxxx, template:rsa or template:ecc";
    match value.split_once(':') {
        Some(("template", "rsa")) => Ok(EkSource::Template {
            algorithm: KeyAlgorithm::Rsa2048,
        }),
        Some(("template", "ecc")) => Ok(EkSource::Template {
            algorithm: KeyAlgorithm::EccP256,
        }),
        Some(("persistent", handle)) => {
            let handle = handle
                .strip_prefix("0x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .filter(|handle| handle >> 24 == 0x81)
                .ok_or_else(|| config_value("ek", value, EXPECTED))?;
            Ok(EkSource::Persistent { handle })
        }
        _ => Err(config_value("ek", value, EXPECTED)),
    }
}

fn parse_ak_algorithm(value: &str) -> Result<KeyAlgorithm, AgentError> {
    match value {
        "ecc-p256" => Ok(KeyAlgorithm::EccP256),
        "rsa-2048" => Ok(KeyAlgorithm::Rsa2048),
        _ => Err(config_value("ak", value, "expected ecc-p256 or rsa-2048")),
    }
}

fn check_nv_index(index: u32) -> Result<u32, AgentError> {
    if index >> 24 == 0x01 {
        return Ok(index);
    }
    Err(config_value(
        "ek_certificate_nv",
        &format!("{index:#010x}"),
        "not an NV index (0x01xxxxxx)",
    ))
}

fn check_attestor(value: &str) -> Result<(), AgentError> {
    let uri = value
        .parse::<tonic::transport::Uri>()
        .map_err(|_| config_value("attestor", value, "not a URI"))?;
    if uri.scheme_str() != Some("https") {
        return Err(config_value("attestor", value, "must be an https:// URI"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(config_value("attestor", value, "has no host"));
    }
    Ok(())
}

fn check_asserted(asserted: &BTreeMap<String, String>) -> Result<(), AgentError> {
    if asserted.len() > limits::MAX_ASSERTED_FACTS {
        return Err(config_value(
            "asserted",
            &asserted.len().to_string(),
            "more facts than the protocol allows (32)",
        ));
    }
    let too_long = |text: &String| text.is_empty() || text.len() > limits::MAX_ASSERTED_LEN;
    match asserted
        .iter()
        .find(|(k, v)| too_long(k) || v.len() > limits::MAX_ASSERTED_LEN)
    {
        Some((key, _)) => Err(config_value(
            "asserted",
            key,
            "key empty, or key or value longer than 256 bytes",
        )),
        None => Ok(()),
    }
}

fn check_workload_api(file: WorkloadApiFile) -> Result<WorkloadApiConfig, AgentError> {
    let socket = crate::workload_api::parse_endpoint(&file.socket)
        .map_err(|problem| config_value("workload_api.socket", &file.socket, problem))?;
    if file.allowed_uids.is_empty() && file.allowed_gids.is_empty() {
        return Err(config_value(
            "workload_api.allowed_uids",
            "[]",
            "no caller could fetch an SVID: list the workloads' uids (allowed_uids) or \
             groups (allowed_gids)",
        ));
    }
    Ok(WorkloadApiConfig {
        socket,
        allowed_uids: file.allowed_uids,
        allowed_gids: file.allowed_gids,
    })
}

fn check_ops_listen(address: String) -> Result<String, AgentError> {
    match address.parse::<std::net::SocketAddr>() {
        Ok(_) => Ok(address),
        Err(_) => Err(config_value(
            "ops_listen",
            &address,
            "must be ip:port, e.g. 127.0.0.1:9465",
        )),
    }
}

fn check_post_rotate_command(argv: Vec<String>) -> Result<Vec<String>, AgentError> {
    match argv.first() {
        None => Err(config_value(
            "post_rotate_command",
            "[]",
            "must name a program (leave the key out for none)",
        )),
        Some(program) if !Path::new(program).is_absolute() => Err(config_value(
            "post_rotate_command",
            program,
            "the program must be an absolute path (no PATH lookup)",
        )),
        Some(_) => Ok(argv),
    }
}

fn check_backoff(file: &BackoffFile) -> Result<Backoff, AgentError> {
    if file.base_ms == 0 {
        return Err(config_value("backoff.base_ms", "0", "must be positive"));
    }
    if file.cap_ms < file.base_ms {
        return Err(config_value(
            "backoff.cap_ms",
            &file.cap_ms.to_string(),
            "must not be below backoff.base_ms",
        ));
    }
    Ok(Backoff::new(
        Duration::from_millis(file.base_ms),
        Duration::from_millis(file.cap_ms),
    ))
}

fn check_rpc_timeout(ms: u64) -> Result<Duration, AgentError> {
    if ms == 0 {
        return Err(config_value("rpc_timeout_ms", "0", "must be positive"));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
attestor = "https://127.0.0.1:8443"
attestor_spiffe_id = "spiffe://example.org/site/site-a/attestor"
trust_bundle = "/etc/garrison/bundle.pem"
tcti = "swtpm:host=127.0.0.1,port=2321"
ek = "persistent:0x81010001"
ek_certificate_nv = 0x01c00002
event_log = "/sys/kernel/security/tpm0/binary_bios_measurements"
state_dir = "/var/lib/garrison-agent"
svid_dir = "/run/garrison"
[asserted]
hostname = "node-1"
[backoff]
base_ms = 250
cap_ms = 10000
"#;

    #[test]
    fn workload_api_and_post_rotate_command_are_checked() {
        let plain = AgentConfig::from_toml(EXAMPLE).unwrap();
        assert_eq!(plain.workload_api, None);
        assert_eq!(plain.post_rotate_command, None);
        let with = |extra: &str| {
            let (head, tables) = EXAMPLE.split_once("[asserted]").unwrap();
            format!("{head}{extra}\n[asserted]{tables}")
        };
        let config = AgentConfig::from_toml(&with(
            "post_rotate_command = [\"/usr/bin/systemctl\", \"reload\", \"envoy\"]\n\
             [workload_api]\nallowed_uids = [1000]\n",
        ))
        .unwrap();
        let api = config.workload_api.unwrap();
        assert_eq!(api.socket, Path::new("/run/garrison-agent/workload.sock"));
        assert_eq!(api.endpoint(), "unix:///run/garrison-agent/workload.sock");
        assert_eq!((api.allowed_uids, api.allowed_gids), (vec![1000], vec![]));
        assert_eq!(config.post_rotate_command.unwrap().len(), 3);

        for (extra, field) in [
            ("[workload_api]\n", "workload_api.allowed_uids"),
            (
                "[workload_api]\nsocket = \"/run/a.sock\"\nallowed_gids = [5]\n",
                "workload_api.socket",
            ),
            (
                "[workload_api]\nsocket = \"tcp://127.0.0.1:1\"\nallowed_gids = [5]\n",
                "workload_api.socket",
            ),
            ("post_rotate_command = []\n", "post_rotate_command"),
            ("post_rotate_timeout_ms = 0\n", "post_rotate_timeout_ms"),
            (
                "post_rotate_command = [\"systemctl\", \"reload\"]\n",
                "post_rotate_command",
            ),
        ] {
            match AgentConfig::from_toml(&with(extra)) {
                Err(AgentError::ConfigValue { field: got, .. }) => {
                    assert_eq!(got, field, "{extra}")
                }
                other => panic!("{extra}: {other:?}"),
            }
        }
        assert!(matches!(
            AgentConfig::from_toml(&with("[workload_api]\nallowed_uids = [1]\nmode = 1\n")),
            Err(AgentError::ParseConfig { .. })
        ));
    }

    #[test]
    fn example_parses_into_typed_values() {
        let config = AgentConfig::from_toml(EXAMPLE).unwrap();
        assert_eq!(config.attestor, "https://127.0.0.1:8443");
        assert_eq!(
            config.attestor_spiffe_id.as_str(),
            "spiffe://example.org/site/site-a/attestor"
        );
        assert_eq!(
            config.ek,
            EkSource::Persistent {
                handle: 0x8101_0001
            }
        );
        assert_eq!(config.ek_certificate_nv, 0x01c0_0002);
        assert_eq!(config.ak_algorithm, KeyAlgorithm::EccP256);
        assert_eq!(
            config.asserted.get("hostname").map(String::as_str),
            Some("node-1")
        );
        assert_eq!(
            config.backoff,
            Backoff::new(Duration::from_millis(250), Duration::from_secs(10))
        );
        assert_eq!(config.rpc_timeout, DEFAULT_RPC_TIMEOUT);
        assert_eq!(
            config.ak_blob_path(),
            Path::new("/var/lib/garrison-agent/ak.blob")
        );
    }

    #[test]
    fn optional_fields_take_defaults() {
        let minimal: String = EXAMPLE
            .lines()
            .filter(|l| !l.starts_with("ek_certificate_nv") && !l.starts_with("event_log"))
            .take_while(|l| !l.starts_with("[backoff]"))
            .collect::<Vec<_>>()
            .join("\n");
        let config = AgentConfig::from_toml(&minimal).unwrap();
        assert_eq!(config.ek_certificate_nv, ek_nv_index::RSA_2048);
        assert_eq!(config.event_log, Path::new(DEFAULT_EVENT_LOG_PATH));
        assert_eq!(
            config.backoff,
            Backoff::new(DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP)
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        for extra in ["insecure = true\n", "[backoff]\nbase_ms = 1\njitter = 3\n"] {
            let text = if extra.starts_with("[backoff]") {
                EXAMPLE.replace("[backoff]\nbase_ms = 250\n", extra)
            } else {
                format!("{extra}{EXAMPLE}")
            };
            let error = AgentConfig::from_toml(&text).unwrap_err();
            assert!(matches!(error, AgentError::ParseConfig { .. }), "{error:?}");
        }
    }

    #[test]
    fn ek_strings_map_to_sources() {
        assert_eq!(
            parse_ek_source("template:rsa").unwrap(),
            EkSource::Template {
                algorithm: KeyAlgorithm::Rsa2048
            }
        );
        assert_eq!(
            parse_ek_source("template:ecc").unwrap(),
            EkSource::Template {
                algorithm: KeyAlgorithm::EccP256
            }
        );
        assert_eq!(
            parse_ek_source("persistent:0x81010002").unwrap(),
            EkSource::Persistent {
                handle: 0x8101_0002
            }
        );
        for bad in [
            "persistent:81010001",
            "persistent:0x01c00002",
            "persistent:0xzz",
            "template:dsa",
            "rsa",
            "",
        ] {
            let error = parse_ek_source(bad).unwrap_err();
            assert!(
                matches!(error, AgentError::ConfigValue { field: "ek", .. }),
                "{bad}"
            );
        }
        let text = EXAMPLE.replace("persistent:0x81010001", "persistent:nope");
        assert!(matches!(
            AgentConfig::from_toml(&text),
            Err(AgentError::ConfigValue { field: "ek", .. })
        ));
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let cases = [
            (
                "https://127.0.0.1:8443",
                "http://127.0.0.1:8443",
                "attestor",
            ),
            ("cap_ms = 10000", "cap_ms = 100", "backoff.cap_ms"),
            ("base_ms = 250", "base_ms = 0", "backoff.base_ms"),
            ("0x01c00002", "0x81c00002", "ek_certificate_nv"),
        ];
        for (from, to, field) in cases {
            let error = AgentConfig::from_toml(&EXAMPLE.replace(from, to)).unwrap_err();
            assert!(
                matches!(&error, AgentError::ConfigValue { field: f, .. } if *f == field),
                "{to}: {error:?}"
            );
        }
        let bad_id = EXAMPLE.replace("spiffe://example.org/site", "https://example.org/site");
        assert!(matches!(
            AgentConfig::from_toml(&bad_id),
            Err(AgentError::AttestorSpiffeId { .. })
        ));
        let long = format!("{EXAMPLE}\n[asserted]\n");
        assert!(AgentConfig::from_toml(&long).is_err(), "duplicate table");
        let long_value = EXAMPLE.replace("\"node-1\"", &format!("\"{}\"", "x".repeat(300)));
        assert!(matches!(
            AgentConfig::from_toml(&long_value),
            Err(AgentError::ConfigValue {
                field: "asserted",
                ..
            })
        ));
    }
}
