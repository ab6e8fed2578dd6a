//! The `garrison policy` commands end to end through the binary: case files of the shipped
//! policies, sign → verify → eval with a policy signer SVID issued by `garrison ca`, and the
//! refusals an operator sees (tampered bundle, wrong root, failing case, malformed input).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::fs;
use std::path::{Path, PathBuf};
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
        "garrison {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
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
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn policies() -> PathBuf {
    repo().join("policy/policies")
}

/// A root and a policy signer SVID below it, made with `garrison ca`.
fn signer(dir: &Path, td: &str) -> (PathBuf, PathBuf) {
    let root = dir.join(format!("root-{td}"));
    let svid = dir.join(format!("signer-{td}"));
    ok(&["ca", "init-root", "--trust-domain", td, "--out", s(&root)]);
    ok(&[
        "ca",
        "issue-svid",
        "--issuer",
        s(&root),
        "--spiffe-id",
        &format!("spiffe://{td}/policy/signer/ops"),
        "--ttl",
        "24h",
        "--out",
        s(&svid),
    ]);
    (root, svid)
}

fn sign(dir: &Path, svid: &Path, sequence: &str, out: &Path) {
    ok(&[
        "policy",
        "sign",
        "--dir",
        s(dir),
        "--key",
        s(&svid.join("key.pem")),
        "--cert",
        s(&svid.join("chain.pem")),
        "--sequence",
        sequence,
        "--out",
        s(out),
    ]);
}

#[test]
fn shipped_policy_case_files_pass() {
    for name in ["strict", "lab-permissive-INSECURE"] {
        let out = ok(&["policy", "test", s(&policies().join(name))]);
        assert!(out.contains(" 0 failed"), "{out}");
        assert!(!out.contains("FAIL"), "{out}");
    }
}

#[test]
fn a_failing_case_gives_a_summary_and_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    fs::create_dir_all(dir.join("cases")).unwrap();
    fs::copy(
        policies().join("lab-permissive-INSECURE/admission.rego"),
        dir.join("admission.rego"),
    )
    .unwrap();
    fs::copy(
        policies().join("lab-permissive-INSECURE/data.json"),
        dir.join("data.json"),
    )
    .unwrap();
    let base = policies().join("inputs/tpm2tools-event-gce-ubuntu-2104-log.json");
    let case = serde_json::json!({"base": s(&base), "want": {"allow": false}});
    fs::write(dir.join("cases/wrong.json"), case.to_string()).unwrap();
    let out = refused(&["policy", "test", s(&dir)]);
    assert!(out.contains("FAIL  wrong"), "{out}");
    assert!(out.contains("1 cases: 0 passed, 1 failed"), "{out}");
}

#[test]
fn sign_verify_eval_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, svid) = signer(tmp.path(), "example.org");
    let bundle = tmp.path().join("strict.bundle.json");
    sign(&policies().join("strict"), &svid, "3", &bundle);
    let root_pem = root.join("bundle.pem");

    let out = ok(&[
        "policy",
        "verify",
        s(&bundle),
        "--bundle-root",
        s(&root_pem),
    ]);
    assert!(out.contains("OK strict sequence 3"), "{out}");
    assert!(
        out.contains("spiffe://example.org/policy/signer/ops"),
        "{out}"
    );

    let input = policies().join("inputs/tpm2tools-event-moklisttrusted.json");
    let out = ok(&[
        "policy",
        "eval",
        "--bundle",
        s(&bundle),
        "--bundle-root",
        s(&root_pem),
        "--input",
        s(&input),
        "--explain",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"]["allow"], true, "{out}");
    // The shipped inputs are disconnected, like every site until the hub exists.
    assert_eq!(v["decision"]["ttl_seconds"], 900);
    assert_eq!(v["explain"]["allow"], true, "{out}");
    assert!(v["explain"]["cfg"].is_object(), "{out}");

    let denied = policies().join("inputs/tpm2tools-event-gce-ubuntu-2104-log.json");
    let out = ok(&[
        "policy",
        "eval",
        "--bundle",
        s(&bundle),
        "--bundle-root",
        s(&root_pem),
        "--input",
        s(&denied),
    ]);
    assert!(out.contains("boot: Secure Boot is off"), "{out}");

    // Tampered: data.json changed inside the archive.
    let mut archive: serde_json::Value =
        serde_json::from_slice(&fs::read(&bundle).unwrap()).unwrap();
    archive["files"]["data.json"] = serde_json::Value::String("e30=".to_owned());
    let tampered = tmp.path().join("tampered.json");
    fs::write(&tampered, archive.to_string()).unwrap();
    let err = refused(&[
        "policy",
        "verify",
        s(&tampered),
        "--bundle-root",
        s(&root_pem),
    ]);
    assert!(err.contains("digest of data.json"), "{err}");

    // Signed under another root.
    let (other_root, _) = signer(tmp.path(), "other.example");
    let err = refused(&[
        "policy",
        "verify",
        s(&bundle),
        "--bundle-root",
        s(&other_root.join("bundle.pem")),
    ]);
    assert!(err.contains("does not chain to the bundle root"), "{err}");

    // Malformed input.
    let bad = tmp.path().join("bad.json");
    fs::write(&bad, "{\"tpm\": ").unwrap();
    let err = refused(&[
        "policy",
        "eval",
        "--bundle",
        s(&bundle),
        "--bundle-root",
        s(&root_pem),
        "--input",
        s(&bad),
    ]);
    assert!(err.contains("input is not valid JSON"), "{err}");
}

#[test]
fn golden_drafts_allow_lists_that_admit_the_same_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let log = repo().join("testdata/eventlogs/tpm2tools-event-moklisttrusted.bin");
    let data = ok(&["policy", "golden", "--eventlog", s(&log)]);
    let v: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        v["strict"]["boot_applications"].as_object().unwrap().len(),
        3
    );
    let dir = tmp.path().join("p");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(
        policies().join("strict/admission.rego"),
        dir.join("admission.rego"),
    )
    .unwrap();
    let mut v = v;
    v["strict"]["trusted_ek_manufacturers"] = serde_json::json!({"id:53544D20": "ST"});
    fs::write(dir.join("data.json"), v.to_string()).unwrap();
    let input = ok(&["policy", "golden", "--eventlog", s(&log), "--input"]);
    let input_path = tmp.path().join("input.json");
    fs::write(&input_path, input).unwrap();
    let out = ok(&[
        "policy",
        "eval",
        "--unsigned",
        "--bundle",
        s(&dir),
        "--input",
        s(&input_path),
    ]);
    assert!(out.contains("\"allow\": true"), "{out}");
}
