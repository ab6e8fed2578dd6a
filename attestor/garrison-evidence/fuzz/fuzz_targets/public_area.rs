//! TPM2B_PUBLIC / TPMT_PUBLIC parsing, name computation and the AK checks.
#![no_main]

use garrison_evidence::{AkPolicy, TpmPublic, check_ak};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(public) = TpmPublic::from_tpm2b_or_tpmt(data) {
        let _ = public.name();
        let _ = public.tpm2b_bytes();
    }
    let _ = TpmPublic::from_tpm2b(data);
    let _ = check_ak(data, &AkPolicy::default());
    let _ = check_ak(data, &AkPolicy { insecure_allow_sha1_signatures: true });
});
