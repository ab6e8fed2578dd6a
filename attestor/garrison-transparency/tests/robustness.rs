//! Every parser of untrusted text here over damaged inputs, in `cargo test` (the fuzz
//! targets in `fuzz/` do the same at random): truncated and bit-flipped proofs, checkpoints,
//! cosigned checkpoints and revocation lists are refused with an error, never a panic, and a
//! good proof still verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use garrison_transparency::{
    ConsistencyProof, InclusionProof, LogKey, LogKeyCertificate, RevocationList, RevokedTarget,
    WitnessKey, WitnessKeyCertificate, add_cosignature_line, leaf_hash_of, verify_checkpoint,
    verify_consistency, verify_cosignature, verify_inclusion,
};

const ORIGIN: &str = "garrison.example.org/site/s1";

/// A fixed Ed25519 key (PKCS#8 v2, as ring writes it), so that the texts below are the
/// same on every run: the fuzz seeds in `testdata/` were written from them.
fn key() -> LogKey {
    let pkcs8 =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/log-key.pk8")).unwrap();
    LogKey::from_pkcs8(ORIGIN, &pkcs8).unwrap()
}

/// A tree of 5 leaves, its root, and the proof of leaf 2.
fn proof() -> (InclusionProof, [u8; 32]) {
    let leaves: Vec<[u8; 32]> = (0..5u8).map(|i| leaf_hash_of(&[i])).collect();
    let node = |l: &[u8; 32], r: &[u8; 32]| {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update([1u8]);
        h.update(l);
        h.update(r);
        <[u8; 32]>::from(h.finalize())
    };
    let n01 = node(&leaves[0], &leaves[1]);
    let n23 = node(&leaves[2], &leaves[3]);
    let n0123 = node(&n01, &n23);
    let root = node(&n0123, &leaves[4]);
    let note = key().sign_checkpoint(5, &root).unwrap();
    let proof = InclusionProof {
        index: 2,
        extra: Some(vec![2u8]),
        hashes: vec![leaves[3], n01, leaves[4]],
        checkpoint: note,
    };
    (proof, root)
}

#[test]
fn a_good_proof_round_trips_and_verifies() {
    let (proof, root) = proof();
    let text = proof.to_text();
    // The fuzz seed is exactly this text (Ed25519 signatures are deterministic).
    let seed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/seed.tlog-proof"
    ))
    .unwrap();
    assert_eq!(
        seed, text,
        "testdata/seed.tlog-proof is stale: write this text there"
    );
    let parsed = InclusionProof::parse(&text).unwrap();
    assert_eq!(parsed, proof);
    let checkpoint = verify_checkpoint(&parsed.checkpoint, ORIGIN, &key().public_key()).unwrap();
    assert_eq!((checkpoint.size, checkpoint.root), (5, root));
    let leaf = leaf_hash_of(parsed.extra.as_deref().unwrap());
    verify_inclusion(&leaf, 2, 5, &parsed.hashes, &root).unwrap();
    assert!(verify_inclusion(&leaf, 3, 5, &parsed.hashes, &root).is_err());
    assert!(
        verify_checkpoint(
            &parsed.checkpoint,
            "garrison.example.org/site/s2",
            &key().public_key()
        )
        .is_err()
    );
}

/// Feeds `text` with every prefix and every single-bit flip to `check`.
fn damaged(text: &str, mut check: impl FnMut(&str)) {
    let bytes = text.as_bytes();
    for len in 0..bytes.len() {
        if let Ok(prefix) = std::str::from_utf8(&bytes[..len]) {
            check(prefix);
        }
    }
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut flipped = bytes.to_vec();
            flipped[i] ^= 1 << bit;
            if let Ok(flipped) = String::from_utf8(flipped) {
                check(&flipped);
            }
        }
    }
}

#[test]
fn damaged_proofs_are_refused_without_panic() {
    let (proof, root) = proof();
    let text = proof.to_text();
    let public = key().public_key();
    let mut accepted = Vec::new();
    damaged(&text, |candidate| {
        let Ok(parsed) = InclusionProof::parse(candidate) else {
            return;
        };
        let Ok(checkpoint) = verify_checkpoint(&parsed.checkpoint, ORIGIN, &public) else {
            return;
        };
        let Some(extra) = &parsed.extra else { return };
        let ok = verify_inclusion(
            &leaf_hash_of(extra),
            parsed.index,
            checkpoint.size,
            &parsed.hashes,
            &checkpoint.root,
        )
        .is_ok();
        if ok {
            assert_eq!((parsed.index, checkpoint.root), (2, root), "{candidate}");
            accepted.push(candidate.to_owned());
        }
    });
    // Every proper prefix and every bit flip breaks the proof, the note or the signature.
    assert!(accepted.is_empty(), "damaged proofs accepted: {accepted:?}");
}

#[test]
fn damaged_consistency_proofs_and_checkpoints_are_refused_without_panic() {
    let consistency = ConsistencyProof {
        old_size: 3,
        new_size: 5,
        hashes: vec![[1; 32], [2; 32], [3; 32]],
    }
    .to_text();
    damaged(&consistency, |candidate| {
        if let Ok(parsed) = ConsistencyProof::parse(candidate) {
            let _ = verify_consistency(
                parsed.old_size,
                &[0; 32],
                parsed.new_size,
                &[0; 32],
                &parsed.hashes,
            );
        }
    });
    let (proof, _) = proof();
    damaged(&proof.checkpoint, |candidate| {
        let _ = verify_checkpoint(candidate, ORIGIN, &key().public_key());
    });
    // Sizes a tree cannot have are errors, not panics.
    for (old, new) in [(0, 0), (0, 5), (6, 5), (u64::MAX, u64::MAX), (1, u64::MAX)] {
        let _ = verify_consistency(old, &[0; 32], new, &[0; 32], &[]);
    }
    for (index, size) in [(0, 0), (5, 5), (u64::MAX, u64::MAX), (0, u64::MAX)] {
        let _ = verify_inclusion(&[0; 32], index, size, &[[0; 32]; 3], &[0; 32]);
    }
}

#[test]
fn arbitrary_certificates_are_refused_without_panic() {
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x30],
        vec![0x30, 0x82, 0xff, 0xff],
        vec![0u8; 64],
    ];
    for certificate in &garbage {
        let cert = LogKeyCertificate {
            certificate: certificate.clone(),
            intermediates: garbage.clone(),
        };
        assert!(cert.verify(&garbage, ORIGIN).is_err());
        assert!(cert.verify(&[], "not an origin").is_err());
        let witness = WitnessKeyCertificate {
            certificate: certificate.clone(),
            intermediates: garbage.clone(),
        };
        assert!(witness.verify(&garbage, "example.org").is_err());
        assert!(witness.verify(&[], "not a trust domain").is_err());
    }
}

/// The test key of `testdata/log-key.pk8` in the witness's role.
fn witness() -> WitnessKey {
    let pkcs8 =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/log-key.pk8")).unwrap();
    WitnessKey::from_pkcs8("example.org", &pkcs8).unwrap()
}

/// Checks that the fuzz seed `testdata/<name>` is exactly `text`.
fn assert_seed(name: &str, text: &str) {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let seed = std::fs::read_to_string(&path).unwrap();
    assert_eq!(seed, text, "{path} is stale: write this text there");
}

#[test]
fn damaged_cosigned_checkpoints_are_refused_without_panic() {
    let checkpoint = key().sign_checkpoint(5, &[0xab; 32]).unwrap();
    let w = witness();
    let cosigned = w.cosign(&checkpoint, 1_700_000_000).unwrap();
    assert_seed("seed.cosigned-checkpoint", &cosigned);
    let good = verify_cosignature(&cosigned, w.name(), &w.public_key()).unwrap();
    let mut accepted = Vec::new();
    damaged(&cosigned, |candidate| {
        if let Ok(c) = verify_cosignature(candidate, w.name(), &w.public_key()) {
            accepted.push((candidate.to_owned(), c));
        }
        let _ = add_cosignature_line(candidate, &good.line);
        let _ = add_cosignature_line(&checkpoint, candidate);
    });
    // Flips in the log's own signature line leave the cosignature intact; nothing else may
    // pass, and what passes carries the witness's line unchanged.
    assert!(
        !accepted.is_empty(),
        "flips in the log's line are not the witness's concern"
    );
    let log_line = checkpoint.lines().last().unwrap();
    for (candidate, c) in &accepted {
        assert_eq!(c, &good);
        assert!(!candidate.contains(log_line), "{candidate}");
    }
}

#[test]
fn damaged_revocation_lists_are_refused_without_panic() {
    let w = witness();
    let list = RevocationList {
        trust_domain: "example.org".to_owned(),
        sequence: 3,
        issued_unix: 1_700_000_000,
        entries: vec![
            RevokedTarget::Node("ab".repeat(32)),
            RevokedTarget::Serial("40aa".to_owned()),
        ],
    };
    let note = w.sign_revocations(&list).unwrap();
    assert_seed("seed.revocations", &note);
    assert_eq!(
        RevocationList::verify(&note, "example.org", &w.public_key()).unwrap(),
        list
    );
    let mut accepted = Vec::new();
    damaged(&note, |candidate| {
        if RevocationList::verify(candidate, "example.org", &w.public_key()).is_ok() {
            accepted.push(candidate.to_owned());
        }
    });
    assert!(accepted.is_empty(), "damaged lists accepted: {accepted:?}");
}
