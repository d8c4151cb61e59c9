//! [`Writer`]: a streaming GGUF v3 writer with an explicit phase machine
//! (metadata → tensor infos → data → finished), modelled on gguf-py's `GGUFWriter`
//! ([GGUF spec](https://github.com/ggml-org/ggml/blob/master/docs/gguf.md)).
//!
//! Tensor infos need every tensor's size up front, so tensors are planned first
//! ([`Writer::add_tensor_info`]) and their bytes streamed afterwards, one at a time, in plan
//! order; memory stays near one tensor. The file is written under a temporary name in the
//! target directory and renamed into place by [`Writer::finish`].

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::names::{DEFAULT_ALIGNMENT, MAGIC, VERSION, general};
use super::value::{Array, Value, encode_str};
use crate::error::{Error, Result};
use crate::quant::{self, GgmlType};

/// The most dimensions a ggml tensor has (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// The longest tensor name ggml accepts, in bytes (`GGML_MAX_NAME` − 1).
pub const MAX_NAME_BYTES: usize = 63;

/// Options for [`Writer::create`].
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Replace an existing file at the target path.
    pub overwrite: bool,
}

/// One planned tensor: name, shape, type and where its bytes go.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TensorInfo {
    /// GGUF tensor name.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the row length (the fastest-varying index).
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Byte offset of the data, relative to the start of the data section.
    pub offset: u64,
    /// Byte size of the data (without padding).
    pub size_bytes: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Progress of the data phase, reported after each tensor.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Tensor data bytes written so far.
    pub written_bytes: u64,
    /// Tensor data bytes in the whole plan.
    pub total_bytes: u64,
}

/// What [`Writer::finish`] produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WriteReport {
    /// The final path.
    pub path: PathBuf,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Number of tensors.
    pub n_tensors: usize,
    /// Number of metadata entries.
    pub n_kv: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Metadata,
    TensorInfo,
    Data,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::Metadata => "metadata",
            Self::TensorInfo => "tensor-info",
            Self::Data => "data",
        }
    }
}

/// A GGUF v3 file being written. See the module docs for the call order.
pub struct Writer {
    path: PathBuf,
    out: BufWriter<NamedTempFile>,
    phase: Phase,
    overwrite: bool,
    alignment: u32,
    kv: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<TensorInfo>,
    next_tensor: usize,
    position: u64,
    data_written: u64,
    progress: Option<Box<dyn FnMut(Progress) + Send>>,
}

impl Writer {
    /// Starts a file at `path`; nothing appears there until [`Writer::finish`].
    ///
    /// # Errors
    /// [`Error::Exists`] if `path` exists and `opts.overwrite` is false; [`Error::Io`] if
    /// the temporary file cannot be created in `path`'s directory.
    pub fn create(path: impl AsRef<Path>, opts: &WriteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if path.exists() && !opts.overwrite {
            return Err(Error::Exists(path));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".gguf-partial-")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        Ok(Self {
            path,
            out: BufWriter::with_capacity(1 << 20, tmp),
            phase: Phase::Metadata,
            overwrite: opts.overwrite,
            alignment: DEFAULT_ALIGNMENT,
            kv: Vec::new(),
            keys: HashSet::new(),
            tensors: Vec::new(),
            next_tensor: 0,
            position: 0,
            data_written: 0,
            progress: None,
        })
    }

    /// Calls `f` after each tensor's data is written (for a progress bar).
    pub fn on_progress(&mut self, f: impl FnMut(Progress) + Send + 'static) {
        self.progress = Some(Box::new(f));
    }

    fn expect_phase(
        &self,
        call: &'static str,
        allowed: &[Phase],
        hint: &'static str,
    ) -> Result<()> {
        if allowed.contains(&self.phase) {
            return Ok(());
        }
        Err(Error::WriterPhase {
            call,
            phase: self.phase.name(),
            hint,
        })
    }

    /// Adds a metadata entry. `general.alignment` must be a u32 multiple of 8 and sets the
    /// data alignment.
    ///
    /// # Errors
    /// [`Error::WriterPhase`] after the first tensor info; [`Error::Invalid`] for an empty or
    /// duplicate key or a bad alignment.
    pub fn add(&mut self, key: &str, value: Value) -> Result<()> {
        self.expect_phase(
            "add",
            &[Phase::Metadata],
            "add all metadata before tensor infos",
        )?;
        if key.is_empty() {
            return Err(Error::Invalid("metadata key must not be empty".into()));
        }
        if !self.keys.insert(key.to_string()) {
            return Err(Error::Invalid(format!("duplicate metadata key {key:?}")));
        }
        if key == general::ALIGNMENT {
            match value {
                Value::U32(a) if a > 0 && a % 8 == 0 => self.alignment = a,
                ref other => {
                    self.keys.remove(key);
                    return Err(Error::Invalid(format!(
                        "{key} must be a u32 multiple of 8, got {other:?}"
                    )));
                }
            }
        }
        self.kv.push((key.to_string(), value));
        Ok(())
    }

    /// Adds a u8 entry (see [`Writer::add`]).
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_u8(&mut self, key: &str, v: u8) -> Result<()> {
        self.add(key, Value::U8(v))
    }
    /// Adds an i8 entry.
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_i8(&mut self, key: &str, v: i8) -> Result<()> {
        self.add(key, Value::I8(v))
    }
    /// Adds a u16 entry.
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_u16(&mut self, key: &str, v: u16) -> Result<()> {
        self.add(key, Value::U16(v))
    }
    /// Adds an i16 entry.
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_i16(&mut self, key: &str, v: i16) -> Result<()> {
        self.add(key, Value::I16(v))
    }
    /// Adds a u32 entry.
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_u32(&mut self, key: &str, v: u32) -> Result<()> {
        self.add(key, Value::U32(v))
    }
    /// Adds an i32 entry.
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_i32(&mut self, key: &str, v: i32) -> Result<()> {
        self.add(key, Value::I32(v))
    }
    /// Adds a u64 entry.
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_u64(&mut self, key: &str, v: u64) -> Result<()> {
        self.add(key, Value::U64(v))
    }
    /// Adds an i64 entry.
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_i64(&mut self, key: &str, v: i64) -> Result<()> {
        self.add(key, Value::I64(v))
    }
    /// Adds an f32 entry.
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_f32(&mut self, key: &str, v: f32) -> Result<()> {
        self.add(key, Value::F32(v))
    }
    /// Adds an f64 entry.
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_f64(&mut self, key: &str, v: f64) -> Result<()> {
        self.add(key, Value::F64(v))
    }
    /// Adds a bool entry.
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_bool(&mut self, key: &str, v: bool) -> Result<()> {
        self.add(key, Value::Bool(v))
    }
    /// Adds a string entry.
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_string(&mut self, key: &str, v: impl Into<String>) -> Result<()> {
        self.add(key, Value::String(v.into()))
    }
    /// Adds an array entry (any element type, nested arrays included).
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_array(&mut self, key: &str, v: Array) -> Result<()> {
        self.add(key, Value::Array(v))
    }
    /// Adds an array of strings (e.g. `tokenizer.ggml.tokens`).
    ///
    /// # Errors
    /// As [`Writer::add`].
    pub fn add_string_array<S: AsRef<str>>(&mut self, key: &str, v: &[S]) -> Result<()> {
        let items = v
            .iter()
            .map(|s| Value::String(s.as_ref().to_string()))
            .collect();
        self.add_array(key, Array::new(super::value::ValueType::String, items)?)
    }

    /// Plans a tensor: its data must later be written with [`Writer::write_tensor_bytes`] or
    /// [`Writer::write_tensor_f32`], in the order tensors were planned.
    ///
    /// # Errors
    /// [`Error::WriterPhase`] once data writing has begun; [`Error::Invalid`] for an empty,
    /// too long or duplicate name, no or more than 4 dimensions, a zero dimension, or a row
    /// length (`dims[0]`) that is not a multiple of `ty`'s block size.
    pub fn add_tensor_info(&mut self, name: &str, dims: &[u64], ty: GgmlType) -> Result<()> {
        self.expect_phase(
            "add_tensor_info",
            &[Phase::Metadata, Phase::TensorInfo],
            "plan every tensor before begin_data",
        )?;
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(Error::Invalid(format!(
                "tensor name {name:?} must be 1..={MAX_NAME_BYTES} bytes"
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(Error::Invalid(format!("duplicate tensor name {name:?}")));
        }
        if dims.is_empty() || dims.len() > MAX_DIMS || dims.contains(&0) {
            return Err(Error::Invalid(format!(
                "tensor {name:?}: dims {dims:?} must be 1 to {MAX_DIMS} non-zero sizes"
            )));
        }
        let bs = ty.block_size() as u64;
        if !dims[0].is_multiple_of(bs) {
            return Err(Error::Invalid(format!(
                "tensor {name:?}: row length {} is not a multiple of the {ty} block size {bs}",
                dims[0]
            )));
        }
        let n: u64 = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::Invalid(format!("tensor {name:?}: dims {dims:?} overflow")))?;
        let size_bytes = n / bs * ty.type_size() as u64;
        let offset = match self.tensors.last() {
            Some(t) => align(t.offset + t.size_bytes, self.alignment),
            None => 0,
        };
        self.tensors.push(TensorInfo {
            name: name.into(),
            dims: dims.into(),
            ty,
            offset,
            size_bytes,
        });
        self.phase = Phase::TensorInfo;
        Ok(())
    }

    /// The tensors planned so far (a dry run's file plan).
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Writes the header, metadata and tensor infos and starts the data section.
    ///
    /// # Errors
    /// [`Error::WriterPhase`] if called twice; [`Error::Io`] on write failure.
    pub fn begin_data(&mut self) -> Result<()> {
        self.expect_phase(
            "begin_data",
            &[Phase::Metadata, Phase::TensorInfo],
            "begin_data is called once, after planning",
        )?;
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        buf.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        for (key, value) in &self.kv {
            encode_str(key, &mut buf);
            buf.extend_from_slice(&value.value_type().id().to_le_bytes());
            value.encode(&mut buf);
        }
        for t in &self.tensors {
            encode_str(&t.name, &mut buf);
            buf.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                buf.extend_from_slice(&d.to_le_bytes());
            }
            buf.extend_from_slice(&t.ty.id().to_le_bytes());
            buf.extend_from_slice(&t.offset.to_le_bytes());
        }
        let padded = align(buf.len() as u64, self.alignment);
        buf.resize(padded as usize, 0);
        self.write_raw(&buf)?;
        self.phase = Phase::Data;
        tracing::debug!(
            path = %self.path.display(),
            header_bytes = padded,
            n_kv = self.kv.len(),
            n_tensors = self.tensors.len(),
            "gguf header written"
        );
        Ok(())
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.position += bytes.len() as u64;
        Ok(())
    }

    /// Writes the next planned tensor's data, already encoded in its type.
    ///
    /// # Errors
    /// [`Error::WriterPhase`] before [`Writer::begin_data`]; [`Error::Invalid`] if `name` is
    /// not the next planned tensor or `bytes` has the wrong length; [`Error::Io`].
    pub fn write_tensor_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let info = self.next_info("write_tensor_bytes", name)?;
        if bytes.len() as u64 != info.size_bytes {
            return Err(Error::Invalid(format!(
                "tensor {name:?}: got {} bytes, the plan ({} {:?}) needs {}",
                bytes.len(),
                info.ty,
                info.dims,
                info.size_bytes
            )));
        }
        let (size, alignment) = (info.size_bytes, self.alignment);
        self.write_raw(bytes)?;
        let pad = align(size, alignment) - size;
        self.write_raw(&vec![0u8; pad as usize])?;
        self.next_tensor += 1;
        self.data_written += size;
        if let Some(f) = self.progress.as_mut() {
            let total_bytes = self.tensors.iter().map(|t| t.size_bytes).sum();
            f(Progress {
                written_bytes: self.data_written,
                total_bytes,
            });
        }
        Ok(())
    }

    /// Quantizes `data` (row-major, `dims[0]` values per row) to the planned type and writes
    /// it as the next tensor; rows are quantized in parallel.
    ///
    /// # Errors
    /// As [`Writer::write_tensor_bytes`], and [`Error::Invalid`] if `data` has the wrong
    /// number of values.
    pub fn write_tensor_f32(&mut self, name: &str, data: &[f32]) -> Result<()> {
        let info = self.next_info("write_tensor_f32", name)?;
        if data.len() as u64 != info.n_elements() {
            return Err(Error::Invalid(format!(
                "tensor {name:?}: got {} values, dims {:?} need {}",
                data.len(),
                info.dims,
                info.n_elements()
            )));
        }
        let bytes = quant::quantize(info.ty, data, info.dims[0] as usize)?;
        self.write_tensor_bytes(name, &bytes)
    }

    fn next_info(&self, call: &'static str, name: &str) -> Result<&TensorInfo> {
        self.expect_phase(
            call,
            &[Phase::Data],
            "call begin_data after planning tensors",
        )?;
        let Some(info) = self.tensors.get(self.next_tensor) else {
            return Err(Error::Invalid(format!(
                "tensor {name:?}: all {} planned tensors are already written",
                self.tensors.len()
            )));
        };
        if info.name != name {
            return Err(Error::Invalid(format!(
                "tensor {name:?} written out of order: the next planned tensor is {:?}",
                info.name
            )));
        }
        Ok(info)
    }

    /// Flushes, syncs and renames the file into place.
    ///
    /// # Errors
    /// [`Error::WriterPhase`] before [`Writer::begin_data`]; [`Error::Invalid`] if planned
    /// tensors are missing; [`Error::Exists`] if the target appeared meanwhile and overwrite
    /// is off; [`Error::Io`].
    pub fn finish(self) -> Result<WriteReport> {
        self.expect_phase(
            "finish",
            &[Phase::Data],
            "call begin_data and write every tensor",
        )?;
        if self.next_tensor < self.tensors.len() {
            return Err(Error::Invalid(format!(
                "finish: {} of {} planned tensors written; next is {:?}",
                self.next_tensor,
                self.tensors.len(),
                self.tensors[self.next_tensor].name
            )));
        }
        let path = self.path.clone();
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        tmp.as_file().sync_all().map_err(|e| Error::io(&path, e))?;
        let persisted = if self.overwrite {
            tmp.persist(&path)
        } else {
            tmp.persist_noclobber(&path)
        };
        let file: File = persisted.map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Exists(path.clone())
            } else {
                Error::io(&path, e.error)
            }
        })?;
        drop(file);
        tracing::info!(
            path = %path.display(),
            file_bytes = self.position,
            n_tensors = self.tensors.len(),
            "gguf written"
        );
        Ok(WriteReport {
            path,
            file_bytes: self.position,
            n_tensors: self.tensors.len(),
            n_kv: self.kv.len(),
        })
    }
}

/// Rounds `n` up to a multiple of `alignment`.
pub fn align(n: u64, alignment: u32) -> u64 {
    let a = u64::from(alignment);
    n.div_ceil(a) * a
}
