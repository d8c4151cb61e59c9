//! SHA-256 of files and of model or adapter folders, for `export.json` lineage.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Hex SHA-256 of one file, streamed.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    feed(&mut h, path)?;
    Ok(hex(&h.finalize()))
}

/// Hex SHA-256 of a folder's weights and config: for each of `config.json`,
/// `adapter_config.json` and every `*.safetensors` file present, in name order, the file
/// name, a NUL byte, the file size as 8 little-endian bytes, then the contents.
///
/// # Errors
/// [`Error::Io`] naming the folder or file.
pub fn sha256_folder(dir: &Path) -> Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == "config.json" || n == "adapter_config.json" || n.ends_with(".safetensors"))
        .collect();
    names.sort();
    let mut h = Sha256::new();
    for name in names {
        let path = dir.join(&name);
        let len = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update(len.to_le_bytes());
        feed(&mut h, &path)?;
    }
    Ok(hex(&h.finalize()))
}

fn feed(h: &mut Sha256, path: &Path) -> Result<()> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").map_err(|e| Error::io(&p, e))?;
        assert_eq!(
            sha256_file(&p)?,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        Ok(())
    }
}
