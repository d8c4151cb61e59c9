//! File helpers shared by the backends and by pull: SHA-256 while streaming, and atomic
//! placement of finished files (temporary name in the same folder, then rename), as
//! `DESIGN.md` requires of every artifact.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The lowercase hex SHA-256 and byte count so far, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (hex(&self.hasher.finalize()), self.written, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Lowercase hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The SHA-256 (lowercase hex) and size of a file, read in a streaming fashion.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut sink = HashingWriter::new(io::sink());
    copy(&mut file, &mut sink).map_err(|e| Error::io(path, e))?;
    let (sha, size, _) = sink.finish();
    Ok((sha, size))
}

/// Copies with a 1 MiB buffer (`io::copy` uses 8 KiB, slow for multi-GB files).
///
/// # Errors
/// Whatever reading or writing fails with.
pub fn copy(reader: &mut impl Read, writer: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Creates a folder and its parents.
///
/// # Errors
/// [`Error::Io`] naming the folder.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// A temporary file in `dir` (so a later rename into `dir` is atomic); it is deleted if
/// dropped without being persisted.
///
/// # Errors
/// [`Error::Io`] naming the folder.
pub fn temp_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    create_dir_all(dir)?;
    tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))
}

/// Flushes `temp` to disk and renames it to `dest` (replacing it).
///
/// # Errors
/// [`Error::Io`] naming `dest`.
pub fn persist(temp: tempfile::NamedTempFile, dest: &Path) -> Result<()> {
    temp.as_file().sync_all().map_err(|e| Error::io(dest, e))?;
    temp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    Ok(())
}
