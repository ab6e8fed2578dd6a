//! The `garrison ca` contract, end to end through the binary, with `openssl` as the
//! independent verifier of what it writes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn garrison(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = garrison(args);
    assert!(
        out.status.success(),
        "garrison {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(args: &[&str]) -> String {
    let out = garrison(args);
    assert!(
        !out.status.success(),
        "garrison {args:?} should have failed"
    );
    String::from_utf8(out.stderr).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed by the test command")
}

/// root → hub → site, as the README shows it.
fn hierarchy(dir: &Path) {
    ok(&[
        "ca",
        "init-root",
        "--trust-domain",
        "example.org",
        "--out",
        s(&dir.join("root")),
    ]);
    ok(&[
        "ca",
        "issue-intermediate",
        "--issuer",
        s(&dir.join("root")),
        "--name",
        "hub",
        "--role",
        "hub",
        "--ttl",
        "365d",
        "--out",
        s(&dir.join("hub")),
    ]);
    ok(&[
        "ca",
        "issue-intermediate",
        "--issuer",
        s(&dir.join("hub")),
        "--name",
        "site-a",
        "--role",
        "site/a",
        "--ttl",
        "30d",
        "--out",
        s(&dir.join("site")),
    ]);
}

#[test]
fn openssl_verifies_generated_and_csr_svids_for_client_and_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    hierarchy(dir);
    ok(&[
        "ca",
        "issue-svid",
        "--issuer",
        s(&dir.join("site")),
        "--spiffe-id",
        "spiffe://example.org/site/a/node/n1",
        "--ttl",
        "1h",
        "--out",
        s(&dir.join("n1")),
    ]);

    let csr_key = dir.join("n2.key");
    let csr = dir.join("n2.csr");
    let made = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        s(&csr_key),
        "-out",
        s(&csr),
        "-subj",
        "/CN=i-claim-to-be-the-attestor",
        "-addext",
        "subjectAltName=URI:spiffe://example.org/site/a/attestor",
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    ok(&[
        "ca",
        "issue-svid",
        "--issuer",
        s(&dir.join("site")),
        "--spiffe-id",
        "spiffe://example.org/site/a/node/n2",
        "--ttl",
        "1h",
        "--csr",
        s(&csr),
        "--out",
        s(&dir.join("n2")),
    ]);
    assert!(
        !dir.join("n2/key.pem").exists(),
        "no key is written when a CSR was given"
    );

    for node in ["n1", "n2"] {
        let leaf = dir.join(node);
        for purpose in ["sslclient", "sslserver"] {
            let out = openssl(&[
                "verify",
                "-CAfile",
                s(&leaf.join("bundle.pem")),
                "-untrusted",
                s(&leaf.join("chain.pem")),
                "-purpose",
                purpose,
                s(&leaf.join("cert.pem")),
            ]);
            assert!(
                out.status.success(),
                "openssl verify {node} {purpose}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8(
            openssl(&[
                "x509",
                "-in",
                s(&leaf.join("cert.pem")),
                "-noout",
                "-ext",
                "subjectAltName",
            ])
            .stdout,
        )
        .unwrap();
        assert!(
            text.contains(&format!("URI:spiffe://example.org/site/a/node/{node}")),
            "{text}"
        );
        assert!(
            !text.contains("attestor"),
            "the CSR's SAN claim must be ignored: {text}"
        );
    }
    // Without the intermediates, openssl cannot build the path.
    let leaf = dir.join("n1");
    let out = openssl(&[
        "verify",
        "-CAfile",
        s(&leaf.join("bundle.pem")),
        s(&leaf.join("cert.pem")),
    ]);
    assert!(!out.status.success());
}

#[test]
fn output_directories_have_the_documented_files_and_key_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    hierarchy(dir);
    for ca in ["root", "hub", "site"] {
        for file in ["cert.pem", "key.pem", "chain.pem", "bundle.pem"] {
            assert!(dir.join(ca).join(file).is_file(), "{ca}/{file}");
        }
        let mode = fs::metadata(dir.join(ca).join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{ca}/key.pem mode");
        assert_eq!(
            fs::read(dir.join(ca).join("bundle.pem")).unwrap(),
            fs::read(dir.join("root/cert.pem")).unwrap()
        );
    }
    assert_eq!(
        fs::read_to_string(dir.join("root/chain.pem")).unwrap(),
        "",
        "a root's chain excludes the root"
    );
    let site_chain = fs::read_to_string(dir.join("site/chain.pem")).unwrap();
    assert_eq!(
        site_chain.matches("BEGIN CERTIFICATE").count(),
        2,
        "site + hub"
    );
}

#[test]
fn refusals_name_the_rule_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    hierarchy(dir);
    let out = |name: &str| dir.join(name);

    let err = refused(&[
        "ca",
        "issue-intermediate",
        "--issuer",
        s(&out("hub")),
        "--name",
        "long",
        "--role",
        "hub",
        "--ttl",
        "400d",
        "--out",
        s(&out("long")),
    ]);
    assert!(err.contains("beyond the issuer's notAfter"), "{err}");
    let err = refused(&[
        "ca",
        "issue-intermediate",
        "--issuer",
        s(&out("site")),
        "--name",
        "sub",
        "--role",
        "hub",
        "--ttl",
        "1d",
        "--out",
        s(&out("sub")),
    ]);
    assert!(
        err.contains("may not issue further CA certificates"),
        "{err}"
    );
    let err = refused(&[
        "ca",
        "issue-svid",
        "--issuer",
        s(&out("site")),
        "--spiffe-id",
        "spiffe://example.org/site/a/n",
        "--ttl",
        "48h",
        "--out",
        s(&out("n")),
    ]);
    assert!(err.contains("exceeds the maximum"), "{err}");
    let err = refused(&[
        "ca",
        "issue-svid",
        "--issuer",
        s(&out("site")),
        "--spiffe-id",
        "spiffe://example.org/a/../b",
        "--ttl",
        "1h",
        "--out",
        s(&out("n")),
    ]);
    assert!(err.contains("dot segment"), "{err}");
    for (id, why) in [
        ("spiffe://example.org/site/b/node/n", "outside the scope"),
        ("spiffe://example.org/policy/evil", "outside the scope"),
        (
            "spiffe://example.org/site/a/attestor",
            "reserved for the site's attestor",
        ),
    ] {
        let err = refused(&[
            "ca",
            "issue-svid",
            "--issuer",
            s(&out("site")),
            "--spiffe-id",
            id,
            "--ttl",
            "1h",
            "--out",
            s(&out("n")),
        ]);
        assert!(err.contains(why), "{id}: {err}");
    }
    ok(&[
        "ca",
        "issue-svid",
        "--issuer",
        s(&out("site")),
        "--spiffe-id",
        "spiffe://example.org/site/a/leaf",
        "--ttl",
        "1h",
        "--out",
        s(&out("leaf")),
    ]);
    let err = refused(&[
        "ca",
        "issue-svid",
        "--issuer",
        s(&out("leaf")),
        "--spiffe-id",
        "spiffe://example.org/site/a/x",
        "--ttl",
        "1h",
        "--out",
        s(&out("x")),
    ]);
    assert!(err.contains("not a CA certificate"), "{err}");
    let err = refused(&[
        "ca",
        "issue-svid",
        "--issuer",
        s(&out("site")),
        "--spiffe-id",
        "spiffe://example.org/site/a/leaf2",
        "--ttl",
        "1h",
        "--out",
        s(&out("leaf")),
    ]);
    assert!(err.contains("refusing to overwrite"), "{err}");

    fs::write(
        out("bad.csr"),
        "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n",
    )
    .unwrap();
    let err = refused(&[
        "ca",
        "issue-svid",
        "--issuer",
        s(&out("site")),
        "--spiffe-id",
        "spiffe://example.org/site/a/y",
        "--ttl",
        "1h",
        "--csr",
        s(&out("bad.csr")),
        "--out",
        s(&out("y")),
    ]);
    assert!(err.contains("CSR"), "{err}");

    for name in ["long", "sub", "n", "x", "y"] {
        assert!(
            !out(name).exists(),
            "{name} was created by a refused command"
        );
    }
    let leftovers: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "staging directories left behind: {leftovers:?}"
    );
}

#[test]
fn bundle_and_inspect_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    hierarchy(dir);
    let pem = ok(&[
        "ca",
        "bundle",
        "--issuer",
        s(&dir.join("site")),
        "--format",
        "pem",
    ]);
    assert_eq!(pem, fs::read_to_string(dir.join("root/cert.pem")).unwrap());
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "ca",
        "bundle",
        "--issuer",
        s(&dir.join("site")),
        "--format",
        "spiffe",
        "--sequence",
        "3",
    ]))
    .unwrap();
    assert_eq!(json["spiffe_sequence"], 3);
    assert_eq!(json["keys"][0]["use"], "x509-svid");

    let summaries: serde_json::Value = serde_json::from_str(&ok(&[
        "ca",
        "inspect",
        "--json",
        s(&dir.join("site/chain.pem")),
    ]))
    .unwrap();
    let list = summaries.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["is_ca"], true);
    assert_eq!(list[0]["path_len"], 0);
    assert_eq!(list[1]["path_len"], 1);
    assert_eq!(list[0]["uri_sans"][0], "spiffe://example.org");
    let text = ok(&["ca", "inspect", s(&dir.join("root/cert.pem"))]);
    assert!(text.contains("path length 2"), "{text}");
    let err = refused(&["ca", "inspect", s(&dir.join("root/key.pem"))]);
    assert!(err.contains("CERTIFICATE"), "{err}");
}
