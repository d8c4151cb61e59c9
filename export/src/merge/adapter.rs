//! A PEFT LoRA adapter folder (`adapter_config.json` + `adapter_model.safetensors`), read
//! and checked against the base checkpoint it is applied to: every module exists in the
//! base, every factor has the shape the base weight and the rank imply, and the modules
//! agree with `target_modules` and `layers_to_transform`
//! ([PEFT LoRA config](https://huggingface.co/docs/peft/package_reference/lora)).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::names::{
    ADAPTER_CONFIG, ADAPTER_WEIGHTS, AdapterTensor, Factor, PEFT_TYPE_LORA, layer_index,
    parse_adapter_tensor,
};
use crate::convert::hf::Checkpoint;
use crate::error::{Error, Result};

/// The `adapter_config.json` fields the merge uses.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct AdapterConfig {
    /// `peft_type` (must be `LORA`).
    pub peft_type: Option<String>,
    /// Default rank.
    pub r: usize,
    /// Default alpha.
    pub lora_alpha: f64,
    /// rsLoRA scaling `alpha / sqrt(r)` instead of `alpha / r`.
    #[serde(default)]
    pub use_rslora: bool,
    /// Module names (list of suffixes) or a regex over full module names.
    pub target_modules: Option<Json>,
    /// Layer indices the adapter applies to (one or a list).
    pub layers_to_transform: Option<Json>,
    /// Per-module rank overrides, keyed by a module-name suffix.
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, usize>,
    /// Per-module alpha overrides, keyed by a module-name suffix.
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f64>,
    /// Conv1D-style transposed weights (GPT-2); not used by Llama.
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// DoRA magnitude vectors; not supported.
    #[serde(default)]
    pub use_dora: bool,
    /// Bias training (`none`, `all`, `lora_only`).
    pub bias: Option<String>,
    /// The base model the adapter was trained on (informational).
    pub base_model_name_or_path: Option<String>,
}

/// One adapted module, checked against the base.
#[derive(Debug, Clone)]
pub struct LoraModule {
    /// The base module, e.g. `model.layers.0.self_attn.q_proj`.
    pub module: String,
    /// The base weight, `{module}.weight`.
    pub base_weight: String,
    /// The `lora_A` tensor name in the adapter file.
    pub a: String,
    /// The `lora_B` tensor name in the adapter file.
    pub b: String,
    /// Output features (rows of the base weight).
    pub out_features: usize,
    /// Input features (columns of the base weight).
    pub in_features: usize,
    /// This module's rank.
    pub rank: usize,
    /// This module's alpha.
    pub alpha: f64,
    /// `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub scaling: f64,
}

/// An adapter folder, validated against a base checkpoint.
pub struct Adapter {
    /// The adapter folder.
    pub dir: PathBuf,
    /// Its config.
    pub config: AdapterConfig,
    /// The adapter weights.
    pub weights: Checkpoint,
    /// Adapted modules, sorted by name.
    pub modules: Vec<LoraModule>,
    /// Base tensors replaced wholesale (`modules_to_save`): adapter name → base name.
    pub replaced: BTreeMap<String, String>,
}

impl Adapter {
    /// Reads `dir` and checks it against `base`.
    ///
    /// # Errors
    /// [`Error::Io`] for missing files; [`Error::Adapter`] naming the file for a malformed or
    /// unsupported config, unknown tensor names, a module without both factors or one the
    /// base does not have; [`Error::AdapterShape`] naming the tensor and both shapes when a
    /// factor does not fit the base weight.
    pub fn open(dir: &Path, base: &Checkpoint) -> Result<Self> {
        let config = read_config(dir)?;
        let weights_path = dir.join(ADAPTER_WEIGHTS);
        if !weights_path.is_file() {
            return Err(Error::Adapter {
                path: weights_path,
                message: "file not found (only safetensors adapters are supported)".into(),
            });
        }
        let weights = Checkpoint::open_files(vec![weights_path.clone()])?;
        let bad = |message: String| Error::Adapter {
            path: weights_path.clone(),
            message,
        };
        let mut factors: BTreeMap<String, [Option<String>; 2]> = BTreeMap::new();
        let mut replaced = BTreeMap::new();
        for name in weights.names() {
            match parse_adapter_tensor(name) {
                Some(AdapterTensor::Lora { module, factor }) => {
                    let slot = match factor {
                        Factor::A => 0,
                        Factor::B => 1,
                    };
                    factors.entry(module).or_default()[slot] = Some(name.to_string());
                }
                Some(AdapterTensor::Full(base_name)) if base.contains(&base_name) => {
                    let (got, want) = (weights.shape(name)?, base.shape(&base_name)?);
                    if got != want {
                        return Err(Error::AdapterShape {
                            tensor: name.to_string(),
                            base: base_name,
                            expected: want,
                            got,
                        });
                    }
                    replaced.insert(name.to_string(), base_name);
                }
                _ => {
                    return Err(bad(format!(
                        "tensor {name:?} is neither a LoRA factor \
                         (base_model.model.<module>.lora_A/lora_B.weight) nor a base tensor \
                         (modules_to_save); DoRA, bias and embedding adapters are not supported"
                    )));
                }
            }
        }
        if factors.is_empty() {
            return Err(bad("no lora_A/lora_B tensors".into()));
        }
        let layers = layer_set(&config, &dir.join(ADAPTER_CONFIG))?;
        let mut modules = Vec::new();
        for (module, [a, b]) in factors {
            let (Some(a), Some(b)) = (a, b) else {
                return Err(bad(format!(
                    "module {module} needs both lora_A and lora_B tensors"
                )));
            };
            modules.push(check_module(
                &config,
                &module,
                a,
                b,
                base,
                &weights,
                layers.as_deref(),
            )?);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            weights,
            modules,
            replaced,
        })
    }

    /// `lora_A` of `m` as f32, `[rank, in]` row-major.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an unreadable tensor.
    pub fn read_a(&self, m: &LoraModule) -> Result<Vec<f32>> {
        self.weights.read_f32(&m.a)
    }

    /// `lora_B` of `m` as f32, `[out, rank]` row-major.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an unreadable tensor.
    pub fn read_b(&self, m: &LoraModule) -> Result<Vec<f32>> {
        self.weights.read_f32(&m.b)
    }
}

fn read_config(dir: &Path) -> Result<AdapterConfig> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let config: AdapterConfig = serde_json::from_str(&text).map_err(|e| Error::Adapter {
        path: path.clone(),
        message: format!("{e} (expected a PEFT LoRA config with r and lora_alpha)"),
    })?;
    let refuse = |message: String| {
        Err(Error::Adapter {
            path: path.clone(),
            message,
        })
    };
    if let Some(t) = config.peft_type.as_deref()
        && t != PEFT_TYPE_LORA
    {
        return refuse(format!(
            "peft_type {t:?} is not supported (expected \"LORA\")"
        ));
    }
    if config.r == 0 {
        return refuse("r must be at least 1".into());
    }
    if config.use_dora {
        return refuse("use_dora: DoRA adapters are not supported".into());
    }
    if config.fan_in_fan_out {
        return refuse("fan_in_fan_out: transposed (Conv1D) weights are not Llama's".into());
    }
    if let Some(b) = config.bias.as_deref()
        && b != "none"
    {
        return refuse(format!("bias {b:?} is not supported (expected \"none\")"));
    }
    Ok(config)
}

/// `layers_to_transform` as a list, or `None` for all layers.
fn layer_set(config: &AdapterConfig, path: &Path) -> Result<Option<Vec<usize>>> {
    let as_index = |v: &Json| v.as_u64().map(|i| i as usize);
    match &config.layers_to_transform {
        None | Some(Json::Null) => Ok(None),
        Some(v) if v.is_u64() => Ok(as_index(v).map(|i| vec![i])),
        Some(Json::Array(items)) => items
            .iter()
            .map(|v| {
                as_index(v).ok_or_else(|| Error::Adapter {
                    path: path.to_path_buf(),
                    message: format!("layers_to_transform item {v} is not a layer index"),
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(v) => Err(Error::Adapter {
            path: path.to_path_buf(),
            message: format!("layers_to_transform {v} must be an index or a list of indices"),
        }),
    }
}

/// PEFT matches pattern keys as module-name suffixes at a `.` boundary.
fn suffix_match(module: &str, key: &str) -> bool {
    module == key || module.ends_with(&format!(".{key}"))
}

fn check_module(
    config: &AdapterConfig,
    module: &str,
    a: String,
    b: String,
    base: &Checkpoint,
    weights: &Checkpoint,
    layers: Option<&[usize]>,
) -> Result<LoraModule> {
    let config_path = || -> PathBuf { PathBuf::from(ADAPTER_CONFIG) };
    let base_weight = format!("{module}.weight");
    if !base.contains(&base_weight) {
        return Err(Error::Adapter {
            path: weights
                .file_of(&a)
                .map_or_else(config_path, Path::to_path_buf),
            message: format!(
                "module {module} does not exist in the base model (no tensor {base_weight}); \
                 is the adapter for a different base model?"
            ),
        });
    }
    if let Some(targets) = &config.target_modules {
        let listed = match targets {
            Json::Array(items) => items
                .iter()
                .filter_map(Json::as_str)
                .any(|t| suffix_match(module, t)),
            // A string is a regex over full names in PEFT; a plain name is the common case.
            Json::String(s) => suffix_match(module, s) || s.contains(module),
            _ => true,
        };
        if !listed {
            return Err(Error::Adapter {
                path: config_path(),
                message: format!(
                    "the adapter has factors for module {module}, which target_modules {targets} \
                     does not name"
                ),
            });
        }
    }
    if let (Some(layers), Some(i)) = (layers, layer_index(module))
        && !layers.contains(&i)
    {
        return Err(Error::Adapter {
            path: config_path(),
            message: format!(
                "the adapter has factors for layer {i} ({module}), which layers_to_transform \
                 {layers:?} excludes"
            ),
        });
    }
    let base_shape = base.shape(&base_weight)?;
    let [out_features, in_features] = base_shape[..] else {
        return Err(Error::Adapter {
            path: config_path(),
            message: format!("base tensor {base_weight} has shape {base_shape:?}, not 2-D"),
        });
    };
    let rank = config
        .rank_pattern
        .iter()
        .find(|(k, _)| suffix_match(module, k))
        .map_or(config.r, |(_, &r)| r);
    let alpha = config
        .alpha_pattern
        .iter()
        .find(|(k, _)| suffix_match(module, k))
        .map_or(config.lora_alpha, |(_, &al)| al);
    for (name, expected) in [
        (&a, vec![rank, in_features]),
        (&b, vec![out_features, rank]),
    ] {
        let got = weights.shape(name)?;
        if got != expected {
            return Err(Error::AdapterShape {
                tensor: name.clone(),
                base: format!("{base_weight} {base_shape:?}, r={rank}"),
                expected,
                got,
            });
        }
    }
    let scaling = if config.use_rslora {
        alpha / (rank as f64).sqrt()
    } else {
        alpha / rank as f64
    };
    Ok(LoraModule {
        module: module.to_string(),
        base_weight,
        a,
        b,
        out_features,
        in_features,
        rank,
        alpha,
        scaling,
    })
}
