//! PEFT's file and tensor names for LoRA adapters, spelled as `peft` (`save_pretrained`,
//! `utils/save_and_load.py`) writes them.
//! NOTE: keep in sync with PEFT if it renames files or prefixes.

/// The adapter's config file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The adapter's weights.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// Prefix of every tensor name in a saved adapter (`PeftModel` wrapping the HF model).
pub const PEFT_PREFIX: &str = "base_model.model.";
/// `peft_type` of a LoRA adapter.
pub const PEFT_TYPE_LORA: &str = "LORA";
/// The adapter name PEFT may leave in tensor names (`lora_A.default.weight`).
pub const DEFAULT_ADAPTER: &str = "default";

/// Which LoRA factor a tensor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// `lora_A`: `[rank, in_features]`.
    A,
    /// `lora_B`: `[out_features, rank]`.
    B,
}

/// What a tensor of an adapter file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterTensor {
    /// A LoRA factor of the base module `module` (e.g. `model.layers.0.self_attn.q_proj`).
    Lora {
        /// The base module (its weight is `{module}.weight`).
        module: String,
        /// A or B.
        factor: Factor,
    },
    /// A full replacement of a base tensor (`modules_to_save`), named as in the base.
    Full(String),
}

/// Parses a saved adapter tensor name; `None` if it has no PEFT prefix.
pub fn parse_adapter_tensor(name: &str) -> Option<AdapterTensor> {
    let rest = name.strip_prefix(PEFT_PREFIX)?;
    for (marker, factor) in [(".lora_A.", Factor::A), (".lora_B.", Factor::B)] {
        if let Some((module, tail)) = rest.split_once(marker) {
            let ok = tail == "weight" || tail == format!("{DEFAULT_ADAPTER}.weight");
            return ok.then(|| AdapterTensor::Lora {
                module: module.to_string(),
                factor,
            });
        }
    }
    Some(AdapterTensor::Full(rest.to_string()))
}

/// The layer index in a module name such as `model.layers.7.mlp.up_proj`.
pub fn layer_index(module: &str) -> Option<usize> {
    let rest = module.split(".layers.").nth(1)?;
    rest.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peft_names() {
        assert_eq!(
            parse_adapter_tensor("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"),
            Some(AdapterTensor::Lora {
                module: "model.layers.3.self_attn.q_proj".into(),
                factor: Factor::A
            })
        );
        assert_eq!(
            parse_adapter_tensor(
                "base_model.model.model.layers.0.mlp.up_proj.lora_B.default.weight"
            ),
            Some(AdapterTensor::Lora {
                module: "model.layers.0.mlp.up_proj".into(),
                factor: Factor::B
            })
        );
        assert_eq!(
            parse_adapter_tensor("base_model.model.lm_head.weight"),
            Some(AdapterTensor::Full("lm_head.weight".into()))
        );
        assert_eq!(parse_adapter_tensor("model.layers.0.x.lora_A.weight"), None);
        assert_eq!(layer_index("model.layers.12.mlp.down_proj"), Some(12));
        assert_eq!(layer_index("lm_head"), None);
    }
}
