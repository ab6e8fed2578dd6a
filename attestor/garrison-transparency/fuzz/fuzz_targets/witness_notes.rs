//! Cosigned checkpoints and revocation lists: notes a site receives from the hub, and the
//! hub from whoever relays them.
#![no_main]

use std::sync::LazyLock;

use garrison_transparency::{RevocationList, WitnessKey, add_cosignature_line, verify_cosignature};
use libfuzzer_sys::fuzz_target;

/// The test key of `testdata/log-key.pk8` in the witness's role, as in the seeds.
const KEY: &[u8] = include_bytes!("../../testdata/log-key.pk8");
const TRUST_DOMAIN: &str = "example.org";
const WITNESS: &str = "garrison.example.org/hub";
const SEED_CHECKPOINT: &str = include_str!("../../testdata/seed.cosigned-checkpoint");

static PUBLIC: LazyLock<[u8; 32]> = LazyLock::new(|| {
    WitnessKey::from_pkcs8(TRUST_DOMAIN, KEY)
        .map(|k| k.public_key())
        .unwrap_or([0; 32])
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cosignature) = verify_cosignature(text, WITNESS, &PUBLIC) {
        let _ = add_cosignature_line(text, &cosignature.line);
    }
    let _ = add_cosignature_line(SEED_CHECKPOINT, text);
    let _ = RevocationList::verify(text, TRUST_DOMAIN, &PUBLIC);
});
