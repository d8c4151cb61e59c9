//! LoRA adapters on disk in Hugging Face PEFT's layout (<https://github.com/huggingface/peft>):
//! `adapter_config.json` plus `adapter_model.safetensors` whose tensors are named
//! `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` (`[r, in]`) and
//! `...lora_B.weight` (`[out, r]`); and merging an adapter into its base model to write a
//! plain Hugging Face folder.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::fsutil::write_json_atomic;
use crate::lora::{AdapterValues, LoraConfig, LoraTarget, read_adapters};
use crate::names::{self, LayerTensor};
use crate::transformer::{CausalLm, to_host};
use crate::weights::{Checkpoint, HostTensor, SINGLE_FILE, SaveDtype, write_safetensors};

/// PEFT's adapter configuration file.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// PEFT's adapter weights file.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Which LoRA matrix a PEFT tensor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraMatrix {
    /// `lora_A`, `[r, in]`.
    A,
    /// `lora_B`, `[out, r]`.
    B,
}

/// PEFT's name of an adapter tensor.
pub fn peft_name(layer: usize, target: LoraTarget, matrix: LoraMatrix) -> String {
    let m = match matrix {
        LoraMatrix::A => "lora_A",
        LoraMatrix::B => "lora_B",
    };
    format!(
        "base_model.model.model.layers.{layer}.{}.{m}.weight",
        target.layer_tensor().module()
    )
}

/// The `adapter_config.json` object PEFT writes for `config`.
pub fn peft_config_json(config: &LoraConfig, base_model: &str) -> Value {
    let targets: Vec<&str> = config.targets.iter().map(|t| t.as_str()).collect();
    json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": targets,
        "use_rslora": config.use_rslora,
        "layers_to_transform": config.layers,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "use_dora": false,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null,
    })
}

/// Parses a PEFT `adapter_config.json` object into a [`LoraConfig`].
///
/// # Errors
/// [`Error::Config`] naming the field when it is missing or malformed, or naming every
/// PEFT option set that this crate does not implement (see [`UNSUPPORTED_OPTIONS`]; also
/// a `bias` other than `"none"` and a non-LoRA adapter). Keys that do not change what the
/// adapter computes (`fan_in_fan_out`, which PEFT resets for `nn.Linear`; `init_lora_weights`,
/// `inference_mode`, `peft_version`, ...) are ignored.
pub fn parse_peft_config(value: &Value, origin: &Path) -> Result<LoraConfig> {
    let bad = |msg: String| Error::config(origin, msg);
    let peft_type = value
        .get("peft_type")
        .and_then(Value::as_str)
        .unwrap_or("LORA");
    if peft_type != "LORA" {
        return Err(bad(format!(
            "peft_type {peft_type:?}: only LORA adapters are supported"
        )));
    }
    let rank = value
        .get("r")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("field r: expected a positive integer".to_owned()))?
        as usize;
    let alpha = value
        .get("lora_alpha")
        .and_then(Value::as_f64)
        .ok_or_else(|| bad("field lora_alpha: expected a number".to_owned()))?;
    let dropout = value
        .get("lora_dropout")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let use_rslora = value
        .get("use_rslora")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let targets = match value.get("target_modules") {
        Some(Value::String(s)) if s == "all-linear" => LoraTarget::ALL.to_vec(),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                let name = item.as_str().ok_or_else(|| {
                    bad("field target_modules: expected a list of module names".to_owned())
                })?;
                let short = name.rsplit('.').next().unwrap_or(name);
                out.push(
                    short
                        .parse::<LoraTarget>()
                        .map_err(|e| bad(format!("field target_modules: {e}")))?,
                );
            }
            out.sort();
            out.dedup();
            out
        }
        Some(Value::String(s)) => {
            return Err(bad(format!(
                "field target_modules: the regular expression {s:?} is not supported; list \
                 the module names (q_proj, v_proj, ...)"
            )));
        }
        _ => {
            return Err(bad(
                "field target_modules: expected a list of module names or \"all-linear\""
                    .to_owned(),
            ));
        }
    };
    let layers = match value.get("layers_to_transform") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(vec![n.as_u64().unwrap_or(u64::MAX) as usize]),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| {
                    v.as_u64().map(|n| n as usize).ok_or_else(|| {
                        bad("field layers_to_transform: expected layer indices".to_owned())
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(_) => {
            return Err(bad(
                "field layers_to_transform: expected null, an index or a list".to_owned(),
            ));
        }
    };
    let refused = unsupported_options(value);
    if !refused.is_empty() {
        return Err(bad(format!(
            "unsupported PEFT options: {}; only plain LoRA on the decoder projections is \
             supported",
            refused.join("; ")
        )));
    }
    Ok(LoraConfig {
        rank,
        alpha,
        dropout,
        targets,
        use_rslora,
        layers,
    })
}

/// PEFT `adapter_config.json` keys that change what an adapter computes and that this
/// crate does not implement, with what each enables. Each is refused unless absent, null,
/// false or empty.
pub const UNSUPPORTED_OPTIONS: [(&str, &str); 12] = [
    ("use_dora", "DoRA adapters"),
    ("lora_bias", "a trained bias on lora_B"),
    ("modules_to_save", "fully trained extra modules"),
    ("rank_pattern", "per-module ranks"),
    ("alpha_pattern", "per-module alphas"),
    ("exclude_modules", "modules excluded from target_modules"),
    ("layer_replication", "replicated layers"),
    ("trainable_token_indices", "trained token embeddings"),
    ("target_parameters", "adapters on bare parameters"),
    ("alora_invocation_tokens", "activated LoRA (aLoRA)"),
    ("use_qalora", "QA-LoRA"),
    ("arrow_config", "Arrow routing between adapters"),
];

/// Every option of `value` this crate cannot honour, described.
fn unsupported_options(value: &Value) -> Vec<String> {
    let is_set = |v: &Value| match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(_) => true,
    };
    let mut out: Vec<String> = UNSUPPORTED_OPTIONS
        .iter()
        .filter(|(key, _)| value.get(key).is_some_and(is_set))
        .map(|(key, what)| format!("{key} = {} ({what})", value[key]))
        .collect();
    if let Some(bias) = value
        .get("bias")
        .and_then(Value::as_str)
        .filter(|b| *b != "none")
    {
        out.push(format!("bias = {bias:?} (trained biases; only \"none\")"));
    }
    out
}

/// Writes `adapters` and `config` into `dir` in PEFT's layout (both files atomically).
///
/// # Errors
/// The folder cannot be created or a file cannot be written.
pub fn save_adapter(
    dir: &Path,
    config: &LoraConfig,
    adapters: &[AdapterValues],
    base_model: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tensors = BTreeMap::new();
    for ad in adapters {
        let (rank, d_in, d_out) = ad.dims;
        tensors.insert(
            peft_name(ad.layer, ad.target, LoraMatrix::A),
            HostTensor {
                data: ad.lora_a.clone(),
                shape: vec![rank, d_in],
            },
        );
        tensors.insert(
            peft_name(ad.layer, ad.target, LoraMatrix::B),
            HostTensor {
                data: ad.lora_b.clone(),
                shape: vec![d_out, rank],
            },
        );
    }
    write_safetensors(&dir.join(ADAPTER_WEIGHTS_FILE), &tensors, SaveDtype::F32)?;
    write_json_atomic(
        &dir.join(ADAPTER_CONFIG_FILE),
        &peft_config_json(config, base_model),
    )
}

/// Writes the adapters currently installed in `model`.
///
/// # Errors
/// As [`save_adapter`] and [`read_adapters`].
pub fn save_model_adapter(
    dir: &Path,
    model: &CausalLm,
    config: &LoraConfig,
    base_model: &str,
) -> Result<()> {
    save_adapter(dir, config, &read_adapters(model)?, base_model)
}

/// Reads a PEFT adapter folder for `model`: its config and, for every adapted projection,
/// both matrices (shapes checked against the model).
///
/// # Errors
/// Missing files, a malformed config, a missing or mis-shaped tensor (named), or tensors
/// in the file that the config does not account for.
pub fn load_adapter(dir: &Path, model: &CausalLm) -> Result<(LoraConfig, Vec<AdapterValues>)> {
    let config_path = dir.join(ADAPTER_CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: config_path.clone(),
        source,
    })?;
    let config = parse_peft_config(&value, &config_path)?;
    config
        .validate(model.layers.len())
        .map_err(|e| Error::config(&config_path, e.to_string()))?;
    let ckpt = Checkpoint::open_files(&[dir.join(ADAPTER_WEIGHTS_FILE)])?;
    let mut out = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        if !config.adapts_layer(i) {
            continue;
        }
        for target in LoraTarget::ALL {
            if !config.targets.contains(&target) {
                continue;
            }
            let [d_in, d_out] = crate::lora::projection(layer, target).dims();
            let r = config.rank;
            let lora_a = ckpt.read_f32(&peft_name(i, target, LoraMatrix::A), &[r, d_in])?;
            let lora_b = ckpt.read_f32(&peft_name(i, target, LoraMatrix::B), &[d_out, r])?;
            out.push(AdapterValues {
                layer: i,
                target,
                lora_a,
                lora_b,
                dims: (r, d_in, d_out),
            });
        }
    }
    let expected = 2 * out.len();
    let found = ckpt.names().len();
    if found != expected {
        return Err(Error::weights(
            ckpt.path(),
            format!(
                "holds {found} tensors but {} describes {expected} (r {}, targets {:?}); the \
                 adapter file does not match its config",
                ADAPTER_CONFIG_FILE, config.rank, config.targets
            ),
        ));
    }
    Ok((config, out))
}

/// Loads the PEFT adapter in `dir` (a training run or any PEFT adapter folder) onto
/// `model` and folds it into the weights, for inference: the result runs at the base
/// model's speed and gives the adapted model's outputs.
///
/// # Errors
/// As [`load_adapter`]: an adapter made for another base is refused, naming the tensor and
/// both shapes.
pub fn apply_adapter(model: CausalLm, dir: &Path) -> Result<CausalLm> {
    let (config, values) = load_adapter(dir, &model)?;
    let adapted = crate::lora::install_adapters(model, &config, &values)?;
    Ok(crate::lora::merge_adapters(adapted))
}

/// Every weight of `model` on the host under its Hugging Face name and shape (adapters
/// must have been merged first: an adapted projection is written as its base).
///
/// # Errors
/// [`Error::Invalid`] when a tensor cannot be read back.
pub fn hf_tensors(model: &CausalLm) -> Result<BTreeMap<String, HostTensor>> {
    let mut out = BTreeMap::new();
    let mut put = |name: String, data: Vec<f32>, shape: Vec<usize>| {
        out.insert(name, HostTensor { data, shape });
    };
    let embed = model.embed_tokens.weight.val();
    let shape = embed.dims().to_vec();
    put(names::EMBED.to_owned(), to_host(embed)?, shape);
    for (i, layer) in model.layers.iter().enumerate() {
        put(
            names::layer(i, LayerTensor::AttnNorm, "weight"),
            to_host(layer.attn_norm.gamma.val())?,
            layer.attn_norm.gamma.val().dims().to_vec(),
        );
        put(
            names::layer(i, LayerTensor::MlpNorm, "weight"),
            to_host(layer.mlp_norm.gamma.val())?,
            layer.mlp_norm.gamma.val().dims().to_vec(),
        );
        for target in LoraTarget::ALL {
            let HostLinear {
                weight: w,
                shape,
                bias,
            } = linear_on_host(&crate::lora::projection(layer, target).base)?;
            let t = target.layer_tensor();
            if let Some(bias) = bias {
                let n = bias.len();
                put(names::layer(i, t, "bias"), bias, vec![n]);
            }
            put(names::layer(i, t, "weight"), w, shape);
        }
    }
    let norm = model.norm.gamma.val();
    let shape = norm.dims().to_vec();
    put(names::FINAL_NORM.to_owned(), to_host(norm)?, shape);
    if let Some(head) = &model.lm_head {
        let HostLinear {
            weight: w, shape, ..
        } = linear_on_host(head)?;
        put(names::LM_HEAD.to_owned(), w, shape);
    }
    Ok(out)
}

/// A linear layer's weights on the host in Hugging Face's `[out, in]` orientation.
struct HostLinear {
    weight: Vec<f32>,
    shape: Vec<usize>,
    bias: Option<Vec<f32>>,
}

fn linear_on_host(l: &burn::nn::Linear) -> Result<HostLinear> {
    let w = l.weight.val().transpose(); // Burn [in, out] -> HF [out, in]
    let shape = w.dims().to_vec();
    let bias = l.bias.as_ref().map(|b| to_host(b.val())).transpose()?;
    Ok(HostLinear {
        weight: to_host(w)?,
        shape,
        bias,
    })
}

/// Files copied unchanged from the base folder into a merged one.
const COPIED_FILES: [&str; 5] = [
    crate::loader::CONFIG_FILE,
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// Merges the adapter in `adapter_dir` into the base model folder `base_dir` and writes a
/// Hugging Face folder to `out` (f32 weights, the base's config and tokenizer files).
///
/// # Errors
/// The base or adapter cannot be loaded, they do not match, or `out` cannot be written.
pub fn merge_to_folder(base_dir: &Path, adapter_dir: &Path, out: &Path) -> Result<()> {
    let device = burn::tensor::Device::flex();
    let loaded = crate::LoadedModel::load(base_dir, &device)?;
    let (config, adapters) = load_adapter(adapter_dir, &loaded.model)?;
    let model = crate::lora::install_adapters(loaded.model, &config, &adapters)?;
    let merged = crate::lora::merge_adapters(model);
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    write_safetensors(
        &out.join(SINGLE_FILE),
        &hf_tensors(&merged)?,
        SaveDtype::F32,
    )?;
    for name in COPIED_FILES {
        let src = base_dir.join(name);
        if !src.is_file() {
            continue;
        }
        let mut bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
        if name == crate::loader::CONFIG_FILE {
            // The merged weights are f32 whatever the base stored.
            let mut value: Value =
                serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                    path: src.clone(),
                    source,
                })?;
            value["torch_dtype"] = "float32".into();
            bytes = serde_json::to_vec_pretty(&value).map_err(|source| Error::Json {
                path: src.clone(),
                source,
            })?;
        }
        crate::fsutil::write_atomic(&out.join(name), &bytes)?;
    }
    tracing::info!(base = %base_dir.display(), adapter = %adapter_dir.display(),
        out = %out.display(), adapters = adapters.len(), "merged adapter into base weights");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `adapter_config.json` as peft 0.18.1's `save_pretrained` writes it.
    const PEFT_0_18_CONFIG: &str = r#"{
        "alora_invocation_tokens": null, "alpha_pattern": {}, "arrow_config": null,
        "auto_mapping": null, "base_model_name_or_path": "aidreams260K", "bias": "none",
        "corda_config": null, "ensure_weight_tying": false, "eva_config": null,
        "exclude_modules": null, "fan_in_fan_out": false, "inference_mode": true,
        "init_lora_weights": false, "layer_replication": null, "layers_pattern": null,
        "layers_to_transform": [1, 3], "loftq_config": {}, "lora_alpha": 8.0,
        "lora_bias": false, "lora_dropout": 0.0, "megatron_config": null,
        "megatron_core": "megatron.core", "modules_to_save": null, "peft_type": "LORA",
        "peft_version": "0.18.1", "qalora_group_size": 16, "r": 4, "rank_pattern": {},
        "revision": null, "target_modules": ["v_proj", "down_proj", "q_proj"],
        "target_parameters": null, "task_type": "CAUSAL_LM",
        "trainable_token_indices": null, "use_dora": false, "use_qalora": false,
        "use_rslora": true
    }"#;

    fn parse(text: &str) -> Result<LoraConfig> {
        let value: Value = serde_json::from_str(text).expect("json");
        parse_peft_config(&value, Path::new("adapter_config.json"))
    }

    #[test]
    fn reads_the_config_peft_writes() {
        let config = parse(PEFT_0_18_CONFIG).expect("parse");
        assert_eq!(
            config,
            LoraConfig {
                rank: 4,
                alpha: 8.0,
                dropout: 0.0,
                targets: vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Down],
                use_rslora: true,
                layers: Some(vec![1, 3]),
            }
        );
    }

    #[test]
    fn written_config_reads_back() {
        let config = LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: LoraTarget::ALL.to_vec(),
            use_rslora: false,
            layers: Some(vec![0, 2]),
        };
        let value = peft_config_json(&config, "base");
        for key in [
            "peft_type",
            "task_type",
            "r",
            "lora_alpha",
            "target_modules",
        ] {
            assert!(value.get(key).is_some(), "{key} missing");
        }
        assert_eq!(value["fan_in_fan_out"], false);
        assert_eq!(value["bias"], "none");
        let back = parse_peft_config(&value, Path::new("x")).expect("parse");
        assert_eq!(back, config);
    }

    #[test]
    fn every_unsupported_option_is_named_at_once() {
        let mut value: Value = serde_json::from_str(PEFT_0_18_CONFIG).expect("json");
        value["use_dora"] = true.into();
        value["lora_bias"] = true.into();
        value["trainable_token_indices"] = json!([5, 6]);
        value["exclude_modules"] = json!(["model.layers.1.self_attn.q_proj"]);
        value["bias"] = "all".into();
        let msg = parse_peft_config(&value, Path::new("adapter_config.json"))
            .expect_err("refused")
            .to_string();
        for key in [
            "use_dora",
            "lora_bias",
            "trainable_token_indices",
            "exclude_modules",
            "bias = \"all\"",
            "adapter_config.json",
        ] {
            assert!(msg.contains(key), "{key} not named in: {msg}");
        }
    }

    #[test]
    fn regex_target_modules_is_refused_by_name() {
        let mut value: Value = serde_json::from_str(PEFT_0_18_CONFIG).expect("json");
        value["target_modules"] = ".*\\.(q_proj|v_proj)".into();
        let msg = parse_peft_config(&value, Path::new("a"))
            .expect_err("refused")
            .to_string();
        assert!(msg.contains("regular expression"), "{msg}");
    }
}
