//! Writes a tpm2-tools credential file made by `garrison_evidence::make_credential`, so a
//! real (or software) TPM can check it with `tpm2_activatecredential`.
//! See testdata/tpm2tools/check_make_credential.sh.
//!
//! Usage: credential_file EK_PUB(TPM2B_PUBLIC) AK_NAME(binary) SECRET OUT

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ek_pub, ak_name, secret, out] = args.as_slice() else {
        anyhow::bail!("usage: credential_file EK_PUB AK_NAME SECRET OUT");
    };
    let ek =
        garrison_evidence::TpmPublic::from_tpm2b(&std::fs::read(ek_pub).context("reading EK")?)?;
    let name = garrison_evidence::ObjectName(std::fs::read(ak_name).context("reading AK name")?);
    let rng = ring::rand::SystemRandom::new();
    let blob = garrison_evidence::make_credential(&ek, &name, secret.as_bytes(), &rng)?;
    std::fs::write(out, blob.to_tpm2_tools_credential_file()).context("writing credential")?;
    Ok(())
}
