//! Log key certificates and chains: DER from whoever hands over an archive.
#![no_main]

use garrison_transparency::LogKeyCertificate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (certificate, rest) = data.split_at(split);
    let cert = LogKeyCertificate {
        certificate: certificate.to_vec(),
        intermediates: vec![rest.to_vec()],
    };
    let _ = cert.verify(&[rest.to_vec()], "garrison.example.org/site/s1");
});
