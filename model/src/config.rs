//! Model hyper-parameters: the internal [`ModelConfig`] and its translation from a
//! Hugging Face `config.json` (Llama and Mistral families).
//!
//! Field names of `config.json` appear only in [`crate::names`]-style tables here and in
//! [`ModelConfig::to_hf_json`]; the rest of the crate uses the burn vocabulary (`d_model`,
//! `n_heads`, ...).

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The decoder families this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 1, 2 and 3 (`LlamaForCausalLM`).
    Llama,
    /// Mistral (`MistralForCausalLM`), with optional sliding-window attention.
    Mistral,
}

impl Architecture {
    /// The `model_type` string of `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
        }
    }

    /// The `architectures[0]` class name of `config.json`.
    pub fn hf_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
        }
    }
}

impl std::str::FromStr for Architecture {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "llama" | "llamaforcausallm" => Ok(Architecture::Llama),
            "mistral" | "mistralforcausallm" => Ok(Architecture::Mistral),
            other => Err(Error::Invalid(format!(
                "unknown architecture {other:?}: expected \"llama\" or \"mistral\""
            ))),
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

/// RoPE frequency scaling (`rope_scaling` in `config.json`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Position interpolation: every inverse frequency divided by `factor`.
    Linear {
        /// The interpolation factor.
        factor: f32,
    },
    /// Llama 3.1's piecewise scaling of low and medium frequencies.
    Llama3 {
        /// Scale applied to low frequencies.
        factor: f32,
        /// Wavelength boundary (as a divisor of the original context) of the low band.
        low_freq_factor: f32,
        /// Wavelength boundary (as a divisor of the original context) of the high band.
        high_freq_factor: f32,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: usize,
    },
}

/// Everything needed to build a decoder, in the crate's own vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Llama or Mistral.
    pub architecture: Architecture,
    /// Number of token embeddings (rows of the embedding and output matrices).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Inner width of the SwiGLU feed-forward block.
    pub d_ff: usize,
    /// Number of decoder layers.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (grouped-query attention when below `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Longest context the model supports (`max_position_embeddings`).
    pub max_seq_len: usize,
    /// Epsilon of the RMS norms.
    pub norm_eps: f64,
    /// Base of the rotary frequencies.
    pub rope_theta: f32,
    /// Optional RoPE frequency scaling.
    pub rope_scaling: Option<RopeScaling>,
    /// Whether the output projection shares the token embedding matrix.
    pub tie_embeddings: bool,
    /// Mistral's attention window: a query sees at most this many keys (itself included).
    pub sliding_window: Option<usize>,
    /// Whether q/k/v/o projections carry a bias.
    pub attention_bias: bool,
    /// Whether the feed-forward projections carry a bias.
    pub mlp_bias: bool,
    /// Beginning-of-sequence token id, if the model declares one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token ids (Llama 3 declares several).
    pub eos_token_ids: Vec<u32>,
    /// Padding token id, if declared.
    pub pad_token_id: Option<u32>,
    /// The checkpoint's declared storage dtype (`torch_dtype`), informational.
    pub torch_dtype: Option<String>,
}

impl ModelConfig {
    /// Reads and validates `config.json` at `path`.
    ///
    /// # Errors
    /// The file is missing or is not JSON, a required field is absent or has the wrong type,
    /// the architecture is not Llama or Mistral, or the sizes are inconsistent.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_hf_json(&value, path)
    }

    /// Translates a parsed `config.json`; `origin` names it in errors.
    ///
    /// # Errors
    /// As [`ModelConfig::from_file`], less the I/O.
    pub fn from_hf_json(value: &Value, origin: &Path) -> Result<Self> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::config(origin, "expected a JSON object at the top level"))?;
        let f = Fields { obj, origin };
        let architecture = f.architecture()?;
        let d_model = f.usize("hidden_size")?;
        let n_heads = f.usize("num_attention_heads")?;
        let n_kv_heads = f.opt_usize("num_key_value_heads")?.unwrap_or(n_heads);
        let head_dim = match f.opt_usize("head_dim")? {
            Some(h) => h,
            None if n_heads > 0 => d_model / n_heads,
            None => 0,
        };
        let act = f.opt_str("hidden_act")?.unwrap_or("silu");
        if act != "silu" && act != "swish" {
            return Err(Error::config(
                origin,
                format!("hidden_act {act:?} is not supported: Llama and Mistral use \"silu\""),
            ));
        }
        let config = ModelConfig {
            architecture,
            vocab_size: f.usize("vocab_size")?,
            d_model,
            d_ff: f.usize("intermediate_size")?,
            n_layers: f.usize("num_hidden_layers")?,
            n_heads,
            n_kv_heads,
            head_dim,
            max_seq_len: f.opt_usize("max_position_embeddings")?.unwrap_or(2048),
            norm_eps: f.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta: f.opt_f64("rope_theta")?.unwrap_or(10_000.0) as f32,
            rope_scaling: f.rope_scaling()?,
            tie_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            sliding_window: match architecture {
                Architecture::Mistral => f.opt_usize("sliding_window")?,
                Architecture::Llama => None,
            },
            attention_bias: f.opt_bool("attention_bias")?.unwrap_or(false),
            mlp_bias: f.opt_bool("mlp_bias")?.unwrap_or(false),
            bos_token_id: f.opt_usize("bos_token_id")?.map(|v| v as u32),
            eos_token_ids: f.token_ids("eos_token_id")?,
            pad_token_id: f.opt_usize("pad_token_id")?.map(|v| v as u32),
            torch_dtype: f.opt_str("torch_dtype")?.map(str::to_owned),
        };
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks that the sizes fit together.
    ///
    /// # Errors
    /// Names the first inconsistent field of `origin`.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.d_model),
            ("intermediate_size", self.d_ff),
            ("num_hidden_layers", self.n_layers),
            ("num_attention_heads", self.n_heads),
            ("num_key_value_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::config(
                    origin,
                    format!("{name} must be positive, got 0"),
                ));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(Error::config(
                origin,
                format!(
                    "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                    self.n_heads, self.n_kv_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::config(
                origin,
                format!(
                    "head_dim must be even for rotary embeddings, got {}",
                    self.head_dim
                ),
            ));
        }
        if self.sliding_window == Some(0) {
            return Err(Error::config(
                origin,
                "sliding_window must be positive or null",
            ));
        }
        for id in self
            .eos_token_ids
            .iter()
            .chain(&self.bos_token_id)
            .chain(&self.pad_token_id)
        {
            if *id as usize >= self.vocab_size {
                return Err(Error::config(
                    origin,
                    format!(
                        "special token id {id} is outside vocab_size {}",
                        self.vocab_size
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Number of trainable parameters of the decoder.
    pub fn parameter_count(&self) -> usize {
        let attn_in = self.d_model * (self.n_heads + 2 * self.n_kv_heads) * self.head_dim;
        let attn_out = self.n_heads * self.head_dim * self.d_model;
        let attn_bias = if self.attention_bias {
            (self.n_heads + 2 * self.n_kv_heads) * self.head_dim
        } else {
            0
        } + if self.attention_bias { self.d_model } else { 0 };
        let mlp = 3 * self.d_model * self.d_ff
            + if self.mlp_bias {
                2 * self.d_ff + self.d_model
            } else {
                0
            };
        let per_layer = attn_in + attn_out + attn_bias + mlp + 2 * self.d_model;
        let embed = self.vocab_size * self.d_model;
        let head = if self.tie_embeddings { 0 } else { embed };
        embed + head + self.n_layers * per_layer + self.d_model
    }

    /// Bytes of one token's keys and values across all layers, in f32.
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.n_kv_heads * self.head_dim * 4
    }

    /// The equivalent Hugging Face `config.json` object.
    pub fn to_hf_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_owned(), v);
        };
        put(
            "architectures",
            Value::from(vec![self.architecture.hf_class()]),
        );
        put("model_type", self.architecture.model_type().into());
        put("vocab_size", self.vocab_size.into());
        put("hidden_size", self.d_model.into());
        put("intermediate_size", self.d_ff.into());
        put("num_hidden_layers", self.n_layers.into());
        put("num_attention_heads", self.n_heads.into());
        put("num_key_value_heads", self.n_kv_heads.into());
        put("head_dim", self.head_dim.into());
        put("max_position_embeddings", self.max_seq_len.into());
        put("rms_norm_eps", self.norm_eps.into());
        put("rope_theta", f64::from(self.rope_theta).into());
        put(
            "rope_scaling",
            rope_scaling_json(self.rope_scaling.as_ref()),
        );
        put("hidden_act", "silu".into());
        put("tie_word_embeddings", self.tie_embeddings.into());
        put("attention_bias", self.attention_bias.into());
        put("attention_dropout", 0.0.into());
        if self.architecture == Architecture::Llama {
            put("mlp_bias", self.mlp_bias.into());
        } else {
            put(
                "sliding_window",
                self.sliding_window.map_or(Value::Null, Value::from),
            );
        }
        put("initializer_range", 0.02.into());
        put(
            "bos_token_id",
            self.bos_token_id.map_or(Value::Null, Value::from),
        );
        put(
            "eos_token_id",
            match self.eos_token_ids.as_slice() {
                [] => Value::Null,
                [one] => Value::from(*one),
                many => Value::from(many.to_vec()),
            },
        );
        if let Some(pad) = self.pad_token_id {
            put("pad_token_id", pad.into());
        }
        if let Some(dtype) = &self.torch_dtype {
            put("torch_dtype", dtype.as_str().into());
        }
        put("use_cache", true.into());
        Value::Object(m)
    }
}

fn rope_scaling_json(scaling: Option<&RopeScaling>) -> Value {
    match scaling {
        None => Value::Null,
        Some(RopeScaling::Linear { factor }) => serde_json::json!({
            "rope_type": "linear",
            "factor": factor,
        }),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => serde_json::json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings,
        }),
    }
}

/// Typed access to `config.json` fields with errors that name the field.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    origin: &'a Path,
}

impl Fields<'_> {
    fn present(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn wrong(&self, key: &str, expected: &str, got: &Value) -> Error {
        Error::config(
            self.origin,
            format!("field {key:?}: expected {expected}, got {got}"),
        )
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| Error::config(self.origin, format!("missing required field {key:?}")))
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.wrong(key, "a non-negative integer", v)),
        }
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a number", v)),
        }
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "true or false", v)),
        }
    }

    fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a string", v)),
        }
    }

    fn token_ids(&self, key: &str) -> Result<Vec<u32>> {
        match self.present(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .map(|n| n as u32)
                        .ok_or_else(|| self.wrong(key, "token ids", v))
                })
                .collect(),
            Some(v) => v
                .as_u64()
                .map(|n| vec![n as u32])
                .ok_or_else(|| self.wrong(key, "a token id or a list of them", v)),
        }
    }

    fn architecture(&self) -> Result<Architecture> {
        let model_type = self.opt_str("model_type")?;
        let class = match self.present("architectures") {
            Some(Value::Array(items)) => items.first().and_then(Value::as_str),
            _ => None,
        };
        let named = model_type.or(class).ok_or_else(|| {
            Error::config(
                self.origin,
                "missing \"model_type\" (and no \"architectures\")",
            )
        })?;
        named.parse().map_err(|_| {
            Error::config(
                self.origin,
                format!(
                    "unknown architecture {named:?}: ctiforge supports model_type \"llama\" \
                     and \"mistral\""
                ),
            )
        })
    }

    fn rope_scaling(&self) -> Result<Option<RopeScaling>> {
        let Some(v) = self.present("rope_scaling") else {
            return Ok(None);
        };
        let obj = v
            .as_object()
            .ok_or_else(|| self.wrong("rope_scaling", "an object", v))?;
        let sub = Fields {
            obj,
            origin: self.origin,
        };
        let kind = sub
            .opt_str("rope_type")?
            .or(sub.opt_str("type")?)
            .unwrap_or("default");
        let factor = || -> Result<f32> {
            sub.opt_f64("factor")?.map(|x| x as f32).ok_or_else(|| {
                Error::config(self.origin, "rope_scaling: missing \"factor\"".to_owned())
            })
        };
        match kind {
            "default" => Ok(None),
            "linear" => Ok(Some(RopeScaling::Linear { factor: factor()? })),
            "llama3" => Ok(Some(RopeScaling::Llama3 {
                factor: factor()?,
                low_freq_factor: sub.opt_f64("low_freq_factor")?.unwrap_or(1.0) as f32,
                high_freq_factor: sub.opt_f64("high_freq_factor")?.unwrap_or(4.0) as f32,
                original_max_position_embeddings: sub
                    .opt_usize("original_max_position_embeddings")?
                    .unwrap_or(8192),
            })),
            other => Err(Error::config(
                self.origin,
                format!(
                    "rope_scaling type {other:?} is not supported: expected \"linear\" or \
                     \"llama3\""
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ModelConfig> {
        ModelConfig::from_hf_json(&v, Path::new("config.json"))
    }

    fn base() -> Value {
        serde_json::json!({
            "model_type": "llama", "vocab_size": 100, "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "eos_token_id": [2, 3], "bos_token_id": 1
        })
    }

    #[test]
    fn parses_llama_defaults() {
        let c = parse(base()).expect("valid config");
        assert_eq!(c.head_dim, 8);
        assert_eq!(c.eos_token_ids, vec![2, 3]);
        assert_eq!(c.rope_theta, 10_000.0);
        assert!(!c.tie_embeddings);
    }

    #[test]
    fn round_trips_through_hf_json() {
        let mut v = base();
        v["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64});
        let c = parse(v).expect("valid config");
        assert_eq!(parse(c.to_hf_json()).expect("round trip"), c);
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = base();
        v["hidden_size"] = "wide".into();
        let msg = parse(v).expect_err("bad type").to_string();
        assert!(
            msg.contains("hidden_size") && msg.contains("config.json"),
            "{msg}"
        );

        let mut v = base();
        v["model_type"] = "gpt2".into();
        let msg = parse(v).expect_err("unknown arch").to_string();
        assert!(msg.contains("gpt2") && msg.contains("llama"), "{msg}");

        let mut v = base();
        v["num_key_value_heads"] = 3.into();
        let msg = parse(v).expect_err("gqa").to_string();
        assert!(msg.contains("num_key_value_heads"), "{msg}");

        let mut v = base();
        v.as_object_mut().expect("object").remove("vocab_size");
        let msg = parse(v).expect_err("missing").to_string();
        assert!(msg.contains("vocab_size"), "{msg}");
    }

    #[test]
    fn mistral_keeps_sliding_window() {
        let mut v = base();
        v["model_type"] = "mistral".into();
        v["sliding_window"] = 16.into();
        assert_eq!(parse(v).expect("mistral").sliding_window, Some(16));
    }
}
