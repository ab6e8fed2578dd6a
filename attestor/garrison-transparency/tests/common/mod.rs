//! Fixed keys shared by the witness tests, so that their signed texts are the same on every
//! run.
#![allow(dead_code, clippy::unwrap_used)]

use garrison_transparency::WitnessKey;

/// The trust domain of the tests.
pub const TD: &str = "example.org";
/// Its hub witness's name.
pub const WITNESS: &str = "garrison.example.org/hub";

/// PKCS#8 v1 (RFC 8410) of the Ed25519 key whose 32-byte seed is `seed` repeated.
pub fn pkcs8_of_seed(seed: u8) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend([seed; 32]);
    der
}

/// The witness of [`TD`] whose seed is nines.
pub fn witness() -> WitnessKey {
    WitnessKey::from_pkcs8(TD, &pkcs8_of_seed(9)).unwrap()
}
