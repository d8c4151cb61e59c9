//! Typed GGUF metadata values ([`Value`], [`ValueType`]) and their little-endian encoding
//! ([GGUF spec](https://github.com/ggml-org/ggml/blob/master/docs/gguf.md#file-structure):
//! `gguf_metadata_value_type`, strings as u64 length + UTF-8 bytes, arrays as element type
//! + u64 count + elements).

use std::fmt;

use crate::error::{Error, Result};

/// The type tag of a metadata value (`gguf_metadata_value_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ValueType {
    /// u8 (0).
    U8,
    /// i8 (1).
    I8,
    /// u16 (2).
    U16,
    /// i16 (3).
    I16,
    /// u32 (4).
    U32,
    /// i32 (5).
    I32,
    /// f32 (6).
    F32,
    /// bool stored as one byte 0/1 (7).
    Bool,
    /// UTF-8 string (8).
    String,
    /// Array of values of one type (9).
    Array,
    /// u64 (10).
    U64,
    /// i64 (11).
    I64,
    /// f64 (12).
    F64,
}

impl ValueType {
    const ALL: [ValueType; 13] = [
        Self::U8,
        Self::I8,
        Self::U16,
        Self::I16,
        Self::U32,
        Self::I32,
        Self::F32,
        Self::Bool,
        Self::String,
        Self::Array,
        Self::U64,
        Self::I64,
        Self::F64,
    ];

    /// The numeric tag stored in the file.
    pub fn id(self) -> u32 {
        Self::ALL.iter().position(|t| *t == self).unwrap_or(0) as u32
    }

    /// The type with tag `id`, if any.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.get(id as usize).copied()
    }

    /// The size in bytes of one scalar of this type; `None` for strings and arrays.
    pub fn scalar_size(self) -> Option<usize> {
        match self {
            Self::U8 | Self::I8 | Self::Bool => Some(1),
            Self::U16 | Self::I16 => Some(2),
            Self::U32 | Self::I32 | Self::F32 => Some(4),
            Self::U64 | Self::I64 | Self::F64 => Some(8),
            Self::String | Self::Array => None,
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    /// u8.
    U8(u8),
    /// i8.
    I8(i8),
    /// u16.
    U16(u16),
    /// i16.
    I16(i16),
    /// u32.
    U32(u32),
    /// i32.
    I32(i32),
    /// f32.
    F32(f32),
    /// bool.
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// Array whose elements all have one type.
    Array(Array),
    /// u64.
    U64(u64),
    /// i64.
    I64(i64),
    /// f64.
    F64(f64),
}

/// A homogeneous array value. Build it with [`Array::new`], which checks the element types.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Array {
    elem_type: ValueType,
    items: Vec<Value>,
}

impl Array {
    /// An array of `items`, each of type `elem_type` (arrays may nest).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first item whose type differs.
    pub fn new(elem_type: ValueType, items: Vec<Value>) -> Result<Self> {
        if let Some((i, v)) = items
            .iter()
            .enumerate()
            .find(|(_, v)| v.value_type() != elem_type)
        {
            return Err(Error::Invalid(format!(
                "array item {i} is {:?}, expected {elem_type:?} like the array's element type",
                v.value_type()
            )));
        }
        Ok(Self { elem_type, items })
    }

    /// The element type.
    pub fn elem_type(&self) -> ValueType {
        self.elem_type
    }

    /// The elements.
    pub fn items(&self) -> &[Value] {
        &self.items
    }
}

impl Value {
    /// This value's type tag.
    pub fn value_type(&self) -> ValueType {
        match self {
            Self::U8(_) => ValueType::U8,
            Self::I8(_) => ValueType::I8,
            Self::U16(_) => ValueType::U16,
            Self::I16(_) => ValueType::I16,
            Self::U32(_) => ValueType::U32,
            Self::I32(_) => ValueType::I32,
            Self::F32(_) => ValueType::F32,
            Self::Bool(_) => ValueType::Bool,
            Self::String(_) => ValueType::String,
            Self::Array(_) => ValueType::Array,
            Self::U64(_) => ValueType::U64,
            Self::I64(_) => ValueType::I64,
            Self::F64(_) => ValueType::F64,
        }
    }

    /// The value as u64 if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// Appends the encoded payload (without the type tag) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::U8(v) => out.push(*v),
            Self::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::Bool(v) => out.push(u8::from(*v)),
            Self::String(s) => encode_str(s, out),
            Self::Array(a) => {
                out.extend_from_slice(&a.elem_type.id().to_le_bytes());
                out.extend_from_slice(&(a.items.len() as u64).to_le_bytes());
                for item in &a.items {
                    item.encode(out);
                }
            }
            Self::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

/// Appends a GGUF string (u64 byte length, then the bytes).
pub fn encode_str(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl fmt::Display for Value {
    /// A short human form; long arrays are elided after 8 items.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::U8(v) => write!(f, "{v}"),
            Self::I8(v) => write!(f, "{v}"),
            Self::U16(v) => write!(f, "{v}"),
            Self::I16(v) => write!(f, "{v}"),
            Self::U32(v) => write!(f, "{v}"),
            Self::I32(v) => write!(f, "{v}"),
            Self::F32(v) => write!(f, "{v}"),
            Self::Bool(v) => write!(f, "{v}"),
            Self::String(s) => write!(f, "{s:?}"),
            Self::U64(v) => write!(f, "{v}"),
            Self::I64(v) => write!(f, "{v}"),
            Self::F64(v) => write!(f, "{v}"),
            Self::Array(a) => {
                write!(f, "[{:?}; {}] [", a.elem_type, a.items.len())?;
                for (i, v) in a.items.iter().take(8).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                if a.items.len() > 8 {
                    f.write_str(", ...")?;
                }
                f.write_str("]")
            }
        }
    }
}
