//! Reading the firmware's measured-boot event log from disk (bytes only; parsing and replay
//! belong to the verifier).

use std::io::Read;
use std::path::Path;

use crate::TpmError;

/// Where Linux exposes the TCG PC Client event log of the first TPM.
pub const DEFAULT_EVENT_LOG_PATH: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";

/// Largest event log [`read_event_log`] accepts by default: 16 MiB. Real logs are tens of
/// KiB; anything near this is a broken or hostile file.
pub const DEFAULT_EVENT_LOG_LIMIT: u64 = 16 * 1024 * 1024;

/// Reads the event log at `path`, refusing files larger than `limit` bytes. The size is
/// checked while reading (securityfs reports size 0 for the log).
pub fn read_event_log(path: &Path, limit: u64) -> Result<Vec<u8>, TpmError> {
    let read_error = |source| TpmError::ReadEventLog {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut log = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut log)
        .map_err(read_error)?;
    if u64::try_from(log.len()).map_or(true, |len| len > limit) {
        return Err(TpmError::EventLogTooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_within_limit_and_rejects_above() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.bin");
        std::fs::write(&path, [7u8; 100]).unwrap();
        assert_eq!(read_event_log(&path, 100).unwrap().len(), 100);
        assert!(matches!(
            read_event_log(&path, 99),
            Err(TpmError::EventLogTooLarge { limit: 99, .. })
        ));
        assert!(matches!(
            read_event_log(&dir.path().join("missing"), 100),
            Err(TpmError::ReadEventLog { .. })
        ));
    }
}
