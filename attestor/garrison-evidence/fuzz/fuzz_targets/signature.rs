//! TPMT_SIGNATURE parsing, and verification of fuzzed signatures under a real AK.
#![no_main]

use garrison_evidence::{AkPolicy, PcrValues, TpmSignature, check_ak, verify_quote};
use libfuzzer_sys::fuzz_target;

const AK_ECC: &[u8] = include_bytes!("../../testdata/tpm2tools/ak_ecc.pub");
const AK_RSA: &[u8] = include_bytes!("../../testdata/tpm2tools/ak_rsa.pub");
const MSG: &[u8] = include_bytes!("../../testdata/tpm2tools/quote_ecc.msg");

fuzz_target!(|data: &[u8]| {
    let _ = TpmSignature::from_bytes(data);
    for ak in [AK_ECC, AK_RSA] {
        if let Ok(ak) = check_ak(ak, &AkPolicy::default()) {
            let _ = verify_quote(&ak, MSG, data, b"garrison-nonce-01", &PcrValues::new());
        }
    }
});
