//! `garrison evidence …` end to end: real event logs against their expected PCRs, and live
//! interop with the standard toolchain: tpm2-tools creates an AK and a quote on a private
//! swtpm, and `verify-quote` must accept exactly that and refuse tampered copies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use garrison_swtpm::{Swtpm, SwtpmOptions};

fn garrison(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(args)
        .output()
        .unwrap()
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn eventlog_json_gives_the_expected_pcrs_for_every_real_log() {
    let expected: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(testdata("eventlogs/expected-pcrs.json")).unwrap(),
    )
    .unwrap();
    let mut compared = 0;
    for (file, want) in expected.as_object().unwrap() {
        let out = garrison(&[
            "evidence",
            "eventlog",
            "--json",
            s(&testdata(&format!("eventlogs/{file}"))),
        ]);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // The one-event stub has no reference values; it must still parse (checked above).
        let Some(banks) = want["pcrs"].as_object() else {
            continue;
        };
        for (bank, pcrs) in banks {
            for (index, value) in pcrs.as_object().unwrap() {
                assert_eq!(got["pcrs"][bank][index], *value, "{file} {bank}:{index}");
                compared += 1;
            }
        }
    }
    assert!(compared > 200, "only {compared} PCR values compared");
}

#[test]
fn eventlog_refuses_garbage_with_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.bin");
    let mut bytes = fs::read(testdata("eventlogs/tpm2tools-event-arch-linux.bin")).unwrap();
    bytes.truncate(bytes.len() - 7);
    fs::write(&bad, bytes).unwrap();
    let out = garrison(&["evidence", "eventlog", s(&bad)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("event log"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs tpm2-tools against a private swtpm and returns the directory with ak.pub and the
/// quote files, and the nonce used.
struct ToolsQuote {
    dir: tempfile::TempDir,
    nonce: String,
    _tpm: Swtpm,
}

fn tpm2(tpm: &Swtpm, args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .env("TSS2_LOG", "all+none")
        .output()
        .expect("tpm2-tools are installed by the test command");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for flush in [["tpm2_flushcontext", "-t"], ["tpm2_flushcontext", "-s"]] {
        Command::new(flush[0])
            .arg(flush[1])
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .env("TSS2_LOG", "all+none")
            .output()
            .unwrap();
    }
}

fn tools_quote(ak_alg: &str) -> ToolsQuote {
    let tpm = Swtpm::start(&SwtpmOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    tpm2(
        &tpm,
        &[
            "tpm2_pcrextend",
            "4:sha256=8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4",
        ],
    );
    tpm2(
        &tpm,
        &[
            "tpm2_createek",
            "-c",
            &p("ek.ctx"),
            "-G",
            "rsa",
            "-u",
            &p("ek.pub"),
        ],
    );
    let ak_args: &[&str] = if ak_alg == "ecc" {
        &["-G", "ecc", "-g", "sha256", "-s", "ecdsa"]
    } else {
        &["-G", "rsa", "-g", "sha256", "-s", "rsassa"]
    };
    let (ek_ctx, ctx, public, name) = (p("ek.ctx"), p("ak.ctx"), p("ak.pub"), p("ak.name"));
    let mut create = vec!["tpm2_createak", "-C", &ek_ctx];
    create.extend(["-c", &ctx, "-u", &public, "-n", &name]);
    create.extend(ak_args);
    tpm2(&tpm, &create);
    let nonce = "6761727269736f6e2d6c6976652d7175";
    tpm2(
        &tpm,
        &[
            "tpm2_quote",
            "-c",
            &ctx,
            "-l",
            "sha256:0,1,2,3,4,5,6,7",
            "-q",
            nonce,
            "-g",
            "sha256",
            "-m",
            &p("quote.msg"),
            "-s",
            &p("quote.sig"),
            "-o",
            &p("quote.pcrs"),
        ],
    );
    ToolsQuote {
        dir,
        nonce: nonce.to_owned(),
        _tpm: tpm,
    }
}

fn verify(q: &ToolsQuote, overrides: &[(&str, &Path)], nonce: &str) -> (bool, serde_json::Value) {
    let path = |name: &str| {
        overrides
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.to_path_buf())
            .unwrap_or_else(|| q.dir.path().join(name))
    };
    let out = garrison(&[
        "evidence",
        "verify-quote",
        "--json",
        "--ak-public",
        s(&path("ak.pub")),
        "--message",
        s(&path("quote.msg")),
        "--signature",
        s(&path("quote.sig")),
        "--pcrs",
        s(&path("quote.pcrs")),
        "--nonce",
        nonce,
    ]);
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

fn tampered(q: &ToolsQuote, file: &str, byte_from_end: usize) -> PathBuf {
    let mut bytes = fs::read(q.dir.path().join(file)).unwrap();
    let at = bytes.len() - byte_from_end;
    bytes[at] ^= 0x01;
    let out = q.dir.path().join(format!("tampered-{file}"));
    fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn tpm2_tools_quotes_verify_and_tampering_is_named() {
    for alg in ["ecc", "rsa"] {
        let q = tools_quote(alg);
        let (ok, report) = verify(&q, &[], &q.nonce);
        assert!(ok, "{alg}: {report}");
        assert_eq!(report["verified"], true);

        let (ok, report) = verify(&q, &[], "00112233");
        assert!(!ok);
        assert_eq!(report["failed_check"], "nonce", "{alg}: {report}");

        // The file ends with the last PCR's 64-byte digest buffer; its first byte is digest.
        let pcrs = tampered(&q, "quote.pcrs", 64);
        let (ok, report) = verify(&q, &[("quote.pcrs", &pcrs)], &q.nonce);
        assert!(!ok);
        assert_eq!(report["failed_check"], "pcr-digest", "{alg}: {report}");

        let sig = tampered(&q, "quote.sig", 3);
        let (ok, report) = verify(&q, &[("quote.sig", &sig)], &q.nonce);
        assert!(!ok);
        assert_eq!(report["failed_check"], "quote-signature", "{alg}: {report}");

        let other = tools_quote(alg);
        let (ok, report) = verify(
            &q,
            &[("ak.pub", &other.dir.path().join("ak.pub"))],
            &q.nonce,
        );
        assert!(!ok);
        assert_eq!(
            report["failed_check"], "quote-signature",
            "{alg}: another TPM's AK: {report}"
        );
    }
}

#[test]
fn an_ek_is_not_an_ak() {
    let q = tools_quote("ecc");
    let (ok, report) = verify(&q, &[("ak.pub", &q.dir.path().join("ek.pub"))], &q.nonce);
    assert!(!ok);
    assert_eq!(report["failed_check"], "ak-attributes", "{report}");
}

#[test]
fn the_gce_windows_vector_needs_the_insecure_sha1_flag_and_then_verifies_with_its_log() {
    use base64::Engine as _;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let doc: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(testdata("quotes/goattest-windows_gcp_shielded_vm.json")).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = tmp.path().join(name);
        fs::write(&path, bytes).unwrap();
        path
    };
    let ak = write("ak.pub", &b64(&doc["AK"]["Public"]));
    let msg = write("quote.msg", &b64(&doc["Quote"]["Quote"]));
    let sig = write("quote.sig", &b64(&doc["Quote"]["Signature"]));
    let log = write("log.bin", &b64(&doc["Log"]["Raw"]));
    let nonce = hex::encode(b64(&doc["Quote"]["Nonce"]));
    // tpm2-tools PCR file: TPML_PCR_SELECTION as the little-endian C struct, then digests.
    let pcrs = tpm2_tools_pcr_file_sha1(&doc["Log"]["PCRs"], &b64);
    let pcr_path = write("quote.pcrs", &pcrs);
    let args = |extra: &[&str]| {
        let mut a = vec![
            "evidence",
            "verify-quote",
            "--json",
            "--ak-public",
            s(&ak),
            "--message",
            s(&msg),
            "--signature",
            s(&sig),
            "--pcrs",
            s(&pcr_path),
            "--nonce",
            &nonce,
            "--eventlog",
            s(&log),
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| {
        let out = Command::new(env!("CARGO_BIN_EXE_garrison"))
            .args(&a)
            .output()
            .unwrap();
        (
            out.status.success(),
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, report, _) = run(args(&[]));
    assert!(!ok);
    assert_eq!(report["failed_check"], "ak-attributes", "{report}");
    let (ok, report, stderr) = run(args(&["--insecure-allow-sha1-ak"]));
    assert!(ok, "{report}");
    assert!(
        stderr.contains("insecure"),
        "the insecure flag must warn: {stderr}"
    );
    let checks: Vec<_> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(checks, ["ak", "quote", "eventlog-replay"]);
}

/// The 24 SHA-1 PCRs of the vector as a tpm2-tools `-o` file (layout documented in
/// garrison-evidence's `tpm2_tools.rs`: one selection, one digest list per 8 PCRs).
fn tpm2_tools_pcr_file_sha1(
    pcrs: &serde_json::Value,
    b64: &dyn Fn(&serde_json::Value) -> Vec<u8>,
) -> Vec<u8> {
    let mut values = vec![Vec::new(); 24];
    for pcr in pcrs.as_array().unwrap() {
        if pcr["DigestAlg"] == 3 {
            values[pcr["Index"].as_u64().unwrap() as usize] = b64(&pcr["Digest"]);
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&1u32.to_le_bytes()); // TPML_PCR_SELECTION.count
    out.extend_from_slice(&0x0004u16.to_le_bytes()); // TPM_ALG_SHA1
    out.push(3); // sizeofSelect
    out.extend_from_slice(&[0xff, 0xff, 0xff, 0, 0]); // pcrSelect[4] + struct padding
    out.extend_from_slice(&[0u8; 15 * 8]); // the rest of the 16-entry C array
    let chunks: Vec<_> = values.chunks(8).collect();
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    for chunk in chunks {
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        for digest in chunk {
            out.extend_from_slice(&(digest.len() as u16).to_le_bytes());
            let mut padded = digest.clone();
            padded.resize(64, 0);
            out.extend_from_slice(&padded);
        }
        out.extend_from_slice(&vec![0u8; (8 - chunk.len()) * 66]);
    }
    out
}
