//! tlog-proof and consistency-proof texts, the checkpoint inside, and the proof checks.
#![no_main]

use garrison_transparency::{
    ConsistencyProof, InclusionProof, LogKey, leaf_hash_of, verify_checkpoint, verify_consistency,
    verify_inclusion,
};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = include_bytes!("../../testdata/log-key.pk8");
const ORIGIN: &str = "garrison.example.org/site/s1";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let public = LogKey::from_pkcs8(ORIGIN, KEY).map(|k| k.public_key()).unwrap_or([0; 32]);
    if let Ok(proof) = InclusionProof::parse(text) {
        let _ = proof.to_text();
        let leaf = leaf_hash_of(proof.extra.as_deref().unwrap_or_default());
        match verify_checkpoint(&proof.checkpoint, ORIGIN, &public) {
            Ok(c) => {
                let _ = verify_inclusion(&leaf, proof.index, c.size, &proof.hashes, &c.root);
            }
            Err(_) => {
                let _ = verify_inclusion(&leaf, proof.index, proof.index.wrapping_add(1), &proof.hashes, &leaf);
            }
        }
    }
    if let Ok(proof) = ConsistencyProof::parse(text) {
        let _ = verify_consistency(proof.old_size, &[0; 32], proof.new_size, &[1; 32], &proof.hashes);
    }
    let _ = verify_checkpoint(text, ORIGIN, &public);
});
