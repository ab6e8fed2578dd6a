//! The whole job on one machine, on embedded defaults.
//!
//! Builds a root → hub → site CA hierarchy, signs an admission-policy bundle, starts a site
//! attestor on SQLite in this process, starts one swtpm per node with a real machine's
//! measured-boot log replayed into its PCRs (tpm2-tools), and runs `garrison-agent` for each
//! node as a separate process, exactly as on a real node. Expected outcomes:
//! * node-1 (RHEL with shim, Secure Boot on) enrolls, then renews;
//! * node-2 (Ubuntu on GCE, Secure Boot off) is refused by the strict policy;
//! * node-3 (a TPM whose EK certificate comes from an untrusted manufacturer CA) is refused.
//!
//! Then the auditor's view, with the `garrison` binary as an auditor would run it: an
//! auditor SVID (spiffe://<td>/auditor/demo) queries the log through the attestor's Audit
//! service, proves a record's inclusion in a signed checkpoint and checks that proof against
//! the root certificate alone, verifies the whole log, fetches node-1's latest decision as a
//! signed attestation result (an EAR JWT, checked against the root), and is shown that a
//! node's SVID is refused; finally the log is exported to an archive that verifies offline,
//! and every stored decision is replayed with the policy that was in force.
//!
//! Between the two, the hub (`garrison hub serve`, its own process): the site pushes its
//! log and the hub cosigns it; the hub is killed and node-1 still renews; node-1 is revoked
//! at the hub meanwhile; when the hub is back the site syncs, applies the revocation, and
//! node-1's next renewal is refused with `revoked`.
//!
//! It exits 0 only if every outcome was as expected. swtpm processes are killed and the
//! attestor stopped on the way out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use clap::Args;
use garrison_attestor::SystemClock;
use garrison_ca::{CertificateSummary, certificates_from_pem};
use garrison_log::{AttestationLog, LogConfig, Query};
use garrison_testbed::{GOOD_LOG, INSECURE_BOOT_LOG, Node, Site, free_local_address};
use time::OffsetDateTime;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep everything the demo makes (CAs, keys, configs, TPM state, the log) in DIR.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The agent binary (default: garrison-agent next to this executable).
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// The garrison binary, for the auditor's commands (default: garrison next to this
    /// executable).
    #[arg(long)]
    garrison_bin: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Enroll,
    Refused(&'static str),
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temp;
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.canonicalize()?
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let agent_bin = match args.agent_bin {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("garrison-agent"),
    };
    let garrison_bin = match args.garrison_bin {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("garrison"),
    };
    ensure!(
        garrison_bin.exists(),
        "garrison binary {} not found (build it: cargo build -p garrison, or pass --garrison-bin)",
        garrison_bin.display()
    );
    ensure!(
        agent_bin.exists(),
        "agent binary {} not found (build it: cargo build -p garrison-agent)",
        agent_bin.display()
    );
    println!("demo directory: {}", dir.display());
    let result = demo(&dir, &agent_bin, &garrison_bin).await;
    if args.dir.is_none() {
        println!("(temporary directory removed; use --dir DIR to keep it)");
    }
    result
}

async fn demo(dir: &Path, agent_bin: &Path, garrison_bin: &Path) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    step("CA hierarchy: offline root -> hub -> site-a; strict admission policy, signed");
    let site = Site::create(dir, now).context("creating the site")?;
    println!(
        "CAs under {}; policy bundle {}",
        dir.join("ca").display(),
        site.policy_bundle().display()
    );
    step("three nodes, each with its own swtpm; real boot logs replayed into the PCRs");
    let plan = [
        (
            "node-1",
            GOOD_LOG,
            Expect::Enroll,
            "RHEL 9 with shim, Secure Boot on",
        ),
        (
            "node-2",
            INSECURE_BOOT_LOG,
            Expect::Refused("policy-deny"),
            "Ubuntu 21.04 on GCE, Secure Boot off",
        ),
        (
            "node-3",
            GOOD_LOG,
            Expect::Refused("ek-trust"),
            "EK certificate from an untrusted manufacturer CA",
        ),
    ];
    let mut nodes = Vec::new();
    for (name, log, expect, about) in plan {
        let node = Node::start(dir, name, log).with_context(|| format!("starting {name}"))?;
        println!("{name}: {} ({about})", node.tpm.tcti());
        nodes.push((node, expect));
    }
    let addr = free_local_address()?;
    // The site trusts the EK CAs of node-1 and node-2 (in real life: the TPM vendors' roots).
    let trusted: Vec<&Node> = nodes
        .iter()
        .filter(|(_, e)| *e != Expect::Refused("ek-trust"))
        .map(|(n, _)| n)
        .collect();
    let audit_addr = free_local_address()?;
    let ops_addr = free_local_address()?;
    let hub_addr = free_local_address()?;
    let config = site.write_config(
        addr,
        "sqlite://log.db",
        &trusted,
        &format!(
            "audit_listen = \"{audit_addr}\"\nops_listen = \"{ops_addr}\"\n\
             [hub]\naddress = \"{hub_addr}\"\nsync_interval = \"1s\"\nmax_backoff = \"2s\"\ntimeout = \"2s\"\n"
        ),
    )?;
    step(&format!(
        "hub on {hub_addr} (hub CA, SQLite here; PostgreSQL for a real hub): garrison hub serve"
    ));
    std::fs::write(
        dir.join("hub.toml"),
        format!("listen = \"{hub_addr}\"\nca_dir = \"ca/hub\"\ndatabase = \"sqlite://hub.db\"\n"),
    )?;
    let mut hub = Hub::start(garrison_bin, dir, hub_addr).await?;
    step(&format!(
        "site attestor on {addr}, SQLite log {}",
        config.database
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        garrison_attestor::server::run(config, Arc::new(SystemClock), async {
            let _ = stop_rx.await;
        })
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut outcome = run_agents(&site, agent_bin, &nodes, &format!("https://{addr}")).await;
    if outcome.is_ok() {
        outcome = workload_api(&site, dir, agent_bin, &nodes, addr).await;
    }
    if outcome.is_ok() {
        outcome = probes(ops_addr).await;
    }
    if outcome.is_ok() {
        step("attestation log");
        outcome = print_log(dir).await;
    }
    if outcome.is_ok() {
        outcome =
            partition_and_revocation(&site, dir, agent_bin, garrison_bin, &nodes, addr, &mut hub)
                .await;
    }
    if outcome.is_ok() {
        let node_svid = nodes
            .first()
            .map(|(node, _)| node.dir.join("svid"))
            .context("no node")?;
        outcome = auditor_view(&site, dir, garrison_bin, audit_addr, &node_svid).await;
    }
    let _ = stop_tx.send(());
    hub.stop();
    let served = server.await.context("attestor task")?;
    outcome?;
    served.context("attestor")?;
    offline_audit(&site, dir, garrison_bin).await?;
    println!("\ndemo complete: every outcome was as expected");
    Ok(())
}

/// The hub, as its own process (`garrison hub serve`).
struct Hub {
    bin: PathBuf,
    dir: PathBuf,
    addr: std::net::SocketAddr,
    child: Option<tokio::process::Child>,
}

impl Hub {
    async fn start(bin: &Path, dir: &Path, addr: std::net::SocketAddr) -> anyhow::Result<Hub> {
        let mut hub = Hub {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            addr,
            child: None,
        };
        hub.restart().await?;
        Ok(hub)
    }

    async fn restart(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("hub.log"))?;
        let child = tokio::process::Command::new(&self.bin)
            .args(["hub", "serve", "--config", "hub.toml"])
            .current_dir(&self.dir)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting the hub")?;
        self.child = Some(child);
        for _ in 0..250 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        bail!(
            "the hub did not come up (see {})",
            self.dir.join("hub.log").display()
        )
    }

    /// SIGKILL: a hub that vanishes, as in a real outage.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
        }
    }
}

/// The site syncs with its hub; the hub goes away and the site keeps renewing; a node is
/// revoked at the hub meanwhile; when the hub is back the site applies the revocation and
/// refuses the node's next renewal.
async fn partition_and_revocation(
    site: &Site,
    dir: &Path,
    agent_bin: &Path,
    bin: &Path,
    nodes: &[(Node, Expect)],
    attestor: std::net::SocketAddr,
    hub: &mut Hub,
) -> anyhow::Result<()> {
    step("the site pushes its log to the hub, which checks and cosigns it");
    wait_for_sync(dir, "synced").await?;
    let hub_toml = path(&dir.join("hub.toml"));
    let (ok, _) = garrison(bin, &["hub", "status", "--config", &hub_toml]).await?;
    ensure!(ok, "hub status failed");
    let (node, _) = nodes.first().context("no node")?;
    let config = node.write_agent_config(site, &format!("https://{attestor}"))?;
    step("partition: the hub is killed; the site goes on (node-1 renews)");
    hub.kill().await;
    let out = agent(agent_bin, &["renew", "--once", "--config"], &config).await?;
    print_agent(&out);
    ensure!(
        out.status.success(),
        "node-1 could not renew while the hub was away"
    );
    let node_id = enrolled_node_id(dir).await?;
    step("meanwhile, at the hub: node-1 is revoked (a new signed revocation list)");
    let (ok, _) = garrison(
        bin,
        &[
            "node",
            "revoke",
            "--hub-config",
            &hub_toml,
            "--node",
            &node_id,
            "--reason",
            "demo: decommissioned",
        ],
    )
    .await?;
    ensure!(ok, "revoking at the hub failed");
    step("the hub is back: the site syncs, applies the revocation, pushes what it logged");
    hub.restart().await?;
    wait_for_sync(dir, "revoked").await?;
    // The same round pushes what the site logged meanwhile (the renewal, the revoke record).
    wait_for_sync(dir, "synced").await?;
    let (ok, _) = garrison(bin, &["hub", "status", "--config", &hub_toml]).await?;
    ensure!(ok, "hub status failed");
    step("the site's autonomy as its operator sees it: hub link, CA expiry, offline budget");
    let site_toml = path(&dir.join("site.toml"));
    let (ok, shown) = garrison(bin, &["attestor", "status", "--config", &site_toml]).await?;
    ensure!(
        ok && shown.contains("offline budget:") && shown.contains("hub:"),
        "attestor status does not show the offline budget"
    );
    step("node-1 renews again: refused, revoked at every site that has the list");
    let out = agent(agent_bin, &["renew", "--once", "--config"], &config).await?;
    check_outcome("node-1", Expect::Refused("revoked"), &out)?;
    let (ok, listed) = garrison(bin, &["node", "list", "--config", &site_toml]).await?;
    ensure!(
        ok && listed.contains("REVOKED"),
        "node list does not show node-1 revoked"
    );
    let (ok, shown) = garrison(
        bin,
        &["node", "show", "--config", &site_toml, "--node", &node_id],
    )
    .await?;
    ensure!(
        ok && shown.contains("revoked     yes") && shown.contains("hub-revocation-list"),
        "node show does not show the hub's revocation"
    );
    Ok(())
}

/// The enrolled node's id (EK hash), from the site's log.
async fn enrolled_node_id(dir: &Path) -> anyhow::Result<String> {
    let log =
        AttestationLog::open_read_only(&format!("sqlite://{}", dir.join("log.db").display()), None)
            .await?;
    let enrolled = log
        .query(&Query {
            kind: Some(garrison_log::RecordKind::Enroll),
            decision: Some(garrison_log::Decision::Allow),
            ..Default::default()
        })
        .await?;
    log.close().await;
    enrolled
        .first()
        .and_then(|r| r.record.node_id.clone())
        .context("no enrolled node in the log")
}

/// Waits (up to 30 s) until the hub holds every record of the site's log and has cosigned
/// it (`synced`), or until the site has applied a revocation from the hub (`revoked`).
async fn wait_for_sync(dir: &Path, what: &str) -> anyhow::Result<()> {
    let site_url = format!("sqlite://{}", dir.join("log.db").display());
    let hub_url = format!("sqlite://{}", dir.join("hub.db").display());
    let origin =
        garrison_transparency::site_origin(garrison_testbed::TRUST_DOMAIN, garrison_testbed::SITE);
    let witness = garrison_transparency::hub_witness_name(garrison_testbed::TRUST_DOMAIN);
    for _ in 0..150 {
        let site_log = AttestationLog::open_read_only(&site_url, None).await?;
        let done = match what {
            "revoked" => site_log.latest_revocation_list().await?.is_some(),
            _ => {
                let size = site_log.tree_size().await?;
                let cosigned = site_log
                    .latest_cosignature(&witness)
                    .await?
                    .map_or(0, |c| c.size);
                let held = match AttestationLog::open_read_only(&hub_url, Some(&origin)).await {
                    Ok(hub) => {
                        let held = hub.tree_size().await?;
                        hub.close().await;
                        held
                    }
                    Err(_) => 0,
                };
                held == size && cosigned == size
            }
        };
        site_log.close().await;
        if done {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    bail!("the site and the hub did not sync ({what}) within 30 s")
}

/// An auditor's SVID (issued by the root here; in production by the hub or an offline
/// ceremony), written where `garrison audit` reads it.
fn auditor_identity(site: &Site, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let id = garrison_ca::SpiffeId::parse(&format!(
        "spiffe://{}/auditor/demo",
        garrison_testbed::TRUST_DOMAIN
    ))?;
    let issued = site.root_ca.issue_svid(
        garrison_ca::SvidParams {
            spiffe_id: id,
            ttl: time::Duration::hours(1),
            max_ttl: time::Duration::hours(1),
            subject_key: garrison_ca::SubjectKey::Generate(garrison_ca::KeyAlgorithm::EcdsaP256),
        },
        OffsetDateTime::now_utc(),
        &ring::rand::SystemRandom::new(),
    )?;
    let auditor = dir.join("auditor");
    std::fs::create_dir_all(&auditor)?;
    let svid = auditor.join("svid.pem");
    let key = auditor.join("key.pem");
    std::fs::write(&svid, certificates_from_pem_text(&issued.chain))?;
    let key_pem = issued.key.context("the auditor key")?.to_pkcs8_pem();
    std::fs::write(&key, key_pem.expose())?;
    Ok((svid, key))
}

fn certificates_from_pem_text(chain: &[Vec<u8>]) -> String {
    garrison_ca::certificates_to_pem(chain)
}

/// Runs `garrison` with `args`, prints what it says, and returns whether it succeeded and its
/// standard output.
async fn garrison(bin: &Path, args: &[&str]) -> anyhow::Result<(bool, String)> {
    println!("$ garrison {}", args.join(" "));
    let out = tokio::process::Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .await
        .with_context(|| format!("running {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in stdout
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        println!("  | {line}");
    }
    Ok((out.status.success(), stdout))
}

async fn auditor_view(
    site: &Site,
    dir: &Path,
    bin: &Path,
    audit_addr: std::net::SocketAddr,
    node_svid: &Path,
) -> anyhow::Result<()> {
    step("the auditor's view, through the attestor's Audit service (auditor SVIDs only)");
    let (svid, key) = auditor_identity(site, dir)?;
    let site_toml = dir.join("site.toml");
    let (ok, _) = garrison(bin, &["log", "checkpoint", "--config", &path(&site_toml)]).await?;
    ensure!(ok, "signing a checkpoint failed");
    let root = path(&site.bundle_pem());
    let url = format!("https://{audit_addr}");
    let attestor_id = site.attestor_id();
    let remote = |svid: &Path, key: &Path| {
        vec![
            "--attestor".to_owned(),
            url.clone(),
            "--attestor-id".to_owned(),
            attestor_id.clone(),
            "--svid".to_owned(),
            path(svid),
            "--key".to_owned(),
            path(key),
            "--bundle".to_owned(),
            root.clone(),
        ]
    };
    let with = |command: &[&str], extra: &[String]| -> Vec<String> {
        command
            .iter()
            .map(|s| (*s).to_owned())
            .chain(extra.iter().cloned())
            .collect()
    };
    let auditor = remote(&svid, &key);
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        garrison(bin, &refs).await
    };
    let (ok, listed) = run(with(
        &["audit", "query", "--kind", "enroll", "--decision", "allow"],
        &auditor,
    ))
    .await?;
    ensure!(
        ok && listed.contains("enroll"),
        "the auditor's query failed"
    );
    let sequence = listed
        .lines()
        .find_map(|l| {
            l.strip_prefix('#')
                .and_then(|l| l.split_whitespace().next())
        })
        .context("no enroll record listed")?
        .to_owned();
    let proof = path(&dir.join("auditor/record.tlog-proof"));
    let (ok, _) = run(with(
        &["audit", "prove", "--sequence", &sequence, "--out", &proof],
        &auditor,
    ))
    .await?;
    ensure!(ok, "proving record #{sequence} failed");
    println!("  (the proof, a C2SP tlog-proof, is in {proof})");
    let (ok, checked) = run(with(
        &["audit", "check-proof", &proof, "--root", &root],
        &auditor,
    ))
    .await?;
    ensure!(
        ok && checked.contains("OK: record"),
        "the inclusion proof did not verify against the root"
    );
    let (ok, verified) = run(with(&["audit", "verify", "--root", &root], &auditor)).await?;
    ensure!(
        ok && verified.contains("OK: every record"),
        "the log did not verify"
    );
    let archive = path(&dir.join("auditor/through-the-service.db"));
    let _ = std::fs::remove_file(&archive);
    let (ok, wrote) = run(with(&["audit", "export", "--out", &archive], &auditor)).await?;
    ensure!(
        ok && wrote.contains(" records, "),
        "the export through the Audit service failed"
    );
    println!("  (an archive taken through the service, without database access: {archive})");
    step("node-1's latest decision as an attestation result for relying parties (EAR JWT)");
    let node_1 = listed
        .lines()
        .find_map(|l| l.split_whitespace().skip_while(|w| *w != "node").nth(1))
        .context("no node id listed")?
        .to_owned();
    let (ok, claims) = run(with(
        &[
            "audit", "ear", "--node", &node_1, "--root", &root, "--claims",
        ],
        &auditor,
    ))
    .await?;
    // Revoked at the hub above: the latest decision about it is the revocation (a `revoke`
    // record), whose result is an untrustworthy instance.
    ensure!(
        ok && claims.contains("\"eat_profile\": \"tag:ietf.org,2026:rats/ear#04\"")
            && claims.contains("\"ear_status\": \"contraindicated\"")
            && claims.contains("\"instance-identity\": 96"),
        "node-1's attestation result is not that of a revoked node"
    );
    println!(
        "  (the JWT itself: the same command without --claims; it verifies with the root alone)"
    );
    step("a node's SVID is not an auditor's: the Audit service refuses it");
    let (ok, _) = run(with(
        &["audit", "query"],
        &remote(&node_svid.join("svid.pem"), &node_svid.join("svid.key")),
    ))
    .await?;
    ensure!(!ok, "a node's SVID was allowed to audit");
    Ok(())
}

/// After the attestor stopped (its last checkpoint signed): an archive an auditor takes
/// away, verified with nothing but the root certificate.
async fn offline_audit(site: &Site, dir: &Path, bin: &Path) -> anyhow::Result<()> {
    step(
        "offline: export the log to an archive and verify it against the root alone, and \
         against the checkpoint of the proof taken earlier (the log must still reproduce it)",
    );
    let archive = path(&dir.join("auditor/log-archive.db"));
    let _ = std::fs::remove_file(&archive);
    let db = format!("sqlite://{}", dir.join("log.db").display());
    let (ok, _) = garrison(bin, &["audit", "export", "--db", &db, "--out", &archive]).await?;
    ensure!(ok, "export failed");
    let seen = path(&dir.join("auditor/record.tlog-proof"));
    let (ok, verified) = garrison(
        bin,
        &[
            "audit",
            "verify",
            "--db",
            &archive,
            "--root",
            &path(&site.bundle_pem()),
            "--checkpoint",
            &seen,
        ],
    )
    .await?;
    ensure!(
        ok && verified.contains("OK: every record")
            && verified.contains("checkpoints given with --checkpoint: 1"),
        "the archive did not verify"
    );
    step(
        "the site's own database: the revocations and node states the attestor decides on, and \
         the hub's revocation list it keeps, checked against the log",
    );
    let (ok, verified) = garrison(
        bin,
        &[
            "audit",
            "verify",
            "--db",
            &db,
            "--root",
            &path(&site.bundle_pem()),
            "--site-database",
        ],
    )
    .await?;
    ensure!(
        ok && verified.contains("OK: every record")
            && verified.contains("revocations the attestor enforces, checked against the log: ")
            && verified.contains("node states the attestor keeps, checked against the log: ")
            && verified.contains("hub revocation list #1 kept: 1 entries, 0 not enforced"),
        "the site's database did not verify with its enforcement state"
    );
    step(
        "replay: the appraisal run again over every stored decision, with the policy then in force",
    );
    let root = path(&site.bundle_pem());
    let (ok, _) = garrison(bin, &["audit", "replay", "--db", &archive, "--root", &root]).await?;
    ensure!(ok, "replay did not reproduce every replayable decision");
    Ok(())
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn step(text: &str) {
    println!("\n== {text}");
}

/// node-1's agent runs as a daemon serving the SPIFFE Workload API; a workload fetches the
/// node's SVID from it with the `spiffe` crate's unmodified client.
async fn workload_api(
    site: &Site,
    dir: &Path,
    agent_bin: &Path,
    nodes: &[(Node, Expect)],
    attestor: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let (node, _) = nodes.first().context("no node")?;
    let config = node.write_agent_config(site, &format!("https://{attestor}"))?;
    let socket = dir.join("node-1-run").join("workload.sock");
    let uid = own_uid()?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!(
        "\n[workload_api]\nsocket = \"unix://{}\"\nallowed_uids = [{uid}]\n",
        socket.display()
    ));
    let daemon_config = dir.join("node-1-daemon.toml");
    std::fs::write(&daemon_config, text)?;
    step(&format!(
        "node-1: garrison-agent run, serving the SPIFFE Workload API on unix://{}",
        socket.display()
    ));
    let mut daemon = tokio::process::Command::new(agent_bin)
        .args(["run", "--config"])
        .arg(&daemon_config)
        .env("TSS2_LOG", "all+none")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("starting garrison-agent run")?;
    let endpoint = format!("unix://{}", socket.display());
    let mut fetched = None;
    for _ in 0..250 {
        if let Ok(client) = spiffe::WorkloadApiClient::connect_to(&endpoint).await
            && let Ok(svid) = client.fetch_x509_svid().await
        {
            fetched = Some((client, svid));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (client, svid) = fetched.context("no SVID from the Workload API")?;
    step("a workload (the spiffe crate's client, unmodified) fetches its X.509-SVID and bundle");
    println!("  spiffe id: {}", svid.spiffe_id());
    println!(
        "  chain: {} certificates, leaf first",
        svid.cert_chain().len()
    );
    let bundles = client.fetch_x509_bundles().await?;
    let trust_domain = svid.spiffe_id().trust_domain().clone();
    let roots = bundles
        .get(&trust_domain)
        .map(|bundle| bundle.authorities().len())
        .unwrap_or(0);
    println!("  bundle for {trust_domain}: {roots} root(s)");
    ensure!(roots > 0, "no bundle for the trust domain");
    let on_disk = std::fs::read_to_string(node.dir.join("svid/svid.pem"))?;
    let on_disk = certificates_from_pem(&on_disk)?;
    ensure!(
        on_disk.first().map(Vec::as_slice) == Some(svid.leaf().as_ref()),
        "the Workload API and svid.pem disagree"
    );
    println!("  the same certificate as node-1's svid.pem");
    // SIGTERM: the agent stops serving and removes its socket.
    if let Some(pid) = daemon.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    let status = tokio::time::timeout(std::time::Duration::from_secs(15), daemon.wait())
        .await
        .context("the agent did not stop on SIGTERM")??;
    ensure!(status.success(), "garrison-agent run exited with {status}");
    ensure!(!socket.exists(), "the socket was left behind");
    Ok(())
}

/// The attestor's probes and metrics, as a monitoring system sees them.
async fn probes(ops: std::net::SocketAddr) -> anyhow::Result<()> {
    step(&format!(
        "the attestor's probes and metrics on http://{ops}: /readyz, /metrics"
    ));
    let (status, body) = http_get(ops, "/readyz").await?;
    for line in body.lines() {
        println!("  | {line}");
    }
    ensure!(status == 200, "the attestor is not ready: {body}");
    let (status, metrics) = http_get(ops, "/metrics").await?;
    ensure!(status == 200, "no metrics");
    for line in metrics.lines().filter(|line| {
        line.starts_with("garrison_attestor_decisions_total")
            || line.starts_with("garrison_attestor_offline_budget_seconds")
            || line.starts_with("garrison_attestor_hub_connected")
    }) {
        println!("  | {line}");
    }
    ensure!(
        metrics.contains("garrison_attestor_decisions_total{kind=\"enroll\",decision=\"deny\",reason=\"policy-deny\"} 1"),
        "the policy refusal is not counted"
    );
    Ok(())
}

/// `GET path` over HTTP/1.0: (status code, body).
async fn http_get(address: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no HTTP status")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// This process's uid, from /proc.
fn own_uid() -> anyhow::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .context("no uid in /proc/self/status")
}

async fn run_agents(
    site: &Site,
    agent_bin: &Path,
    nodes: &[(Node, Expect)],
    attestor: &str,
) -> anyhow::Result<()> {
    for (node, expect) in nodes {
        let config = node.write_agent_config(site, attestor)?;
        step(&format!("{}: garrison-agent enroll --once", node.name));
        let out = agent(
            agent_bin,
            &["enroll", "--once", "--attempts", "3", "--config"],
            &config,
        )
        .await?;
        check_outcome(&node.name, *expect, &out)?;
        if *expect == Expect::Enroll {
            step(&format!(
                "{}: garrison-agent renew --once (fresh quote, policy re-evaluated)",
                node.name
            ));
            let out = agent(agent_bin, &["renew", "--once", "--config"], &config).await?;
            print_agent(&out);
            ensure!(out.status.success(), "{} did not renew", node.name);
            print_svid(&node.dir.join("svid/svid.pem"))?;
        }
    }
    Ok(())
}

async fn agent(bin: &Path, args: &[&str], config: &Path) -> anyhow::Result<std::process::Output> {
    let out = tokio::process::Command::new(bin)
        .args(args)
        .arg(config)
        .env("TSS2_LOG", "all+none")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .await
        .with_context(|| format!("running {}", bin.display()))?;
    Ok(out)
}

fn print_agent(out: &std::process::Output) {
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        println!("  | {line}");
    }
}

fn check_outcome(name: &str, expect: Expect, out: &std::process::Output) -> anyhow::Result<()> {
    print_agent(out);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match expect {
        Expect::Enroll if out.status.success() => Ok(()),
        Expect::Enroll => bail!("{name} should have enrolled"),
        Expect::Refused(code) if !out.status.success() && text.contains(code) => {
            println!("{name}: refused with reason {code}, as expected");
            Ok(())
        }
        Expect::Refused(code) => bail!("{name} should have been refused with {code}"),
    }
}

fn print_svid(path: &Path) -> anyhow::Result<()> {
    let chain = certificates_from_pem(&std::fs::read_to_string(path)?)?;
    let leaf = chain.first().context("empty SVID file")?;
    println!("SVID in {}:", path.display());
    for line in CertificateSummary::from_der(leaf)?.to_text().lines() {
        println!("  {line}");
    }
    Ok(())
}

async fn print_log(dir: &Path) -> anyhow::Result<()> {
    let url = format!("sqlite://{}", dir.join("log.db").display());
    println!("$ garrison log query --db {url}");
    let log = AttestationLog::open(&LogConfig {
        url,
        origin: None,
        max_batch: 1,
        max_connections: 1,
    })
    .await?;
    let records = log.query(&Query::default()).await?;
    for stored in &records {
        let r = &stored.record;
        println!(
            "#{:<3} {:<7} {:<5} {} {}",
            stored.sequence,
            r.kind.as_str(),
            r.decision.as_str(),
            r.spiffe_id.as_deref().unwrap_or("-"),
            r.reasons.first().map(String::as_str).unwrap_or("")
        );
    }
    log.close().await;
    ensure!(
        records.len() >= 4,
        "expected at least 4 log records, found {}",
        records.len()
    );
    Ok(())
}
