//! Reading an HF Llama/Mistral folder: `config.json` ([`HfConfig`]) and the safetensors
//! checkpoint, single-file or sharded with `model.safetensors.index.json`
//! ([safetensors format](https://huggingface.co/docs/safetensors)).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// The `config.json` fields the conversion uses.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct HfConfig {
    /// Model width (`d_model`).
    pub hidden_size: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Number of blocks.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Key/value heads (defaults to the attention heads).
    pub num_key_value_heads: Option<usize>,
    /// Per-head width (defaults to `hidden_size / num_attention_heads`).
    pub head_dim: Option<usize>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Training context length.
    pub max_position_embeddings: usize,
    /// RMS norm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base (defaults to 10000).
    pub rope_theta: Option<f64>,
    /// Whether the LM head reuses the token embeddings.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// RoPE scaling (Llama-3 `rope_type = "llama3"` is supported).
    pub rope_scaling: Option<serde_json::Value>,
    /// BOS id fallback when the tokenizer config does not name one.
    pub bos_token_id: Option<serde_json::Value>,
    /// EOS id fallback.
    pub eos_token_id: Option<serde_json::Value>,
    /// `model_type` (`llama`, `mistral`).
    pub model_type: Option<String>,
    /// `architectures` (`LlamaForCausalLM`, `MistralForCausalLM`).
    pub architectures: Option<Vec<String>>,
    /// Mistral's attention window (llama.cpp's `llama` architecture attends to the whole
    /// context, so sequences longer than the window behave differently there).
    pub sliding_window: Option<usize>,
}

/// `model_type` values llama.cpp loads as its `llama` architecture.
pub const SUPPORTED_MODEL_TYPES: [&str; 2] = ["llama", "mistral"];
/// `architectures` classes llama.cpp loads as its `llama` architecture.
pub const SUPPORTED_ARCHITECTURES: [&str; 2] = ["LlamaForCausalLM", "MistralForCausalLM"];

impl HfConfig {
    /// Reads `dir/config.json`.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Invalid`] naming the file and the serde message.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let cfg: Self = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let known_type = |t: &str| SUPPORTED_MODEL_TYPES.contains(&t);
        let known_class = |c: &str| SUPPORTED_ARCHITECTURES.contains(&c);
        let type_bad = cfg.model_type.as_deref().is_some_and(|t| !known_type(t));
        let class_bad = cfg
            .architectures
            .as_ref()
            .is_some_and(|a| !a.iter().any(|c| known_class(c)));
        if type_bad || class_bad {
            return Err(Error::Architecture {
                path,
                found: format!(
                    "{:?} (model_type {:?})",
                    cfg.architectures.clone().unwrap_or_default(),
                    cfg.model_type.clone().unwrap_or_default()
                ),
            });
        }
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        {
            return Err(Error::Invalid(format!(
                "{}: hidden_size {} is not divisible by num_attention_heads {}",
                path.display(),
                cfg.hidden_size,
                cfg.num_attention_heads
            )));
        }
        Ok(cfg)
    }

    /// Key/value heads.
    pub fn n_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }
}

struct Shard {
    path: PathBuf,
    map: Mmap,
}

/// A memory-mapped safetensors checkpoint (one or more shards).
pub struct Checkpoint {
    shards: Vec<Shard>,
    located: BTreeMap<String, usize>,
}

#[allow(unsafe_code)]
fn map_file(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: read-only private map; checkpoints are not modified while being converted.
    unsafe { Mmap::map(file) }
}

impl Checkpoint {
    /// Opens `dir/model.safetensors`, or the shards listed in
    /// `dir/model.safetensors.index.json`.
    ///
    /// # Errors
    /// [`Error::Io`] for missing files; [`Error::Invalid`] for a bad index or safetensors
    /// header, naming the file.
    pub fn open(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::Invalid(format!("{}: {e}", index.display())))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| {
                    Error::Invalid(format!("{}: no weight_map object", index.display()))
                })?;
            let mut names: Vec<&str> = map.values().filter_map(|f| f.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            names.into_iter().map(|f| dir.join(f)).collect()
        } else {
            vec![dir.join("model.safetensors")]
        };
        Self::open_files(files)
    }

    /// Opens the given safetensors files as one checkpoint (e.g. an adapter's
    /// `adapter_model.safetensors`).
    ///
    /// # Errors
    /// [`Error::Io`] for missing files; [`Error::Invalid`] for a bad safetensors header or a
    /// tensor in two files, naming the file.
    pub fn open_files(files: Vec<PathBuf>) -> Result<Self> {
        let mut shards = Vec::new();
        let mut located = BTreeMap::new();
        for path in files {
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            let map = map_file(&file).map_err(|e| Error::io(&path, e))?;
            let st = SafeTensors::deserialize(&map).map_err(|e| {
                Error::Invalid(format!(
                    "{}: not a valid safetensors file ({e})",
                    path.display()
                ))
            })?;
            for name in st.names() {
                if located.insert(name.to_string(), shards.len()).is_some() {
                    return Err(Error::Invalid(format!(
                        "{}: tensor {name} also appears in another shard",
                        path.display()
                    )));
                }
            }
            shards.push(Shard { path, map });
        }
        Ok(Self { shards, located })
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.located.keys().map(String::as_str)
    }

    fn view<T>(
        &self,
        name: &str,
        f: impl FnOnce(&Path, Dtype, &[usize], &[u8]) -> Result<T>,
    ) -> Result<T> {
        let idx = *self
            .located
            .get(name)
            .ok_or_else(|| Error::Invalid(format!("checkpoint has no tensor {name:?}")))?;
        let shard = &self.shards[idx];
        let st = SafeTensors::deserialize(&shard.map)
            .map_err(|e| Error::Invalid(format!("{}: {e}", shard.path.display())))?;
        let t = st
            .tensor(name)
            .map_err(|e| Error::Invalid(format!("{}: {e}", shard.path.display())))?;
        f(&shard.path, t.dtype(), t.shape(), t.data())
    }

    /// The shape of tensor `name`.
    ///
    /// # Errors
    /// [`Error::Invalid`] if it is missing.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.view(name, |_, _, shape, _| Ok(shape.to_vec()))
    }

    /// The stored dtype of tensor `name`.
    ///
    /// # Errors
    /// [`Error::Invalid`] if it is missing.
    pub fn dtype(&self, name: &str) -> Result<Dtype> {
        self.view(name, |_, dtype, _, _| Ok(dtype))
    }

    /// Whether the checkpoint holds tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.located.contains_key(name)
    }

    /// The file that holds tensor `name` (for error messages).
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.located
            .get(name)
            .map(|&i| self.shards[i].path.as_path())
    }

    /// Calls `f` with tensor `name`'s dtype, shape and raw little-endian bytes, borrowed
    /// from the memory map.
    ///
    /// # Errors
    /// [`Error::Invalid`] if it is missing; whatever `f` returns.
    pub fn with_raw<T>(
        &self,
        name: &str,
        f: impl FnOnce(Dtype, &[usize], &[u8]) -> Result<T>,
    ) -> Result<T> {
        self.view(name, |_, dtype, shape, data| f(dtype, shape, data))
    }

    /// Tensor `name` as f32 (from F32, F16 or BF16), row-major.
    ///
    /// # Errors
    /// [`Error::Invalid`] if it is missing or has another dtype.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        self.view(name, |path, dtype, _, data| {
            let out = match dtype {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(Error::Invalid(format!(
                        "{}: tensor {name} has dtype {other:?}; expected F32, F16 or BF16",
                        path.display()
                    )));
                }
            };
            Ok(out)
        })
    }
}

/// Reads `dir/name` as JSON if it exists.
///
/// # Errors
/// [`Error::Io`] or [`Error::Invalid`] naming the file.
pub fn read_json_opt(dir: &Path, name: &str) -> Result<Option<serde_json::Value>> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}
