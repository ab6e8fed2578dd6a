//! Quote verification against real evidence: a swtpm + tpm2-tools fixture set and a quote
//! from a Windows GCE shielded VM (go-attestation's test data).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test and bench code: helpers outside #[test] fns are not covered by clippy.toml's exemption"
)]

use base64::Engine as _;
use garrison_evidence::{
    AkPolicy, EvidenceError, HashAlg, PcrValues, QuoteAttest, Tpm2ToolsPcrFile, TpmSignature,
    check_ak, verify_quote,
};

const NONCE: &[u8] = b"garrison-nonce-01";

struct Fixture {
    ak_pub: &'static [u8],
    ak_name: &'static [u8],
    msg: &'static [u8],
    sig: &'static [u8],
    pcrs: &'static [u8],
}

macro_rules! fixture {
    ($alg:literal) => {
        Fixture {
            ak_pub: include_bytes!(concat!("../testdata/tpm2tools/ak_", $alg, ".pub")),
            ak_name: include_bytes!(concat!("../testdata/tpm2tools/ak_", $alg, ".name")),
            msg: include_bytes!(concat!("../testdata/tpm2tools/quote_", $alg, ".msg")),
            sig: include_bytes!(concat!("../testdata/tpm2tools/quote_", $alg, ".sig")),
            pcrs: include_bytes!(concat!("../testdata/tpm2tools/quote_", $alg, ".pcrs")),
        }
    };
}

fn fixtures() -> [(&'static str, Fixture); 2] {
    [("ecc", fixture!("ecc")), ("rsa", fixture!("rsa"))]
}

/// `tpm2_pcrread sha256:0,...,7` after generate.sh's extends (see pcrread.txt).
const PCR0: &str = "10958d561e1f13569732ffc242301011cdcb272ad01dff52f9ec1f840f99d468";
const PCR7: &str = "fa51079b65cf85ecaaf91e18220dd51ca2794c144dc48da9b17db3c4586c6ef8";

#[test]
fn tpm2_tools_pcr_file_matches_pcrread() {
    for (alg, f) in fixtures() {
        let file = Tpm2ToolsPcrFile::parse(f.pcrs).unwrap();
        assert_eq!(
            file.selection.iter().collect::<Vec<_>>(),
            (0..8).map(|i| (HashAlg::Sha256, i)).collect::<Vec<_>>(),
            "{alg}"
        );
        assert_eq!(file.values.len(), 8);
        assert_eq!(
            hex::encode(file.values.value(HashAlg::Sha256, 0).unwrap()),
            PCR0
        );
        assert_eq!(
            hex::encode(file.values.value(HashAlg::Sha256, 7).unwrap()),
            PCR7
        );
        assert_eq!(
            PcrValues::from_tpm2_tools_pcrs(f.pcrs).unwrap(),
            file.values
        );
    }
}

#[test]
fn ak_name_matches_tpm2_createak() {
    for (alg, f) in fixtures() {
        let ak = check_ak(f.ak_pub, &AkPolicy::default()).unwrap();
        assert_eq!(ak.name().as_bytes(), f.ak_name, "{alg}");
    }
}

#[test]
fn swtpm_quotes_verify() {
    for (alg, f) in fixtures() {
        let ak = check_ak(f.ak_pub, &AkPolicy::default()).unwrap();
        let pcrs = PcrValues::from_tpm2_tools_pcrs(f.pcrs).unwrap();
        let verdict =
            verify_quote(&ak, f.msg, f.sig, NONCE, &pcrs).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verdict.pcr_digest_alg, HashAlg::Sha256);
        assert_eq!(verdict.selection.len(), 8);
        assert!(verdict.safe);
        assert_eq!(
            verdict.firmware_version, 0x2019_1023_0016_3636,
            "swtpm 0.7 firmware version"
        );
        assert_eq!(verdict.qualified_signer.len(), 34);
    }
}

#[test]
fn tpm2b_attest_is_accepted_too() {
    let f = fixture!("ecc");
    let ak = check_ak(f.ak_pub, &AkPolicy::default()).unwrap();
    let pcrs = PcrValues::from_tpm2_tools_pcrs(f.pcrs).unwrap();
    let mut tpm2b = (f.msg.len() as u16).to_be_bytes().to_vec();
    tpm2b.extend_from_slice(f.msg);
    verify_quote(&ak, &tpm2b, f.sig, NONCE, &pcrs).unwrap();
    assert_eq!(
        QuoteAttest::from_bytes(&tpm2b).unwrap(),
        QuoteAttest::from_bytes(f.msg).unwrap()
    );
}

#[test]
fn wrong_nonce_is_rejected() {
    for (_, f) in fixtures() {
        let ak = check_ak(f.ak_pub, &AkPolicy::default()).unwrap();
        let pcrs = PcrValues::from_tpm2_tools_pcrs(f.pcrs).unwrap();
        let err = verify_quote(&ak, f.msg, f.sig, b"garrison-nonce-02", &pcrs).unwrap_err();
        assert!(matches!(err, EvidenceError::NonceMismatch { .. }), "{err}");
    }
}

#[test]
fn tampered_pcr_value_is_rejected() {
    for (_, f) in fixtures() {
        let ak = check_ak(f.ak_pub, &AkPolicy::default()).unwrap();
        let good = PcrValues::from_tpm2_tools_pcrs(f.pcrs).unwrap();
        let mut pcrs = PcrValues::new();
        for (bank, index, value) in good.iter() {
            let mut value = value.to_vec();
            if index == 4 {
                value[0] ^= 1;
            }
            pcrs.insert(bank, index, value).unwrap();
        }
        let err = verify_quote(&ak, f.msg, f.sig, NONCE, &pcrs).unwrap_err();
        assert!(
            matches!(
                err,
                EvidenceError::PcrDigestMismatch {
                    alg: HashAlg::Sha256,
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn pcr_set_must_equal_selection() {
    let f = fixture!("ecc");
    let ak = check_ak(f.ak_pub, &AkPolicy::default()).unwrap();
    let good = PcrValues::from_tpm2_tools_pcrs(f.pcrs).unwrap();
    let mut extra = good.clone();
    extra.insert(HashAlg::Sha256, 8, vec![0; 32]).unwrap();
    let err = verify_quote(&ak, f.msg, f.sig, NONCE, &extra).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::PcrNotSelected {
                bank: HashAlg::Sha256,
                index: 8
            }
        ),
        "{err}"
    );
    let mut other_bank = good.clone();
    other_bank.insert(HashAlg::Sha1, 0, vec![0; 20]).unwrap();
    let err = verify_quote(&ak, f.msg, f.sig, NONCE, &other_bank).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::PcrNotSelected {
                bank: HashAlg::Sha1,
                index: 0
            }
        ),
        "{err}"
    );
    let missing = PcrValues::from_entries(good.iter().filter(|(_, i, _)| *i != 3)).unwrap();
    let err = verify_quote(&ak, f.msg, f.sig, NONCE, &missing).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::PcrMissing {
                bank: HashAlg::Sha256,
                index: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn tampered_signature_is_rejected() {
    for (alg, f) in fixtures() {
        let ak = check_ak(f.ak_pub, &AkPolicy::default()).unwrap();
        let pcrs = PcrValues::from_tpm2_tools_pcrs(f.pcrs).unwrap();
        let mut sig = f.sig.to_vec();
        let last = sig.len() - 1;
        sig[last] ^= 0x01;
        let err = verify_quote(&ak, f.msg, &sig, NONCE, &pcrs).unwrap_err();
        assert!(
            matches!(err, EvidenceError::SignatureInvalid { .. }),
            "{alg}: {err}"
        );
    }
}

#[test]
fn tampered_selection_is_rejected_by_the_signature() {
    // The selection is inside the signed TPMS_ATTEST: changing it (PCR 7 -> PCR 8 deselected)
    // must break the signature, whatever the PCR values say.
    let f = fixture!("ecc");
    let ak = check_ak(f.ak_pub, &AkPolicy::default()).unwrap();
    let pcrs = PcrValues::from_tpm2_tools_pcrs(f.pcrs).unwrap();
    let mut msg = f.msg.to_vec();
    let select = msg
        .windows(6)
        .position(|w| w == [0x00, 0x0b, 0x03, 0xff, 0x00, 0x00])
        .unwrap();
    msg[select + 3] = 0x7f;
    let err = verify_quote(&ak, &msg, f.sig, NONCE, &pcrs).unwrap_err();
    assert!(
        matches!(err, EvidenceError::SignatureInvalid { .. }),
        "{err}"
    );
}

#[test]
fn quote_from_another_ak_is_rejected() {
    let ecc = fixture!("ecc");
    let rsa = fixture!("rsa");
    let rsa_ak = check_ak(rsa.ak_pub, &AkPolicy::default()).unwrap();
    let pcrs = PcrValues::from_tpm2_tools_pcrs(ecc.pcrs).unwrap();
    let err = verify_quote(&rsa_ak, ecc.msg, ecc.sig, NONCE, &pcrs).unwrap_err();
    assert!(
        matches!(err, EvidenceError::SignatureSchemeMismatch { .. }),
        "{err}"
    );
}

#[test]
fn signature_parser_reads_tpm2_tools_output() {
    let sig = TpmSignature::from_bytes(fixture!("ecc").sig).unwrap();
    assert_eq!(
        sig.scheme,
        garrison_evidence::SignatureScheme::Ecdsa(HashAlg::Sha256)
    );
    let sig = TpmSignature::from_bytes(fixture!("rsa").sig).unwrap();
    assert_eq!(
        sig.scheme,
        garrison_evidence::SignatureScheme::RsaSsa(HashAlg::Sha256)
    );
}

// ---- go-attestation: Windows GCE shielded VM ----

struct GoAttest {
    ak_public: Vec<u8>,
    quote: Vec<u8>,
    signature: Vec<u8>,
    nonce: Vec<u8>,
    pcrs: PcrValues,
}

fn goattest() -> GoAttest {
    let json: serde_json::Value = serde_json::from_str(include_str!(
        "../../../testdata/quotes/goattest-windows_gcp_shielded_vm.json"
    ))
    .unwrap();
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let mut pcrs = PcrValues::new();
    for pcr in json["Log"]["PCRs"].as_array().unwrap() {
        // go-attestation's DigestAlg is Go's crypto.Hash: 3 = SHA-1, 5 = SHA-256.
        let bank = match pcr["DigestAlg"].as_u64().unwrap() {
            3 => HashAlg::Sha1,
            5 => HashAlg::Sha256,
            other => panic!("unexpected crypto.Hash {other}"),
        };
        pcrs.insert(
            bank,
            pcr["Index"].as_u64().unwrap() as u32,
            b64(&pcr["Digest"]),
        )
        .unwrap();
    }
    GoAttest {
        ak_public: b64(&json["AK"]["Public"]),
        quote: b64(&json["Quote"]["Quote"]),
        signature: b64(&json["Quote"]["Signature"]),
        nonce: b64(&json["Quote"]["Nonce"]),
        pcrs,
    }
}

const LEGACY: AkPolicy = AkPolicy {
    insecure_allow_sha1_signatures: true,
};

#[test]
fn gce_ak_uses_sha1_and_is_refused_by_default() {
    let v = goattest();
    let err = check_ak(&v.ak_public, &AkPolicy::default()).unwrap_err();
    assert!(
        matches!(err, EvidenceError::AkAlgorithmNotAllowed { .. }),
        "{err}"
    );
}

#[test]
fn gce_quote_verifies() {
    let v = goattest();
    let ak = check_ak(&v.ak_public, &LEGACY).unwrap();
    let verdict = verify_quote(&ak, &v.quote, &v.signature, &v.nonce, &v.pcrs).unwrap();
    // pcrDigest uses the AK's signing-scheme hash (SHA-1 here), not its nameAlg (SHA-256).
    assert_eq!(verdict.pcr_digest_alg, HashAlg::Sha1);
    assert_eq!(ak.public().name_alg, HashAlg::Sha256);
    assert_eq!(verdict.selection.len(), 24);
    assert_eq!(verdict.clock, 0x9c_8313);
    assert_eq!(verdict.reset_count, 0x3e4d_b9e4);
    assert_eq!(verdict.restart_count, 0x3106_36da);
    assert!(verdict.safe);
}

#[test]
fn gce_tampered_variants_fail() {
    let v = goattest();
    let ak = check_ak(&v.ak_public, &LEGACY).unwrap();
    let err = verify_quote(&ak, &v.quote, &v.signature, b"not the nonce", &v.pcrs).unwrap_err();
    assert!(matches!(err, EvidenceError::NonceMismatch { .. }), "{err}");

    let mut pcrs = PcrValues::new();
    for (bank, index, value) in v.pcrs.iter() {
        let mut value = value.to_vec();
        if index == 7 {
            value[19] ^= 0x80;
        }
        pcrs.insert(bank, index, value).unwrap();
    }
    let err = verify_quote(&ak, &v.quote, &v.signature, &v.nonce, &pcrs).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::PcrDigestMismatch {
                alg: HashAlg::Sha1,
                ..
            }
        ),
        "{err}"
    );

    let mut sig = v.signature.clone();
    sig[10] ^= 0x01;
    let err = verify_quote(&ak, &v.quote, &sig, &v.nonce, &v.pcrs).unwrap_err();
    assert!(
        matches!(err, EvidenceError::SignatureInvalid { .. }),
        "{err}"
    );

    let mut quote = v.quote.clone();
    let clock = 4 + 2 + 2 + 34 + 2; // magic, type, qualifiedSigner, extraData
    quote[clock + 7] ^= 0x01;
    let err = verify_quote(&ak, &quote, &v.signature, &v.nonce, &v.pcrs).unwrap_err();
    assert!(
        matches!(err, EvidenceError::SignatureInvalid { .. }),
        "{err}"
    );
}
