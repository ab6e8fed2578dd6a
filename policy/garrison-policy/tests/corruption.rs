//! Deterministic corruption of a real signed archive: every truncation (in steps) and one bit
//! flip per byte, fed to `decode_archive` and `verify_bundle`. Nothing may panic, every error
//! must say what is wrong, and anything that still verifies must be the original bundle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;

use garrison_ca::{
    Authority, KeyAlgorithm, RootParams, SpiffeId, SubjectKey, SvidParams, TrustDomain,
    certificates_to_pem,
};
use garrison_policy::{
    BundleFiles, BundleLimits, BundleSigner, Manifest, PolicyError, PolicyTrust, decode_archive,
    encode_archive, verify_bundle,
};
use ring::rand::SystemRandom;
use time::{Duration, OffsetDateTime};

fn signed_archive() -> (Vec<u8>, BundleFiles, PolicyTrust, OffsetDateTime) {
    let rng = SystemRandom::new();
    let now = OffsetDateTime::now_utc();
    let root = Authority::from_issued(
        Authority::new_root(
            &RootParams {
                trust_domain: TrustDomain::new("example.org").unwrap(),
                name: "Test Root".to_owned(),
                ttl: Duration::days(30),
                path_len: 2,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            now,
            &rng,
        )
        .unwrap(),
    )
    .unwrap();
    let svid = root
        .issue_svid(
            SvidParams {
                spiffe_id: SpiffeId::parse("spiffe://example.org/policy/signer/ops").unwrap(),
                ttl: Duration::days(7),
                max_ttl: Duration::days(7),
                subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            now,
            &rng,
        )
        .unwrap();
    let key = svid.key.as_ref().unwrap().to_pkcs8_pem();
    let signer = BundleSigner::from_pem(key.expose(), &certificates_to_pem(&svid.chain)).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/strict");
    let files: BundleFiles = ["admission.rego", "data.json"]
        .iter()
        .map(|n| ((*n).to_owned(), std::fs::read(dir.join(n)).unwrap()))
        .collect();
    let signed = signer.sign(&files, "strict", 3, now, &rng).unwrap();
    let trust = PolicyTrust::from_pem(&certificates_to_pem(root.roots())).unwrap();
    (encode_archive(&signed), signed, trust, now)
}

/// Decode and verify; an `Ok` must be the original bundle, an `Err` must be non-empty text.
fn check(bytes: &[u8], original: &BundleFiles, trust: &PolicyTrust, now: OffsetDateTime) -> bool {
    let limits = BundleLimits::default();
    let files = match decode_archive(bytes, &limits) {
        Ok(files) => files,
        Err(err) => {
            assert!(!err.to_string().is_empty());
            return false;
        }
    };
    match verify_bundle(&files, trust, now, &limits) {
        Ok(verified) => {
            assert_eq!(
                &files, original,
                "a corrupted archive verified as another bundle"
            );
            assert_eq!(verified.manifest.sequence, 3);
            true
        }
        Err(err) => {
            assert!(!err.to_string().is_empty());
            false
        }
    }
}

#[test]
fn truncated_archives_are_refused() {
    let (archive, original, trust, now) = signed_archive();
    assert!(check(&archive, &original, &trust, now));
    for len in (0..archive.len()).step_by(3) {
        // A prefix cut inside the trailing whitespace would still be whole JSON; none is.
        assert!(
            !check(&archive[..len], &original, &trust, now),
            "prefix of {len} bytes verified"
        );
    }
}

#[test]
fn bit_flipped_archives_are_refused_or_unchanged() {
    let (archive, original, trust, now) = signed_archive();
    let mut accepted = 0;
    for at in 0..archive.len() {
        let mut bytes = archive.clone();
        bytes[at] ^= 1 << (at % 8);
        if check(&bytes, &original, &trust, now) {
            accepted += 1;
        }
    }
    // Only flips that decode to the same files (e.g. JSON whitespace turned into other
    // whitespace) may verify; there are none in a pretty-printed archive of base64 strings.
    assert_eq!(accepted, 0);
}

#[test]
fn corrupted_manifests_and_signatures_are_clear_errors() {
    let (_, original, trust, now) = signed_archive();
    let limits = BundleLimits::default();
    for name in ["manifest.json", "signature.json"] {
        let bytes = original[name].clone();
        for len in (0..bytes.len()).step_by(5) {
            let mut files = original.clone();
            files.insert(name.to_owned(), bytes[..len].to_vec());
            let err = verify_bundle(&files, &trust, now, &limits).unwrap_err();
            let expected = if name == "manifest.json" {
                matches!(err, PolicyError::ManifestMalformed { .. })
            } else {
                matches!(err, PolicyError::SignatureMalformed { .. })
            };
            assert!(expected, "{name} cut to {len}: {err}");
        }
        for at in 0..bytes.len() {
            let mut files = original.clone();
            let mut flipped = bytes.clone();
            flipped[at] ^= 1 << (at % 8);
            files.insert(name.to_owned(), flipped.clone());
            assert!(
                verify_bundle(&files, &trust, now, &limits).is_err(),
                "{name} with byte {at} flipped verified"
            );
            if name == "manifest.json" {
                // Parsing alone never panics either.
                let _ = Manifest::parse(&flipped);
            }
        }
    }
}
