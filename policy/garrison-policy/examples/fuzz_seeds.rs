//! Writes the fixtures and seed corpora of `fuzz/` (run by `fuzz/seed.sh`): a throwaway
//! root and policy signer, the shipped policies signed as archives, their manifests and
//! signatures, and the shipped inputs.
//!
//! `cargo run -p garrison-policy --example fuzz_seeds -- policy/garrison-policy/fuzz`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};

use garrison_ca::{
    Authority, KeyAlgorithm, RootParams, SpiffeId, SubjectKey, SvidParams, TrustDomain,
    certificates_to_pem,
};
use garrison_policy::{BundleFiles, BundleSigner, encode_archive};
use ring::rand::SystemRandom;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

fn write(path: PathBuf, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: fuzz_seeds FUZZ_DIR"));
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let rng = SystemRandom::new();
    let now = OffsetDateTime::now_utc();
    let root = Authority::from_issued(
        Authority::new_root(
            &RootParams {
                trust_domain: TrustDomain::new("example.org").unwrap(),
                name: "Fuzz Root".to_owned(),
                ttl: Duration::days(30),
                path_len: 2,
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            now,
            &rng,
        )
        .unwrap(),
    )
    .unwrap();
    let svid = root
        .issue_svid(
            SvidParams {
                spiffe_id: SpiffeId::parse("spiffe://example.org/policy/signer/fuzz").unwrap(),
                ttl: Duration::days(7),
                max_ttl: Duration::days(7),
                subject_key: SubjectKey::Generate(KeyAlgorithm::EcdsaP256),
            },
            now,
            &rng,
        )
        .unwrap();
    let key = svid.key.as_ref().unwrap().to_pkcs8_pem();
    let signer = BundleSigner::from_pem(key.expose(), &certificates_to_pem(&svid.chain)).unwrap();
    write(
        out.join("fixtures/root.pem"),
        certificates_to_pem(root.roots()).as_bytes(),
    );
    // Verification time: inside the signer's validity, whenever the fuzzer runs.
    let at = (now + Duration::hours(1)).format(&Rfc3339).unwrap();
    write(out.join("fixtures/now"), at.as_bytes());

    for (sequence, name) in [(1, "strict"), (2, "lab-permissive-INSECURE")] {
        let dir = policies.join(name);
        let files: BundleFiles = ["admission.rego", "data.json"]
            .iter()
            .map(|n| ((*n).to_owned(), std::fs::read(dir.join(n)).unwrap()))
            .collect();
        let signed = signer.sign(&files, name, sequence, now, &rng).unwrap();
        let archive = encode_archive(&signed);
        write(out.join(format!("corpus/archive/{name}.json")), &archive);
        write(
            out.join(format!("corpus/manifest/{name}.json")),
            &signed["manifest.json"],
        );
        write(
            out.join(format!("corpus/signature/{name}.json")),
            &signed["signature.json"],
        );
        if name == "strict" {
            write(out.join("fixtures/bundle.json"), &archive);
        }
    }
    for entry in std::fs::read_dir(policies.join("inputs")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        write(
            out.join("corpus/input").join(path.file_name().unwrap()),
            &bytes,
        );
    }
    println!("fixtures and seeds written under {}", out.display());
}
