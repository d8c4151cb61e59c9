//! The content-addressed artifact store of the embedded backend: every file lives once at
//! `objects/sha256/<first two hex digits>/<remaining 62>`. Files are streamed into
//! `objects/tmp/` while being hashed, flushed, then renamed into place, so a crash mid-write
//! leaves at most a stray temporary file and never a truncated object.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::{self, HashingWriter};

/// The `objects/` folder of an embedded store.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    root: PathBuf,
}

impl ObjectStore {
    /// The object store under `root` (created by [`ObjectStore::ensure`]).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Creates the folders.
    ///
    /// # Errors
    /// [`Error::Io`] naming the folder.
    pub fn ensure(&self) -> Result<()> {
        fsutil::create_dir_all(&self.root.join("sha256"))?;
        fsutil::create_dir_all(&self.tmp_dir())
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where the object with this SHA-256 lives.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        let (head, tail) = sha256.split_at(2.min(sha256.len()));
        self.root.join("sha256").join(head).join(tail)
    }

    /// Streams `source` into the store and returns its SHA-256 and size.
    ///
    /// # Errors
    /// [`Error::Io`] naming the source or the store.
    pub fn put(&self, source: &Path) -> Result<(String, u64)> {
        let mut input = File::open(source).map_err(|e| Error::io(source, e))?;
        let temp = fsutil::temp_in(&self.tmp_dir())?;
        let mut writer = HashingWriter::new(temp);
        fsutil::copy(&mut input, &mut writer).map_err(|e| Error::io(source, e))?;
        let (sha, size, temp) = writer.finish();
        let dest = self.path_of(&sha);
        if dest.metadata().is_ok_and(|m| m.len() == size) {
            tracing::debug!(%sha, "object already stored");
            return Ok((sha, size));
        }
        if let Some(parent) = dest.parent() {
            fsutil::create_dir_all(parent)?;
        }
        fsutil::persist(temp, &dest)?;
        Ok((sha, size))
    }

    /// Whether the object exists with the expected size.
    pub fn has(&self, sha256: &str, size_bytes: u64) -> bool {
        self.path_of(sha256)
            .metadata()
            .is_ok_and(|m| m.len() == size_bytes)
    }
}
