//! Trust bundle output: PEM round-trips, and the SPIFFE JWKS carries the right key and cert.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use garrison_ca::{BundleMetadata, TrustBundle, certificates_from_pem};
use x509_parser::prelude::*;

#[test]
fn pem_bundle_round_trips() {
    let h = common::hierarchy();
    let bundle = TrustBundle::new(h.site.roots().to_vec()).unwrap();
    assert_eq!(
        certificates_from_pem(&bundle.to_pem()).unwrap(),
        vec![h.root.certificate().to_vec()]
    );
}

#[test]
fn spiffe_bundle_has_one_x509_svid_key_per_root_with_matching_coordinates() {
    let h = common::hierarchy();
    let bundle = TrustBundle::new(vec![h.root.certificate().to_vec()]).unwrap();
    let json = bundle
        .to_spiffe_json(BundleMetadata {
            sequence: 7,
            refresh_hint_seconds: 300,
        })
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["spiffe_sequence"], 7);
    assert_eq!(doc["spiffe_refresh_hint"], 300);
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["use"], "x509-svid");
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    let x5c = key["x5c"].as_array().unwrap();
    assert_eq!(x5c.len(), 1);
    let der = STANDARD.decode(x5c[0].as_str().unwrap()).unwrap();
    assert_eq!(der, h.root.certificate());
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let point = cert.public_key().subject_public_key.data.to_vec();
    let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(key["y"].as_str().unwrap()).unwrap();
    assert_eq!([&[4u8][..], &x, &y].concat(), point);
}

#[test]
fn an_empty_bundle_is_refused() {
    assert!(TrustBundle::new(vec![]).is_err());
}
