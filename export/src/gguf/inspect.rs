//! [`inspect`]: the header, metadata and tensor table of a GGUF file as plain data, for the
//! CLI's `export inspect` (text or `--json`)
//! ([GGUF spec](https://github.com/ggml-org/ggml/blob/master/docs/gguf.md)).

use std::path::{Path, PathBuf};

use super::reader::Reader;
use super::value::ValueType;
use super::writer::TensorInfo;
use crate::error::Result;

/// One metadata entry, with the value shortened for display.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KvSummary {
    /// The key.
    pub key: String,
    /// The value's type.
    pub value_type: ValueType,
    /// The value as text; arrays show their element type, length and first 8 items.
    pub value: String,
}

/// Everything `export inspect` shows about a file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The file.
    pub path: PathBuf,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Format version.
    pub version: u32,
    /// Data alignment.
    pub alignment: u32,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// Metadata entries in file order.
    pub metadata: Vec<KvSummary>,
    /// Tensor infos in file order (offsets relative to `data_offset`).
    pub tensors: Vec<TensorInfo>,
}

/// Reads `path` and summarizes it.
///
/// # Errors
/// As [`Reader::open`].
pub fn inspect(path: impl AsRef<Path>) -> Result<Summary> {
    let r = Reader::open(path)?;
    Ok(Summary {
        path: r.path().to_path_buf(),
        file_bytes: r.file_bytes(),
        version: r.version(),
        alignment: r.alignment(),
        data_offset: r.data_offset(),
        metadata: r
            .metadata()
            .iter()
            .map(|(k, v)| KvSummary {
                key: k.clone(),
                value_type: v.value_type(),
                value: v.to_string(),
            })
            .collect(),
        tensors: r.tensors().to_vec(),
    })
}
