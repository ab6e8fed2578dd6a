//! TPMS_ATTEST / TPM2B_ATTEST parsing, and a full quote verification over fuzzed bytes.
#![no_main]

use garrison_evidence::{AkPolicy, PcrValues, QuoteAttest, check_ak, verify_quote};
use libfuzzer_sys::fuzz_target;

const AK: &[u8] = include_bytes!("../../testdata/tpm2tools/ak_ecc.pub");
const SIG: &[u8] = include_bytes!("../../testdata/tpm2tools/quote_ecc.sig");

fuzz_target!(|data: &[u8]| {
    let _ = QuoteAttest::from_bytes(data);
    if let Ok(ak) = check_ak(AK, &AkPolicy::default()) {
        let _ = verify_quote(&ak, data, SIG, b"garrison-nonce-01", &PcrValues::new());
    }
});
