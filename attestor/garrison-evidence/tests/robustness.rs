//! Every parser, fed every fixture, its truncations and single-bit flips: no panics, and the
//! untouched fixtures still parse. (Deterministic complement to the fuzz targets.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test and bench code: helpers outside #[test] fns are not covered by clippy.toml's exemption"
)]

use base64::Engine as _;
use garrison_evidence::{
    AkPolicy, PcrSelection, PcrValues, QuoteAttest, Tpm2ToolsPcrFile, TpmPublic, TpmSignature,
    check_ak, verify_quote,
};

fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "ak_ecc.pub",
            include_bytes!("../testdata/tpm2tools/ak_ecc.pub").to_vec(),
        ),
        (
            "ak_rsa.pub",
            include_bytes!("../testdata/tpm2tools/ak_rsa.pub").to_vec(),
        ),
        (
            "ek_ecc.pub",
            include_bytes!("../testdata/tpm2tools/ek_ecc.pub").to_vec(),
        ),
        (
            "ek_rsa.pub",
            include_bytes!("../testdata/tpm2tools/ek_rsa.pub").to_vec(),
        ),
        (
            "quote_ecc.msg",
            include_bytes!("../testdata/tpm2tools/quote_ecc.msg").to_vec(),
        ),
        (
            "quote_rsa.msg",
            include_bytes!("../testdata/tpm2tools/quote_rsa.msg").to_vec(),
        ),
        (
            "quote_ecc.sig",
            include_bytes!("../testdata/tpm2tools/quote_ecc.sig").to_vec(),
        ),
        (
            "quote_rsa.sig",
            include_bytes!("../testdata/tpm2tools/quote_rsa.sig").to_vec(),
        ),
        (
            "quote_ecc.pcrs",
            include_bytes!("../testdata/tpm2tools/quote_ecc.pcrs").to_vec(),
        ),
        (
            "quote_rsa.pcrs",
            include_bytes!("../testdata/tpm2tools/quote_rsa.pcrs").to_vec(),
        ),
    ];
    let json: serde_json::Value = serde_json::from_str(include_str!(
        "../../../testdata/quotes/goattest-windows_gcp_shielded_vm.json"
    ))
    .unwrap();
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    out.push(("gce ak", b64(&json["AK"]["Public"])));
    out.push(("gce quote", b64(&json["Quote"]["Quote"])));
    out.push(("gce signature", b64(&json["Quote"]["Signature"])));
    out
}

/// Runs every parser on `bytes`; returns how many accepted it.
fn parse_everything(bytes: &[u8]) -> usize {
    let ak = check_ak(
        include_bytes!("../testdata/tpm2tools/ak_ecc.pub"),
        &AkPolicy::default(),
    )
    .unwrap();
    let results = [
        TpmPublic::from_tpm2b_or_tpmt(bytes).is_ok(),
        TpmPublic::from_tpm2b(bytes).is_ok(),
        TpmPublic::from_tpmt(bytes).is_ok(),
        check_ak(
            bytes,
            &AkPolicy {
                insecure_allow_sha1_signatures: true,
            },
        )
        .is_ok(),
        QuoteAttest::from_bytes(bytes).is_ok(),
        TpmSignature::from_bytes(bytes).is_ok(),
        PcrSelection::from_bytes(bytes).is_ok(),
        Tpm2ToolsPcrFile::parse(bytes).is_ok(),
        verify_quote(&ak, bytes, bytes, b"", &PcrValues::new()).is_ok(),
    ];
    results.iter().filter(|ok| **ok).count()
}

#[test]
fn untouched_fixtures_parse() {
    for (name, bytes) in fixtures() {
        assert!(parse_everything(&bytes) >= 1, "{name} parsed by nothing");
    }
}

#[test]
fn truncations_never_panic() {
    for (_, bytes) in fixtures() {
        for len in 0..bytes.len() {
            parse_everything(&bytes[..len]);
            parse_everything(&bytes[len..]);
        }
    }
}

#[test]
fn bit_flips_never_panic() {
    for (_, bytes) in fixtures() {
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            parse_everything(&flipped);
        }
    }
}

#[test]
fn truncated_fixtures_are_rejected_by_their_own_parser() {
    for (name, bytes) in fixtures() {
        let cut = &bytes[..bytes.len() - 1];
        let rejected = match name {
            n if n.ends_with(".pub") || n == "gce ak" => {
                TpmPublic::from_tpm2b_or_tpmt(cut).is_err()
            }
            n if n.ends_with(".msg") || n == "gce quote" => QuoteAttest::from_bytes(cut).is_err(),
            n if n.ends_with(".sig") || n == "gce signature" => {
                TpmSignature::from_bytes(cut).is_err()
            }
            _ => Tpm2ToolsPcrFile::parse(cut).is_err(),
        };
        assert!(rejected, "{name} minus one byte was accepted");
    }
}
