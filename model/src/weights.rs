//! Reading and writing safetensors checkpoints (<https://github.com/huggingface/safetensors>):
//! a single `model.safetensors` or shards listed by `model.safetensors.index.json`.
//!
//! Files are memory-mapped; a tensor is converted to f32 only when it is asked for, so
//! loading holds at most one extra copy of any tensor at a time.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorView};

use crate::error::{Error, Result};

/// The single-file checkpoint name.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The shard index name.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    header_len: usize,
    metadata: Metadata,
}

/// A memory-mapped safetensors checkpoint (single file or sharded).
pub struct Checkpoint {
    shards: Vec<Shard>,
    /// Tensor name -> index into `shards`.
    located: HashMap<String, usize>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<_> = self.shards.iter().map(|s| &s.path).collect();
        f.debug_struct("Checkpoint")
            .field("shards", &paths)
            .finish()
    }
}

impl Checkpoint {
    /// Opens the checkpoint of a model folder.
    ///
    /// # Errors
    /// Neither file exists, the index is malformed or names a missing shard, a shard is
    /// truncated or its header is invalid.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join(SINGLE_FILE);
        let index = dir.join(INDEX_FILE);
        if index.is_file() {
            Self::open_sharded(dir, &index)
        } else if single.is_file() {
            Self::open_files(&[single])
        } else {
            Err(Error::weights(
                dir,
                format!("no weights found: expected {SINGLE_FILE} or {INDEX_FILE} in this folder"),
            ))
        }
    }

    fn open_sharded(dir: &Path, index: &Path) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
        let parsed: Index = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: index.to_path_buf(),
            source,
        })?;
        let mut files: Vec<String> = parsed.weight_map.values().cloned().collect();
        files.sort();
        files.dedup();
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
            return Err(Error::weights(
                index,
                format!(
                    "shard {} listed in the index does not exist",
                    missing.display()
                ),
            ));
        }
        let checkpoint = Self::open_files(&paths)?;
        for (name, file) in &parsed.weight_map {
            let listed = dir.join(file);
            match checkpoint.located.get(name) {
                Some(&i) if checkpoint.shards[i].path == listed => {}
                _ => {
                    return Err(Error::weights(
                        index,
                        format!("tensor {name} is listed in {file} but that shard lacks it"),
                    ));
                }
            }
        }
        Ok(checkpoint)
    }

    /// Opens the given safetensors files as one checkpoint.
    ///
    /// # Errors
    /// A file cannot be mapped, is truncated, or two files hold the same tensor.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::with_capacity(paths.len());
        let mut located = HashMap::new();
        for path in paths {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let mmap = map_readonly(&file).map_err(|e| Error::io(path, e))?;
            let (header_len, metadata) = SafeTensors::read_metadata(&mmap).map_err(|e| {
                Error::weights(
                    path,
                    format!("not a valid safetensors file ({e}); is it truncated?"),
                )
            })?;
            for name in metadata.tensors().keys() {
                if located.insert(name.clone(), shards.len()).is_some() {
                    return Err(Error::weights(
                        path,
                        format!("tensor {name} appears in two shards"),
                    ));
                }
            }
            shards.push(Shard {
                path: path.clone(),
                mmap,
                header_len,
                metadata,
            });
        }
        Ok(Checkpoint { shards, located })
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.located.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Whether the checkpoint holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.located.contains_key(name)
    }

    /// Shape and dtype of `name`, if present.
    pub fn info(&self, name: &str) -> Option<(Vec<usize>, Dtype)> {
        let shard = &self.shards[*self.located.get(name)?];
        let info = shard.metadata.info(name)?;
        Some((info.shape.clone(), info.dtype))
    }

    /// The first folder-relative file holding weights (for error messages).
    pub fn path(&self) -> &Path {
        self.shards
            .first()
            .map_or(Path::new(SINGLE_FILE), |s| s.path.as_path())
    }

    /// Reads `name` as f32, checking its shape against `expected`.
    ///
    /// # Errors
    /// The tensor is missing, has another shape (both are named), or a dtype other than
    /// F32, F16, BF16 or F64.
    pub fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let (bytes, dtype, path) = self.raw(name, expected)?;
        to_f32(bytes, dtype).ok_or_else(|| unsupported_dtype(path, name, dtype))
    }

    /// Reads a `[rows, cols]` matrix `name` as f32 and returns it transposed (`[cols, rows]`),
    /// converting row by row so that only the output is held in memory.
    ///
    /// # Errors
    /// As [`Checkpoint::read_f32`].
    pub fn read_f32_transposed(&self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>> {
        let (bytes, dtype, path) = self.raw(name, &[rows, cols])?;
        let width = bytes.len() / (rows * cols).max(1);
        let mut out = vec![0.0f32; rows * cols];
        for (r, row_bytes) in bytes.chunks_exact(cols * width).enumerate() {
            let row =
                to_f32(row_bytes, dtype).ok_or_else(|| unsupported_dtype(path, name, dtype))?;
            for (c, v) in row.into_iter().enumerate() {
                out[c * rows + r] = v;
            }
        }
        Ok(out)
    }

    /// The raw bytes, dtype and file of `name`, after checking its shape.
    fn raw(&self, name: &str, expected: &[usize]) -> Result<(&[u8], Dtype, &Path)> {
        let Some(&i) = self.located.get(name) else {
            return Err(Error::weights(
                self.path(),
                format!("missing tensor {name}"),
            ));
        };
        let shard = &self.shards[i];
        let info = shard
            .metadata
            .info(name)
            .ok_or_else(|| Error::weights(&shard.path, format!("missing tensor {name}")))?;
        if info.shape != expected {
            return Err(Error::weights(
                &shard.path,
                format!(
                    "tensor {name} has shape {:?} but the config implies {:?}",
                    info.shape, expected
                ),
            ));
        }
        let start = 8 + shard.header_len + info.data_offsets.0;
        let end = 8 + shard.header_len + info.data_offsets.1;
        Ok((&shard.mmap[start..end], info.dtype, &shard.path))
    }
}

fn unsupported_dtype(path: &Path, name: &str, dtype: Dtype) -> Error {
    Error::weights(
        path,
        format!("tensor {name} has dtype {dtype:?}; expected F32, F16, BF16 or F64"),
    )
}

#[allow(unsafe_code)]
fn map_readonly(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: the map is read-only and private to this process; the checkpoint contract is
    // that files are not modified while a model loads (as in every mmap-based loader).
    unsafe { Mmap::map(file) }
}

fn to_f32(bytes: &[u8], dtype: Dtype) -> Option<Vec<f32>> {
    let out = match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_le_bytes(a) as f32
            })
            .collect(),
        _ => return None,
    };
    Some(out)
}

/// Storage dtype for written checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveDtype {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl SaveDtype {
    /// The `torch_dtype` string of `config.json`.
    pub fn torch_name(self) -> &'static str {
        match self {
            SaveDtype::F32 => "float32",
            SaveDtype::F16 => "float16",
            SaveDtype::Bf16 => "bfloat16",
        }
    }
}

/// A named f32 tensor waiting to be written.
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// Row-major values.
    pub data: Vec<f32>,
    /// Dimensions.
    pub shape: Vec<usize>,
}

/// Writes tensors to one safetensors file atomically (temporary name, then rename).
///
/// # Errors
/// A shape does not match its data length, or the file cannot be written.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
    dtype: SaveDtype,
) -> Result<()> {
    let mut encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in tensors {
        if t.shape.iter().product::<usize>() != t.data.len() {
            return Err(Error::weights(
                path,
                format!(
                    "tensor {name}: shape {:?} does not match {} values",
                    t.shape,
                    t.data.len()
                ),
            ));
        }
        let (dt, bytes): (Dtype, Vec<u8>) = match dtype {
            SaveDtype::F32 => (
                Dtype::F32,
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            SaveDtype::F16 => (
                Dtype::F16,
                t.data
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
            SaveDtype::Bf16 => (
                Dtype::BF16,
                t.data
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
        };
        encoded.push((name.clone(), dt, t.shape.clone(), bytes));
    }
    let mut views = Vec::with_capacity(encoded.len());
    for (name, dt, shape, bytes) in &encoded {
        let view = TensorView::new(*dt, shape.clone(), bytes)
            .map_err(|e| Error::weights(path, format!("tensor {name}: {e}")))?;
        views.push((name.as_str(), view));
    }
    let mut info = HashMap::new();
    info.insert("format".to_owned(), "pt".to_owned());
    crate::fsutil::write_atomic_with(path, |tmp| {
        safetensors::serialize_to_file(views, Some(info), tmp)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors() -> BTreeMap<String, HostTensor> {
        let mut m = BTreeMap::new();
        m.insert(
            "a".to_owned(),
            HostTensor {
                data: vec![1.0, -2.5, 3.0, 0.5],
                shape: vec![2, 2],
            },
        );
        m.insert(
            "b".to_owned(),
            HostTensor {
                data: vec![7.0],
                shape: vec![1],
            },
        );
        m
    }

    #[test]
    fn round_trip_in_every_dtype() {
        let dir = tempfile::tempdir().expect("tempdir");
        for dtype in [SaveDtype::F32, SaveDtype::F16, SaveDtype::Bf16] {
            let path = dir.path().join(SINGLE_FILE);
            write_safetensors(&path, &tensors(), dtype).expect("write");
            let ckpt = Checkpoint::open(dir.path()).expect("open");
            assert_eq!(ckpt.names(), vec!["a", "b"]);
            assert_eq!(
                ckpt.read_f32("a", &[2, 2]).expect("read"),
                vec![1.0, -2.5, 3.0, 0.5]
            );
            let t = ckpt
                .read_f32_transposed("a", 2, 2)
                .expect("read transposed");
            assert_eq!(t, vec![1.0, 3.0, -2.5, 0.5]);
        }
    }

    #[test]
    fn shape_mismatch_names_tensor_and_shapes() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_safetensors(&dir.path().join(SINGLE_FILE), &tensors(), SaveDtype::F32)
            .expect("write");
        let ckpt = Checkpoint::open(dir.path()).expect("open");
        let msg = ckpt.read_f32("a", &[4]).expect_err("mismatch").to_string();
        assert!(
            msg.contains("tensor a") && msg.contains("[2, 2]") && msg.contains("[4]"),
            "{msg}"
        );
        let msg = ckpt.read_f32("zzz", &[1]).expect_err("missing").to_string();
        assert!(msg.contains("missing tensor zzz"), "{msg}");
    }

    #[test]
    fn truncated_file_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(SINGLE_FILE);
        write_safetensors(&path, &tensors(), SaveDtype::F32).expect("write");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("truncate");
        let msg = Checkpoint::open(dir.path())
            .expect_err("truncated")
            .to_string();
        assert!(
            msg.contains("truncated") && msg.contains(SINGLE_FILE),
            "{msg}"
        );
    }

    #[test]
    fn sharded_index_is_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let all = tensors();
        let (a, b): (BTreeMap<_, _>, BTreeMap<_, _>) = all.into_iter().partition(|(k, _)| k == "a");
        write_safetensors(&dir.path().join("s1.safetensors"), &a, SaveDtype::F32).expect("w");
        write_safetensors(&dir.path().join("s2.safetensors"), &b, SaveDtype::F32).expect("w");
        let index =
            r#"{"metadata": {}, "weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}"#;
        std::fs::write(dir.path().join(INDEX_FILE), index).expect("index");
        let ckpt = Checkpoint::open(dir.path()).expect("open");
        assert_eq!(ckpt.read_f32("b", &[1]).expect("read"), vec![7.0]);

        std::fs::remove_file(dir.path().join("s2.safetensors")).expect("rm");
        let msg = Checkpoint::open(dir.path())
            .expect_err("missing shard")
            .to_string();
        assert!(msg.contains("s2.safetensors"), "{msg}");
    }
}
