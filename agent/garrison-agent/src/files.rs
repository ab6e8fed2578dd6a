//! The files the agent owns, written atomically: staged as a temporary file in the same
//! directory, written, fsynced, renamed over the destination, then the directory fsynced.
//! A reader sees the old file or the new one, never a partial one, and a key file is
//! created 0600 before a single byte of the key is written.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::AgentError;

/// Mode of private files: the SVID key and the AK blob.
pub const PRIVATE_MODE: u32 = 0o600;
/// Mode of public files: certificates and bundles.
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of the state directory.
pub const STATE_DIR_MODE: u32 = 0o700;
/// Mode of the SVID directory (workloads read the certificates from it).
pub const SVID_DIR_MODE: u32 = 0o755;

/// PEM label of certificates.
const CERTIFICATE_TAG: &str = "CERTIFICATE";

/// Distinguishes temporary files of concurrent writers within this process; the pid
/// distinguishes processes.
static STAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The three files of an SVID in `svid_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvidPaths {
    /// The certificate chain, PEM, leaf first.
    pub svid: PathBuf,
    /// The leaf's private key, PKCS#8 PEM, mode 0600.
    pub key: PathBuf,
    /// The trust domain's roots, PEM.
    pub bundle: PathBuf,
}

impl SvidPaths {
    /// The paths inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            svid: dir.join("svid.pem"),
            key: dir.join("svid.key"),
            bundle: dir.join("bundle.pem"),
        }
    }
}

/// The PEM text of DER certificates, in order, LF line endings.
pub fn certificates_to_pem(ders: &[Vec<u8>]) -> String {
    let blocks: Vec<pem::Pem> = ders
        .iter()
        .map(|der| pem::Pem::new(CERTIFICATE_TAG, der.clone()))
        .collect();
    pem::encode_many_config(
        &blocks,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The DER certificates of a PEM text, in order; other PEM blocks are an error.
pub fn certificates_from_pem(text: &[u8]) -> Result<Vec<Vec<u8>>, pem::PemError> {
    let blocks = pem::parse_many(text)?;
    blocks
        .into_iter()
        .map(|block| {
            if block.tag() == CERTIFICATE_TAG {
                Ok(block.into_contents())
            } else {
                Err(pem::PemError::MismatchedTags(
                    CERTIFICATE_TAG.to_owned(),
                    block.tag().to_owned(),
                ))
            }
        })
        .collect()
}

/// Creates `dir` (and parents) with `mode` if missing. An existing directory is kept as is.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<(), AgentError> {
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|source| AgentError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes one file atomically (see the module docs).
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), AgentError> {
    let staged = StagedFile::write(path, contents, mode)?;
    staged.commit()?;
    sync_parent(path)
}

/// Writes the SVID files: all three are staged and synced first, then renamed in quick
/// succession (key and chain last, next to each other), then the directory is synced once.
pub fn write_svid(
    paths: &SvidPaths,
    chain_pem: &str,
    key_pem: &str,
    bundle_pem: &str,
) -> Result<(), AgentError> {
    let bundle = StagedFile::write(&paths.bundle, bundle_pem.as_bytes(), PUBLIC_MODE)?;
    let key = StagedFile::write(&paths.key, key_pem.as_bytes(), PRIVATE_MODE)?;
    let chain = StagedFile::write(&paths.svid, chain_pem.as_bytes(), PUBLIC_MODE)?;
    bundle.commit()?;
    key.commit()?;
    chain.commit()?;
    sync_parent(&paths.svid)
}

/// A fully written and synced temporary file next to its destination. Dropping it without
/// [`StagedFile::commit`] removes it.
#[derive(Debug)]
struct StagedFile {
    temp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl StagedFile {
    fn write(dest: &Path, contents: &[u8], mode: u32) -> Result<Self, AgentError> {
        let temp = temp_path(dest)?;
        // Created with its final mode (create_new: never through someone else's file).
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .map_err(|source| write_error(dest, source))?;
        let staged = Self {
            temp,
            dest: dest.to_path_buf(),
            committed: false,
        };
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(|source| write_error(dest, source))?;
        Ok(staged)
    }

    fn commit(mut self) -> Result<(), AgentError> {
        std::fs::rename(&self.temp, &self.dest)
            .map_err(|source| write_error(&self.dest, source))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// `.<name>.tmp.<pid>.<n>` in the destination's directory.
fn temp_path(dest: &Path) -> Result<PathBuf, AgentError> {
    let name = dest.file_name().ok_or_else(|| {
        write_error(
            dest,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    let n = STAGE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp.{}.{n}", std::process::id()));
    Ok(dest.with_file_name(temp_name))
}

/// Fsyncs the directory holding `path`, so the rename itself is durable.
fn sync_parent(path: &Path) -> Result<(), AgentError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| write_error(dir, source))
}

fn write_error(path: &Path, source: std::io::Error) -> AgentError {
    AgentError::WriteFile {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn svid_files_are_written_with_modes_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SvidPaths::in_dir(dir.path());
        write_svid(&paths, "chain-1", "key-1", "bundle-1").unwrap();
        assert_eq!(std::fs::read_to_string(&paths.svid).unwrap(), "chain-1");
        assert_eq!(std::fs::read_to_string(&paths.key).unwrap(), "key-1");
        assert_eq!(std::fs::read_to_string(&paths.bundle).unwrap(), "bundle-1");
        assert_eq!(mode_of(&paths.key), 0o600);
        assert_eq!(
            mode_of(&paths.svid) & 0o077 & !0o044,
            0,
            "no write for others"
        );
        assert_eq!(entries(dir.path()), ["bundle.pem", "svid.key", "svid.pem"]);

        // Overwrite replaces (a new inode each time) and keeps the key private.
        write_svid(&paths, "chain-2", "key-2", "bundle-2").unwrap();
        assert_eq!(std::fs::read_to_string(&paths.svid).unwrap(), "chain-2");
        assert_eq!(std::fs::read_to_string(&paths.key).unwrap(), "key-2");
        assert_eq!(mode_of(&paths.key), 0o600);
        assert_eq!(entries(dir.path()), ["bundle.pem", "svid.key", "svid.pem"]);
    }

    #[test]
    fn overwriting_a_world_readable_key_leaves_it_private() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("svid.key");
        std::fs::write(&key, "old").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&key, b"new", PRIVATE_MODE).unwrap();
        assert_eq!(mode_of(&key), 0o600);
        assert_eq!(std::fs::read(&key).unwrap(), b"new");
    }

    #[test]
    fn failed_write_leaves_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("ak.blob");
        std::fs::write(&dest, "old").unwrap();
        // A directory in the way of the rename: the staged file is written, the rename fails.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("child"), "x").unwrap();
        assert!(write_atomically(&blocked, b"new", PRIVATE_MODE).is_err());
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["ak.blob", "blocked"]);
    }

    #[test]
    fn write_into_missing_directory_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("missing/svid.key");
        assert!(matches!(
            write_atomically(&dest, b"k", PRIVATE_MODE),
            Err(AgentError::WriteFile { .. })
        ));
        ensure_dir(&dir.path().join("missing"), STATE_DIR_MODE).unwrap();
        write_atomically(&dest, b"k", PRIVATE_MODE).unwrap();
        // 0700 minus the umask: owner bits survive any sane umask.
        assert_eq!(mode_of(&dir.path().join("missing")), 0o700);
    }

    #[test]
    fn pem_round_trips_in_order() {
        let ders = vec![vec![0x30, 0x03, 0x02, 0x01, 0x01], vec![0x30, 0x00]];
        let text = certificates_to_pem(&ders);
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(!text.contains('\r'));
        assert_eq!(certificates_from_pem(text.as_bytes()).unwrap(), ders);
        let key = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert!(certificates_from_pem(key.as_bytes()).is_err());
    }
}
