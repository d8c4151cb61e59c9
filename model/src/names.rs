//! Hugging Face tensor names of Llama and Mistral checkpoints (`model.layers.{i}...`).
//!
//! NOTE: these strings are the contract with `transformers`, PEFT and the GGUF exporter's
//! name map; keep them in sync with `export`'s llama.cpp table.

/// The token embedding matrix, `[vocab_size, d_model]`.
pub const EMBED: &str = "model.embed_tokens.weight";
/// The final RMS norm before the output projection, `[d_model]`.
pub const FINAL_NORM: &str = "model.norm.weight";
/// The output projection, `[vocab_size, d_model]` (absent when embeddings are tied).
pub const LM_HEAD: &str = "lm_head.weight";

/// A tensor of one decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerTensor {
    /// RMS norm before attention.
    AttnNorm,
    /// RMS norm before the feed-forward block.
    MlpNorm,
    /// Query projection.
    Q,
    /// Key projection.
    K,
    /// Value projection.
    V,
    /// Attention output projection.
    O,
    /// SwiGLU gate projection.
    Gate,
    /// SwiGLU up projection.
    Up,
    /// SwiGLU down projection.
    Down,
}

impl LayerTensor {
    /// Every tensor of a layer, in checkpoint order.
    pub const ALL: [LayerTensor; 9] = [
        LayerTensor::AttnNorm,
        LayerTensor::Q,
        LayerTensor::K,
        LayerTensor::V,
        LayerTensor::O,
        LayerTensor::MlpNorm,
        LayerTensor::Gate,
        LayerTensor::Up,
        LayerTensor::Down,
    ];

    /// The module path inside a layer, as Hugging Face (and PEFT) name it.
    pub fn module(self) -> &'static str {
        match self {
            LayerTensor::AttnNorm => "input_layernorm",
            LayerTensor::MlpNorm => "post_attention_layernorm",
            LayerTensor::Q => "self_attn.q_proj",
            LayerTensor::K => "self_attn.k_proj",
            LayerTensor::V => "self_attn.v_proj",
            LayerTensor::O => "self_attn.o_proj",
            LayerTensor::Gate => "mlp.gate_proj",
            LayerTensor::Up => "mlp.up_proj",
            LayerTensor::Down => "mlp.down_proj",
        }
    }
}

/// The full name of a layer tensor; `suffix` is `"weight"` or `"bias"`.
pub fn layer(index: usize, tensor: LayerTensor, suffix: &str) -> String {
    format!("model.layers.{index}.{}.{suffix}", tensor.module())
}

/// Names that older checkpoints carry but that hold no learned weights.
pub fn is_ignorable(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_match_transformers() {
        assert_eq!(
            layer(3, LayerTensor::K, "weight"),
            "model.layers.3.self_attn.k_proj.weight"
        );
        assert_eq!(
            layer(0, LayerTensor::MlpNorm, "weight"),
            "model.layers.0.post_attention_layernorm.weight"
        );
    }
}
