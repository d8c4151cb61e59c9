//! A PEFT LoRA adapter as a GGUF adapter for llama.cpp's `--lora` (the layout of
//! llama.cpp's `convert_lora_to_gguf.py`): `general.type = adapter`, `adapter.type = lora`,
//! `adapter.lora.alpha`, and per adapted weight `W` the tensors `{W}.lora_a` (ggml dims
//! `[in, r]`, i.e. PEFT's `lora_A` `[r, in]`) and `{W}.lora_b` (dims `[r, out]`).
//!
//! llama.cpp adds `scale · (alpha / r) · B·A` with `r` read from `lora_a`, so rsLoRA is
//! written as `alpha · sqrt(r)`, and a module whose own scaling (from `alpha_pattern` or
//! `rank_pattern`) differs from `alpha / r` gets the ratio folded into its B. The Q and K
//! projections' rows are permuted for llama.cpp's RoPE layout in the base GGUF, and since
//! `W + B·A` must be permuted the same way, B's rows are permuted the same way.
//! ([GGUF spec](https://github.com/ggml-org/ggml/blob/master/docs/gguf.md)).

use std::path::PathBuf;

use crate::convert::hf::{Checkpoint, HfConfig};
use crate::convert::names::{Mapped, map_hf_name};
use crate::convert::{order_key, permute_rope_rows};
use crate::error::{Error, Result};
use crate::gguf::names::{adapter as akeys, general};
use crate::gguf::{TensorName, WriteOptions, Writer};
use crate::merge::Adapter;
use crate::merge::names::ADAPTER_WEIGHTS;
use crate::quant::GgmlType;

/// Options of [`export_lora_gguf`].
#[derive(Debug, Clone)]
pub struct LoraExportOptions {
    /// The base HF model folder the adapter was trained on (checked against, and the
    /// source of the head counts for the Q/K permutation).
    pub model_dir: PathBuf,
    /// The PEFT adapter folder.
    pub adapter_dir: PathBuf,
    /// The `.gguf` to write.
    pub out: PathBuf,
    /// Replace an existing file.
    pub force: bool,
    /// `general.name` (default: the adapter folder's name).
    pub name: Option<String>,
    /// Tensor type: [`GgmlType::F32`] or [`GgmlType::F16`].
    pub ty: GgmlType,
}

/// What [`export_lora_gguf`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoraExportReport {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub file_bytes: u64,
    /// Adapted weights (each gives two tensors).
    pub n_modules: usize,
    /// `adapter.lora.alpha` written.
    pub alpha: f32,
    /// Tensor names in file order.
    pub tensors: Vec<String>,
}

/// Writes the adapter in `opts.adapter_dir` as a llama.cpp LoRA GGUF.
///
/// # Errors
/// [`Error::Exists`] without `force`; the errors of [`Adapter::open`] for an adapter that
/// does not fit the base; [`Error::Invalid`] for an unsupported tensor type, a module with
/// no llama.cpp tensor, or `modules_to_save` tensors (a GGUF adapter cannot replace
/// weights).
pub fn export_lora_gguf(opts: &LoraExportOptions) -> Result<LoraExportReport> {
    if !matches!(opts.ty, GgmlType::F32 | GgmlType::F16) {
        return Err(Error::Invalid(format!(
            "LoRA GGUF tensor type {} is not supported (use F32 or F16)",
            opts.ty
        )));
    }
    if opts.out.exists() && !opts.force {
        return Err(Error::Exists(opts.out.clone()));
    }
    let cfg = HfConfig::read(&opts.model_dir)?;
    let base = Checkpoint::open(&opts.model_dir)?;
    let adapter = Adapter::open(&opts.adapter_dir, &base)?;
    if let Some(name) = adapter.replaced.keys().next() {
        return Err(Error::Adapter {
            path: opts.adapter_dir.join(ADAPTER_WEIGHTS),
            message: format!(
                "tensor {name} replaces a base weight (modules_to_save), which a GGUF LoRA \
                 adapter cannot express; merge the adapter instead (export gguf --adapter)"
            ),
        });
    }
    let r = adapter.config.r as f64;
    let alpha = if adapter.config.use_rslora {
        adapter.config.lora_alpha * r.sqrt()
    } else {
        adapter.config.lora_alpha
    };
    let mut modules: Vec<(TensorName, &crate::merge::LoraModule)> = Vec::new();
    for m in &adapter.modules {
        match map_hf_name(&m.base_weight) {
            Some(Mapped::Tensor(t)) => modules.push((t, m)),
            _ => {
                return Err(Error::Invalid(format!(
                    "adapter module {} has no llama.cpp tensor",
                    m.module
                )));
            }
        }
    }
    modules.sort_by_key(|(t, _)| order_key(*t));

    let mut w = Writer::create(
        &opts.out,
        &WriteOptions {
            overwrite: opts.force,
        },
    )?;
    let name = opts.name.clone().unwrap_or_else(|| {
        opts.adapter_dir
            .file_name()
            .map_or("adapter".into(), |n| n.to_string_lossy().into_owned())
    });
    w.add_string(general::ARCHITECTURE, "llama")?;
    w.add_string(general::TYPE, general::TYPE_ADAPTER)?;
    w.add_string(general::NAME, name)?;
    w.add_string(akeys::TYPE, akeys::TYPE_LORA)?;
    w.add_f32(akeys::LORA_ALPHA, alpha as f32)?;
    let mut names = Vec::new();
    for (t, m) in &modules {
        let base = t.gguf_name();
        let (a, b) = (
            format!("{base}{}", akeys::LORA_A_SUFFIX),
            format!("{base}{}", akeys::LORA_B_SUFFIX),
        );
        w.add_tensor_info(&a, &[m.in_features as u64, m.rank as u64], opts.ty)?;
        w.add_tensor_info(&b, &[m.rank as u64, m.out_features as u64], opts.ty)?;
        names.push(a);
        names.push(b);
    }
    w.begin_data()?;
    for (t, m) in &modules {
        let base = t.gguf_name();
        w.write_tensor_f32(
            &format!("{base}{}", akeys::LORA_A_SUFFIX),
            &adapter.read_a(m)?,
        )?;
        let mut b = adapter.read_b(m)?;
        // llama.cpp's scale is alpha / rank (or 1 when alpha is 0): fold any difference.
        let applied = if alpha == 0.0 {
            1.0
        } else {
            alpha / m.rank as f64
        };
        let fold = (m.scaling / applied) as f32;
        if fold != 1.0 {
            b.iter_mut().for_each(|x| *x *= fold);
        }
        let heads = match t {
            TensorName::AttnQ(_) => Some(cfg.num_attention_heads),
            TensorName::AttnK(_) => Some(cfg.n_kv_heads()),
            _ => None,
        };
        if let Some(h) = heads {
            b = permute_rope_rows(&b, h, m.rank);
        }
        w.write_tensor_f32(&format!("{base}{}", akeys::LORA_B_SUFFIX), &b)?;
    }
    let report = w.finish()?;
    Ok(LoraExportReport {
        path: report.path,
        file_bytes: report.file_bytes,
        n_modules: modules.len(),
        alpha: alpha as f32,
        tensors: names,
    })
}
