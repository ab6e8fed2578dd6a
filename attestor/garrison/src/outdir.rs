//! Writing a CA output directory all at once: every file lands, or none does.
//!
//! Files are written into a hidden sibling directory, fsynced, and the directory is renamed
//! into place. Key files are created with mode 0600 before any byte is written.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// One file of an output directory.
pub struct OutFile<'a> {
    pub name: &'a str,
    pub contents: &'a [u8],
    pub secret: bool,
}

/// Write `files` into `dir`, which must not exist or be empty. Nothing is left behind on error.
pub fn write_all_or_nothing(dir: &Path, files: &[OutFile<'_>]) -> anyhow::Result<()> {
    refuse_non_empty(dir)?;
    let staging = staging_dir(dir)?;
    let result = write_staged(&staging, files).and_then(|()| move_into_place(&staging, dir));
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

fn refuse_non_empty(dir: &Path) -> anyhow::Result<()> {
    let non_empty = fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if non_empty {
        bail!("refusing to overwrite {}: it is not empty", dir.display());
    }
    Ok(())
}

fn staging_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let parent = parent_of(dir);
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;
    Ok(staging)
}

fn write_staged(staging: &Path, files: &[OutFile<'_>]) -> anyhow::Result<()> {
    for file in files {
        let path = staging.join(file.name);
        let mode = if file.secret { 0o600 } else { 0o644 };
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        out.write_all(file.contents)
            .and_then(|()| out.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    sync_dir(staging)
}

fn move_into_place(staging: &Path, dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        fs::remove_dir(dir).with_context(|| format!("replacing empty {}", dir.display()))?;
    }
    fs::rename(staging, dir).with_context(|| format!("moving output into {}", dir.display()))?;
    sync_dir(&parent_of(dir))
}

fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// A file being written: it appears at its path, complete and fsynced, only on
/// [`NewFile::commit`], and never replaces an existing file.
pub struct NewFile {
    staging: PathBuf,
    path: PathBuf,
}

impl NewFile {
    /// Refuses an existing `path`; returns the writer for the staged file.
    pub fn create(path: &Path) -> anyhow::Result<(Self, std::io::BufWriter<File>)> {
        if path.exists() {
            bail!("refusing to overwrite {}", path.display());
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staging = parent_of(path).join(format!(".{name}.partial-{}", std::process::id()));
        let _ = fs::remove_file(&staging);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        let new = NewFile {
            staging,
            path: path.to_owned(),
        };
        Ok((new, std::io::BufWriter::new(file)))
    }

    /// Flushes, fsyncs and links the file into place.
    pub fn commit(self, writer: std::io::BufWriter<File>) -> anyhow::Result<()> {
        let file = writer
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing {}: {}", self.staging.display(), e.error()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", self.staging.display()))?;
        drop(file);
        let linked = fs::hard_link(&self.staging, &self.path)
            .with_context(|| format!("creating {}", self.path.display()));
        let _ = fs::remove_file(&self.staging);
        linked?;
        File::open(parent_of(&self.path))
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("syncing the directory of {}", self.path.display()))
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.staging);
    }
}

/// Writes `contents` to a new file at `path` ([`NewFile`]: complete or absent, never
/// replacing one).
pub fn write_new_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let (file, mut writer) = NewFile::create(path)?;
    writer
        .write_all(contents)
        .with_context(|| format!("writing {}", path.display()))?;
    file.commit(writer)
}
