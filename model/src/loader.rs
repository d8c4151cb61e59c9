//! Loading a Hugging Face model folder into a [`CausalLm`]: `config.json`, the safetensors
//! weights (mapped, converted to f32 one tensor at a time), `tokenizer.json` with
//! `tokenizer_config.json`, and `generation_config.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::generation_config::GenerationConfig;
use crate::lora::LoraLinear;
use crate::names::{self, LayerTensor};
use crate::rope::Rope;
use crate::tokenizer::{CtiTokenizer, TOKENIZER_FILE};
use crate::transformer::{Builder, CausalLm, DecoderLayer};
use crate::weights::Checkpoint;
use crate::{attention::Attention, mlp::FeedForward};

/// The `config.json` file of a model folder.
pub const CONFIG_FILE: &str = "config.json";

/// A model folder loaded onto a device.
#[derive(Debug)]
pub struct LoadedModel {
    /// The folder it was loaded from.
    pub dir: PathBuf,
    /// The network.
    pub model: CausalLm,
    /// The tokenizer, when the folder has `tokenizer.json`.
    pub tokenizer: Option<CtiTokenizer>,
    /// Generation defaults from `generation_config.json`, if present.
    pub generation: Option<GenerationConfig>,
}

impl LoadedModel {
    /// Resolves `spec` (a folder, or `org/name[@revision]` in the Hugging Face hub cache) and
    /// loads it.
    ///
    /// # Errors
    /// As [`crate::hub::resolve`] and [`LoadedModel::load`].
    pub fn resolve(spec: &str, device: &Device) -> Result<Self> {
        Self::load(&crate::hub::resolve(spec)?, device)
    }

    /// Loads the model folder `dir` onto `device`.
    ///
    /// # Errors
    /// A missing or malformed `config.json`, an unknown architecture, missing, mis-shaped or
    /// truncated weights (naming the tensor and both shapes), a malformed tokenizer, or a
    /// tokenizer whose ids do not fit the model's vocabulary.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::config(dir, "model folder not found"));
        }
        let started = Instant::now();
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.is_file() {
            return Err(Error::config(
                &config_path,
                "file not found; a Hugging Face model folder needs config.json",
            ));
        }
        let config = ModelConfig::from_file(&config_path)?;
        let tokenizer = if dir.join(TOKENIZER_FILE).is_file() {
            let tokenizer = CtiTokenizer::from_dir(dir)?;
            tokenizer.check_model_vocab(config.vocab_size)?;
            Some(tokenizer)
        } else {
            None
        };
        let generation = GenerationConfig::from_dir(dir)?;
        let checkpoint = Checkpoint::open(dir)?;
        let model = build(&checkpoint, config, device)?;
        tracing::info!(
            dir = %dir.display(),
            arch = %model.config.architecture,
            params = model.config.parameter_count(),
            secs = format!("{:.2}", started.elapsed().as_secs_f64()),
            "loaded model"
        );
        Ok(LoadedModel {
            dir: dir.to_path_buf(),
            model,
            tokenizer,
            generation,
        })
    }

    /// The tokenizer, or an error saying the folder has none.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when the folder has no `tokenizer.json`.
    pub fn tokenizer(&self) -> Result<&CtiTokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            Error::tokenizer(
                self.dir.join(TOKENIZER_FILE),
                "file not found; text generation needs the model's tokenizer",
            )
        })
    }

    /// Ids that end generation: the tokenizer's stop tokens, else the config's EOS ids.
    pub fn stop_token_ids(&self) -> Vec<u32> {
        let mut ids = self
            .tokenizer
            .as_ref()
            .map(CtiTokenizer::stop_token_ids)
            .unwrap_or_default();
        let declared = self.generation.iter().flat_map(|g| g.eos_token_id.iter());
        for &id in self.model.config.eos_token_ids.iter().chain(declared) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// The BOS id: tokenizer first, then `config.json`.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.tokenizer
            .as_ref()
            .and_then(CtiTokenizer::bos_token_id)
            .or(self.model.config.bos_token_id)
    }
}

/// Builds the network from a checkpoint, reading each tensor once.
///
/// # Errors
/// A tensor is missing, has the wrong shape, or an unsupported dtype.
pub fn build(ckpt: &Checkpoint, config: ModelConfig, device: &Device) -> Result<CausalLm> {
    let c = &config;
    let b = Builder { device };
    let (d, hd) = (c.d_model, c.head_dim);
    let q_out = c.n_heads * hd;
    let kv_out = c.n_kv_heads * hd;

    let linear = |i: usize, t: LayerTensor, d_out: usize, d_in: usize, bias: bool| -> Result<_> {
        let w = ckpt.read_f32_transposed(&names::layer(i, t, "weight"), d_out, d_in)?;
        let bias = if bias {
            Some(ckpt.read_f32(&names::layer(i, t, "bias"), &[d_out])?)
        } else {
            None
        };
        Ok(LoraLinear::plain(b.linear_transposed(w, d_in, d_out, bias)))
    };
    let norm = |name: &str| -> Result<_> { Ok(b.rms_norm(ckpt.read_f32(name, &[d])?, c.norm_eps)) };

    let embed = b.embedding(
        ckpt.read_f32(names::EMBED, &[c.vocab_size, d])?,
        c.vocab_size,
        d,
    );
    let mut layers = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let ab = c.attention_bias;
        let attn = Attention {
            q_proj: linear(i, LayerTensor::Q, q_out, d, ab)?,
            k_proj: linear(i, LayerTensor::K, kv_out, d, ab)?,
            v_proj: linear(i, LayerTensor::V, kv_out, d, ab)?,
            o_proj: linear(i, LayerTensor::O, d, q_out, ab)?,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
        };
        let mb = c.mlp_bias;
        let mlp = FeedForward {
            gate_proj: linear(i, LayerTensor::Gate, c.d_ff, d, mb)?,
            up_proj: linear(i, LayerTensor::Up, c.d_ff, d, mb)?,
            down_proj: linear(i, LayerTensor::Down, d, c.d_ff, mb)?,
        };
        layers.push(DecoderLayer {
            attn_norm: norm(&names::layer(i, LayerTensor::AttnNorm, "weight"))?,
            attn,
            mlp_norm: norm(&names::layer(i, LayerTensor::MlpNorm, "weight"))?,
            mlp,
        });
    }
    let final_norm = norm(names::FINAL_NORM)?;
    let lm_head = if c.tie_embeddings {
        None
    } else if ckpt.contains(names::LM_HEAD) {
        let w = ckpt.read_f32_transposed(names::LM_HEAD, c.vocab_size, d)?;
        Some(b.linear_transposed(w, d, c.vocab_size, None))
    } else {
        return Err(Error::weights(
            ckpt.path(),
            format!(
                "missing tensor {}: config.json has tie_word_embeddings false, so the model \
                 needs its own output projection",
                names::LM_HEAD
            ),
        ));
    };
    warn_unexpected(ckpt, c);
    let rope = Rope::new(c);
    Ok(CausalLm {
        embed_tokens: embed,
        layers,
        norm: final_norm,
        lm_head,
        config,
        rope,
    })
}

/// Logs checkpoint tensors the model does not use (HF warns about them too).
fn warn_unexpected(ckpt: &Checkpoint, c: &ModelConfig) {
    let expected = expected_names(c);
    let unused: Vec<&str> = ckpt
        .names()
        .into_iter()
        .filter(|n| !names::is_ignorable(n) && !expected.iter().any(|e| e == n))
        .collect();
    if !unused.is_empty() {
        tracing::warn!(count = unused.len(), first = ?&unused[..unused.len().min(5)],
            "checkpoint tensors not used by the model");
    }
}

/// Every tensor name a checkpoint for `c` holds.
pub fn expected_names(c: &ModelConfig) -> Vec<String> {
    let mut out = vec![names::EMBED.to_owned(), names::FINAL_NORM.to_owned()];
    if !c.tie_embeddings {
        out.push(names::LM_HEAD.to_owned());
    }
    for i in 0..c.n_layers {
        for t in LayerTensor::ALL {
            out.push(names::layer(i, t, "weight"));
            let has_bias = match t {
                LayerTensor::Q | LayerTensor::K | LayerTensor::V | LayerTensor::O => {
                    c.attention_bias
                }
                LayerTensor::Gate | LayerTensor::Up | LayerTensor::Down => c.mlp_bias,
                LayerTensor::AttnNorm | LayerTensor::MlpNorm => false,
            };
            if has_bias {
                out.push(names::layer(i, t, "bias"));
            }
        }
    }
    out
}
