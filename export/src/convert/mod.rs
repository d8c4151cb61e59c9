//! HF Llama/Mistral folder → GGUF, without Burn: `config.json` → `llama.*` metadata,
//! `tokenizer.json` → `tokenizer.*`, safetensors weights renamed to llama.cpp's names, Q/K
//! rows permuted for llama.cpp's RoPE layout, each tensor quantized per
//! [`crate::quant::choose_type`] and streamed to the [`Writer`]. Follows
//! `convert_hf_to_gguf.py` (`LlamaModel`) of llama.cpp; format per the
//! [GGUF spec](https://github.com/ggml-org/ggml/blob/master/docs/gguf.md).

pub mod hf;
pub mod names;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::time::Instant;

use hf::{Checkpoint, HfConfig};
use names::{Mapped, map_hf_name};

use crate::error::{Error, Result};
use crate::gguf::names::{general, llm};
use crate::gguf::{TensorName, WriteOptions, Writer};
use crate::quant::{FileType, GgmlType, TensorSpec, choose_type};

/// The architecture name written to `general.architecture`.
const ARCH: &str = "llama";
/// `general.quantization_version` (ggml's `GGML_QNT_VERSION`).
const QUANTIZATION_VERSION: u32 = 2;

/// Options for [`hf_to_gguf`].
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Whole-file quantization.
    pub file_type: FileType,
    /// Replace an existing output file.
    pub overwrite: bool,
    /// `general.name` (defaults to the model folder's name).
    pub name: Option<String>,
    /// `tokenizer.ggml.pre` for byte-level BPE tokenizers (llama.cpp's pre-tokenizer name,
    /// e.g. `llama-bpe` for Llama 3); unused for SentencePiece-style vocabularies.
    pub pre_tokenizer: String,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            file_type: FileType::F16,
            overwrite: false,
            name: None,
            pre_tokenizer: "default".into(),
        }
    }
}

/// What [`hf_to_gguf`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConvertReport {
    /// The GGUF file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub file_bytes: u64,
    /// The file type.
    pub file_type: FileType,
    /// Each tensor's GGUF name and chosen type, in file order.
    pub tensors: Vec<(String, GgmlType)>,
    /// Number of tokens in the vocabulary.
    pub n_tokens: usize,
    /// Wall time in seconds.
    pub elapsed_secs: f64,
}

/// One tensor to write: where it comes from and how it is laid out.
struct Planned {
    gguf: String,
    source: Source,
    dims: Vec<u64>,
    ty: GgmlType,
}

enum Source {
    /// An HF tensor, permuted for RoPE with this many heads when `Some`.
    Hf {
        name: String,
        permute_heads: Option<usize>,
    },
    /// Llama-3 RoPE frequency factors, computed.
    RopeFreqs(Vec<f32>),
}

/// Converts the HF model folder `model_dir` to the GGUF file `out`.
///
/// # Errors
/// [`Error::Io`] for unreadable inputs or an unwritable output, [`Error::Exists`] if `out`
/// exists without `overwrite`, [`Error::Invalid`] naming the file and field for unsupported
/// or inconsistent models (unknown tensors, shape mismatches, tokenizer types).
pub fn hf_to_gguf(model_dir: &Path, out: &Path, opts: &ConvertOptions) -> Result<ConvertReport> {
    let started = Instant::now();
    let cfg = HfConfig::read(model_dir)?;
    let ckpt = Checkpoint::open(model_dir)?;
    let tok_json = hf::read_json_opt(model_dir, "tokenizer.json")?
        .ok_or_else(|| Error::Invalid(format!("{}: no tokenizer.json", model_dir.display())))?;
    let tok_config = hf::read_json_opt(model_dir, "tokenizer_config.json")?;
    let tok = tokenizer::build(&tok_json, tok_config.as_ref(), &cfg, &opts.pre_tokenizer)?;
    let plan = plan_tensors(&cfg, &ckpt, opts.file_type)?;

    let mut w = Writer::create(
        out,
        &WriteOptions {
            overwrite: opts.overwrite,
        },
    )?;
    write_metadata(&mut w, &cfg, model_dir, opts, tok.n_tokens)?;
    for (k, v) in tok.entries {
        w.add(&k, v)?;
    }
    for p in &plan {
        w.add_tensor_info(&p.gguf, &p.dims, p.ty)?;
    }
    w.begin_data()?;
    for p in &plan {
        let data = match &p.source {
            Source::Hf {
                name,
                permute_heads,
            } => {
                let mut data = ckpt.read_f32(name)?;
                if let Some(heads) = permute_heads {
                    data = permute_rope_rows(&data, *heads, p.dims[0] as usize);
                }
                data
            }
            Source::RopeFreqs(f) => f.clone(),
        };
        w.write_tensor_f32(&p.gguf, &data)?;
        tracing::debug!(tensor = %p.gguf, ty = %p.ty, "tensor written");
    }
    let report = w.finish()?;
    Ok(ConvertReport {
        path: report.path,
        file_bytes: report.file_bytes,
        file_type: opts.file_type,
        tensors: plan.iter().map(|p| (p.gguf.clone(), p.ty)).collect(),
        n_tokens: tok.n_tokens,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

fn write_metadata(
    w: &mut Writer,
    cfg: &HfConfig,
    model_dir: &Path,
    opts: &ConvertOptions,
    n_tokens: usize,
) -> Result<()> {
    let name = opts.name.clone().unwrap_or_else(|| {
        model_dir
            .file_name()
            .map_or("model".into(), |n| n.to_string_lossy().into_owned())
    });
    let u32_of = |v: usize, what: &str| {
        u32::try_from(v).map_err(|_| Error::Invalid(format!("config.json: {what} {v} exceeds u32")))
    };
    w.add_string(general::ARCHITECTURE, ARCH)?;
    w.add_string(general::NAME, name)?;
    w.add_u32(
        &llm::block_count(ARCH),
        u32_of(cfg.num_hidden_layers, "num_hidden_layers")?,
    )?;
    w.add_u32(
        &llm::context_length(ARCH),
        u32_of(cfg.max_position_embeddings, "max_position_embeddings")?,
    )?;
    w.add_u32(
        &llm::embedding_length(ARCH),
        u32_of(cfg.hidden_size, "hidden_size")?,
    )?;
    w.add_u32(
        &llm::feed_forward_length(ARCH),
        u32_of(cfg.intermediate_size, "intermediate_size")?,
    )?;
    w.add_u32(
        &llm::head_count(ARCH),
        u32_of(cfg.num_attention_heads, "num_attention_heads")?,
    )?;
    w.add_u32(
        &llm::head_count_kv(ARCH),
        u32_of(cfg.n_kv_heads(), "num_key_value_heads")?,
    )?;
    w.add_f32(
        &llm::rope_freq_base(ARCH),
        cfg.rope_theta.unwrap_or(10_000.0) as f32,
    )?;
    w.add_f32(&llm::layer_norm_rms_epsilon(ARCH), cfg.rms_norm_eps as f32)?;
    w.add_u32(general::FILE_TYPE, opts.file_type.id())?;
    w.add_u32(&llm::vocab_size(ARCH), u32_of(n_tokens, "vocab_size")?)?;
    w.add_u32(
        &llm::rope_dimension_count(ARCH),
        u32_of(cfg.head_dim(), "head_dim")?,
    )?;
    w.add_u32(general::QUANTIZATION_VERSION, QUANTIZATION_VERSION)?;
    Ok(())
}

/// Decides every output tensor, its dims and type, before any data is read.
fn plan_tensors(cfg: &HfConfig, ckpt: &Checkpoint, ft: FileType) -> Result<Vec<Planned>> {
    let mut found: Vec<(TensorName, String)> = Vec::new();
    let mut unknown = Vec::new();
    for name in ckpt.names() {
        match map_hf_name(name) {
            Some(Mapped::Tensor(t)) => found.push((t, name.to_string())),
            Some(Mapped::Skip) => {}
            None => unknown.push(name.to_string()),
        }
    }
    if !unknown.is_empty() {
        return Err(Error::Invalid(format!(
            "{} tensor(s) have no llama.cpp name, e.g. {:?}; only dense Llama/Mistral \
             checkpoints are supported",
            unknown.len(),
            &unknown[..unknown.len().min(3)]
        )));
    }
    if cfg.tie_word_embeddings {
        found.retain(|(t, _)| *t != TensorName::Output);
    }
    found.sort_by_key(|(t, _)| order_key(*t));
    let mut plan = Vec::new();
    if let Some(factors) = llama3_rope_factors(cfg)? {
        let dims = vec![factors.len() as u64];
        plan.push(Planned {
            gguf: TensorName::RopeFreqs.gguf_name(),
            dims,
            ty: GgmlType::F32,
            source: Source::RopeFreqs(factors),
        });
    }
    for (t, hf_name) in found {
        let shape = ckpt.shape(&hf_name)?;
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        check_shape(cfg, t, &hf_name, &shape)?;
        let permute_heads = match t {
            TensorName::AttnQ(_) => Some(cfg.num_attention_heads),
            TensorName::AttnK(_) => Some(cfg.n_kv_heads()),
            _ => None,
        };
        let gguf = t.gguf_name();
        let spec = TensorSpec {
            name: &gguf,
            dims: &dims,
            n_layers: cfg.num_hidden_layers,
            tied_embeddings: cfg.tie_word_embeddings,
        };
        let ty = choose_type(&spec, ft);
        plan.push(Planned {
            gguf,
            source: Source::Hf {
                name: hf_name,
                permute_heads,
            },
            dims,
            ty,
        });
    }
    Ok(plan)
}

/// File order: embeddings, then blocks in order, then the final norm and head.
pub(crate) fn order_key(t: TensorName) -> (usize, usize, usize) {
    match t {
        TensorName::RopeFreqs => (0, 0, 0),
        TensorName::TokenEmbd => (1, 0, 0),
        TensorName::AttnNorm(i) => (2, i, 0),
        TensorName::AttnQ(i) => (2, i, 1),
        TensorName::AttnK(i) => (2, i, 2),
        TensorName::AttnV(i) => (2, i, 3),
        TensorName::AttnOutput(i) => (2, i, 4),
        TensorName::FfnNorm(i) => (2, i, 5),
        TensorName::FfnGate(i) => (2, i, 6),
        TensorName::FfnUp(i) => (2, i, 7),
        TensorName::FfnDown(i) => (2, i, 8),
        TensorName::OutputNorm => (3, 0, 0),
        TensorName::Output => (4, 0, 0),
    }
}

/// Checks an HF tensor's shape against `config.json`.
fn check_shape(cfg: &HfConfig, t: TensorName, hf_name: &str, shape: &[usize]) -> Result<()> {
    let (d, ff, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
    let expected: Vec<usize> = match t {
        TensorName::TokenEmbd | TensorName::Output => vec![cfg.vocab_size, d],
        TensorName::AttnNorm(_) | TensorName::FfnNorm(_) | TensorName::OutputNorm => vec![d],
        TensorName::AttnQ(_) => vec![cfg.num_attention_heads * hd, d],
        TensorName::AttnK(_) | TensorName::AttnV(_) => vec![cfg.n_kv_heads() * hd, d],
        TensorName::AttnOutput(_) => vec![d, cfg.num_attention_heads * hd],
        TensorName::FfnGate(_) | TensorName::FfnUp(_) => vec![ff, d],
        TensorName::FfnDown(_) => vec![d, ff],
        TensorName::RopeFreqs => return Ok(()),
    };
    let layer_ok = match t {
        TensorName::AttnNorm(i)
        | TensorName::AttnQ(i)
        | TensorName::AttnK(i)
        | TensorName::AttnV(i)
        | TensorName::AttnOutput(i)
        | TensorName::FfnNorm(i)
        | TensorName::FfnGate(i)
        | TensorName::FfnUp(i)
        | TensorName::FfnDown(i) => i < cfg.num_hidden_layers,
        _ => true,
    };
    if shape != expected.as_slice() || !layer_ok {
        return Err(Error::Invalid(format!(
            "tensor {hf_name}: shape {shape:?} does not match config.json (expected {expected:?} \
             in one of {} layers)",
            cfg.num_hidden_layers
        )));
    }
    Ok(())
}

/// Reorders the rows of a Q or K projection from HF's rotate-half RoPE layout to the
/// interleaved pairs llama.cpp expects (`LlamaModel.permute`): within each head, row
/// `s·half + j` moves to `2j + s`.
pub fn permute_rope_rows(data: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    move_rope_rows(data, n_heads, cols, true)
}

/// Undoes [`permute_rope_rows`]: llama.cpp's interleaved rows back to HF's rotate-half
/// layout (row `2j + s` of each head returns to `s·half + j`).
pub fn unpermute_rope_rows(data: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    move_rope_rows(data, n_heads, cols, false)
}

/// Moves whole rows between HF's rotate-half order (row `s·half + j` of each head) and
/// llama.cpp's interleaved order (row `2j + s`), in the direction `to_interleaved` says.
fn move_rope_rows(data: &[f32], n_heads: usize, cols: usize, to_interleaved: bool) -> Vec<f32> {
    let rows = data.len() / cols;
    let head_dim = rows / n_heads;
    let half = head_dim / 2;
    let mut out = vec![0.0f32; data.len()];
    for h in 0..n_heads {
        for j in 0..half {
            for s in 0..2 {
                let rotate_half = h * head_dim + s * half + j;
                let interleaved = h * head_dim + 2 * j + s;
                let (src, dst) = if to_interleaved {
                    (rotate_half, interleaved)
                } else {
                    (interleaved, rotate_half)
                };
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// Llama-3 `rope_scaling` (`rope_type = "llama3"`) → the per-frequency factors llama.cpp
/// reads from `rope_freqs.weight`; `None` without such scaling.
fn llama3_rope_factors(cfg: &HfConfig) -> Result<Option<Vec<f32>>> {
    let Some(rs) = cfg.rope_scaling.as_ref().filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = rs
        .get("rope_type")
        .or_else(|| rs.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if !kind.eq_ignore_ascii_case("llama3") {
        return Err(Error::Invalid(format!(
            "config.json: rope_scaling type {kind:?} is not supported (only \"llama3\")"
        )));
    }
    let num = |k: &str, default: f64| rs.get(k).and_then(|v| v.as_f64()).unwrap_or(default);
    let factor = num("factor", 8.0);
    let low = num("low_freq_factor", 1.0);
    let high = num("high_freq_factor", 4.0);
    let old_ctx = num("original_max_position_embeddings", 8192.0);
    let base = cfg.rope_theta.unwrap_or(10_000.0);
    let dim = cfg.head_dim();
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    let factors = (0..dim)
        .step_by(2)
        .map(|i| {
            // Computed in f32 like the reference (torch float32 arange and pow).
            let freq = 1.0 / (base as f32).powf(i as f32 / dim as f32);
            let wavelen = 2.0 * std::f64::consts::PI / f64::from(freq);
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect();
    Ok(Some(factors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_interleaves_halves_per_head() {
        // 2 heads of 4 rows, 1 column: rows are their own indices.
        let data: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let out = permute_rope_rows(&data, 2, 1);
        assert_eq!(out, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(unpermute_rope_rows(&out, 2, 1), data);
    }
}
