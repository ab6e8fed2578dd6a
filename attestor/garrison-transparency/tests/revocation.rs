//! The revocation list: round trip, the exact text, and every strict-parsing refusal. The
//! refused bodies are signed here with ring directly, so each is refused for its text, not
//! for its signature.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use garrison_transparency::{
    MAX_REVOCATION_NOTE_LEN, MAX_REVOCATIONS, RevocationDefect, RevocationList, RevokedTarget,
    TransparencyError, newest_verified_list,
};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use sha2::Digest as _;

use common::{TD, WITNESS, witness};

const HEADER: &str = "garrison.example.org/revocations\n7\nissued 1700000000\n";

fn node(c: char) -> RevokedTarget {
    RevokedTarget::Node(c.to_string().repeat(64))
}

fn serial(hex: &str) -> RevokedTarget {
    RevokedTarget::Serial(hex.to_owned())
}

fn list(entries: Vec<RevokedTarget>) -> RevocationList {
    RevocationList {
        trust_domain: TD.to_owned(),
        sequence: 7,
        issued_unix: 1_700_000_000,
        entries,
    }
}

/// `body` signed as the signed-note spec says, by the key with this seed under `name`:
/// `— <name> base64(SHA-256(name || "\n" || 0x01 || public)[:4] || Ed25519(body))`.
fn signed_by(seed: u8, name: &str, body: &str) -> String {
    let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
    let mut hasher = sha2::Sha256::new();
    hasher.update(format!("{name}\n").as_bytes());
    hasher.update([0x01]);
    hasher.update(pair.public_key().as_ref());
    let mut signature = hasher.finalize()[..4].to_vec();
    signature.extend(pair.sign(body.as_bytes()).as_ref());
    format!("{body}\n\u{2014} {name} {}\n", B64.encode(signature))
}

fn signed(body: &str) -> String {
    signed_by(9, WITNESS, body)
}

fn verify(note: &str) -> Result<RevocationList, TransparencyError> {
    RevocationList::verify(note, TD, &witness().public_key())
}

#[test]
fn a_signed_list_round_trips_sorted_and_deduplicated() {
    let w = witness();
    let entries = vec![
        serial("0a"),
        node('f'),
        serial("0a"),
        node('0'),
        serial("09"),
    ];
    let note = w.sign_revocations(&list(entries)).unwrap();
    let body = format!(
        "{HEADER}node {}\nnode {}\nserial 09\nserial 0a\n",
        "0".repeat(64),
        "f".repeat(64)
    );
    // The exact text, signed exactly as the signed-note spec says (Ed25519 is deterministic).
    assert_eq!(note, signed(&body));
    let verified = verify(&note).unwrap();
    assert_eq!(
        verified,
        list(vec![node('0'), node('f'), serial("09"), serial("0a")])
    );
    // An empty list is a list.
    let empty = w.sign_revocations(&list(vec![])).unwrap();
    assert_eq!(empty, signed(HEADER));
    assert_eq!(verify(&empty).unwrap(), list(vec![]));
    // Serials of 1 and 40 characters; the largest numbers.
    let mut edge = list(vec![serial("0"), serial(&"f".repeat(40))]);
    (edge.sequence, edge.issued_unix) = (u64::MAX, u64::MAX);
    assert_eq!(verify(&w.sign_revocations(&edge).unwrap()).unwrap(), edge);
}

#[test]
fn a_list_signed_by_another_key_or_name_or_altered_is_refused() {
    let body = format!("{HEADER}serial 0a\n");
    assert!(matches!(
        verify(&signed_by(10, WITNESS, &body)),
        Err(TransparencyError::SignatureMissing { .. })
    ));
    assert!(matches!(
        verify(&signed_by(9, "garrison.other.org/hub", &body)),
        Err(TransparencyError::SignatureMissing { .. })
    ));
    let altered = signed(&body).replacen("serial 0a", "serial 0b", 1);
    assert!(matches!(
        verify(&altered),
        Err(TransparencyError::RevocationSignatureInvalid { .. })
    ));
    // Dropping an entry breaks the signature too.
    let dropped = signed(&body).replacen("serial 0a\n", "", 1);
    assert!(matches!(
        verify(&dropped),
        Err(TransparencyError::RevocationSignatureInvalid { .. })
    ));
    // The right list for the wrong trust domain.
    let note = witness().sign_revocations(&list(vec![])).unwrap();
    assert!(RevocationList::verify(&note, "other.org", &witness().public_key()).is_err());
    // A cosignature-style line by the witness is not a list signature.
    let cosigned = witness()
        .cosign(
            "garrison.example.org/site/s1\n1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\n\u{2014} x AAAAAQID\n",
            5,
        )
        .unwrap();
    let cosig_line = cosigned.lines().last().unwrap();
    let forged = format!("{HEADER}\n{cosig_line}\n");
    assert!(matches!(
        verify(&forged),
        Err(TransparencyError::SignatureMissing { .. })
    ));
}

#[test]
fn every_departure_from_the_format_is_refused_with_its_line_and_defect() {
    use RevocationDefect::*;
    let hex64 = "a".repeat(64);
    let cases: Vec<(String, usize, RevocationDefect)> = vec![
        ("garrison.example.org/revocations\n".into(), 2, MissingLine),
        (
            "garrison.example.org/revocations\n7\n".into(),
            3,
            MissingLine,
        ),
        (
            "garrison.example.org/revocations\n07\nissued 1\n".into(),
            2,
            BadSequence,
        ),
        (
            "garrison.example.org/revocations\n+7\nissued 1\n".into(),
            2,
            BadSequence,
        ),
        (
            "garrison.example.org/revocations\n\nissued 1\n".into(),
            2,
            BadSequence,
        ),
        (
            "garrison.example.org/revocations\n18446744073709551616\nissued 1\n".into(),
            2,
            BadSequence,
        ),
        (
            "garrison.example.org/revocations\n7\nissued 01\n".into(),
            3,
            BadIssued,
        ),
        (
            "garrison.example.org/revocations\n7\nissued  1\n".into(),
            3,
            BadIssued,
        ),
        (
            "garrison.example.org/revocations\n7\nIssued 1\n".into(),
            3,
            BadIssued,
        ),
        (
            "garrison.example.org/revocations\n7\nissued\n".into(),
            3,
            BadIssued,
        ),
        (format!("{HEADER}\n"), 4, EmptyLine),
        (format!("{HEADER}serial 0a\n\nserial 0b\n"), 5, EmptyLine),
        (format!("{HEADER}revoke 0a\n"), 4, UnknownKind),
        (format!("{HEADER}node\n"), 4, UnknownKind),
        (format!("{HEADER}Node {hex64}\n"), 4, UnknownKind),
        (format!("{HEADER} serial 0a\n"), 4, UnknownKind),
        (
            format!("{HEADER}node {}\n", "A".repeat(64)),
            4,
            UppercaseHex,
        ),
        (format!("{HEADER}serial 0A\n"), 4, UppercaseHex),
        (format!("{HEADER}serial 0g\n"), 4, NotHex),
        (format!("{HEADER}serial  0a\n"), 4, NotHex),
        (format!("{HEADER}serial 0a \n"), 4, NotHex),
        (format!("{HEADER}serial 0x0a\n"), 4, NotHex),
        (
            format!("{HEADER}node {}\n", "a".repeat(63)),
            4,
            NodeHashLength { got: 63 },
        ),
        (
            format!("{HEADER}node {}\n", "a".repeat(65)),
            4,
            NodeHashLength { got: 65 },
        ),
        (format!("{HEADER}serial \n"), 4, SerialLength { got: 0 }),
        (
            format!("{HEADER}serial {}\n", "a".repeat(41)),
            4,
            SerialLength { got: 41 },
        ),
        (format!("{HEADER}serial 0b\nserial 0a\n"), 5, Unsorted),
        (format!("{HEADER}serial 0a\nnode {hex64}\n"), 5, Unsorted),
        (format!("{HEADER}serial 0a\nserial 0a\n"), 5, Duplicate),
        (
            format!("{HEADER}node {hex64}\nnode {hex64}\n"),
            5,
            Duplicate,
        ),
    ];
    for (body, want_line, want_defect) in cases {
        match verify(&signed(&body)) {
            Err(TransparencyError::RevocationListMalformed { line, defect }) => {
                assert_eq!((line, defect), (want_line, want_defect), "{body:?}");
            }
            other => panic!("{body:?}: {other:?}"),
        }
    }
}

#[test]
fn wrong_origins_and_malformed_notes_are_refused() {
    for body in [
        "garrison.other.org/revocations\n7\nissued 1\n",
        "garrison.example.org/revocation\n7\nissued 1\n",
        "garrison.example.org/hub\n7\nissued 1\n",
        "\n7\nissued 1\n",
    ] {
        assert!(
            matches!(
                verify(&signed(body)),
                Err(TransparencyError::RevocationListWrongOrigin { .. })
            ),
            "{body:?}"
        );
    }
    let good = signed(HEADER);
    for note in [
        good.replace("\n\n", "\n"),
        good.replacen("7\n", "7\r\n", 1),
        good.trim_end().to_owned(),
        format!("{good}\n"),
        String::new(),
    ] {
        assert!(
            matches!(verify(&note), Err(TransparencyError::NoteMalformed { .. })),
            "{note:?}"
        );
    }
    // A trust domain that could not name a witness is refused before anything is read.
    for td in ["", "Example.org", "example.org/site", "a b"] {
        assert!(matches!(
            RevocationList::verify(&good, td, &witness().public_key()),
            Err(TransparencyError::TrustDomainInvalid { .. })
        ));
    }
}

#[test]
fn a_list_longer_than_the_limits_is_refused() {
    // One entry more than allowed, sorted and distinct, correctly signed.
    let mut body = HEADER.to_owned();
    for i in 0..=MAX_REVOCATIONS {
        body.push_str(&format!("serial {i:06x}\n"));
    }
    assert!(matches!(
        verify(&signed(&body)),
        Err(TransparencyError::TooManyRevocations { max, .. }) if max == MAX_REVOCATIONS
    ));
    // Exactly the limit is fine.
    let at_limit = body.rsplit_once("serial").unwrap().0;
    assert_eq!(
        verify(&signed(at_limit)).unwrap().entries.len(),
        MAX_REVOCATIONS
    );
    let entries = (0..=MAX_REVOCATIONS)
        .map(|i| serial(&format!("{i:06x}")))
        .collect();
    assert!(matches!(
        witness().sign_revocations(&list(entries)),
        Err(TransparencyError::TooManyRevocations { .. })
    ));
    // A note over 64 MiB is refused by its size alone.
    let huge = format!("{}\n", "a".repeat(MAX_REVOCATION_NOTE_LEN));
    assert!(matches!(
        verify(&huge),
        Err(TransparencyError::NoteTooLarge { max, .. }) if max == MAX_REVOCATION_NOTE_LEN
    ));
}

#[test]
fn the_witness_signs_only_well_formed_lists_of_its_own_trust_domain() {
    let w = witness();
    let mut other = list(vec![]);
    other.trust_domain = "other.org".to_owned();
    assert!(matches!(
        w.sign_revocations(&other),
        Err(TransparencyError::RevocationListTrustDomain { .. })
    ));
    for (bad, defect) in [
        (serial("0A"), RevocationDefect::UppercaseHex),
        (serial(""), RevocationDefect::SerialLength { got: 0 }),
        (serial("0a\nserial 0b"), RevocationDefect::NotHex),
        (
            RevokedTarget::Node("a".repeat(63)),
            RevocationDefect::NodeHashLength { got: 63 },
        ),
    ] {
        match w.sign_revocations(&list(vec![bad.clone()])) {
            Err(TransparencyError::RevocationListMalformed {
                line: 4,
                defect: got,
            }) => {
                assert_eq!(got, defect, "{bad:?}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

/// Of the lists a site keeps, the one it goes by is the newest that verifies under its own
/// sequence; rows above it that do not verify are named; a list of another trust domain
/// (kept from before the site's changed) is passed over without a word.
#[test]
fn the_newest_kept_list_that_verifies_is_the_one_held() {
    let w = witness();
    let key = w.public_key();
    let at = |sequence: u64| {
        let mut l = list(vec![node('a')]);
        l.sequence = sequence;
        w.sign_revocations(&l).unwrap()
    };
    let other_domain = signed(&HEADER.replace("example.org", "former.example"));
    let kept = vec![
        (900, "not a signed list".to_owned()),
        (800, other_domain),
        (700, at(3)), // a real list, kept under another sequence
        (3, at(3)),
        (2, at(2)),
    ];
    let newest = newest_verified_list(&kept, TD, &[key]);
    assert_eq!(newest.held.as_ref().map(|l| l.sequence), Some(3));
    let passed_over: Vec<u64> = newest.unverifiable.iter().map(|(s, _)| *s).collect();
    assert_eq!(passed_over, [900, 700]);
    assert!(newest.unverifiable[1].1.contains("list #3"), "{newest:?}");
    // No key: nothing held, every list of this trust domain named.
    let none = newest_verified_list(&kept, TD, &[]);
    assert_eq!(none.held, None);
    assert_eq!(none.unverifiable.len(), 4);
}
