//! [`GgmlType`]: the tensor element types of ggml that this crate can store, with ggml's
//! numeric ids, block sizes and bytes per block (`ggml/src/ggml.c` `type_traits`,
//! `ggml-common.h` block structs; ids as in the
//! [GGUF spec](https://github.com/ggml-org/ggml/blob/master/docs/gguf.md)).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Elements per K-quant super-block (`QK_K`).
pub const QK_K: usize = 256;

/// A ggml tensor element type.
///
/// `Display` prints the name gguf-py's `GGMLQuantizationType` uses (`Q4_K`, `BF16`);
/// [`GgmlType::ggml_name`] gives ggml's own C spelling (`q4_K`, `bf16`). `FromStr` accepts
/// either, case-insensitively.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE half float.
    F16,
    /// 4-bit, blocks of 32, one f16 scale.
    Q4_0,
    /// 4-bit, blocks of 32, f16 scale and minimum.
    Q4_1,
    /// 5-bit, blocks of 32, one f16 scale.
    Q5_0,
    /// 5-bit, blocks of 32, f16 scale and minimum.
    Q5_1,
    /// 8-bit, blocks of 32, one f16 scale.
    Q8_0,
    /// 2-bit K-quant, super-blocks of 256.
    Q2_K,
    /// 4-bit K-quant, super-blocks of 256 with 6-bit sub-block scales and minimums.
    Q4_K,
    /// 5-bit K-quant, super-blocks of 256 with 6-bit sub-block scales and minimums.
    Q5_K,
    /// 6-bit K-quant, super-blocks of 256 with 8-bit sub-block scales.
    Q6_K,
    /// bfloat16 (the top half of an f32).
    BF16,
}

impl GgmlType {
    /// Every type this crate supports, in ggml id order.
    pub const ALL: [GgmlType; 12] = [
        Self::F32,
        Self::F16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q2_K,
        Self::Q4_K,
        Self::Q5_K,
        Self::Q6_K,
        Self::BF16,
    ];

    /// ggml's numeric id (`enum ggml_type`), as stored in GGUF tensor infos.
    pub const fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q2_K => 10,
            Self::Q4_K => 12,
            Self::Q5_K => 13,
            Self::Q6_K => 14,
            Self::BF16 => 30,
        }
    }

    /// The type with ggml id `id`.
    ///
    /// # Errors
    /// [`Error::Unknown`] for an id this crate does not support (IQ types, Q3_K, ...).
    pub fn from_id(id: u32) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.id() == id)
            .ok_or_else(|| Error::Unknown {
                what: "ggml type id",
                value: id.to_string(),
                expected: Self::ALL.map(|t| format!("{} ({t})", t.id())).join(", "),
            })
    }

    /// Elements per block (1 for float types, 32 for legacy quants, 256 for K-quants).
    pub const fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => 32,
            Self::Q2_K | Self::Q4_K | Self::Q5_K | Self::Q6_K => QK_K,
        }
    }

    /// Bytes per block (the size of ggml's `block_*` struct).
    pub const fn type_size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 2 + 16,
            Self::Q4_1 => 2 + 2 + 16,
            Self::Q5_0 => 2 + 4 + 16,
            Self::Q5_1 => 2 + 2 + 4 + 16,
            Self::Q8_0 => 2 + 32,
            Self::Q2_K => 16 + 64 + 2 + 2,
            Self::Q4_K => 2 + 2 + 12 + 128,
            Self::Q5_K => 2 + 2 + 12 + 32 + 128,
            Self::Q6_K => 128 + 64 + 16 + 2,
        }
    }

    /// Whether the type is a block quantization (not F32, F16 or BF16).
    pub const fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes taken by `n_elements` elements.
    ///
    /// # Errors
    /// [`Error::Shape`] when `n_elements` is not a multiple of the block size.
    pub fn bytes_for(self, n_elements: usize) -> Result<usize> {
        let bs = self.block_size();
        if !n_elements.is_multiple_of(bs) {
            return Err(Error::Shape {
                ty: self.to_string(),
                message: format!("{n_elements} elements is not a multiple of the block size {bs}"),
            });
        }
        Ok(n_elements / bs * self.type_size())
    }

    /// ggml's own name (`ggml_type_name`): `f32`, `q4_0`, `q4_K`, `bf16`.
    pub const fn ggml_name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q5_0 => "q5_0",
            Self::Q5_1 => "q5_1",
            Self::Q8_0 => "q8_0",
            Self::Q2_K => "q2_K",
            Self::Q4_K => "q4_K",
            Self::Q5_K => "q5_K",
            Self::Q6_K => "q6_K",
            Self::BF16 => "bf16",
        }
    }

    /// gguf-py's name (`GGMLQuantizationType`): `F32`, `Q4_0`, `Q4_K`, `BF16`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q2_K => "Q2_K",
            Self::Q4_K => "Q4_K",
            Self::Q5_K => "Q5_K",
            Self::Q6_K => "Q6_K",
            Self::BF16 => "BF16",
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GgmlType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::Unknown {
                what: "ggml type",
                value: s.to_string(),
                expected: Self::ALL.map(|t| t.name()).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ids_are_unique() {
        for t in GgmlType::ALL {
            assert_eq!(t.to_string().parse::<GgmlType>().unwrap(), t);
            assert_eq!(t.ggml_name().parse::<GgmlType>().unwrap(), t);
            assert_eq!(GgmlType::from_id(t.id()).unwrap(), t);
        }
        assert!("q3_K".parse::<GgmlType>().is_err());
        assert!(GgmlType::from_id(11).is_err());
    }

    #[test]
    fn sizes_match_ggml_structs() {
        assert_eq!(GgmlType::Q4_K.bytes_for(512).unwrap(), 288);
        assert_eq!(GgmlType::Q6_K.type_size(), 210);
        assert_eq!(GgmlType::Q8_0.bytes_for(64).unwrap(), 68);
        assert!(GgmlType::Q4_0.bytes_for(33).is_err());
    }
}
