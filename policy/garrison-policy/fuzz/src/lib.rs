//! Fixtures shared by the fuzz targets: the root and verification time written by `seed.sh`,
//! and the signed strict bundle the manifest and signature targets splice their bytes into.

use std::path::Path;
use std::sync::OnceLock;

use garrison_policy::{BundleFiles, BundleLimits, PolicyTrust, decode_archive};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub struct Fixtures {
    pub trust: PolicyTrust,
    pub now: OffsetDateTime,
    pub bundle: BundleFiles,
    pub limits: BundleLimits,
}

fn read(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run ./seed.sh first)", path.display()))
}

pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let limits = BundleLimits::default();
        let root = String::from_utf8(read("root.pem")).expect("root.pem is UTF-8");
        let now = String::from_utf8(read("now")).expect("now is UTF-8");
        Fixtures {
            trust: PolicyTrust::from_pem(&root).expect("fixture root"),
            now: OffsetDateTime::parse(now.trim(), &Rfc3339).expect("fixture time"),
            bundle: decode_archive(&read("bundle.json"), &limits).expect("fixture bundle"),
            limits,
        }
    })
}
