//! Whole-file quantization types ([`FileType`], llama.cpp's `llama_ftype`) and the per-tensor
//! choice llama.cpp's quantizer makes for Llama-family models (`src/llama-quant.cpp`:
//! `tensor_allows_quantization`, `llama_tensor_get_type_impl`, `tensor_type_fallback`).
//! Only the rules that can fire for a dense Llama/Mistral model without an importance
//! matrix and with the file types below are implemented.

use std::fmt;
use std::str::FromStr;

use super::types::GgmlType;
use crate::error::{Error, Result};

/// A whole-file quantization, as `llama-quantize` names it. Its [`FileType::id`] is the
/// value of the `general.file_type` key.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum FileType {
    /// Everything F32.
    F32,
    /// Weights F16, 1-D tensors F32.
    F16,
    /// Weights BF16, 1-D tensors F32.
    BF16,
    /// Q4_0 weights, Q6_K output.
    Q4_0,
    /// Q4_1 weights, Q6_K output.
    Q4_1,
    /// Q5_0 weights, Q6_K output.
    Q5_0,
    /// Q5_1 weights, Q6_K output.
    Q5_1,
    /// Q8_0 everywhere it applies.
    Q8_0,
    /// Q4_K, Q5_K for the first 4 attn_v and the first eighth of ffn_down.
    Q4_K_S,
    /// Q4_K, Q6_K for attn_v and ffn_down in the layers `use_more_bits` picks.
    Q4_K_M,
    /// Q5_K weights, Q6_K output.
    Q5_K_S,
    /// Q5_K, Q6_K for attn_v and ffn_down in the layers `use_more_bits` picks.
    Q5_K_M,
    /// Q6_K everywhere it applies.
    Q6_K,
}

impl FileType {
    /// Every supported file type.
    pub const ALL: [FileType; 13] = [
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q4_K_S,
        Self::Q4_K_M,
        Self::Q5_K_S,
        Self::Q5_K_M,
        Self::Q6_K,
    ];

    /// llama.cpp's `llama_ftype` value, stored as `general.file_type`.
    pub const fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 7,
            Self::Q5_0 => 8,
            Self::Q5_1 => 9,
            Self::Q4_K_S => 14,
            Self::Q4_K_M => 15,
            Self::Q5_K_S => 16,
            Self::Q5_K_M => 17,
            Self::Q6_K => 18,
            Self::BF16 => 32,
        }
    }

    /// The type most weights get (llama.cpp's `default_type` for the ftype).
    pub const fn base_type(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::BF16 => GgmlType::BF16,
            Self::Q4_0 => GgmlType::Q4_0,
            Self::Q4_1 => GgmlType::Q4_1,
            Self::Q5_0 => GgmlType::Q5_0,
            Self::Q5_1 => GgmlType::Q5_1,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q4_K_S | Self::Q4_K_M => GgmlType::Q4_K,
            Self::Q5_K_S | Self::Q5_K_M => GgmlType::Q5_K,
            Self::Q6_K => GgmlType::Q6_K,
        }
    }

    /// The name `llama-quantize` uses (`Q4_K_M`, `F16`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q4_K_S => "Q4_K_S",
            Self::Q4_K_M => "Q4_K_M",
            Self::Q5_K_S => "Q5_K_S",
            Self::Q5_K_M => "Q5_K_M",
            Self::Q6_K => "Q6_K",
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FileType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::Unknown {
                what: "file type",
                value: s.to_string(),
                expected: Self::ALL.map(|t| t.name()).join(", "),
            })
    }
}

/// What [`choose_type`] needs to know about one tensor.
#[derive(Debug, Clone, Copy)]
pub struct TensorSpec<'a> {
    /// The GGUF tensor name, e.g. `blk.3.attn_v.weight`.
    pub name: &'a str,
    /// Dimensions in ggml order (`dims[0]` is the row length).
    pub dims: &'a [u64],
    /// Number of transformer blocks in the model.
    pub n_layers: usize,
    /// Whether `token_embd` doubles as the output projection (no `output.weight`).
    pub tied_embeddings: bool,
}

/// The role of a tensor as llama.cpp's quantizer classifies it by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnV,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    if name == "output.weight" {
        Category::Output
    } else if name == "token_embd.weight" {
        Category::TokenEmbd
    } else if name.contains("attn_v.weight") || name.contains("attn_qkv.weight") {
        Category::AttnV
    } else if name.contains("ffn_down") {
        Category::FfnDown
    } else {
        Category::Other
    }
}

/// llama.cpp's `tensor_allows_quantization` for dense Llama tensors: 2-D or more, name ends
/// in `weight`, not a norm.
fn allows_quantization(t: &TensorSpec<'_>) -> bool {
    t.dims.len() >= 2 && t.name.ends_with("weight") && !t.name.contains("_norm.weight")
}

/// The layers that get more bits in `*_K_M` mixtures: the first and last eighth, and every
/// third layer in between (llama.cpp's `use_more_bits`).
pub fn use_more_bits(i_layer: usize, n_layers: usize) -> bool {
    let (i, n) = (i_layer as i64, n_layers as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The layer index in a `blk.{i}.` name.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// The type llama.cpp's quantizer gives tensor `t` in a `file_type` file.
///
/// Tensors it does not quantize (1-D, norms, non-weights) stay F32. For block types, a row
/// length that does not divide into blocks falls back as llama.cpp does: Q4_K → Q5_0,
/// Q5_K → Q5_1, Q6_K → Q8_0, Q2_K → Q4_0, and to F16 when even that does not fit. The
/// output tensor of a quantized file gets Q6_K (Q8_0 when its rows do not divide into
/// blocks of the base type); with tied embeddings `token_embd` is treated as the output.
pub fn choose_type(t: &TensorSpec<'_>, file_type: FileType) -> GgmlType {
    if !allows_quantization(t) {
        return GgmlType::F32;
    }
    let base = file_type.base_type();
    if !base.is_quantized() {
        return base;
    }
    let chosen = mixture_rule(t, file_type, base);
    fallback(t.dims[0], chosen)
}

fn mixture_rule(t: &TensorSpec<'_>, ft: FileType, base: GgmlType) -> GgmlType {
    let cat = category(t.name);
    let is_output = cat == Category::Output || (t.tied_embeddings && cat == Category::TokenEmbd);
    if is_output {
        return if !t.dims[0].is_multiple_of(base.block_size() as u64) {
            GgmlType::Q8_0
        } else if base != GgmlType::Q8_0 {
            GgmlType::Q6_K
        } else {
            base
        };
    }
    let layer = layer_of(t.name).unwrap_or(0);
    let more = use_more_bits(layer, t.n_layers);
    match (cat, ft) {
        (Category::AttnV | Category::FfnDown, FileType::Q4_K_M | FileType::Q5_K_M) if more => {
            GgmlType::Q6_K
        }
        (Category::AttnV, FileType::Q4_K_S) if layer < 4 => GgmlType::Q5_K,
        (Category::FfnDown, FileType::Q4_K_S) if layer < t.n_layers / 8 => GgmlType::Q5_K,
        _ => base,
    }
}

/// llama.cpp's `tensor_type_fallback` for rows that do not divide into blocks.
fn fallback(ncols: u64, ty: GgmlType) -> GgmlType {
    let fits = |t: GgmlType| ncols.is_multiple_of(t.block_size() as u64);
    if fits(ty) {
        return ty;
    }
    let next = match ty {
        GgmlType::Q2_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    if fits(next) { next } else { GgmlType::F16 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(name: &str, dims: &[u64], ft: FileType) -> GgmlType {
        choose_type(
            &TensorSpec {
                name,
                dims,
                n_layers: 32,
                tied_embeddings: false,
            },
            ft,
        )
    }

    #[test]
    fn q4_k_m_follows_llama_cpp() {
        let ft = FileType::Q4_K_M;
        let w = [4096u64, 4096];
        // 32 layers: n/8 = 4, 7n/8 = 28; middle layers with (i - 4) % 3 == 2 get more bits.
        let more: Vec<usize> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        let expected: Vec<usize> = (0..4)
            .chain([6, 9, 12, 15, 18, 21, 24, 27])
            .chain(28..32)
            .collect();
        assert_eq!(more, expected);
        assert_eq!(pick("blk.0.attn_v.weight", &w, ft), GgmlType::Q6_K);
        assert_eq!(pick("blk.5.attn_v.weight", &w, ft), GgmlType::Q4_K);
        assert_eq!(
            pick("blk.6.ffn_down.weight", &[14336, 4096], ft),
            GgmlType::Q6_K
        );
        assert_eq!(
            pick("blk.7.ffn_down.weight", &[14336, 4096], ft),
            GgmlType::Q4_K
        );
        assert_eq!(pick("blk.7.attn_q.weight", &w, ft), GgmlType::Q4_K);
        assert_eq!(pick("output.weight", &[4096, 32000], ft), GgmlType::Q6_K);
        assert_eq!(
            pick("token_embd.weight", &[4096, 32000], ft),
            GgmlType::Q4_K
        );
        assert_eq!(pick("blk.0.attn_norm.weight", &[4096], ft), GgmlType::F32);
        assert_eq!(pick("output_norm.weight", &[4096], ft), GgmlType::F32);
    }

    #[test]
    fn incompatible_rows_fall_back() {
        // 64 columns: not a multiple of 256 but of 32.
        assert_eq!(
            pick("blk.5.attn_q.weight", &[64, 64], FileType::Q4_K_M),
            GgmlType::Q5_0
        );
        assert_eq!(
            pick("blk.5.attn_q.weight", &[64, 64], FileType::Q5_K_S),
            GgmlType::Q5_1
        );
        assert_eq!(
            pick("blk.0.attn_v.weight", &[64, 64], FileType::Q4_K_M),
            GgmlType::Q8_0
        );
        assert_eq!(
            pick("output.weight", &[64, 100], FileType::Q4_K_M),
            GgmlType::Q8_0
        );
        assert_eq!(
            pick("blk.1.ffn_up.weight", &[40, 8], FileType::Q4_K_M),
            GgmlType::F16
        );
        assert_eq!(
            pick("blk.1.ffn_up.weight", &[40, 8], FileType::Q8_0),
            GgmlType::F16
        );
        assert_eq!(
            pick("blk.1.ffn_up.weight", &[40, 8], FileType::F16),
            GgmlType::F16
        );
    }

    #[test]
    fn tied_embeddings_are_treated_as_output() {
        let t = TensorSpec {
            name: "token_embd.weight",
            dims: &[512, 1000],
            n_layers: 2,
            tied_embeddings: true,
        };
        assert_eq!(choose_type(&t, FileType::Q5_K_M), GgmlType::Q6_K);
        assert_eq!(choose_type(&t, FileType::Q8_0), GgmlType::Q8_0);
        assert_eq!("q4_k_m".parse::<FileType>().unwrap(), FileType::Q4_K_M);
    }
}
