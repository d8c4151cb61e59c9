//! [`SafetensorsWriter`]: writes a safetensors file one tensor at a time, so merging or
//! dequantizing a model keeps memory near one tensor. The header (every tensor's dtype,
//! shape and byte range) is planned up front, like the GGUF [`crate::gguf::Writer`]; the
//! file is written under a temporary name in the target directory and renamed by
//! [`SafetensorsWriter::finish`]
//! ([safetensors format](https://huggingface.co/docs/safetensors/index#format)).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// One tensor of the plan.
#[derive(Debug, Clone)]
pub struct PlannedTensor {
    /// Tensor name.
    pub name: String,
    /// Stored dtype.
    pub dtype: Dtype,
    /// Shape, row-major.
    pub shape: Vec<usize>,
}

impl PlannedTensor {
    /// Byte size of the data.
    pub fn size_bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8
    }
}

/// A safetensors file being written; tensors must be written in plan order.
pub struct SafetensorsWriter {
    path: PathBuf,
    out: BufWriter<NamedTempFile>,
    plan: Vec<PlannedTensor>,
    next: usize,
}

impl SafetensorsWriter {
    /// Plans the file at `path` and writes its header to a temporary file beside it.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a duplicate name; [`Error::Io`] if the temporary file cannot
    /// be created or written.
    pub fn create(path: &Path, plan: Vec<PlannedTensor>) -> Result<Self> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut header = serde_json::Map::new();
        let mut offset = 0usize;
        for t in &plan {
            let end = offset + t.size_bytes();
            let entry = serde_json::json!({
                "dtype": dtype_name(t.dtype)?,
                "shape": t.shape,
                "data_offsets": [offset, end],
            });
            if header.insert(t.name.clone(), entry).is_some() {
                return Err(Error::Invalid(format!(
                    "{}: tensor {} planned twice",
                    path.display(),
                    t.name
                )));
            }
            offset = end;
        }
        let mut json = serde_json::to_vec(&serde_json::Value::Object(header))
            .map_err(|e| Error::Invalid(format!("{}: header: {e}", path.display())))?;
        // The data section starts 8-aligned: pad the header with spaces.
        while json.len() % 8 != 0 {
            json.push(b' ');
        }
        let tmp = tempfile::Builder::new()
            .prefix(".ctiforge-st-")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, tmp);
        out.write_all(&(json.len() as u64).to_le_bytes())
            .and_then(|()| out.write_all(&json))
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            out,
            plan,
            next: 0,
        })
    }

    /// Writes the next tensor's raw little-endian bytes.
    ///
    /// # Errors
    /// [`Error::Invalid`] if `name` is not the next planned tensor or the size differs;
    /// [`Error::Io`] on write failure.
    pub fn write_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let Some(t) = self.plan.get(self.next) else {
            return Err(Error::Invalid(format!(
                "{}: tensor {name} written after all planned tensors",
                self.path.display()
            )));
        };
        if t.name != name || t.size_bytes() != bytes.len() {
            return Err(Error::Invalid(format!(
                "{}: expected tensor {} ({} bytes) next, got {name} ({} bytes)",
                self.path.display(),
                t.name,
                t.size_bytes(),
                bytes.len()
            )));
        }
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.next += 1;
        Ok(())
    }

    /// Writes the next tensor from f32 values, converted to its planned dtype (F32, F16 or
    /// BF16).
    ///
    /// # Errors
    /// As [`SafetensorsWriter::write_bytes`]; [`Error::Invalid`] for another dtype.
    pub fn write_f32(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let dtype = self.plan.get(self.next).map(|t| t.dtype);
        let bytes: Vec<u8> = match dtype {
            Some(Dtype::F32) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Some(Dtype::F16) => values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            Some(Dtype::BF16) => values
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                .collect(),
            other => {
                return Err(Error::Invalid(format!(
                    "{}: tensor {name}: cannot store f32 values as {other:?}",
                    self.path.display()
                )));
            }
        };
        self.write_bytes(name, &bytes)
    }

    /// Checks every planned tensor was written and renames the file into place.
    ///
    /// # Errors
    /// [`Error::Invalid`] if tensors are missing; [`Error::Io`] on flush or rename failure.
    pub fn finish(self) -> Result<PathBuf> {
        if self.next != self.plan.len() {
            return Err(Error::Invalid(format!(
                "{}: only {} of {} planned tensors were written",
                self.path.display(),
                self.next,
                self.plan.len()
            )));
        }
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(&self.path, e))?;
        tmp.persist(&self.path)
            .map_err(|e| Error::io(&self.path, e.error))?;
        Ok(self.path)
    }
}

/// The safetensors header spelling of a dtype.
fn dtype_name(d: Dtype) -> Result<&'static str> {
    Ok(match d {
        Dtype::BOOL => "BOOL",
        Dtype::U8 => "U8",
        Dtype::I8 => "I8",
        Dtype::I16 => "I16",
        Dtype::U16 => "U16",
        Dtype::F16 => "F16",
        Dtype::BF16 => "BF16",
        Dtype::I32 => "I32",
        Dtype::U32 => "U32",
        Dtype::F32 => "F32",
        Dtype::F64 => "F64",
        Dtype::I64 => "I64",
        Dtype::U64 => "U64",
        other => {
            return Err(Error::Invalid(format!(
                "safetensors dtype {other:?} is not supported by the writer"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_file_reads_back_with_the_safetensors_crate() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("x.safetensors");
        let plan = vec![
            PlannedTensor {
                name: "b".into(),
                dtype: Dtype::F32,
                shape: vec![2, 3],
            },
            PlannedTensor {
                name: "a".into(),
                dtype: Dtype::BF16,
                shape: vec![3],
            },
        ];
        let mut w = SafetensorsWriter::create(&path, plan)?;
        assert!(w.write_f32("a", &[1.0, 2.0, 3.0]).is_err(), "out of order");
        w.write_f32("b", &[0.5, 1.5, 2.5, 3.5, 4.5, 5.5])?;
        w.write_f32("a", &[1.0, 2.0, -3.0])?;
        w.finish()?;
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let b = st.tensor("b").map_err(|e| Error::Invalid(e.to_string()))?;
        assert_eq!(b.shape(), &[2, 3]);
        assert_eq!(&b.data()[4..8], &1.5f32.to_le_bytes());
        let a = st.tensor("a").map_err(|e| Error::Invalid(e.to_string()))?;
        assert_eq!(a.dtype(), Dtype::BF16);
        assert_eq!(a.data()[4..6], half::bf16::from_f32(-3.0).to_le_bytes());
        Ok(())
    }
}
