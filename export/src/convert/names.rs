//! HF Llama/Mistral weight names → llama.cpp tensor names (the `LLAMA` table of gguf-py's
//! `tensor_mapping.py` for the tensors a dense Llama checkpoint has).
//! NOTE: keep in sync with [`crate::gguf::TensorName`].

use crate::gguf::TensorName;

/// What to do with an HF tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    /// Store it under this GGUF tensor.
    Tensor(TensorName),
    /// Drop it (e.g. `rotary_emb.inv_freq`, recomputed by llama.cpp).
    Skip,
}

/// Maps an HF tensor name, or `None` if it is unknown.
pub fn map_hf_name(name: &str) -> Option<Mapped> {
    let fixed = match name {
        "model.embed_tokens.weight" => Some(TensorName::TokenEmbd),
        "model.norm.weight" => Some(TensorName::OutputNorm),
        "lm_head.weight" => Some(TensorName::Output),
        _ => None,
    };
    if let Some(t) = fixed {
        return Some(Mapped::Tensor(t));
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let i: usize = layer.parse().ok()?;
    let t = match suffix {
        "input_layernorm.weight" => TensorName::AttnNorm(i),
        "self_attn.q_proj.weight" => TensorName::AttnQ(i),
        "self_attn.k_proj.weight" => TensorName::AttnK(i),
        "self_attn.v_proj.weight" => TensorName::AttnV(i),
        "self_attn.o_proj.weight" => TensorName::AttnOutput(i),
        "post_attention_layernorm.weight" => TensorName::FfnNorm(i),
        "mlp.gate_proj.weight" => TensorName::FfnGate(i),
        "mlp.up_proj.weight" => TensorName::FfnUp(i),
        "mlp.down_proj.weight" => TensorName::FfnDown(i),
        "self_attn.rotary_emb.inv_freq" => return Some(Mapped::Skip),
        _ => return None,
    };
    Some(Mapped::Tensor(t))
}

/// The HF name of a llama.cpp tensor (`None` for `rope_freqs`, which HF computes).
pub fn hf_name(t: TensorName) -> Option<String> {
    let layer = |i: usize, suffix: &str| Some(format!("model.layers.{i}.{suffix}"));
    match t {
        TensorName::TokenEmbd => Some("model.embed_tokens.weight".into()),
        TensorName::OutputNorm => Some("model.norm.weight".into()),
        TensorName::Output => Some("lm_head.weight".into()),
        TensorName::RopeFreqs => None,
        TensorName::AttnNorm(i) => layer(i, "input_layernorm.weight"),
        TensorName::AttnQ(i) => layer(i, "self_attn.q_proj.weight"),
        TensorName::AttnK(i) => layer(i, "self_attn.k_proj.weight"),
        TensorName::AttnV(i) => layer(i, "self_attn.v_proj.weight"),
        TensorName::AttnOutput(i) => layer(i, "self_attn.o_proj.weight"),
        TensorName::FfnNorm(i) => layer(i, "post_attention_layernorm.weight"),
        TensorName::FfnGate(i) => layer(i, "mlp.gate_proj.weight"),
        TensorName::FfnUp(i) => layer(i, "mlp.up_proj.weight"),
        TensorName::FfnDown(i) => layer(i, "mlp.down_proj.weight"),
    }
}

/// Parses a llama.cpp tensor name such as `blk.3.attn_q.weight`.
pub fn parse_gguf_name(name: &str) -> Option<TensorName> {
    let base = name.strip_suffix(".weight")?;
    let fixed = match base {
        "token_embd" => Some(TensorName::TokenEmbd),
        "output_norm" => Some(TensorName::OutputNorm),
        "output" => Some(TensorName::Output),
        "rope_freqs" => Some(TensorName::RopeFreqs),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let (layer, stem) = base.strip_prefix("blk.")?.split_once('.')?;
    let i: usize = layer.parse().ok()?;
    Some(match stem {
        "attn_norm" => TensorName::AttnNorm(i),
        "attn_q" => TensorName::AttnQ(i),
        "attn_k" => TensorName::AttnK(i),
        "attn_v" => TensorName::AttnV(i),
        "attn_output" => TensorName::AttnOutput(i),
        "ffn_norm" => TensorName::FfnNorm(i),
        "ffn_gate" => TensorName::FfnGate(i),
        "ffn_up" => TensorName::FfnUp(i),
        "ffn_down" => TensorName::FfnDown(i),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_llama_names() {
        assert_eq!(
            map_hf_name("model.layers.12.self_attn.k_proj.weight"),
            Some(Mapped::Tensor(TensorName::AttnK(12)))
        );
        assert_eq!(
            map_hf_name("lm_head.weight"),
            Some(Mapped::Tensor(TensorName::Output))
        );
        assert_eq!(
            map_hf_name("model.layers.0.self_attn.rotary_emb.inv_freq"),
            Some(Mapped::Skip)
        );
        assert_eq!(map_hf_name("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(map_hf_name("vision_tower.weight"), None);
        for t in [
            TensorName::AttnK(7),
            TensorName::FfnDown(0),
            TensorName::Output,
        ] {
            let hf = hf_name(t).unwrap_or_default();
            assert_eq!(map_hf_name(&hf), Some(Mapped::Tensor(t)));
            assert_eq!(parse_gguf_name(&t.gguf_name()), Some(t));
        }
        assert_eq!(parse_gguf_name("blk.1.attn_q.weight.lora_a"), None);
    }
}
