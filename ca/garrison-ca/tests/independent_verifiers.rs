//! What we issue is checked by code that did not issue it: rustls-webpki path validation, the
//! `spiffe` crate's X509Svid parser, and x509-parser field by field. (`openssl verify` runs
//! against the CLI's output in the `garrison` crate's tests.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

mod common;

use ::time::Duration;
use common::*;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::*;

const LEAF_ID: &str = "spiffe://example.org/site/a/node/n1";

fn webpki_verify(
    h: &Hierarchy,
    leaf: &[u8],
    chain: &[Vec<u8>],
    usage: webpki::KeyUsage,
    at: ::time::OffsetDateTime,
) -> Result<(), webpki::Error> {
    let root_der = CertificateDer::from(h.root.certificate().to_vec());
    let anchor = webpki::anchor_from_trusted_cert(&root_der)
        .unwrap()
        .to_owned();
    let intermediates: Vec<CertificateDer<'_>> = chain
        .iter()
        .skip(1)
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let leaf_der = CertificateDer::from(leaf);
    let end_entity = webpki::EndEntityCert::try_from(&leaf_der).unwrap();
    let time =
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.unix_timestamp() as u64));
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &intermediates,
            time,
            usage,
            None,
            None,
        )
        .map(|_| ())
}

#[test]
fn webpki_accepts_root_hub_site_leaf_for_client_and_server_auth() {
    let h = hierarchy();
    let leaf = svid(&h.site, LEAF_ID, Duration::hours(1), h.now);
    assert_eq!(leaf.chain.len(), 3, "leaf, site, hub; root excluded");
    let at = h.now + Duration::minutes(1);
    webpki_verify(
        &h,
        &leaf.certificate,
        &leaf.chain,
        webpki::KeyUsage::client_auth(),
        at,
    )
    .unwrap();
    webpki_verify(
        &h,
        &leaf.certificate,
        &leaf.chain,
        webpki::KeyUsage::server_auth(),
        at,
    )
    .unwrap();
}

#[test]
fn webpki_rejects_the_leaf_after_expiry_and_without_its_intermediates() {
    let h = hierarchy();
    let leaf = svid(&h.site, LEAF_ID, Duration::hours(1), h.now);
    let later = h.now + Duration::hours(2);
    let err = webpki_verify(
        &h,
        &leaf.certificate,
        &leaf.chain,
        webpki::KeyUsage::client_auth(),
        later,
    );
    assert!(
        matches!(err, Err(webpki::Error::CertExpired { .. })),
        "{err:?}"
    );
    let only_leaf = vec![leaf.certificate.clone()];
    let err = webpki_verify(
        &h,
        &leaf.certificate,
        &only_leaf,
        webpki::KeyUsage::client_auth(),
        h.now,
    );
    assert!(matches!(err, Err(webpki::Error::UnknownIssuer)), "{err:?}");
}

#[test]
fn spiffe_crate_parses_the_svid_and_its_chain() {
    let h = hierarchy();
    let issued = h
        .site
        .issue_svid(
            garrison_ca::SvidParams {
                spiffe_id: garrison_ca::SpiffeId::parse(LEAF_ID).unwrap(),
                ttl: Duration::hours(1),
                max_ttl: Duration::hours(24),
                subject_key: garrison_ca::SubjectKey::Generate(
                    garrison_ca::KeyAlgorithm::EcdsaP256,
                ),
            },
            h.now,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
    let chain_der: Vec<u8> = issued.chain.concat();
    let key_pem = issued.key.as_ref().unwrap().to_pkcs8_pem();
    let key_der = ::pem::parse(key_pem.expose()).unwrap().into_contents();
    let svid = spiffe::X509Svid::parse_from_der(&chain_der, &key_der).unwrap();
    assert_eq!(svid.spiffe_id().to_string(), LEAF_ID);
    assert_eq!(svid.cert_chain().len(), 3);
}

#[test]
fn spiffe_crate_refuses_a_ca_certificate_as_svid() {
    let h = hierarchy();
    let site_issued = h
        .hub
        .issue_intermediate(
            garrison_ca::IntermediateParams {
                name: "site-b".into(),
                role: garrison_ca::CaRole::Site("b".into()),
                ttl: Duration::days(1),
                path_len: garrison_ca::PathLen::OneBelowIssuer,
                subject_key: garrison_ca::SubjectKey::Generate(
                    garrison_ca::KeyAlgorithm::EcdsaP256,
                ),
            },
            h.now,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
    let key_pem = site_issued.key.as_ref().unwrap().to_pkcs8_pem();
    let key_der = ::pem::parse(key_pem.expose()).unwrap().into_contents();
    assert!(spiffe::X509Svid::parse_from_der(&site_issued.chain.concat(), &key_der).is_err());
}

#[test]
fn leaf_fields_are_exactly_the_x509_svid_profile() {
    let h = hierarchy();
    let leaf = svid(&h.site, LEAF_ID, Duration::hours(1), h.now);
    let (_, cert) = X509Certificate::from_der(&leaf.certificate).unwrap();

    assert_eq!(cert.version(), X509Version::V3);
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(!bc.value.ca);
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical, "key usage must be critical");
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);

    let san = cert.subject_alternative_name().unwrap().unwrap();
    let uris: Vec<_> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    assert_eq!(
        uris,
        vec![LEAF_ID],
        "exactly one URI SAN, the CSR's claims ignored"
    );
    assert_eq!(
        san.value.general_names.len(),
        1,
        "no other SANs (the CSR asked for a DNS name)"
    );

    let nb = cert.validity().not_before.to_datetime();
    let na = cert.validity().not_after.to_datetime();
    assert_eq!(
        nb,
        h.now - garrison_ca::CLOCK_SKEW_ALLOWANCE,
        "backdated for skew"
    );
    assert_eq!(na, h.now + Duration::hours(1));
    assert!(!leaf.capped_at_issuer_expiry);

    let serial = cert.raw_serial();
    assert!(
        serial.len() == 16 && serial[0] & 0x80 == 0,
        "positive 128-bit serial: {serial:02x?}"
    );
    let (_, issuer) = X509Certificate::from_der(h.site.certificate()).unwrap();
    assert_eq!(cert.issuer(), issuer.subject());
    cert.verify_signature(Some(issuer.public_key())).unwrap();
}

#[test]
fn serials_differ_between_issuances() {
    let h = hierarchy();
    let a = svid(&h.site, LEAF_ID, Duration::hours(1), h.now);
    let b = svid(&h.site, LEAF_ID, Duration::hours(1), h.now);
    assert_ne!(a.serial, b.serial);
}

#[test]
fn ca_fields_path_lengths_decrease_and_uri_san_is_the_trust_domain() {
    let h = hierarchy();
    for (authority, path_len) in [(&h.root, 2), (&h.hub, 1), (&h.site, 0)] {
        let (_, cert) = X509Certificate::from_der(authority.certificate()).unwrap();
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(path_len));
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
        assert!(!ku.value.digital_signature());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::URI("spiffe://example.org")]
        );
        assert!(
            cert.name_constraints().unwrap().is_none(),
            "no name constraints by default"
        );
    }
    assert!(h.site.not_after() <= h.hub.not_after() && h.hub.not_after() <= h.root.not_after());
}

#[test]
fn leaf_lifetime_is_capped_at_the_issuer_expiry_and_says_so() {
    let h = hierarchy();
    let short_site = intermediate(&h.hub, "a", Duration::minutes(30), h.now);
    let leaf = svid(&short_site, LEAF_ID, Duration::hours(1), h.now);
    assert!(leaf.capped_at_issuer_expiry);
    assert_eq!(leaf.not_after, short_site.not_after());
}

#[test]
fn the_hub_witness_certificate_names_the_witness_certifies_its_ed25519_key_and_chains_to_the_root()
{
    use ring::signature::KeyPair as _;
    let h = hierarchy();
    let pkcs8 =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
    let issued = h
        .hub
        .issue_hub_role_svid(
            garrison_ca::HubRole::Witness,
            Duration::days(30),
            garrison_ca::SubjectKey::LogKey(public),
            h.now,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
    assert!(issued.key.is_none(), "only the public key was certified");
    assert_eq!(issued.chain.len(), 2, "witness, hub; root excluded");

    let (_, cert) = X509Certificate::from_der(&issued.certificate).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names,
        vec![GeneralName::URI("spiffe://example.org/hub/witness")]
    );
    let spki = cert.public_key();
    assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.3.101.112");
    assert!(spki.algorithm.parameters.is_none());
    assert_eq!(spki.subject_public_key.data.as_ref(), public.as_slice());
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    let (_, hub) = X509Certificate::from_der(h.hub.certificate()).unwrap();
    cert.verify_signature(Some(hub.public_key())).unwrap();

    let at = h.now + Duration::minutes(1);
    webpki_verify(
        &h,
        &issued.certificate,
        &issued.chain,
        webpki::KeyUsage::client_auth(),
        at,
    )
    .unwrap();
}

/// Root rotation: a leaf under the new root (new root → hub → site → leaf) verifies with
/// webpki for a holder of the old root only, through the new root's certificate cross-signed
/// by the old one; without it, it does not. A holder of the new root verifies it directly.
#[test]
fn a_cross_signed_root_lets_old_anchors_verify_the_new_hierarchy() {
    use garrison_ca::*;
    use ring::rand::SystemRandom;
    let h = hierarchy();
    let rng = SystemRandom::new();
    let new_root = Authority::from_issued(
        Authority::new_root(
            &RootParams {
                trust_domain: td(),
                name: "Example Root 2".into(),
                ttl: Duration::days(7300),
                path_len: 2,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            h.now,
            &rng,
        )
        .unwrap(),
    )
    .unwrap();
    let cross = h
        .root
        .cross_sign(new_root.certificate(), h.now, &rng)
        .unwrap();
    assert!(
        cross.not_after <= h.root.not_after(),
        "within the old root's life"
    );
    let hub = intermediate(&new_root, "hub", Duration::days(365), h.now);
    let site = intermediate(&hub, "a", Duration::days(30), h.now);
    let leaf = svid(&site, LEAF_ID, Duration::hours(1), h.now);
    let at = h.now + Duration::minutes(1);
    let mut via_cross = leaf.chain.clone();
    via_cross.push(cross.certificate.clone());
    webpki_verify(
        &h,
        &leaf.certificate,
        &via_cross,
        webpki::KeyUsage::client_auth(),
        at,
    )
    .unwrap();
    assert!(
        webpki_verify(
            &h,
            &leaf.certificate,
            &leaf.chain,
            webpki::KeyUsage::client_auth(),
            at
        )
        .is_err(),
        "the old root alone does not vouch for the new hierarchy"
    );
    // The cross-signed certificate as an anchor (what an agent writes) is the new root.
    let anchor_der = CertificateDer::from(cross.certificate.clone());
    let anchor = webpki::anchor_from_trusted_cert(&anchor_der).unwrap();
    let root_der = CertificateDer::from(new_root.certificate().to_vec());
    let direct = webpki::anchor_from_trusted_cert(&root_der).unwrap();
    assert_eq!(anchor.subject, direct.subject);
    assert_eq!(
        anchor.subject_public_key_info,
        direct.subject_public_key_info
    );
    // The containment rule sees through the cross-signed root at the top of the path.
    let id = SpiffeId::parse(LEAF_ID).unwrap();
    check_leaf_scope_der(&id, via_cross[1..].iter().map(Vec::as_slice)).unwrap();
    // What hubs and sites check before announcing it.
    let old_roots = vec![h.root.certificate().to_vec()];
    verify_cross_signed(&cross.certificate, &old_roots, at).unwrap();
    assert!(
        verify_cross_signed(&cross.certificate, &[new_root.certificate().to_vec()], at).is_err()
    );
    assert!(verify_cross_signed(h.hub.certificate(), &old_roots, at).is_err());
    assert!(
        verify_cross_signed(
            &cross.certificate,
            &old_roots,
            h.root.not_after() + Duration::days(1)
        )
        .is_err()
    );
    // Refused: a non-root issuer, the root itself, an intermediate as the "new root".
    assert!(
        h.hub
            .cross_sign(new_root.certificate(), h.now, &rng)
            .is_err()
    );
    assert!(
        h.root
            .cross_sign(h.root.certificate(), h.now, &rng)
            .is_err()
    );
    assert!(h.root.cross_sign(h.hub.certificate(), h.now, &rng).is_err());
}
