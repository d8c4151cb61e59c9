//! New models from nothing: a Hugging Face folder with seeded random weights and a BPE
//! tokenizer trained on a corpus, so tests, demos and benchmarks get a model of any shape
//! without a download (`ctiforge model init`).
//!
//! Weights are drawn as `transformers` initialises Llama (normal, std
//! `initializer_range` = 0.02), except that RMS norm weights are `1 + N(0, 0.02)` instead of
//! exactly one, so that a checkpoint loader that mixes up two norms fails parity tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::fsutil::write_json_atomic;
use crate::loader::{CONFIG_FILE, expected_names};
use crate::names::{self, LayerTensor};
use crate::tokenizer::{SpecialTokens, train_bpe};
use crate::weights::{HostTensor, SINGLE_FILE, SaveDtype, write_safetensors};

/// Standard deviation of the random weights (`initializer_range`).
pub const INIT_STD: f32 = 0.02;

/// Named model sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// ~0.1M parameters beyond the embeddings: 2 layers, d_model 64, 4 query heads over 2
    /// key/value heads. Runs anything in milliseconds.
    Tiny,
    /// ~3M parameters beyond the embeddings: 4 layers, d_model 256, 8 query over 4 kv heads.
    Small,
}

impl std::str::FromStr for Preset {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tiny" => Ok(Preset::Tiny),
            "small" => Ok(Preset::Small),
            other => Err(Error::Invalid(format!(
                "unknown preset {other:?}: expected tiny or small"
            ))),
        }
    }
}

impl Preset {
    /// `(d_model, d_ff, n_layers, n_heads, n_kv_heads, max_seq_len)`.
    fn sizes(self) -> (usize, usize, usize, usize, usize, usize) {
        match self {
            Preset::Tiny => (64, 176, 2, 4, 2, 512),
            Preset::Small => (256, 704, 4, 8, 4, 1024),
        }
    }
}

/// What `ctiforge model init` builds.
#[derive(Debug, Clone)]
pub struct InitSpec {
    /// Llama or Mistral.
    pub arch: Architecture,
    /// Size preset.
    pub preset: Preset,
    /// Tokenizer (and embedding) vocabulary size.
    pub vocab_size: usize,
    /// Text the tokenizer is trained on (plain lines, or `.jsonl` with a `text` field).
    pub tokenizer_corpus: PathBuf,
    /// Seed of the weights.
    pub seed: u64,
    /// `config.json` fields to override, applied after the preset.
    pub overrides: Vec<(String, Value)>,
    /// Storage dtype of `model.safetensors`.
    pub dtype: SaveDtype,
    /// The folder to create; it must not exist unless `force`.
    pub out: PathBuf,
    /// Replace an existing `out`.
    pub force: bool,
}

/// Parses `key=value` into a `config.json` override: the value as JSON when it parses
/// (`16`, `true`, `null`, `{"rope_type": "llama3", ...}`), else as a string.
///
/// # Errors
/// [`Error::Invalid`] when there is no `=` or the key is empty.
pub fn parse_override(text: &str) -> Result<(String, Value)> {
    let (key, value) = text.split_once('=').ok_or_else(|| {
        Error::Invalid(format!(
            "--set {text:?}: expected key=value, e.g. num_hidden_layers=4"
        ))
    })?;
    let key = key.trim();
    if key.is_empty() {
        return Err(Error::Invalid(format!("--set {text:?}: the key is empty")));
    }
    let value =
        serde_json::from_str(value.trim()).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((key.to_owned(), value))
}

/// Creates the model folder described by `spec` and returns its config.
///
/// The folder is built under a temporary name beside `out` and renamed into place, so a
/// killed run never leaves a half-written model.
///
/// # Errors
/// `out` exists (without `force`), the corpus is unreadable, the overrides make an invalid
/// config, or the files cannot be written.
pub fn init_model(spec: &InitSpec) -> Result<ModelConfig> {
    if spec.out.exists() && !spec.force {
        return Err(Error::Invalid(format!(
            "{} already exists; choose another --out or pass --force to replace it",
            spec.out.display()
        )));
    }
    let parent = spec
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = spec
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = parent.join(format!(".{name}.{}.partial", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;

    let result = write_folder(spec, &staging);
    let result = result.and_then(|config| {
        if spec.out.exists() {
            std::fs::remove_dir_all(&spec.out).map_err(|e| Error::io(&spec.out, e))?;
        }
        std::fs::rename(&staging, &spec.out).map_err(|e| Error::io(&spec.out, e))?;
        Ok(config)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

fn write_folder(spec: &InitSpec, dir: &Path) -> Result<ModelConfig> {
    let specials = match spec.arch {
        Architecture::Llama => SpecialTokens::llama3(),
        Architecture::Mistral => SpecialTokens::mistral(),
    };
    let tokenizer = train_bpe(&spec.tokenizer_corpus, spec.vocab_size, &specials, dir)?;

    let mut json = preset_json(spec);
    json["bos_token_id"] = tokenizer.bos_token_id().into();
    json["eos_token_id"] = tokenizer.eos_token_id().into();
    if let Some(pad) = tokenizer.pad_token_id() {
        json["pad_token_id"] = pad.into();
    }
    for (key, value) in &spec.overrides {
        json[key.as_str()] = value.clone();
    }
    json["torch_dtype"] = spec.dtype.torch_name().into();
    let config_path = dir.join(CONFIG_FILE);
    let config = ModelConfig::from_hf_json(&json, Path::new("--set overrides / preset"))?;
    tokenizer.check_model_vocab(config.vocab_size)?;

    let tensors = random_weights(&config, spec.seed);
    write_safetensors(&dir.join(SINGLE_FILE), &tensors, spec.dtype)?;
    write_json_atomic(&config_path, &config_with_extras(&config, &json))?;
    let generation = serde_json::json!({
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_ids,
        "do_sample": false,
        "max_new_tokens": 64,
    });
    write_json_atomic(
        &dir.join(crate::generation_config::GENERATION_CONFIG_FILE),
        &generation,
    )?;
    tracing::info!(
        arch = %config.architecture,
        params = config.parameter_count(),
        seed = spec.seed,
        "initialised random model"
    );
    Ok(config)
}

/// The preset's `config.json` object before overrides.
fn preset_json(spec: &InitSpec) -> Value {
    let (d_model, d_ff, n_layers, n_heads, n_kv_heads, max_seq_len) = spec.preset.sizes();
    let mut json = serde_json::json!({
        "architectures": [spec.arch.hf_class()],
        "model_type": spec.arch.model_type(),
        "vocab_size": spec.vocab_size,
        "hidden_size": d_model,
        "intermediate_size": d_ff,
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv_heads,
        "head_dim": d_model / n_heads,
        "max_position_embeddings": max_seq_len,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": true,
        "attention_bias": false,
        "initializer_range": INIT_STD,
    });
    if spec.arch == Architecture::Mistral {
        json["sliding_window"] = (max_seq_len / 2).into();
        json["tie_word_embeddings"] = false.into();
    }
    json
}

/// The canonical `config.json` plus any extra keys the user set that it does not model.
fn config_with_extras(config: &ModelConfig, given: &Value) -> Value {
    let mut out = config.to_hf_json();
    if let (Some(out_map), Some(given)) = (out.as_object_mut(), given.as_object()) {
        for (k, v) in given {
            out_map.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    out
}

/// Seeded random weights for `config`, named as in an HF checkpoint (`[out, in]` layout).
pub fn random_weights(config: &ModelConfig, seed: u64) -> BTreeMap<String, HostTensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = BTreeMap::new();
    // Names in a fixed order so the same seed always gives the same bytes.
    for name in expected_names(config) {
        let shape = tensor_shape(config, &name);
        let n: usize = shape.iter().product();
        let is_norm = name.ends_with("norm.weight");
        let data: Vec<f32> = if name.ends_with(".bias") {
            (0..n).map(|_| normal(&mut rng) * INIT_STD).collect()
        } else if is_norm {
            (0..n).map(|_| 1.0 + normal(&mut rng) * INIT_STD).collect()
        } else {
            (0..n).map(|_| normal(&mut rng) * INIT_STD).collect()
        };
        out.insert(name, HostTensor { data, shape });
    }
    out
}

/// The HF shape of a tensor of `config` (names from [`expected_names`]).
fn tensor_shape(c: &ModelConfig, name: &str) -> Vec<usize> {
    let (d, q, kv) = (c.d_model, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
    if name == names::EMBED || name == names::LM_HEAD {
        return vec![c.vocab_size, d];
    }
    if name == names::FINAL_NORM {
        return vec![d];
    }
    let bias = name.ends_with(".bias");
    let (rows, cols) = LayerTensor::ALL
        .iter()
        .find(|t| name.contains(&format!(".{}.", t.module())))
        .map_or((d, 0), |t| match t {
            LayerTensor::AttnNorm | LayerTensor::MlpNorm => (d, 0),
            LayerTensor::Q => (q, d),
            LayerTensor::K | LayerTensor::V => (kv, d),
            LayerTensor::O => (d, q),
            LayerTensor::Gate | LayerTensor::Up => (c.d_ff, d),
            LayerTensor::Down => (d, c.d_ff),
        });
    if cols == 0 || bias {
        vec![rows]
    } else {
        vec![rows, cols]
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_as_json_or_string() {
        assert_eq!(
            parse_override("num_hidden_layers=4").expect("ok").1,
            Value::from(4)
        );
        assert_eq!(
            parse_override("sliding_window=null").expect("ok").1,
            Value::Null
        );
        assert_eq!(
            parse_override("torch_dtype=bfloat16").expect("ok").1,
            Value::from("bfloat16")
        );
        let (_, v) =
            parse_override(r#"rope_scaling={"rope_type":"linear","factor":2.0}"#).expect("object");
        assert_eq!(v["factor"], Value::from(2.0));
        assert!(parse_override("nokey").is_err());
    }

    #[test]
    fn random_weights_are_seeded_and_shaped() {
        let json = serde_json::json!({"model_type": "mistral", "vocab_size": 300,
            "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 1,
            "num_attention_heads": 4, "num_key_value_heads": 2, "attention_bias": true});
        let c = ModelConfig::from_hf_json(&json, Path::new("t")).expect("config");
        let a = random_weights(&c, 3);
        assert_eq!(
            a["model.layers.0.self_attn.k_proj.weight"].shape,
            vec![16, 32]
        );
        assert_eq!(a["model.layers.0.self_attn.o_proj.bias"].shape, vec![32]);
        assert_eq!(a["model.layers.0.mlp.down_proj.weight"].shape, vec![32, 48]);
        assert_eq!(a[names::LM_HEAD].shape, vec![300, 32]);
        let b = random_weights(&c, 3);
        assert_eq!(a[names::EMBED].data, b[names::EMBED].data);
        let other = random_weights(&c, 4);
        assert_ne!(a[names::EMBED].data, other[names::EMBED].data);
        let std = (a[names::EMBED].data.iter().map(|v| v * v).sum::<f32>() / 9600.0).sqrt();
        assert!((std - INIT_STD).abs() < 0.002, "std {std}");
    }
}
