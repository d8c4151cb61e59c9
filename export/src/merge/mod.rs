//! LoRA merge without Burn: `W' = W + scaling · B · A` for every adapted module of a PEFT
//! adapter, computed in f32 and written, with the base's config and tokenizer files, as a
//! new HF model folder (built under a temporary name and renamed into place). DESIGN.md
//! gives the merge to `export`; the math is PEFT's `merge_and_unload`
//! ([PEFT LoRA](https://huggingface.co/docs/peft/package_reference/lora)).

pub mod adapter;
pub mod names;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use safetensors::Dtype;

pub use adapter::{Adapter, AdapterConfig, LoraModule};

use crate::convert::hf::Checkpoint;
use crate::error::{Error, Result};
use crate::safetensors_out::{PlannedTensor, SafetensorsWriter};

/// Files of a model folder copied unchanged into the merged folder, when present.
pub const SIDE_FILES: [&str; 7] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
];

/// The merged folder's weights file.
pub const MERGED_WEIGHTS: &str = "model.safetensors";

/// Storage dtype of merged tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum MergeDtype {
    /// Each merged tensor keeps its base tensor's dtype (as PEFT's `merge_and_unload`).
    #[default]
    Base,
    /// Merged tensors are stored as F32 (no rounding of the update).
    F32,
}

/// Options of [`merge_adapter`].
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    /// Replace an existing output folder.
    pub force: bool,
    /// Storage dtype of the merged tensors.
    pub dtype: MergeDtype,
}

/// What [`merge_adapter`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergeReport {
    /// The merged folder.
    pub out_dir: PathBuf,
    /// Number of merged modules.
    pub merged_modules: usize,
    /// Base tensors replaced wholesale (`modules_to_save`).
    pub replaced_tensors: usize,
    /// Tensors copied unchanged.
    pub copied_tensors: usize,
    /// Default rank of the adapter.
    pub rank: usize,
    /// Default alpha.
    pub alpha: f64,
    /// Whether rsLoRA scaling was used.
    pub rslora: bool,
    /// Largest absolute change of any merged weight.
    pub max_abs_delta: f32,
    /// Wall time in seconds.
    pub elapsed_secs: f64,
}

/// Merges the PEFT adapter in `adapter_dir` into the HF model in `base_dir`, writing a new
/// HF folder `out_dir` (config and tokenizer files copied, one `model.safetensors`).
///
/// # Errors
/// [`Error::Exists`] if `out_dir` exists without `force`; the errors of [`Adapter::open`]
/// for a malformed adapter or one that does not fit the base; [`Error::Io`] for unreadable
/// inputs or an unwritable output.
pub fn merge_adapter(
    base_dir: &Path,
    adapter_dir: &Path,
    out_dir: &Path,
    opts: &MergeOptions,
) -> Result<MergeReport> {
    let started = Instant::now();
    if out_dir.exists() && !opts.force {
        return Err(Error::Exists(out_dir.to_path_buf()));
    }
    let base = Checkpoint::open(base_dir)?;
    let adapter = Adapter::open(adapter_dir, &base)?;
    let staging = Staging::new(out_dir)?;
    copy_side_files(base_dir, staging.path())?;
    let stats = write_merged(&base, &adapter, &staging.path().join(MERGED_WEIGHTS), opts)?;
    staging.commit(opts.force)?;
    let report = MergeReport {
        out_dir: out_dir.to_path_buf(),
        merged_modules: adapter.modules.len(),
        replaced_tensors: adapter.replaced.len(),
        copied_tensors: stats.copied,
        rank: adapter.config.r,
        alpha: adapter.config.lora_alpha,
        rslora: adapter.config.use_rslora,
        max_abs_delta: stats.max_abs_delta,
        elapsed_secs: started.elapsed().as_secs_f64(),
    };
    tracing::info!(out = %out_dir.display(), modules = report.merged_modules,
        secs = format!("{:.2}", report.elapsed_secs), "merged LoRA adapter");
    Ok(report)
}

/// `w += scaling · b · a` for a `[out, in]` weight, `[out, r]` B and `[r, in]` A, in f32,
/// parallel over rows. Returns the largest absolute change.
pub fn apply_lora(w: &mut [f32], a: &[f32], b: &[f32], m: &LoraModule) -> f32 {
    let (n_in, r) = (m.in_features, m.rank);
    let scaling = m.scaling as f32;
    w.par_chunks_mut(n_in)
        .zip(b.par_chunks(r))
        .map(|(row, b_row)| {
            let mut delta = vec![0.0f32; n_in];
            for (k, &bk) in b_row.iter().enumerate() {
                let a_row = &a[k * n_in..(k + 1) * n_in];
                for (d, &av) in delta.iter_mut().zip(a_row) {
                    *d += bk * av;
                }
            }
            let mut max = 0.0f32;
            for (x, d) in row.iter_mut().zip(&delta) {
                let before = *x;
                *x += scaling * d;
                max = max.max((*x - before).abs());
            }
            max
        })
        .reduce(|| 0.0, f32::max)
}

struct Stats {
    copied: usize,
    max_abs_delta: f32,
}

fn write_merged(
    base: &Checkpoint,
    adapter: &Adapter,
    path: &Path,
    opts: &MergeOptions,
) -> Result<Stats> {
    let merged: BTreeMap<&str, &LoraModule> = adapter
        .modules
        .iter()
        .map(|m| (m.base_weight.as_str(), m))
        .collect();
    let replaced: BTreeMap<&str, &str> = adapter
        .replaced
        .iter()
        .map(|(a, b)| (b.as_str(), a.as_str()))
        .collect();
    let mut plan = Vec::new();
    for name in base.names() {
        let dtype = base.dtype(name)?;
        let dtype = match (merged.contains_key(name), opts.dtype) {
            (true, MergeDtype::F32) => Dtype::F32,
            _ => dtype,
        };
        plan.push(PlannedTensor {
            name: name.to_string(),
            dtype,
            shape: base.shape(name)?,
        });
    }
    let mut w = SafetensorsWriter::create(path, plan.clone())?;
    let mut stats = Stats {
        copied: 0,
        max_abs_delta: 0.0,
    };
    for t in &plan {
        if let Some(m) = merged.get(t.name.as_str()) {
            let mut weight = base.read_f32(&t.name)?;
            let (a, b) = (adapter.read_a(m)?, adapter.read_b(m)?);
            let d = apply_lora(&mut weight, &a, &b, m);
            stats.max_abs_delta = stats.max_abs_delta.max(d);
            w.write_f32(&t.name, &weight)?;
        } else if let Some(src) = replaced.get(t.name.as_str()) {
            let values = adapter.weights.read_f32(src)?;
            w.write_f32(&t.name, &values)?;
        } else {
            base.with_raw(&t.name, |_, _, bytes| w.write_bytes(&t.name, bytes))?;
            stats.copied += 1;
        }
    }
    w.finish()?;
    Ok(stats)
}

/// Copies the config and tokenizer files of `from` into `to`.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn copy_side_files(from: &Path, to: &Path) -> Result<()> {
    for name in SIDE_FILES {
        let src = from.join(name);
        if src.is_file() {
            let dst = to.join(name);
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, e))?;
        }
    }
    Ok(())
}

/// A folder built under a temporary name beside its final path.
pub(crate) struct Staging {
    dir: Option<tempfile::TempDir>,
    target: PathBuf,
}

impl Staging {
    pub(crate) fn new(target: &Path) -> Result<Self> {
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let dir = tempfile::Builder::new()
            .prefix(".ctiforge-staging-")
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        Ok(Self {
            dir: Some(dir),
            target: target.to_path_buf(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("."), |d| d.path())
    }

    /// Renames the staging folder to the target, replacing it when `force`.
    pub(crate) fn commit(mut self, force: bool) -> Result<()> {
        let Some(dir) = self.dir.take() else {
            return Ok(());
        };
        if self.target.exists() {
            if !force {
                return Err(Error::Exists(self.target.clone()));
            }
            std::fs::remove_dir_all(&self.target).map_err(|e| Error::io(&self.target, e))?;
        }
        let kept = dir.keep();
        std::fs::rename(&kept, &self.target).map_err(|e| {
            let _ = std::fs::remove_dir_all(&kept);
            Error::io(&self.target, e)
        })
    }
}
