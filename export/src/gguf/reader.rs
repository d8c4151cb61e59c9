//! [`Reader`]: parses a GGUF v3 file (header, typed metadata, tensor infos) from a memory
//! map and hands out tensors as raw bytes or dequantized f32
//! ([GGUF spec](https://github.com/ggml-org/ggml/blob/master/docs/gguf.md)). Every parse
//! error names the file, the byte offset and the field.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::names::{DEFAULT_ALIGNMENT, MAGIC, VERSION, general};
use super::value::{Array, Value, ValueType};
use super::writer::{MAX_DIMS, TensorInfo, align};
use crate::error::{Error, Result};
use crate::quant::{self, GgmlType};

/// Deepest array nesting accepted (guards against stack exhaustion on corrupt files).
const MAX_ARRAY_DEPTH: usize = 8;

/// A parsed GGUF file.
pub struct Reader {
    path: PathBuf,
    map: Mmap,
    version: u32,
    alignment: u32,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
}

#[allow(unsafe_code)]
fn map_file(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: the map is read-only and private to this reader. Another process truncating
    // the file while it is mapped would fault; GGUF files are written once and renamed into
    // place (see `Writer`), so they are not modified in place.
    unsafe { Mmap::map(file) }
}

impl Reader {
    /// Opens and parses `path`.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be opened; [`Error::Corrupt`] naming the offset and field
    /// of the first thing that is truncated or invalid.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let map = map_file(&file).map_err(|e| Error::io(&path, e))?;
        let mut cur = Cursor {
            path: &path,
            bytes: &map,
            pos: 0,
        };
        let parsed = parse(&mut cur)?;
        Ok(Self {
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            path,
            map,
        })
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version (3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment in effect (`general.alignment` or 32).
    pub fn alignment(&self) -> u32 {
        self.alignment
    }

    /// Absolute byte offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// File size in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// All metadata entries in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The value of metadata key `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// All tensor infos in file order; offsets are relative to [`Reader::data_offset`].
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`.
    ///
    /// # Errors
    /// [`Error::Missing`] if there is no such tensor.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::Missing {
                path: self.path.clone(),
                what: "tensor",
                name: name.into(),
            })
    }

    /// The raw bytes of tensor `name`, as stored (borrowed from the memory map).
    ///
    /// # Errors
    /// [`Error::Missing`] if there is no such tensor.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let t = self.tensor(name)?;
        // Bounds were checked at open.
        let start = (self.data_offset + t.offset) as usize;
        Ok(&self.map[start..start + t.size_bytes as usize])
    }

    /// Tensor `name` decoded to f32 (row-major, `dims[0]` values per row).
    ///
    /// # Errors
    /// [`Error::Missing`] if there is no such tensor.
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor(name)?;
        quant::dequantize(t.ty, self.tensor_bytes(name)?, t.n_elements() as usize)
    }
}

struct Parsed {
    version: u32,
    alignment: u32,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
}

fn parse(cur: &mut Cursor<'_>) -> Result<Parsed> {
    let magic = cur.take(4, "magic")?.to_vec();
    if magic != MAGIC.as_slice() {
        return Err(cur.err_at(0, "magic", format!("expected \"GGUF\", found {magic:?}")));
    }
    let version = cur.u32("version")?;
    if version != VERSION {
        return Err(cur.err_at(4, "version", format!("expected {VERSION}, found {version}")));
    }
    let n_tensors = cur.u64("tensor_count")?;
    let n_kv = cur.u64("metadata_kv_count")?;
    let mut metadata = Vec::new();
    for i in 0..n_kv {
        let key = cur.string(&format!("kv[{i}].key"))?;
        let at = cur.pos;
        let tag = cur.u32(&format!("kv[{i}].type ({key})"))?;
        let ty = ValueType::from_id(tag).ok_or_else(|| {
            cur.err_at(
                at,
                &format!("kv[{i}].type ({key})"),
                format!("unknown value type {tag}"),
            )
        })?;
        let value = cur.value(ty, &format!("kv[{i}].value ({key})"), 0)?;
        metadata.push((key, value));
    }
    let alignment = match metadata.iter().find(|(k, _)| k == general::ALIGNMENT) {
        None => DEFAULT_ALIGNMENT,
        Some((_, Value::U32(a))) if *a > 0 && a % 8 == 0 => *a,
        Some((_, v)) => {
            return Err(cur.err_at(
                cur.pos,
                general::ALIGNMENT,
                format!("must be a u32 multiple of 8, found {v:?}"),
            ));
        }
    };
    let mut tensors = Vec::new();
    for i in 0..n_tensors {
        tensors.push(tensor_info(cur, i)?);
    }
    let data_offset = align(cur.pos as u64, alignment);
    check_tensor_bounds(cur, &tensors, data_offset, alignment)?;
    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        tensors,
    })
}

fn tensor_info(cur: &mut Cursor<'_>, i: u64) -> Result<TensorInfo> {
    let name = cur.string(&format!("tensor_info[{i}].name"))?;
    let field = |f: &str| format!("tensor_info[{i}].{f} ({name})");
    let at = cur.pos;
    let n_dims = cur.u32(&field("n_dims"))? as usize;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(cur.err_at(
            at,
            &field("n_dims"),
            format!("must be 1..={MAX_DIMS}, found {n_dims}"),
        ));
    }
    let mut dims = Vec::with_capacity(n_dims);
    for d in 0..n_dims {
        dims.push(cur.u64(&field(&format!("dims[{d}]")))?);
    }
    let at = cur.pos;
    let id = cur.u32(&field("type"))?;
    let ty = GgmlType::from_id(id).map_err(|e| cur.err_at(at, &field("type"), e.to_string()))?;
    let offset = cur.u64(&field("offset"))?;
    let n = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    let bs = ty.block_size() as u64;
    let size_bytes = match n {
        Some(n) if dims[0] % bs == 0 && n > 0 => n / bs * ty.type_size() as u64,
        _ => {
            return Err(cur.err_at(
                at,
                &field("dims"),
                format!("dims {dims:?} are empty, overflow, or rows not a multiple of {bs} ({ty})"),
            ));
        }
    };
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset,
        size_bytes,
    })
}

fn check_tensor_bounds(
    cur: &Cursor<'_>,
    tensors: &[TensorInfo],
    data_offset: u64,
    alignment: u32,
) -> Result<()> {
    let len = cur.bytes.len() as u64;
    for (i, t) in tensors.iter().enumerate() {
        let field = format!("tensor_info[{i}].offset ({})", t.name);
        if t.offset % u64::from(alignment) != 0 {
            return Err(cur.err_at(
                data_offset as usize,
                &field,
                format!(
                    "offset {} is not a multiple of the alignment {alignment}",
                    t.offset
                ),
            ));
        }
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.size_bytes));
        if end.is_none_or(|e| e > len) {
            return Err(cur.err_at(
                data_offset as usize,
                &field,
                format!(
                    "data [{}..+{}] runs past the end of the {len}-byte file (truncated?)",
                    data_offset.saturating_add(t.offset),
                    t.size_bytes
                ),
            ));
        }
    }
    Ok(())
}

/// A bounds-checked little-endian reader over the mapped bytes.
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn err_at(&self, offset: usize, field: &str, message: String) -> Error {
        Error::Corrupt {
            path: self.path.into(),
            offset: offset as u64,
            field: field.into(),
            message,
        }
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&[u8]> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(self.err_at(
                self.pos,
                field,
                format!("needs {n} bytes but only {left} remain (truncated file)"),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn u32(&mut self, field: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn string(&mut self, field: &str) -> Result<String> {
        let at = self.pos;
        let len = self.u64(field)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let bytes = self.take(len, field)?.to_vec();
        String::from_utf8(bytes).map_err(|e| self.err_at(at, field, format!("invalid UTF-8: {e}")))
    }

    fn value(&mut self, ty: ValueType, field: &str, depth: usize) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(field)?[0]),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(field)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(field)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(field)?)),
            ValueType::U32 => Value::U32(self.u32(field)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(field)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(field)?)),
            ValueType::U64 => Value::U64(self.u64(field)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(field)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(field)?)),
            ValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(field)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(self.err_at(
                            at,
                            field,
                            format!("bool must be 0 or 1, found {b}"),
                        ));
                    }
                }
            }
            ValueType::String => Value::String(self.string(field)?),
            ValueType::Array => self.array_value(field, depth)?,
        })
    }

    fn array_value(&mut self, field: &str, depth: usize) -> Result<Value> {
        let at = self.pos;
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.err_at(
                at,
                field,
                format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"),
            ));
        }
        let tag = self.u32(field)?;
        let elem = ValueType::from_id(tag)
            .ok_or_else(|| self.err_at(at, field, format!("unknown array element type {tag}")))?;
        let count = self.u64(field)?;
        // Every element takes at least one byte (strings and arrays at least 8), so a count
        // beyond the remaining bytes is corrupt; checking first avoids a huge allocation.
        let min_size = elem.scalar_size().unwrap_or(8) as u64;
        let left = (self.bytes.len() - self.pos) as u64;
        if count.saturating_mul(min_size) > left {
            return Err(self.err_at(
                at,
                field,
                format!(
                    "array of {count} {elem:?} needs at least {} bytes but only {left} remain",
                    count.saturating_mul(min_size)
                ),
            ));
        }
        let mut items = Vec::with_capacity(count as usize);
        for i in 0..count {
            items.push(self.value(elem, &format!("{field}[{i}]"), depth + 1)?);
        }
        Ok(Value::Array(Array::new(elem, items)?))
    }
}
