//! The crypto floor of one enrollment, timed in-process over pre-generated evidence: EK
//! chain check, AK check, MakeCredential, quote verification, CSR verification and leaf
//! signing, each with the functions the attestor itself calls.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use garrison_ca::{Authority, SpiffeId, SubjectKey, SvidParams, VerifiedCsr};
use garrison_evidence::{
    AkPolicy, EkEvidence, EkTrust, HashAlg, ManufacturerRoots, PcrSelection, PcrValues,
};
use ring::rand::SystemRandom;
use time::OffsetDateTime;

use crate::identity::AgentIdentity;

/// Per-step averages, microseconds.
#[derive(Debug, Clone, Default)]
pub struct CryptoFloor {
    /// verify_ek: parse, key match, chain to the manufacturer root.
    pub verify_ek_us: f64,
    /// check_ak.
    pub check_ak_us: f64,
    /// make_credential (ECDH on P-256, KDFs, AES, HMAC).
    pub make_credential_us: f64,
    /// verify_quote (one ECDSA P-256 verify, parsing, PCR digest).
    pub verify_quote_us: f64,
    /// VerifiedCsr::from_der (one ECDSA verify).
    pub verify_csr_us: f64,
    /// Authority::issue_svid (one ECDSA sign).
    pub issue_svid_us: f64,
}

impl CryptoFloor {
    /// The whole floor of one enrollment.
    pub fn total_us(&self) -> f64 {
        self.verify_ek_us
            + self.check_ak_us
            + self.make_credential_us
            + self.verify_quote_us
            + self.verify_csr_us
            + self.issue_svid_us
    }
}

/// Evidence for one timed iteration, made before timing.
struct Sample<'a> {
    identity: &'a AgentIdentity,
    attest: Vec<u8>,
    signature: Vec<u8>,
}

const NONCE: [u8; 32] = [0x11; 32];

/// Times `iterations` enrollments' worth of crypto over `identities` (round robin).
pub fn measure(
    identities: &mut [AgentIdentity],
    ek_ca_pem: &str,
    ca: &Authority,
    pcrs: &PcrValues,
    iterations: usize,
) -> Result<CryptoFloor> {
    let rng = SystemRandom::new();
    let indices: Vec<u32> = (0..=9).collect();
    let selection = PcrSelection::new(&[(HashAlg::Sha256, &indices)])?;
    let quoted = PcrValues::from_entries(indices.iter().filter_map(|i| {
        pcrs.value(HashAlg::Sha256, *i)
            .map(|v| (HashAlg::Sha256, *i, v))
    }))?;
    let mut quotes = Vec::with_capacity(identities.len());
    for identity in identities.iter_mut() {
        quotes.push(identity.tpm.quote(&NONCE, &selection, &quoted, 1, &rng)?);
    }
    let samples: Vec<Sample<'_>> = identities
        .iter()
        .zip(quotes)
        .map(|(identity, (attest, signature))| Sample {
            identity,
            attest,
            signature,
        })
        .collect();
    let roots = ManufacturerRoots::from_pem_or_der(&[("ek-ca.pem", ek_ca_pem.as_bytes())])?;
    let trust = EkTrust::ManufacturerRoots(roots);
    let spiffe_id = SpiffeId::from_path(ca.trust_domain(), "/site/site-a/node/floor")?;
    let mut sum = CryptoFloor::default();
    let count = iterations.max(1);
    for sample in samples.iter().cycle().take(count) {
        let step = time_one(sample, &trust, ca, &spiffe_id, &quoted, &rng)?;
        sum.verify_ek_us += step.verify_ek_us;
        sum.check_ak_us += step.check_ak_us;
        sum.make_credential_us += step.make_credential_us;
        sum.verify_quote_us += step.verify_quote_us;
        sum.verify_csr_us += step.verify_csr_us;
        sum.issue_svid_us += step.issue_svid_us;
    }
    let n = count as f64;
    Ok(CryptoFloor {
        verify_ek_us: sum.verify_ek_us / n,
        check_ak_us: sum.check_ak_us / n,
        make_credential_us: sum.make_credential_us / n,
        verify_quote_us: sum.verify_quote_us / n,
        verify_csr_us: sum.verify_csr_us / n,
        issue_svid_us: sum.issue_svid_us / n,
    })
}

fn time_one(
    sample: &Sample<'_>,
    trust: &EkTrust,
    ca: &Authority,
    spiffe_id: &SpiffeId,
    quoted: &PcrValues,
    rng: &SystemRandom,
) -> Result<CryptoFloor> {
    let now = OffsetDateTime::now_utc();
    let tpm = &sample.identity.tpm;
    let mut clock = Instant::now();
    let mut lap = || {
        let elapsed = clock.elapsed();
        clock = Instant::now();
        micros(elapsed)
    };
    let evidence = EkEvidence {
        public_area: tpm.ek_public(),
        certificate: Some(&sample.identity.ek_certificate),
        intermediates: &[],
    };
    let ek = garrison_evidence::verify_ek(&evidence, trust, now).context("floor: verify_ek")?;
    let verify_ek_us = lap();
    let ak = garrison_evidence::check_ak(tpm.ak_public(), &AkPolicy::default())?;
    let check_ak_us = lap();
    garrison_evidence::make_credential(&ek.public, ak.name(), &[0x22; 32], rng)?;
    let make_credential_us = lap();
    garrison_evidence::verify_quote(&ak, &sample.attest, &sample.signature, &NONCE, quoted)
        .context("floor: verify_quote")?;
    let verify_quote_us = lap();
    let csr = VerifiedCsr::from_der(&sample.identity.csr)?;
    let verify_csr_us = lap();
    let params = SvidParams {
        spiffe_id: spiffe_id.clone(),
        ttl: time::Duration::hours(1),
        max_ttl: time::Duration::hours(1),
        subject_key: SubjectKey::Csr(csr),
    };
    ca.issue_svid(params, now, rng)?;
    let issue_svid_us = lap();
    Ok(CryptoFloor {
        verify_ek_us,
        check_ak_us,
        make_credential_us,
        verify_quote_us,
        verify_csr_us,
        issue_svid_us,
    })
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
