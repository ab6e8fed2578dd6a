//! What the attestor checks before it serves, with the real binary on real files:
//! `garrison attestor check-config`, the refusal of a log it cannot write, the refusal of a
//! second attestor on the same SQLite log (and no stale lock after a SIGKILL), read-only tools
//! beside a running attestor, the start-up warnings (time-dependent ones on an injected
//! clock), and the hub's share of the same checks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use garrison_attestor::startup::{Outcome, StartReport, StartWarning};
use garrison_attestor::{Clock, SiteConfig};
use garrison_testbed::{Site, free_local_address};
use time::OffsetDateTime;

const BIN: &str = env!("CARGO_BIN_EXE_garrison");

/// A testbed site (root → hub → site CA, signed strict policy) and its `site.toml` on a free
/// port, with the root as the EK root (no TPM is needed to start).
fn site_at(now: OffsetDateTime, site_ttl: time::Duration) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    Site::create_with(tmp.path(), now, time::Duration::days(365), site_ttl).unwrap();
    let config = write_config(tmp.path(), "site.toml", free_local_address().unwrap(), "");
    (tmp, config)
}

fn write_config(dir: &Path, name: &str, listen: SocketAddr, extra: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "site = \"site-a\"\nlisten = \"{listen}\"\nca_dir = \"ca/site\"\n\
             database = \"sqlite://log.db\"\nek_roots = [\"ca/root/cert.pem\"]\n\
             policy_bundle = \"policy/strict.bundle\"\nmax_svid_ttl = \"1h\"\n{extra}"
        ),
    )
    .unwrap();
    path
}

fn garrison(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check_config(dir: &Path, config: &Path) -> (i32, String) {
    let out = garrison(dir, &["attestor", "check-config", "--config", s(config)]);
    (out.status.code().unwrap(), text(&out.stdout))
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The line of `report` for `check` with `label` (`ok`, `warning`, `FAILED`).
fn line<'a>(report: &'a str, label: &str, check: &str) -> Option<&'a str> {
    report
        .lines()
        .find(|l| l.starts_with(&format!("{label:<8} {check:<17} ")))
}

/// `garrison attestor serve`, its stderr appended to `<dir>/<name>.log`.
fn serve(command: Command, dir: &Path, name: &str) -> Child {
    let mut command = command;
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    command
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn serve_command(config: &Path) -> Command {
    let mut command = Command::new(BIN);
    command.args(["attestor", "serve", "--config", s(config)]);
    command
}

/// Waits until `addr` accepts connections; fails with the server's log if the server exits.
fn wait_until_serving(child: &mut Child, addr: SocketAddr, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the server exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing serves on {addr}");
}

/// The exit of a process expected to end by itself, and what it wrote to `log`.
fn exit_of(mut child: Child, log: &Path) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(log).unwrap());
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!(
                "still running:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

async fn records(dir: &Path) -> u64 {
    let url = format!("sqlite://{}", dir.join("log.db").display());
    let log = garrison_log::AttestationLog::open_read_only(&url, None)
        .await
        .unwrap();
    let size = log.tree_size().await.unwrap();
    log.close().await;
    size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_lists_every_check_binds_nothing_and_writes_no_record() {
    let (tmp, config) = site_at(OffsetDateTime::now_utc(), time::Duration::days(30));
    let dir = tmp.path();
    // serve would bind the listen address; check-config must not even try.
    let loaded = SiteConfig::load(&config).unwrap();
    let _taken = std::net::TcpListener::bind(loaded.listen).unwrap();

    let (code, report) = check_config(dir, &config);
    assert_eq!(code, 0, "{report}");
    for check in [
        "config",
        "log lock",
        "site CA",
        "EK roots",
        "log key",
        "TLS",
        "log database",
        "policy",
        "listen",
    ] {
        assert!(line(&report, "ok", check).is_some(), "{check}:\n{report}");
    }
    assert!(
        !report
            .lines()
            .any(|l| l.starts_with("warning") || l.starts_with("FAILED")),
        "{report}"
    );
    assert!(
        report.ends_with("0 problems, 0 warnings: serve would start\n"),
        "{report}"
    );
    assert!(
        line(&report, "ok", "policy")
            .unwrap()
            .contains("testbed-strict"),
        "{report}"
    );
    assert!(
        line(&report, "ok", "site CA")
            .unwrap()
            .contains("gen-0 of site site-a")
    );

    assert_eq!(records(dir).await, 0, "check-config writes no record");
    assert!(!dir.join("log-key.pem").exists(), "nor a log key");

    // Two independent problems: both found in one run, the checks between them still made.
    std::fs::write(dir.join("policy/strict.bundle"), b"not a bundle").unwrap();
    let broken = write_config(dir, "broken.toml", loaded.listen, "");
    let text = std::fs::read_to_string(&broken)
        .unwrap()
        .replace("ca/root/cert.pem", "ek-roots/missing.pem");
    std::fs::write(&broken, text).unwrap();
    let (code, report) = check_config(dir, &broken);
    assert_eq!(code, 1, "{report}");
    let ek = line(&report, "FAILED", "EK roots").expect(&report);
    assert!(ek.contains("ek-roots/missing.pem"), "{ek}");
    assert!(line(&report, "FAILED", "policy").is_some(), "{report}");
    for check in ["site CA", "log database", "TLS"] {
        assert!(line(&report, "ok", check).is_some(), "{check}:\n{report}");
    }
    assert!(
        report.ends_with("2 problems, 0 warnings: serve would refuse to start\n"),
        "{report}"
    );
}

#[test]
fn check_config_refuses_what_serve_refuses_in_the_site_ca() {
    let (tmp, _) = site_at(OffsetDateTime::now_utc(), time::Duration::days(30));
    let dir = tmp.path();
    let listen = free_local_address().unwrap();
    // The lifetime rule: a 30-day CA cannot cover SVIDs of 6 days (it needs 6 x 6 = 36).
    let config = write_config(dir, "ttl.toml", listen, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_svid_ttl = \"1h\"", "max_svid_ttl = \"6d\"");
    std::fs::write(&config, text).unwrap();
    let (code, report) = check_config(dir, &config);
    assert_eq!(code, 1, "{report}");
    let ca = line(&report, "FAILED", "site CA").expect(&report);
    assert!(ca.contains("too short for SVIDs"), "{ca}");

    // The trust domain's root as the site CA: refused, and said so.
    let config = write_config(dir, "root.toml", listen, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("ca_dir = \"ca/site\"", "ca_dir = \"ca/root\"");
    std::fs::write(&config, text).unwrap();
    let (code, report) = check_config(dir, &config);
    assert_eq!(code, 1, "{report}");
    let ca = line(&report, "FAILED", "site CA").expect(&report);
    assert!(ca.contains("is a root CA, not the CA of site"), "{ca}");

    // And serve says the same, and stops.
    let out = garrison(dir, &["attestor", "serve", "--config", s(&config)]);
    assert!(!out.status.success());
    assert!(text_of(&out).contains("is a root CA, not the CA of site"));
}

fn text_of(out: &Output) -> String {
    text(&out.stderr)
}

#[test]
fn a_second_attestor_on_the_same_log_is_refused_and_a_killed_one_leaves_no_lock() {
    let (tmp, config) = site_at(OffsetDateTime::now_utc(), time::Duration::days(30));
    let dir = tmp.path();
    let first_addr = SiteConfig::load(&config).unwrap().listen;
    let mut first = serve(serve_command(&config), dir, "first");
    wait_until_serving(&mut first, first_addr, &dir.join("first.log"));

    let second_config = write_config(dir, "second.toml", free_local_address().unwrap(), "");
    let second = serve(serve_command(&second_config), dir, "second");
    let (status, log) = exit_of(second, &dir.join("second.log"));
    assert!(!status.success());
    let lock = dir.join("log.db.lock");
    assert!(
        log.contains(&format!("garrison attestor serve, pid {}", first.id())),
        "names the holder: {log}"
    );
    assert!(
        log.contains(s(&lock)) || log.contains("log.db.lock"),
        "{log}"
    );
    assert!(log.contains("already served by another process"), "{log}");

    // What only reads works beside the running attestor, and takes no lock.
    let db = format!("sqlite://{}", dir.join("log.db").display());
    let query = garrison(dir, &["log", "query", "--db", &db]);
    assert!(query.status.success(), "{}", text_of(&query));
    assert!(text(&query.stdout).contains("policy-update"));
    let status = garrison(dir, &["attestor", "status", "--config", s(&config)]);
    assert!(status.status.success(), "{}", text_of(&status));
    let verify = garrison(
        dir,
        &["audit", "verify", "--db", &db, "--root", "ca/root/cert.pem"],
    );
    assert!(
        verify.status.success(),
        "{}{}",
        text(&verify.stdout),
        text_of(&verify)
    );
    let (code, report) = check_config(dir, &config);
    assert_eq!(
        code, 0,
        "a running attestor is no problem of the configuration:\n{report}"
    );
    let in_use = line(&report, "warning", "log lock").expect(&report);
    assert!(in_use.contains(&format!("pid {}", first.id())), "{in_use}");

    // SIGKILL: no chance to clean up, and still no stale lock.
    stop(first);
    assert!(lock.exists(), "the file stays; the lock does not");
    let mut third = serve(serve_command(&second_config), dir, "third");
    let second_addr = SiteConfig::load(&second_config).unwrap().listen;
    wait_until_serving(&mut third, second_addr, &dir.join("third.log"));
    let holder = std::fs::read_to_string(&lock).unwrap();
    assert_eq!(
        holder,
        format!("garrison attestor serve, pid {}\n", third.id())
    );
    stop(third);
}

#[test]
fn serve_refuses_a_log_that_is_not_a_database_and_names_it() {
    let (tmp, config) = site_at(OffsetDateTime::now_utc(), time::Duration::days(30));
    let dir = tmp.path();
    std::fs::write(dir.join("log.db"), vec![b'x'; 8192]).unwrap();
    let out = garrison(dir, &["attestor", "serve", "--config", s(&config)]);
    assert!(!out.status.success());
    let err = text_of(&out);
    assert!(
        err.contains(&format!(
            "attestation log sqlite://{}",
            dir.join("log.db").display()
        )),
        "{err}"
    );
    let last = err.lines().last().unwrap();
    assert!(
        last.contains("file is not a database"),
        "at once, not as a timeout: {err}"
    );
    let (code, report) = check_config(dir, &config);
    assert_eq!(code, 1, "{report}");
    assert!(
        line(&report, "FAILED", "log database").is_some(),
        "{report}"
    );
}

/// Runs `garrison` where file permissions bind it: as root (whom they do not bind) the
/// directory is given to `nobody` and the command runs as `nobody` (`setpriv`), from a link
/// to the binary inside the directory (the build directory may not be open to others).
struct Unprivileged {
    dir: PathBuf,
    bin: PathBuf,
    as_nobody: bool,
}

impl Unprivileged {
    fn new(dir: &Path) -> Self {
        let as_nobody = std::fs::metadata(dir).unwrap().uid() == 0;
        let mut bin = PathBuf::from(BIN);
        if as_nobody {
            bin = dir.join("garrison-bin");
            if std::fs::hard_link(BIN, &bin).is_err() {
                std::fs::copy(BIN, &bin).unwrap();
            }
            let chown = Command::new("chown")
                .args(["-R", "65534:65534", s(dir)])
                .status()
                .unwrap();
            assert!(chown.success());
        }
        Unprivileged {
            dir: dir.to_owned(),
            bin,
            as_nobody,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&self.bin);
            c
        } else {
            Command::new(&self.bin)
        };
        command
            .args(args)
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn");
        command
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn serve_refuses_a_read_only_log_file_or_directory_and_names_the_path() {
    let (tmp, config) = site_at(OffsetDateTime::now_utc(), time::Duration::days(30));
    let dir = tmp.path();
    let run = Unprivileged::new(dir);
    // A log with its schema, the lock file beside it (the directory is made read-only
    // below), all owned by the user that serves.
    let out = run.output(&["attestor", "check-config", "--config", s(&config)]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let db = dir.join("log.db");
    let shown = format!("sqlite://{}", db.display());

    chmod(&db, 0o400);
    let out = run.output(&["attestor", "serve", "--config", s(&config)]);
    assert!(!out.status.success());
    let err = text_of(&out);
    assert!(err.contains(&format!("attestation log {shown}")), "{err}");
    assert!(err.contains("cannot be written"), "{err}");
    let out = run.output(&["attestor", "check-config", "--config", s(&config)]);
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(
        line(&report, "FAILED", "log database")
            .unwrap()
            .contains("cannot be written"),
        "{report}"
    );

    // A writable file in a read-only directory: SQLite cannot make its -wal and -shm. (The
    // read-only opens above left empty ones behind, which they could not delete.)
    chmod(&db, 0o600);
    for file in ["log.db-wal", "log.db-shm"] {
        match std::fs::remove_file(dir.join(file)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other.unwrap(),
        }
    }
    chmod(dir, 0o555);
    let out = run.output(&["attestor", "serve", "--config", s(&config)]);
    chmod(dir, 0o755);
    assert!(!out.status.success());
    let err = text_of(&out);
    assert!(err.contains(&format!("attestation log {shown}")), "{err}");
    assert!(
        err.contains("cannot be written"),
        "at once, not as a timeout: {err}"
    );

    // The hub makes the same check before it serves.
    std::fs::write(
        dir.join("hub.toml"),
        format!(
            "listen = \"{}\"\nca_dir = \"ca/hub\"\ndatabase = \"sqlite://hub.db\"\n",
            free_local_address().unwrap()
        ),
    )
    .unwrap();
    let hub_config = dir.join("hub.toml");
    let out = run.output(&["hub", "status", "--config", s(&hub_config)]);
    assert!(out.status.success(), "{}", text_of(&out));
    chmod(&dir.join("hub.db"), 0o400);
    let out = run.output(&["hub", "serve", "--config", s(&hub_config)]);
    assert!(!out.status.success());
    let err = text_of(&out);
    assert!(
        err.contains(&format!(
            "hub database sqlite://{}",
            dir.join("hub.db").display()
        )),
        "{err}"
    );
    assert!(err.contains("cannot be written"), "{err}");
}

/// A clock stopped at one moment.
#[derive(Debug)]
struct At(OffsetDateTime);

impl Clock for At {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

async fn report_at(config: &Path, now: OffsetDateTime) -> StartReport {
    let config = SiteConfig::load(config).unwrap();
    garrison_attestor::startup::check_config(&config, Arc::new(At(now))).await
}

fn failures(report: &StartReport) -> Vec<String> {
    report
        .findings()
        .iter()
        .filter_map(|f| match &f.outcome {
            Outcome::Failed(e) => Some(format!("{}: {e}", f.check)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_ca_near_or_past_its_expiry_is_warned_about_at_each_level() {
    let t0 = OffsetDateTime::now_utc();
    let (_tmp, config) = site_at(t0, time::Duration::days(30));
    // notBefore is backdated by the clock-skew allowance, so the lifetime is 30 days and 5
    // minutes: the levels are crossed just before a quarter, a tenth, a thirtieth of 30 days.
    let cases = [
        (time::Duration::days(1), None),
        (time::Duration::days(22), None),
        (time::Duration::days(23), Some((1, 4))),
        (
            time::Duration::days(27) + time::Duration::hours(1),
            Some((1, 10)),
        ),
        (time::Duration::hours(29 * 24 + 1), Some((1, 30))),
    ];
    for (after, want) in cases {
        let report = report_at(&config, t0 + after).await;
        assert!(failures(&report).is_empty(), "{:?}", failures(&report));
        let got = report.warnings().find_map(|w| match w {
            StartWarning::CaNearExpiry { fraction, .. } => Some(*fraction),
            _ => None,
        });
        assert_eq!(got, want, "after {after}");
        assert!(
            !report.warnings().any(StartWarning::stops_issuance),
            "after {after}"
        );
    }
    let expired = report_at(&config, t0 + time::Duration::days(31)).await;
    let warning = expired
        .warnings()
        .find(|w| matches!(w, StartWarning::CaExpired { .. }))
        .expect("expired");
    assert!(warning.stops_issuance());
    assert!(warning.to_string().contains("issues nothing"), "{warning}");
    let early = report_at(&config, t0 - time::Duration::days(1)).await;
    assert!(
        early
            .warnings()
            .any(|w| matches!(w, StartWarning::CaNotYetValid { .. })),
        "{:?}",
        early.findings()
    );
}

/// A log of `origin` in the database at `url` (another than the site's own), holding one
/// revocation of `node` made at `site`.
async fn revoked_in_a_log_of(url: &str, origin: &str, site: &str, node: &str, now: OffsetDateTime) {
    let log = garrison_log::AttestationLog::open(&garrison_log::LogConfig {
        url: url.to_owned(),
        origin: Some(origin.to_owned()),
        max_batch: 1,
        max_connections: 2,
    })
    .await
    .unwrap();
    log.revoke(garrison_log::Revocation {
        time: now,
        site: site.into(),
        target: garrison_log::RevocationTarget::Node(node.to_owned()),
        reasons: vec!["operator".into(), "in the site's former log".into()],
        policy_digest: None,
    })
    .await
    .unwrap();
    log.close().await;
}

/// A site renamed (here: its database already holds the log of another origin, as after a
/// rename): `check-config` warns, whom the old log revoked stays revoked for the site's
/// tools, and `garrison node ... --config` works on the site's own log although the
/// database holds two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_holding_another_origins_log_is_warned_about_and_its_revocations_hold() {
    let now = OffsetDateTime::now_utc();
    let (tmp, config) = site_at(now, time::Duration::days(30));
    let dir = tmp.path();
    let old_origin = "garrison.example.org/site/old-name";
    let revoked = "ab".repeat(32);
    let url = format!("sqlite://{}", dir.join("log.db").display());
    revoked_in_a_log_of(&url, old_origin, "old-name", &revoked, now).await;

    let report = report_at(&config, now).await;
    let others: Vec<&Vec<String>> = report
        .warnings()
        .filter_map(|w| match w {
            StartWarning::OtherOrigins { others } => Some(others),
            _ => None,
        })
        .collect();
    assert_eq!(others, vec![&vec![old_origin.to_owned()]], "{report:?}");
    let (code, text_report) = check_config(dir, &config);
    assert_eq!(code, 0, "{text_report}");
    let warned = line(&text_report, "warning", "log database").expect(&text_report);
    assert!(warned.contains(old_origin), "{warned}");

    let shown = garrison(
        dir,
        &["node", "show", "--config", s(&config), "--node", &revoked],
    );
    // The node has no state (only a revocation), which `show` says; what matters is that
    // the site's log was found among two.
    assert!(
        text(&shown.stderr).contains("is not in this site's log"),
        "{}",
        text(&shown.stderr)
    );
    let listed = garrison(dir, &["node", "list", "--config", s(&config)]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let other = "cd".repeat(32);
    let revoke = garrison(
        dir,
        &["node", "revoke", "--config", s(&config), "--node", &other],
    );
    assert!(revoke.status.success(), "{}", text(&revoke.stderr));
    // Recorded in the site's own log (its first record); the old log keeps its one; both
    // revocations are enforced.
    let old = garrison_log::AttestationLog::open_read_only(&url, Some(old_origin))
        .await
        .unwrap();
    assert_eq!(old.tree_size().await.unwrap(), 1);
    let origins = old.origins().await.unwrap();
    old.close().await;
    assert_eq!(origins.len(), 2, "{origins:?}");
    assert!(origins[1].ends_with("/site/site-a"), "{origins:?}");
    let site = garrison_log::AttestationLog::open_read_only(&url, Some(&origins[1]))
        .await
        .unwrap();
    assert_eq!(site.tree_size().await.unwrap(), 1);
    assert!(site.is_node_revoked(&revoked).await.unwrap());
    assert!(site.is_node_revoked(&other).await.unwrap());
    assert!(
        !site
            .is_revoked_in_this_log(&garrison_log::RevocationTarget::Node(revoked))
            .await
            .unwrap()
    );
    site.close().await;
    // The auditor is told to verify the old log too.
    let verified = garrison(
        dir,
        &[
            "audit",
            "verify",
            "--db",
            &url,
            "--origin",
            &origins[1],
            "--root",
            "ca/root/cert.pem",
            "--site-database",
        ],
    );
    let out = text(&verified.stdout);
    assert!(
        out.contains(&format!(
            "the database also holds the logs of: {old_origin} "
        )),
        "{out}\n{}",
        text(&verified.stderr)
    );
}

/// A trust-domain change keeps the site's name, so two logs name the site: the node commands
/// take the one the site CA in force names, and leave the other alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_trust_domain_change_the_node_commands_pick_the_log_the_site_ca_names() {
    let now = OffsetDateTime::now_utc();
    let (tmp, config) = site_at(now, time::Duration::days(30));
    let dir = tmp.path();
    let url = format!("sqlite://{}", dir.join("log.db").display());
    // The site's log under its former trust domain, holding one revocation.
    let former = "garrison.former.example/site/site-a";
    let revoked = "ab".repeat(32);
    revoked_in_a_log_of(&url, former, "site-a", &revoked, now).await;
    // check-config opens the current one (the site CA's trust domain is example.org).
    let (code, text_report) = check_config(dir, &config);
    assert_eq!(code, 0, "{text_report}");
    let current = "garrison.example.org/site/site-a";
    let probe = garrison_log::AttestationLog::open_read_only(&url, Some(former))
        .await
        .unwrap();
    let mut origins = probe.origins().await.unwrap();
    probe.close().await;
    origins.sort();
    assert_eq!(origins, [current.to_owned(), former.to_owned()]);

    let other = "cd".repeat(32);
    let revoke = garrison(
        dir,
        &["node", "revoke", "--config", s(&config), "--node", &other],
    );
    assert!(revoke.status.success(), "{}", text(&revoke.stderr));
    let listed = garrison(dir, &["node", "list", "--config", s(&config)]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    // Without --config there is no telling which is the site's: the error names both.
    let ambiguous = garrison(dir, &["node", "list", "--db", &url]);
    assert!(!ambiguous.status.success());
    let err = text(&ambiguous.stderr);
    assert!(err.contains(former) && err.contains(current), "{err}");

    // The revocation went to the current log; the former one still holds only its own.
    let kept = garrison_log::AttestationLog::open_read_only(&url, Some(former))
        .await
        .unwrap();
    assert_eq!(kept.tree_size().await.unwrap(), 1);
    assert!(
        !kept
            .is_revoked_in_this_log(&garrison_log::RevocationTarget::Node(other.clone()))
            .await
            .unwrap()
    );
    kept.close().await;
    let site = garrison_log::AttestationLog::open_read_only(&url, Some(current))
        .await
        .unwrap();
    assert_eq!(site.tree_size().await.unwrap(), 1);
    assert!(
        site.is_revoked_in_this_log(&garrison_log::RevocationTarget::Node(other))
            .await
            .unwrap()
    );
    // The former trust domain's revocation holds in the current log too.
    assert!(site.is_node_revoked(&revoked).await.unwrap());
    site.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_open_to_others_and_a_root_shaped_site_ca_are_warned_about() {
    let now = OffsetDateTime::now_utc();
    let (tmp, config) = site_at(now, time::Duration::days(30));
    let dir = tmp.path();
    assert!(report_at(&config, now).await.warnings().next().is_none());
    // check-config created the log as serve would: private.
    assert_eq!(
        std::fs::metadata(dir.join("log.db")).unwrap().mode() & 0o777,
        0o600
    );
    chmod(&dir.join("ca/site/key.pem"), 0o640);
    chmod(&dir.join("log.db"), 0o644);
    let report = report_at(&config, now).await;
    let mut open: Vec<(String, u32)> = report
        .warnings()
        .filter_map(|w| match w {
            StartWarning::OpenToOthers { path, mode, .. } => {
                Some((path.strip_prefix(dir).unwrap().display().to_string(), *mode))
            }
            _ => None,
        })
        .collect();
    open.sort();
    // SQLite gives the -wal and -shm it creates the database file's mode.
    assert_eq!(
        open,
        [
            ("ca/site/key.pem".to_owned(), 0o640),
            ("log.db".to_owned(), 0o644),
            ("log.db-shm".to_owned(), 0o644),
            ("log.db-wal".to_owned(), 0o644),
        ]
    );

    // A site CA with a root's path length, issued by a root that allows it (path length 3).
    let other = tempfile::tempdir().unwrap();
    let d = other.path();
    for args in [
        &[
            "ca",
            "init-root",
            "--trust-domain",
            "example.org",
            "--out",
            "root",
            "--path-len",
            "3",
        ][..],
        &[
            "ca",
            "issue-intermediate",
            "--issuer",
            "root",
            "--name",
            "site-a",
            "--role",
            "site/site-a",
            "--ttl",
            "30d",
            "--out",
            "ca-site",
        ],
        &[
            "ca",
            "issue-svid",
            "--issuer",
            "root",
            "--spiffe-id",
            "spiffe://example.org/policy/signer/t",
            "--ttl",
            "24h",
            "--out",
            "signer",
        ],
    ] {
        let out = garrison(d, args);
        assert!(out.status.success(), "{args:?}: {}", text_of(&out));
    }
    let strict = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policy/policies/strict");
    let out = garrison(
        d,
        &[
            "policy",
            "sign",
            "--dir",
            strict,
            "--key",
            "signer/key.pem",
            "--cert",
            "signer/chain.pem",
            "--sequence",
            "1",
            "--out",
            "strict.bundle",
        ],
    );
    assert!(out.status.success(), "{}", text_of(&out));
    let config = d.join("site.toml");
    std::fs::write(
        &config,
        format!(
            "site = \"site-a\"\nlisten = \"{}\"\nca_dir = \"ca-site\"\ndatabase = \"sqlite://log.db\"\n\
             ek_roots = [\"root/cert.pem\"]\npolicy_bundle = \"strict.bundle\"\nmax_svid_ttl = \"1h\"\n",
            free_local_address().unwrap()
        ),
    )
    .unwrap();
    let report = report_at(&config, OffsetDateTime::now_utc()).await;
    assert!(failures(&report).is_empty(), "{:?}", failures(&report));
    let shapes: Vec<&StartWarning> = report
        .warnings()
        .filter(|w| matches!(w, StartWarning::RootShapedSiteCa { .. }))
        .collect();
    assert_eq!(shapes.len(), 1, "{:?}", report.findings());
    assert!(
        shapes[0].to_string().contains("path length 2 or more"),
        "{}",
        shapes[0]
    );
}

#[test]
fn serve_logs_each_warning_as_one_line_and_serves_anyway() {
    let (tmp, config) = site_at(OffsetDateTime::now_utc(), time::Duration::days(30));
    let dir = tmp.path();
    let lab = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../policy/policies/lab-permissive-INSECURE"
    );
    let out = garrison(
        dir,
        &[
            "policy",
            "sign",
            "--dir",
            lab,
            "--key",
            "ca/policy-signer/key.pem",
            "--cert",
            "ca/policy-signer/chain.pem",
            "--sequence",
            "2",
            "--out",
            "lab.bundle",
        ],
    );
    assert!(out.status.success(), "{}", text_of(&out));
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("policy/strict.bundle", "lab.bundle");
    std::fs::write(&config, text).unwrap();
    chmod(&dir.join("ca/site/key.pem"), 0o644);

    let (code, report) = check_config(dir, &config);
    assert_eq!(code, 0, "warnings do not fail the check:\n{report}");
    let insecure = line(&report, "warning", "policy").expect(&report);
    assert!(
        insecure.contains("\"lab-permissive-INSECURE\" #2"),
        "{insecure}"
    );
    let key = line(&report, "warning", "file permissions").expect(&report);
    assert!(
        key.contains("ca/site/key.pem") && key.contains("644"),
        "{key}"
    );
    assert!(
        report.ends_with("0 problems, 2 warnings: serve would start\n"),
        "{report}"
    );

    let addr = SiteConfig::load(&config).unwrap().listen;
    let mut child = serve(serve_command(&config), dir, "serve");
    wait_until_serving(&mut child, addr, &dir.join("serve.log"));
    stop(child);
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    for needle in ["INSECURE policy in force", "site CA key"] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
        assert_eq!(lines.len(), 1, "{needle}:\n{log}");
        assert!(lines[0].contains(" WARN "), "{}", lines[0]);
        assert!(
            !lines[0].contains('{') && !lines[0].contains("Some("),
            "{}",
            lines[0]
        );
    }
}

#[test]
fn a_chain_agents_would_refuse_and_an_insecure_switch_are_warned_about() {
    let (tmp, config) = site_at(OffsetDateTime::now_utc(), time::Duration::days(30));
    let dir = tmp.path();
    // chain.pem without the hub CA: the site CA loads and signs, but no agent can build a
    // path from what it issues to the root.
    let chain = std::fs::read_to_string(dir.join("ca/site/chain.pem")).unwrap();
    let site_only = garrison_ca::certificates_from_pem(&chain).unwrap()[..1].to_vec();
    std::fs::write(
        dir.join("ca/site/chain.pem"),
        garrison_ca::certificates_to_pem(&site_only),
    )
    .unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}[insecure]\nallow_sha1_ak = true\n")).unwrap();

    let (code, report) = check_config(dir, &config);
    assert_eq!(
        code, 2,
        "serve would start but issue nothing agents accept:\n{report}"
    );
    let chain = line(&report, "warning", "site CA").expect(&report);
    assert!(
        chain.contains("agents would refuse what the site CA"),
        "{chain}"
    );
    let switch = line(&report, "warning", "insecure options").expect(&report);
    assert!(switch.contains("insecure.allow_sha1_ak"), "{switch}");
    assert!(
        report.ends_with(
            "0 problems, 2 warnings: serve would start, but issue nothing agents accept\n"
        ),
        "{report}"
    );
}

/// A fresh PostgreSQL database on the cluster `scripts/test.sh` starts, or `None` when a
/// developer skips PostgreSQL.
async fn postgres_database(tag: &str) -> Option<String> {
    let Ok(url) = std::env::var("GARRISON_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("GARRISON_SKIP_POSTGRES").is_ok(),
            "GARRISON_TEST_POSTGRES_URL is not set: run scripts/test.sh (or set GARRISON_SKIP_POSTGRES=1)"
        );
        return None;
    };
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let name = format!("{tag}_{}", std::process::id());
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, query) = url
        .split_once('?')
        .map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    Some(match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_attestor_on_the_same_postgresql_log_is_refused_too() {
    let Some(database) = postgres_database("serving_lock").await else {
        return;
    };
    let (tmp, _) = site_at(OffsetDateTime::now_utc(), time::Duration::days(30));
    let dir = tmp.path().to_owned();
    let on_postgres = |name: &str| {
        let path = write_config(&dir, name, free_local_address().unwrap(), "");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("sqlite://log.db", &database);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (first_config, second_config) = (on_postgres("first.toml"), on_postgres("second.toml"));
    let handle = tokio::task::spawn_blocking(move || {
        let first_addr = SiteConfig::load(&first_config).unwrap().listen;
        let mut first = serve(serve_command(&first_config), &dir, "first");
        wait_until_serving(&mut first, first_addr, &dir.join("first.log"));
        let second = serve(serve_command(&second_config), &dir, "second");
        let (status, log) = exit_of(second, &dir.join("second.log"));
        assert!(!status.success());
        assert!(
            log.contains("another process is serving the log garrison.example.org/site/site-a"),
            "{log}"
        );
        assert!(
            log.contains(&format!("garrison attestor serve, pid {}", first.id())),
            "names the holder: {log}"
        );
        // SIGKILL: the session ends with the process, and its lock with it.
        stop(first);
        let mut third = serve(serve_command(&second_config), &dir, "third");
        let second_addr = SiteConfig::load(&second_config).unwrap().listen;
        wait_until_serving(&mut third, second_addr, &dir.join("third.log"));
        stop(third);
    });
    handle.await.unwrap();
}
