//! tpm2-tools PCR files (`tpm2_quote -o`) and marshalled TPML_PCR_SELECTION.
#![no_main]

use garrison_evidence::{PcrSelection, Tpm2ToolsPcrFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = Tpm2ToolsPcrFile::parse(data) {
        let _ = PcrSelection::from_bytes(&file.selection.to_bytes());
    }
    if let Ok(selection) = PcrSelection::from_bytes(data) {
        assert_eq!(PcrSelection::from_bytes(&selection.to_bytes()).ok(), Some(selection));
    }
});
