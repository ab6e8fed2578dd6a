//! Quote verification (ECC P-256 AK, 8 SHA-256 PCRs) against one bare ring ECDSA P-256
//! verification of the same signature over the same bytes, in the same run.
//! Run: `taskset -c 0 cargo bench -p garrison-evidence --bench quote -- --quick`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test and bench code: helpers outside #[test] fns are not covered by clippy.toml's exemption"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use garrison_evidence::{AkPolicy, PcrValues, check_ak, verify_quote};
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

const AK: &[u8] = include_bytes!("../testdata/tpm2tools/ak_ecc.pub");
const MSG: &[u8] = include_bytes!("../testdata/tpm2tools/quote_ecc.msg");
const SIG: &[u8] = include_bytes!("../testdata/tpm2tools/quote_ecc.sig");
const PCRS: &[u8] = include_bytes!("../testdata/tpm2tools/quote_ecc.pcrs");
const NONCE: &[u8] = b"garrison-nonce-01";

/// The uncompressed point and fixed-width r||s, cut out of the fixtures by hand so the bare
/// verification does no TPM parsing at all.
fn bare_inputs() -> (Vec<u8>, Vec<u8>) {
    // TPM2B_PUBLIC of a P-256 AK: x and y are the last 2 x (2 + 32) bytes.
    let unique = &AK[AK.len() - 68..];
    let point = [&[0x04][..], &unique[2..34], &unique[36..68]].concat();
    // TPMT_SIGNATURE: alg(2) hash(2) r(2+32) s(2+32).
    let rs = [&SIG[6..38], &SIG[40..72]].concat();
    (point, rs)
}

fn bench(c: &mut Criterion) {
    let ak = check_ak(AK, &AkPolicy::default()).expect("fixture AK");
    let pcrs = PcrValues::from_tpm2_tools_pcrs(PCRS).expect("fixture PCRs");
    verify_quote(&ak, MSG, SIG, NONCE, &pcrs).expect("fixture quote verifies");
    let (point, rs) = bare_inputs();
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point);
    key.verify(MSG, &rs).expect("bare verify");

    let mut group = c.benchmark_group("quote");
    group.bench_function("bare_ring_ecdsa_p256_verify", |b| {
        b.iter(|| key.verify(black_box(MSG), black_box(&rs)).is_ok())
    });
    group.bench_function("verify_quote_p256_8_pcrs", |b| {
        b.iter(|| verify_quote(&ak, black_box(MSG), black_box(SIG), NONCE, &pcrs).is_ok())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
