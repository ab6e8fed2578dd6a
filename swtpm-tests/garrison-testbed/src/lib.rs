//! A whole Garrison site on one machine, for `garrison-demo` and the end-to-end tests: a
//! root → hub → site CA hierarchy, a signed strict admission policy drafted from a
//! known-good machine's log, a site configuration, and nodes whose swtpm PCRs carry real
//! measured-boot logs (replayed with tpm2-tools).
//!
//! It writes only inside the directory it is given and starts only swtpm processes, which
//! are killed when their [`Node`] is dropped. It must never be used to run a real site: the
//! TPMs it trusts are software TPMs.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use garrison_ca::{
    Authority, CaRole, IntermediateParams, Issued, KeyAlgorithm, PathLen, RootParams, SpiffeId,
    SubjectKey, SvidParams, TrustDomain, certificates_to_pem,
};
use garrison_eventlog::{EventLog, HashAlg};
use garrison_swtpm::{Swtpm, SwtpmOptions};
use ring::rand::SystemRandom;
use time::{Duration, OffsetDateTime};

/// The trust domain of every testbed.
pub const TRUST_DOMAIN: &str = "example.org";
/// The site name of every testbed.
pub const SITE: &str = "site-a";
/// swtpm's TPM_MANUFACTURER ("IBM"), as written into its EK certificates.
pub const SWTPM_MANUFACTURER: &str = "id:00001014";
/// The strict admission policy shipped in `policy/policies/strict`.
pub const STRICT_POLICY: &str = include_str!("../../../policy/policies/strict/admission.rego");
/// A known-good boot: RHEL 9 with shim, Secure Boot on.
pub const GOOD_LOG: &[u8] =
    include_bytes!("../../../testdata/eventlogs/tpm2tools-event-moklisttrusted.bin");
/// Ubuntu 21.04 on GCE with Secure Boot off.
pub const INSECURE_BOOT_LOG: &[u8] =
    include_bytes!("../../../testdata/eventlogs/tpm2tools-event-gce-ubuntu-2104-log.bin");

/// Why the testbed could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestbedError {
    /// Certificate issuance failed.
    #[error("CA")]
    Ca(#[from] garrison_ca::CaError),
    /// The policy bundle could not be made.
    #[error("policy")]
    Policy(#[from] garrison_policy::PolicyError),
    /// A boot log did not parse.
    #[error("event log")]
    EventLog(#[from] garrison_eventlog::EventLogError),
    /// swtpm failed.
    #[error("swtpm")]
    Swtpm(#[from] garrison_swtpm::SwtpmError),
    /// A file could not be written, or a tool not run.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// tpm2_pcrextend refused.
    #[error("tpm2_pcrextend: {0}")]
    Extend(String),
    /// The site configuration did not load.
    #[error("site config")]
    Config(#[from] garrison_attestor::ConfigError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestbedError {
    let what = what.into();
    move |source| TestbedError::Io { what, source }
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), TestbedError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    std::fs::write(path, contents).map_err(io(format!("writing {}", path.display())))
}

/// A site's CAs and policy under one directory.
pub struct Site {
    /// The directory everything lives in.
    pub dir: PathBuf,
    /// The site intermediate CA.
    pub site_ca: Authority,
    /// The root CA (kept for tests that need to issue out-of-band certificates).
    pub root_ca: Authority,
}

impl Site {
    /// CA hierarchy (root → hub → site, written under `dir/ca`) and a signed strict policy
    /// bundle (`dir/policy/strict.bundle`) trusting swtpm EKs and node-1's boot.
    pub fn create(dir: &Path, now: OffsetDateTime) -> Result<Self, TestbedError> {
        Self::create_with(dir, now, Duration::days(365), Duration::days(30))
    }

    /// [`Site::create`] with the hub and site CAs living `hub_ttl` and `site_ttl` from `now`.
    pub fn create_with(
        dir: &Path,
        now: OffsetDateTime,
        hub_ttl: Duration,
        site_ttl: Duration,
    ) -> Result<Self, TestbedError> {
        let rng = SystemRandom::new();
        let root = Authority::new_root(
            &RootParams {
                trust_domain: TrustDomain::new(TRUST_DOMAIN).map_err(garrison_ca::CaError::from)?,
                name: "Garrison Testbed Root".into(),
                ttl: Duration::days(3650),
                path_len: 2,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            now,
            &rng,
        )?;
        write_issued(&dir.join("ca/root"), &root)?;
        let root = Authority::from_issued(root)?;
        let hub = issue_ca(&root, "hub", CaRole::Hub, hub_ttl, now, &rng)?;
        write_issued(&dir.join("ca/hub"), &hub)?;
        let hub = Authority::from_issued(hub)?;
        let site = issue_ca(&hub, SITE, CaRole::Site(SITE.into()), site_ttl, now, &rng)?;
        write_issued(&dir.join("ca/site"), &site)?;
        let site = Site {
            dir: dir.to_owned(),
            site_ca: Authority::from_issued(site)?,
            root_ca: root,
        };
        // The policy signer outlives a long-lived site CA (tests that run a site past its CA's
        // expiry restart it then, and its bundle must still verify).
        let signer_ttl = if site_ttl > Duration::days(30) {
            site_ttl * 2
        } else {
            Duration::days(30)
        };
        site.sign_policy(now, signer_ttl, &rng)?;
        Ok(site)
    }

    fn sign_policy(
        &self,
        now: OffsetDateTime,
        signer_ttl: Duration,
        rng: &SystemRandom,
    ) -> Result<(), TestbedError> {
        let signer_id = SpiffeId::parse(&format!("spiffe://{TRUST_DOMAIN}/policy/signer/testbed"))
            .map_err(garrison_ca::CaError::from)?;
        let signer = self.root_ca.issue_svid(
            SvidParams {
                spiffe_id: signer_id,
                ttl: signer_ttl,
                max_ttl: signer_ttl,
                subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            now,
            rng,
        )?;
        write_issued(&self.dir.join("ca/policy-signer"), &signer)?;
        let key = signer
            .key
            .as_ref()
            .map(|k| k.to_pkcs8_pem().expose().to_owned())
            .unwrap_or_default();
        let signer =
            garrison_policy::BundleSigner::from_pem(&key, &certificates_to_pem(&signer.chain))?;
        let log = EventLog::parse(GOOD_LOG)?;
        let (claims, replayed) = garrison_policy::golden::trusted_claims(&log);
        let mut data = garrison_policy::golden::draft_strict_data(&claims, &replayed);
        if let Some(strict) = data.get_mut("strict").and_then(|v| v.as_object_mut()) {
            strict.insert(
                "trusted_ek_manufacturers".into(),
                serde_json::json!({ SWTPM_MANUFACTURER: "swtpm (testbed TPMs)" }),
            );
        }
        let mut files = garrison_policy::BundleFiles::new();
        files.insert("admission.rego".into(), STRICT_POLICY.as_bytes().to_vec());
        files.insert(
            "data.json".into(),
            serde_json::to_vec_pretty(&data).unwrap_or_default(),
        );
        let signed = signer.sign(&files, "testbed-strict", 1, now, rng)?;
        write(
            &self.dir.join("policy/data.json"),
            serde_json::to_vec_pretty(&data).unwrap_or_default(),
        )?;
        write(
            &self.policy_bundle(),
            garrison_policy::encode_archive(&signed),
        )
    }

    /// The site's strict policy signed again under bundle `sequence` (archive bytes): what a
    /// hub publishes as a newer (or, below the one in force, a rolled-back) bundle.
    pub fn resigned_policy(
        &self,
        sequence: u64,
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, TestbedError> {
        let read =
            |path: PathBuf| std::fs::read(&path).map_err(io(format!("reading {}", path.display())));
        let key = read(self.dir.join("ca/policy-signer/key.pem"))?;
        let chain = read(self.dir.join("ca/policy-signer/chain.pem"))?;
        let signer = garrison_policy::BundleSigner::from_pem(
            &String::from_utf8_lossy(&key),
            &String::from_utf8_lossy(&chain),
        )?;
        let mut files = garrison_policy::BundleFiles::new();
        files.insert("admission.rego".into(), STRICT_POLICY.as_bytes().to_vec());
        files.insert("data.json".into(), read(self.dir.join("policy/data.json"))?);
        let signed = signer.sign(
            &files,
            "testbed-strict",
            sequence,
            now,
            &SystemRandom::new(),
        )?;
        Ok(garrison_policy::encode_archive(&signed))
    }

    /// The signed policy bundle.
    pub fn policy_bundle(&self) -> PathBuf {
        self.dir.join("policy/strict.bundle")
    }

    /// The root certificate (the agents' bootstrap bundle).
    pub fn bundle_pem(&self) -> PathBuf {
        self.dir.join("ca/root/cert.pem")
    }

    /// The attestor's SPIFFE ID.
    pub fn attestor_id(&self) -> String {
        format!("spiffe://{TRUST_DOMAIN}/site/{SITE}/attestor")
    }

    /// Write `site.toml` for an attestor on `listen` with `database`, trusting the EK CAs of
    /// `trusted` nodes, with `extra` TOML lines appended (an `extra` `max_svid_ttl` replaces
    /// the default of 1h), and load it.
    pub fn write_config(
        &self,
        listen: SocketAddr,
        database: &str,
        trusted: &[&Node],
        extra: &str,
    ) -> Result<garrison_attestor::SiteConfig, TestbedError> {
        let mut roots = Vec::new();
        for node in trusted {
            let name = format!("ek-roots/{}-manufacturer-ca.pem", node.name);
            write(&self.dir.join(&name), node.tpm.manufacturer_ca_pem()?)?;
            roots.push(format!("\"{name}\""));
        }
        let toml = format!(
            "# Site attestor configuration written by garrison-testbed.\n\
             site = \"{SITE}\"\nlisten = \"{listen}\"\nca_dir = \"ca/site\"\n\
             database = \"{database}\"\nek_roots = [{}]\n\
             policy_bundle = \"policy/strict.bundle\"\n{ttl}{extra}",
            roots.join(", "),
            ttl = if extra.contains("max_svid_ttl") {
                ""
            } else {
                "max_svid_ttl = \"1h\"\n"
            },
        );
        let path = self.dir.join("site.toml");
        write(&path, toml)?;
        Ok(garrison_attestor::SiteConfig::load(&path)?)
    }
}

/// A node: its own swtpm with a boot log replayed into it, and a directory for its agent.
pub struct Node {
    /// Node name (`node-1`).
    pub name: String,
    /// Its TPM.
    pub tpm: Swtpm,
    /// Its directory: `tpm/`, `binary_bios_measurements`, `agent.toml`, `state/`, `svid/`.
    pub dir: PathBuf,
}

impl Node {
    /// Start a swtpm under `site_dir/nodes/<name>` and replay `log` into its PCRs.
    pub fn start(site_dir: &Path, name: &str, log: &[u8]) -> Result<Self, TestbedError> {
        let dir = site_dir.join("nodes").join(name);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let tpm = Swtpm::start(&SwtpmOptions::keep_dir(dir.join("tpm")))?;
        replay_into(&tpm, log)?;
        write(&dir.join("binary_bios_measurements"), log)?;
        Ok(Node {
            name: name.to_owned(),
            tpm,
            dir,
        })
    }

    /// Write this node's `agent.toml` for an attestor at `attestor` (`https://host:port`).
    pub fn write_agent_config(&self, site: &Site, attestor: &str) -> Result<PathBuf, TestbedError> {
        let toml = format!(
            "attestor = \"{attestor}\"\nattestor_spiffe_id = \"{id}\"\n\
             trust_bundle = \"{bundle}\"\ntcti = \"{tcti}\"\nek = \"persistent:0x81010001\"\n\
             ek_certificate_nv = 0x01c00002\nevent_log = \"{log}\"\nstate_dir = \"{state}\"\nsvid_dir = \"{svid}\"\n\
             [asserted]\nhostname = \"{name}\"\n",
            id = site.attestor_id(),
            bundle = site.bundle_pem().display(),
            tcti = self.tpm.tcti(),
            log = self.dir.join("binary_bios_measurements").display(),
            state = self.dir.join("state").display(),
            svid = self.dir.join("svid").display(),
            name = self.name,
        );
        let path = self.dir.join("agent.toml");
        write(&path, toml)?;
        Ok(path)
    }
}

/// Extend every extended event's SHA-256 digest into the TPM, in log order; returns how many.
pub fn replay_into(tpm: &Swtpm, log: &[u8]) -> Result<usize, TestbedError> {
    let log = EventLog::parse(log)?;
    let specs: Vec<String> = log
        .events()
        .iter()
        .filter(|e| e.is_extended())
        .filter_map(|e| {
            e.digest(HashAlg::Sha256)
                .map(|d| format!("{}:sha256={}", e.pcr, hex::encode(d)))
        })
        .collect();
    for chunk in specs.chunks(16) {
        let out = Command::new("tpm2_pcrextend")
            .args(chunk)
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .env("TSS2_LOG", "all+none")
            .output()
            .map_err(io("running tpm2_pcrextend (tpm2-tools)"))?;
        if !out.status.success() {
            return Err(TestbedError::Extend(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
    }
    Ok(specs.len())
}

/// A free TCP address on loopback (bound, then released).
pub fn free_local_address() -> Result<SocketAddr, TestbedError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("binding a free port"))?;
    listener
        .local_addr()
        .map_err(io("reading the bound address"))
}

fn issue_ca(
    issuer: &Authority,
    name: &str,
    role: CaRole,
    ttl: Duration,
    now: OffsetDateTime,
    rng: &SystemRandom,
) -> Result<Issued, TestbedError> {
    Ok(issuer.issue_intermediate(
        IntermediateParams {
            name: name.into(),
            role,
            ttl,
            path_len: PathLen::OneBelowIssuer,
            subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
        },
        now,
        rng,
    )?)
}

/// Write cert.pem, chain.pem, bundle.pem and (0600) key.pem.
fn write_issued(dir: &Path, issued: &Issued) -> Result<(), TestbedError> {
    write(
        &dir.join("cert.pem"),
        certificates_to_pem(std::slice::from_ref(&issued.certificate)),
    )?;
    write(&dir.join("chain.pem"), certificates_to_pem(&issued.chain))?;
    write(&dir.join("bundle.pem"), certificates_to_pem(&issued.roots))?;
    if let Some(key) = &issued.key {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join("key.pem");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(format!("creating {}", path.display())))?;
        file.write_all(key.to_pkcs8_pem().expose().as_bytes())
            .map_err(io(format!("writing {}", path.display())))?;
    }
    Ok(())
}
