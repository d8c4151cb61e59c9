//! External name tables: GGUF metadata keys and llama.cpp's tensor names, spelled exactly
//! as in gguf-py's `constants.py` and llama.cpp's `llama-arch.cpp`
//! ([GGUF spec](https://github.com/ggml-org/ggml/blob/master/docs/gguf.md#standardized-key-value-pairs)).
//! NOTE: keep in sync with llama.cpp when it renames keys; nothing else in the crate
//! spells these strings.

/// The magic bytes at the start of every GGUF file.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// The GGUF version this crate writes and reads.
pub const VERSION: u32 = 3;
/// Data alignment used when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u32 = 32;

/// `general.*` keys.
pub mod general {
    /// Model architecture (`llama`).
    pub const ARCHITECTURE: &str = "general.architecture";
    /// Quantization version of the file.
    pub const QUANTIZATION_VERSION: &str = "general.quantization_version";
    /// Data alignment (u32, a multiple of 8).
    pub const ALIGNMENT: &str = "general.alignment";
    /// Human-readable model name.
    pub const NAME: &str = "general.name";
    /// The model's licence.
    pub const LICENSE: &str = "general.license";
    /// Free-form description.
    pub const DESCRIPTION: &str = "general.description";
    /// `llama_ftype` of the file (u32).
    pub const FILE_TYPE: &str = "general.file_type";
    /// File kind: `model` (default) or `adapter`.
    pub const TYPE: &str = "general.type";
    /// [`TYPE`] of a LoRA adapter file.
    pub const TYPE_ADAPTER: &str = "adapter";
}

/// `adapter.*` keys of LoRA adapter files (llama.cpp's `--lora`).
pub mod adapter {
    /// Adapter kind (`lora`).
    pub const TYPE: &str = "adapter.type";
    /// [`TYPE`] of a LoRA adapter.
    pub const TYPE_LORA: &str = "lora";
    /// LoRA alpha (f32); llama.cpp scales by `alpha / rank`, rank from `lora_a`.
    pub const LORA_ALPHA: &str = "adapter.lora.alpha";
    /// Suffix of the A factor tensor (`blk.0.attn_q.weight.lora_a`).
    pub const LORA_A_SUFFIX: &str = ".lora_a";
    /// Suffix of the B factor tensor.
    pub const LORA_B_SUFFIX: &str = ".lora_b";
}

/// `{arch}.*` keys; pass the architecture name, e.g. `llm::context_length("llama")`.
pub mod llm {
    /// Training context length.
    pub fn context_length(arch: &str) -> String {
        format!("{arch}.context_length")
    }
    /// Embedding (model) width.
    pub fn embedding_length(arch: &str) -> String {
        format!("{arch}.embedding_length")
    }
    /// Number of transformer blocks.
    pub fn block_count(arch: &str) -> String {
        format!("{arch}.block_count")
    }
    /// Feed-forward hidden width.
    pub fn feed_forward_length(arch: &str) -> String {
        format!("{arch}.feed_forward_length")
    }
    /// Vocabulary size.
    pub fn vocab_size(arch: &str) -> String {
        format!("{arch}.vocab_size")
    }
    /// Number of attention heads.
    pub fn head_count(arch: &str) -> String {
        format!("{arch}.attention.head_count")
    }
    /// Number of key/value heads (grouped-query attention).
    pub fn head_count_kv(arch: &str) -> String {
        format!("{arch}.attention.head_count_kv")
    }
    /// RMS norm epsilon.
    pub fn layer_norm_rms_epsilon(arch: &str) -> String {
        format!("{arch}.attention.layer_norm_rms_epsilon")
    }
    /// Rotary dimensions per head.
    pub fn rope_dimension_count(arch: &str) -> String {
        format!("{arch}.rope.dimension_count")
    }
    /// RoPE base frequency.
    pub fn rope_freq_base(arch: &str) -> String {
        format!("{arch}.rope.freq_base")
    }
}

/// `tokenizer.*` keys.
pub mod tokenizer {
    /// Tokenizer model: `llama` (SentencePiece) or `gpt2` (byte-level BPE).
    pub const MODEL: &str = "tokenizer.ggml.model";
    /// Pre-tokenizer name (`llama-bpe`, `default`, ...).
    pub const PRE: &str = "tokenizer.ggml.pre";
    /// Token strings, indexed by id.
    pub const TOKENS: &str = "tokenizer.ggml.tokens";
    /// Token types (normal, unknown, control, user-defined, unused, byte).
    pub const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
    /// Token scores (SentencePiece).
    pub const SCORES: &str = "tokenizer.ggml.scores";
    /// BPE merges, `"a b"` strings.
    pub const MERGES: &str = "tokenizer.ggml.merges";
    /// Beginning-of-sequence token id.
    pub const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
    /// End-of-sequence token id.
    pub const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
    /// Unknown token id.
    pub const UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
    /// Padding token id.
    pub const PAD_ID: &str = "tokenizer.ggml.padding_token_id";
    /// Whether to prepend BOS.
    pub const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
    /// Whether to append EOS.
    pub const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
    /// Jinja chat template.
    pub const CHAT_TEMPLATE: &str = "tokenizer.chat_template";
}

/// A llama.cpp tensor of a Llama-family model. [`TensorName::gguf_name`] gives its GGUF name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorName {
    /// `token_embd`: token embeddings.
    TokenEmbd,
    /// `output_norm`: final RMS norm.
    OutputNorm,
    /// `output`: LM head.
    Output,
    /// `rope_freqs`: Llama-3 RoPE frequency factors.
    RopeFreqs,
    /// `blk.{i}.attn_norm`.
    AttnNorm(usize),
    /// `blk.{i}.attn_q`.
    AttnQ(usize),
    /// `blk.{i}.attn_k`.
    AttnK(usize),
    /// `blk.{i}.attn_v`.
    AttnV(usize),
    /// `blk.{i}.attn_output`.
    AttnOutput(usize),
    /// `blk.{i}.ffn_norm`.
    FfnNorm(usize),
    /// `blk.{i}.ffn_gate`.
    FfnGate(usize),
    /// `blk.{i}.ffn_up`.
    FfnUp(usize),
    /// `blk.{i}.ffn_down`.
    FfnDown(usize),
}

impl TensorName {
    /// The base name without suffix, e.g. `blk.3.attn_q` or `token_embd`.
    pub fn base(self) -> String {
        let (stem, layer) = match self {
            Self::TokenEmbd => return "token_embd".into(),
            Self::OutputNorm => return "output_norm".into(),
            Self::Output => return "output".into(),
            Self::RopeFreqs => return "rope_freqs".into(),
            Self::AttnNorm(i) => ("attn_norm", i),
            Self::AttnQ(i) => ("attn_q", i),
            Self::AttnK(i) => ("attn_k", i),
            Self::AttnV(i) => ("attn_v", i),
            Self::AttnOutput(i) => ("attn_output", i),
            Self::FfnNorm(i) => ("ffn_norm", i),
            Self::FfnGate(i) => ("ffn_gate", i),
            Self::FfnUp(i) => ("ffn_up", i),
            Self::FfnDown(i) => ("ffn_down", i),
        };
        format!("blk.{layer}.{stem}")
    }

    /// The full GGUF name with the `.weight` suffix, e.g. `blk.3.attn_q.weight`.
    pub fn gguf_name(self) -> String {
        format!("{}.weight", self.base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_names_match_llama_cpp() {
        assert_eq!(TensorName::TokenEmbd.gguf_name(), "token_embd.weight");
        assert_eq!(TensorName::AttnQ(3).gguf_name(), "blk.3.attn_q.weight");
        assert_eq!(TensorName::FfnGate(0).gguf_name(), "blk.0.ffn_gate.weight");
        assert_eq!(TensorName::OutputNorm.gguf_name(), "output_norm.weight");
        assert_eq!(llm::head_count_kv("llama"), "llama.attention.head_count_kv");
    }
}
