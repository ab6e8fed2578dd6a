//! The operator's way to rotate a site CA without the network (an air-gapped site, or one
//! whose CA expired before it reached the hub): `garrison attestor request-ca` at the site,
//! `garrison hub certify-site` at the hub, `garrison attestor install-ca` at the site, and
//! `garrison attestor status` showing where it stands.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::process::{Command, Output};

use garrison_testbed::{Site, free_local_address};

fn garrison(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_site_ca_is_rotated_by_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let site = Site::create(dir, time::OffsetDateTime::now_utc()).unwrap();
    site.write_config(
        free_local_address().unwrap(),
        "sqlite://log.db",
        &[],
        "[insecure]\nallow_listed_ek_hashes = [\"00\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("hub.toml"),
        format!(
            "listen = \"{}\"\nca_dir = \"ca/hub\"\ndatabase = \"sqlite://hub.db\"\nmax_site_ca_ttl = \"400d\"\n",
            free_local_address().unwrap()
        ),
    )
    .unwrap();
    let site_toml = dir.join("site.toml");
    let site_toml = site_toml.to_str().unwrap();
    let hub_toml = dir.join("hub.toml");
    let hub_toml = hub_toml.to_str().unwrap();
    let csr = dir.join("next.csr");
    let chain = dir.join("next-chain.pem");

    let said = ok(&garrison(&[
        "attestor",
        "request-ca",
        "--config",
        site_toml,
        "--out",
        csr.to_str().unwrap(),
    ]));
    assert!(said.contains("--ttl 30d"), "{said}");
    let fingerprint = |text: &str| {
        text.split("fingerprint ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no fingerprint in {text}"))
    };
    let at_site = fingerprint(&said);
    assert_eq!(at_site.len(), 64);
    // The key stayed at the site; only the request left.
    assert!(dir.join("ca/site/rotation/gen-1/key.pem").exists());
    assert!(
        std::fs::read_to_string(&csr)
            .unwrap()
            .contains("CERTIFICATE REQUEST")
    );

    // The hub refuses a lifetime its own CA (365 days) does not cover (this hub certifies up
    // to 400 days).
    let refused = garrison(&[
        "hub",
        "certify-site",
        "--config",
        hub_toml,
        "--site",
        "site-a",
        "--csr",
        csr.to_str().unwrap(),
        "--ttl",
        "400d",
        "--out",
        chain.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("hub-ca-expiring"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!chain.exists());
    let certified = ok(&garrison(&[
        "hub",
        "certify-site",
        "--config",
        hub_toml,
        "--site",
        "site-a",
        "--csr",
        csr.to_str().unwrap(),
        "--ttl",
        "31d",
        "--out",
        chain.to_str().unwrap(),
    ]));
    assert_eq!(
        fingerprint(&certified),
        at_site,
        "the hub certified the site's key"
    );
    // A site CA for another key (the hub made this one's key itself) is refused.
    let other = dir.join("other");
    let hub_dir = dir.join("ca/hub");
    ok(&garrison(&[
        "ca",
        "issue-intermediate",
        "--issuer",
        hub_dir.to_str().unwrap(),
        "--name",
        "site-a",
        "--role",
        "site/site-a",
        "--ttl",
        "30d",
        "--out",
        other.to_str().unwrap(),
    ]));
    let other_chain = other.join("chain.pem");
    let wrong = garrison(&[
        "attestor",
        "install-ca",
        "--config",
        site_toml,
        other_chain.to_str().unwrap(),
    ]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    ok(&garrison(&[
        "attestor",
        "install-ca",
        "--config",
        site_toml,
        chain.to_str().unwrap(),
    ]));
    // Installing twice: nothing is waiting any more.
    assert!(
        !garrison(&[
            "attestor",
            "install-ca",
            "--config",
            site_toml,
            chain.to_str().unwrap()
        ])
        .status
        .success()
    );
    let status = ok(&garrison(&[
        "attestor", "status", "--config", site_toml, "--json",
    ]));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["ca_generation"], "gen-0");
    assert_eq!(status["pending_rotation"], "gen-1: certified");
    assert!(status["offline_budget_seconds"].as_i64().unwrap() > 29 * 86_400);
    let text = ok(&garrison(&["attestor", "status", "--config", site_toml]));
    assert!(text.contains("offline budget:  29d"), "{text}");
    assert!(text.contains("activates at"), "{text}");
}

#[test]
fn a_new_root_is_cross_signed_and_announced_at_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    Site::create(dir, time::OffsetDateTime::now_utc()).unwrap();
    std::fs::write(
        dir.join("hub.toml"),
        format!(
            "listen = \"{}\"\nca_dir = \"ca/hub\"\ndatabase = \"sqlite://hub.db\"\n",
            free_local_address().unwrap()
        ),
    )
    .unwrap();
    let path = |p: &str| dir.join(p).to_str().unwrap().to_owned();
    ok(&garrison(&[
        "ca",
        "init-root",
        "--trust-domain",
        garrison_testbed::TRUST_DOMAIN,
        "--name",
        "Root 2",
        "--out",
        &path("root-2"),
    ]));
    ok(&garrison(&[
        "ca",
        "cross-sign",
        "--issuer",
        &path("ca/root"),
        "--new-root",
        &path("root-2/cert.pem"),
        "--out",
        &path("root-2-cross.pem"),
    ]));
    // The new root alone is refused: no current root vouches for it.
    let alone = garrison(&[
        "hub",
        "publish-root",
        "--config",
        &path("hub.toml"),
        &path("root-2/cert.pem"),
    ]);
    assert!(!alone.status.success());
    // Both, the new root first: taken in the order that works.
    let both = format!(
        "{}{}",
        std::fs::read_to_string(dir.join("root-2/cert.pem")).unwrap(),
        std::fs::read_to_string(dir.join("root-2-cross.pem")).unwrap()
    );
    std::fs::write(dir.join("announce.pem"), both).unwrap();
    let said = ok(&garrison(&[
        "hub",
        "publish-root",
        "--config",
        &path("hub.toml"),
        &path("announce.pem"),
    ]));
    assert!(said.contains("2 new root(s)"), "{said}");
    let said = ok(&garrison(&[
        "hub",
        "publish-root",
        "--config",
        &path("hub.toml"),
        &path("announce.pem"),
    ]));
    assert!(said.contains("0 new root(s)"), "{said}");
    // openssl agrees that the old root vouches for the new root's key.
    let out = std::process::Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            &path("ca/root/cert.pem"),
            &path("root-2-cross.pem"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
