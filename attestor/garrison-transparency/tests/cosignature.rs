//! Cosignatures: the hub witness cosigns a site checkpoint, the site checks and merges the
//! line. The known-answer test recomputes the line from the C2SP tlog-cosignature text with
//! sha2, base64 and ring directly, not through this crate.
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
    LogKey, TransparencyError, WitnessKey, add_cosignature_line, hub_witness_name,
    verify_checkpoint, verify_cosignature,
};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use sha2::Digest as _;

use common::{TD, WITNESS, pkcs8_of_seed, witness};

const ORIGIN: &str = "garrison.example.org/site/s1";
/// The timestamp of the C2SP example.
const TIME: u64 = 1_679_315_147;

fn log_key() -> LogKey {
    let pkcs8 =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/log-key.pk8")).unwrap();
    LogKey::from_pkcs8(ORIGIN, &pkcs8).unwrap()
}

fn checkpoint() -> String {
    log_key().sign_checkpoint(5, &[0xab; 32]).unwrap()
}

fn body_of(note: &str) -> &str {
    &note[..note.rfind("\n\n").unwrap() + 1]
}

#[test]
fn a_cosigned_checkpoint_verifies_and_keeps_the_log_signature() {
    let note = checkpoint();
    let w = witness();
    assert_eq!(w.name(), WITNESS);
    assert_eq!(hub_witness_name(TD), WITNESS);
    let cosigned = w.cosign(&note, TIME).unwrap();
    assert!(
        cosigned.starts_with(&note),
        "the original note is kept as it was"
    );
    let cosignature = verify_cosignature(&cosigned, WITNESS, &w.public_key()).unwrap();
    assert_eq!(cosignature.timestamp, TIME);
    assert_eq!(cosigned, format!("{note}{}\n", cosignature.line));
    // What it signs, as signed: the checkpoint's origin and size.
    assert_eq!(cosignature.origin, ORIGIN);
    assert_eq!(cosignature.size, 5);
    // The log's signature still verifies, and an independent signed-note parser reads it.
    verify_checkpoint(&cosigned, ORIGIN, &log_key().public_key()).unwrap();
    signed_note::Note::from_bytes(cosigned.as_bytes()).unwrap();
    // Cosigning again replaces the witness's line rather than adding a second one.
    let again = w.cosign(&cosigned, TIME + 60).unwrap();
    assert_eq!(again.matches(WITNESS).count(), 1, "{again}");
    assert_eq!(
        verify_cosignature(&again, WITNESS, &w.public_key())
            .unwrap()
            .timestamp,
        TIME + 60
    );
    // The zero timestamp and the largest allowed one are fine.
    for t in [0, (1 << 63) - 1] {
        let note = w.cosign(&note, t).unwrap();
        assert_eq!(
            verify_cosignature(&note, WITNESS, &w.public_key())
                .unwrap()
                .timestamp,
            t
        );
    }
}

/// The spec's construction, written out again here: key ID, timestamp, signature over the
/// prefixed body.
#[test]
fn the_cosignature_line_is_exactly_what_the_spec_describes() {
    let note = checkpoint();
    let cosigned = witness().cosign(&note, TIME).unwrap();
    let line = cosigned
        .strip_prefix(&note)
        .unwrap()
        .strip_suffix('\n')
        .unwrap();
    let b64 = line
        .strip_prefix(&format!("\u{2014} {WITNESS} "))
        .expect("em dash, space, name, space");
    let bytes = B64.decode(b64).unwrap();
    assert_eq!(bytes.len(), 4 + 8 + 64);

    let pair = Ed25519KeyPair::from_seed_unchecked(&[9; 32]).unwrap();
    let public = pair.public_key().as_ref();
    let mut hasher = sha2::Sha256::new();
    hasher.update(WITNESS.as_bytes());
    hasher.update(b"\n");
    hasher.update([0x04]);
    hasher.update(public);
    let key_id = hasher.finalize();
    assert_eq!(bytes[..4], key_id[..4], "key ID");
    assert_eq!(bytes[4..12], TIME.to_be_bytes(), "timestamp, big-endian");

    let message = format!("cosignature/v1\ntime 1679315147\n{}", body_of(&note));
    assert!(message.ends_with("\n") && !message.contains("\u{2014}"));
    UnparsedPublicKey::new(&ED25519, public)
        .verify(message.as_bytes(), &bytes[12..])
        .expect("Ed25519 over the cosignature/v1 message");
    // Ed25519 is deterministic: the same key, note and time give this line on every run.
    // (Python's `cryptography`, on OpenSSL, computed the same line from the spec's text.)
    assert_eq!(
        line,
        "\u{2014} garrison.example.org/hub EsQYCAAAAABkGFDLjwU9/aQkFRKaLM2NaoTGDDJmbwfO3RAK\
         mfAkc6z3+GYjiMi/Rl/bxDVzbU7DEKUym254yWnHtr4CCzbzHGidBA=="
    );
}

#[test]
fn tampered_or_foreign_cosignatures_are_refused() {
    let w = witness();
    let public = w.public_key();
    let cosigned = w.cosign(&checkpoint(), TIME).unwrap();
    // A changed root hash: still a checkpoint, no longer what was signed.
    let tampered = cosigned.replacen("q6ur", "q6us", 1);
    assert_ne!(tampered, cosigned);
    assert!(matches!(
        verify_cosignature(&tampered, WITNESS, &public),
        Err(TransparencyError::CosignatureInvalid { .. })
    ));
    // Another key or another name: the line is not theirs.
    let other = WitnessKey::from_pkcs8(TD, &pkcs8_of_seed(10)).unwrap();
    assert!(matches!(
        verify_cosignature(&cosigned, WITNESS, &other.public_key()),
        Err(TransparencyError::SignatureMissing { .. })
    ));
    assert!(matches!(
        verify_cosignature(&cosigned, "garrison.other.org/hub", &public),
        Err(TransparencyError::SignatureMissing { .. })
    ));
    // The log's own signature line is not a cosignature.
    assert!(matches!(
        verify_cosignature(&checkpoint(), WITNESS, &public),
        Err(TransparencyError::SignatureMissing { .. })
    ));
    // Two lines by the same witness key.
    let line = verify_cosignature(&cosigned, WITNESS, &public)
        .unwrap()
        .line;
    assert!(matches!(
        verify_cosignature(&format!("{cosigned}{line}\n"), WITNESS, &public),
        Err(TransparencyError::SignatureDuplicated { .. })
    ));
}

#[test]
fn truncated_cosignature_lines_are_refused() {
    let w = witness();
    let cosigned = w.cosign(&checkpoint(), TIME).unwrap();
    let without_padding = cosigned.trim_end().trim_end_matches('=');
    // Four base64 characters less: still base64, three bytes short.
    let short = format!("{}\n", &without_padding[..without_padding.len() - 4]);
    assert!(matches!(
        verify_cosignature(&short, WITNESS, &w.public_key()),
        Err(TransparencyError::NoteMalformed { .. } | TransparencyError::CosignatureLength { .. })
    ));
    // One character less: not base64.
    let cut = format!(
        "{}\n",
        &cosigned.trim_end()[..cosigned.trim_end().len() - 1]
    );
    assert!(matches!(
        verify_cosignature(&cut, WITNESS, &w.public_key()),
        Err(TransparencyError::NoteMalformed { .. })
    ));
    // Without the timestamp: a plain 64-byte signature under the cosignature key ID.
    let line = verify_cosignature(&cosigned, WITNESS, &w.public_key())
        .unwrap()
        .line;
    let mut bytes = B64.decode(line.rsplit(' ').next().unwrap()).unwrap();
    bytes.drain(4..12);
    let plain = cosigned.replace(&line, &format!("\u{2014} {WITNESS} {}", B64.encode(&bytes)));
    assert!(matches!(
        verify_cosignature(&plain, WITNESS, &w.public_key()),
        Err(TransparencyError::CosignatureLength {
            expected: 72,
            got: 64
        })
    ));
}

/// A line signed correctly, by hand, over a timestamp the spec forbids.
#[test]
fn timestamps_above_2_pow_63_minus_1_are_refused() {
    let w = witness();
    let note = checkpoint();
    for t in [1 << 63, u64::MAX] {
        assert!(matches!(
            w.cosign(&note, t),
            Err(TransparencyError::CosignatureTimestampTooLarge { timestamp }) if timestamp == t
        ));
        let pair = Ed25519KeyPair::from_seed_unchecked(&[9; 32]).unwrap();
        let message = format!("cosignature/v1\ntime {t}\n{}", body_of(&note));
        let good = w.cosign(&note, TIME).unwrap();
        let good_line = verify_cosignature(&good, WITNESS, &w.public_key())
            .unwrap()
            .line;
        let mut bytes = B64.decode(good_line.rsplit(' ').next().unwrap()).unwrap();
        bytes.truncate(4);
        bytes.extend(t.to_be_bytes());
        bytes.extend(pair.sign(message.as_bytes()).as_ref());
        let forged = format!("{note}\u{2014} {WITNESS} {}\n", B64.encode(&bytes));
        assert!(matches!(
            verify_cosignature(&forged, WITNESS, &w.public_key()),
            Err(TransparencyError::CosignatureTimestampTooLarge { .. })
        ));
    }
}

#[test]
fn only_checkpoints_are_cosigned() {
    let w = witness();
    for not_a_checkpoint in [
        "garrison.example.org/revocations\n1\nissued 5\n\n\u{2014} x AAAAAQID\n",
        "hello\n\n\u{2014} x AAAAAQID\n",
    ] {
        assert!(matches!(
            w.cosign(not_a_checkpoint, TIME),
            Err(TransparencyError::CheckpointMalformed { .. })
        ));
    }
    assert!(w.cosign("not a note", TIME).is_err());
}

#[test]
fn a_site_merges_the_hubs_line_into_its_stored_note() {
    let stored = checkpoint();
    let w = witness();
    let returned = w.cosign(&stored, TIME).unwrap();
    let cosignature = verify_cosignature(&returned, WITNESS, &w.public_key()).unwrap();
    let merged = add_cosignature_line(&stored, &cosignature.line).unwrap();
    assert_eq!(merged, returned);
    // A second witness's line is added beside it; a newer line by the first replaces its own.
    let second = WitnessKey::from_pkcs8("other.org", &pkcs8_of_seed(11)).unwrap();
    let second_line = verify_cosignature(
        &second.cosign(&stored, TIME).unwrap(),
        second.name(),
        &second.public_key(),
    )
    .unwrap()
    .line;
    let both = add_cosignature_line(&merged, &second_line).unwrap();
    let newer = verify_cosignature(
        &w.cosign(&stored, TIME + 1).unwrap(),
        WITNESS,
        &w.public_key(),
    )
    .unwrap();
    let updated = add_cosignature_line(&both, &newer.line).unwrap();
    assert_eq!(
        verify_cosignature(&updated, WITNESS, &w.public_key())
            .unwrap()
            .timestamp,
        TIME + 1
    );
    verify_cosignature(&updated, second.name(), &second.public_key()).unwrap();
    verify_checkpoint(&updated, ORIGIN, &log_key().public_key()).unwrap();
    assert_eq!(updated.lines().count(), 3 + 1 + 3);
    // What is not one cosignature line is refused.
    for bad in [
        String::new(),
        format!("{}\n", cosignature.line),
        format!("{}\n{}", cosignature.line, second_line),
        cosignature.line.replace('\u{2014}', "-"),
        "\u{2014} garrison.example.org/hub AAAAAQID".to_owned(),
    ] {
        assert!(add_cosignature_line(&stored, &bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_witness_key_is_never_printed() {
    let w = witness();
    let debug = format!("{w:?}");
    assert!(debug.contains(WITNESS), "{debug}");
    let seed_b64 = B64.encode([9u8; 32]);
    let seed_hex = "09".repeat(32);
    assert!(
        !debug.contains(&seed_b64) && !debug.contains(&seed_hex),
        "{debug}"
    );
    assert!(!debug.contains("pair"), "{debug}");
}
