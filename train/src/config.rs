//! The training recipe: a TOML file (`configs/train/*.toml`) deserialised with unknown keys
//! rejected, `--set section.key=value` overrides applied to the TOML before parsing, and
//! validation that lists every problem at once.

use std::path::{Path, PathBuf};

use ctiforge_model::lora::LoraConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Model, data, device, seed and length of the run.
    pub run: RunConfig,
    /// The adapters (`run.mode = "lora"`; PEFT's defaults when the section is omitted).
    #[serde(default)]
    pub lora: LoraConfig,
    /// AdamW.
    #[serde(default)]
    pub optim: OptimConfig,
    /// Learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Batching and sequence length.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Validation.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Checkpoints.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
}

/// `[run]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Base model folder (or `org/name` in the hub cache).
    pub model: String,
    /// Dataset folder written by `ctiforge prep`.
    pub data: PathBuf,
    /// Device string (`cpu`, `cuda:0`, ...).
    #[serde(default = "default_device")]
    pub device: String,
    /// Seeds adapter init, shuffling and dropout.
    #[serde(default)]
    pub seed: u64,
    /// Passes over the training split.
    #[serde(default = "one")]
    pub epochs: u64,
    /// Stop after this many optimizer steps (overrides `epochs` when smaller).
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Loss on completion tokens only (prompt masked); false trains on every token.
    #[serde(default = "yes")]
    pub completion_only: bool,
    /// `lora` (adapters on a frozen base) or `full` (every weight; continued
    /// pre-training on raw text uses this with a `text` dataset).
    #[serde(default)]
    pub mode: TrainMode,
}

/// What a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainMode {
    /// LoRA adapters; the base weights stay frozen. The run folder holds a PEFT adapter.
    #[default]
    Lora,
    /// Every weight. The run folder holds a complete Hugging Face model folder.
    Full,
}

/// `[optim]`: AdamW as `torch.optim.AdamW`, with its defaults spelled out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// `(beta1, beta2)`.
    pub betas: [f64; 2],
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay (not applied to norms and biases).
    pub weight_decay: f64,
    /// Global-norm gradient clipping; `None` disables it.
    pub max_grad_norm: Option<f64>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 2e-4,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.01,
            max_grad_norm: Some(1.0),
        }
    }
}

/// Shape of the decay after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// Half a cosine down to zero.
    Cosine,
    /// Straight line down to zero.
    Linear,
    /// Constant after warm-up.
    Constant,
}

/// `[schedule]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Steps of linear warm-up from 0.
    pub warmup_steps: u64,
    /// Decay after warm-up.
    pub decay: Decay,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            warmup_steps: 0,
            decay: Decay::Cosine,
        }
    }
}

/// `[batch]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Examples per optimizer step.
    pub batch: usize,
    /// Examples per forward/backward (gradient accumulation unit); divides `batch`.
    pub micro_batch: usize,
    /// Longest example in tokens; longer ones are truncated.
    pub max_seq_len: usize,
    /// Pack each micro-batch's examples into rows of up to `max_seq_len` tokens (first-fit
    /// decreasing), with attention kept inside each example and positions restarting, so
    /// less of the batch is padding. The examples per step and the loss are the same as
    /// without packing; validation is never packed.
    pub packing: bool,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            batch: 8,
            micro_batch: 8,
            max_seq_len: 256,
            packing: false,
        }
    }
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Validation every this many steps (and at the end); 0 only at the end.
    pub every_steps: u64,
    /// Use at most this many validation examples (0 = all).
    pub max_examples: usize,
    /// Stop early after this many validations in a row without a new best validation loss
    /// (0: never stop early).
    pub patience: u64,
    /// Write the adapter of the best validation loss as the run's adapter (and keep it in
    /// `best/`), instead of the last step's.
    pub keep_best: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            every_steps: 50,
            max_examples: 0,
            patience: 0,
            keep_best: false,
        }
    }
}

/// `[checkpoint]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// A checkpoint every this many steps (and at the end); 0 only at the end.
    pub every_steps: u64,
    /// Checkpoints kept (the newest).
    pub keep_last: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            every_steps: 100,
            keep_last: 2,
        }
    }
}

fn default_device() -> String {
    "cpu".to_owned()
}
fn one() -> u64 {
    1
}
fn yes() -> bool {
    true
}

impl TrainConfig {
    /// Parses TOML text after applying `key=value` overrides (`optim.lr=1e-3`); values are
    /// TOML when they parse (`16`, `true`, `["q_proj"]`), else strings.
    ///
    /// # Errors
    /// [`Error::Config`] for TOML syntax, unknown keys, wrong types, malformed overrides or
    /// invalid values.
    pub fn from_toml(text: &str, origin: &Path, overrides: &[String]) -> Result<Self> {
        let bad = |p: String| Error::Config {
            path: origin.to_path_buf(),
            problems: vec![p],
        };
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        for o in overrides {
            apply_override(&mut doc, o).map_err(bad)?;
        }
        let config: TrainConfig = doc.try_into().map_err(|e| bad(e.to_string()))?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads and parses a recipe file.
    ///
    /// # Errors
    /// The file cannot be read, or as [`TrainConfig::from_toml`].
    pub fn from_file(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, path, overrides)
    }

    /// Checks value ranges, listing every problem.
    ///
    /// # Errors
    /// [`Error::Config`] naming each bad key.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let mut p = Vec::new();
        let o = &self.optim;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            p.push(format!("optim.lr must be > 0, got {}", o.lr));
        }
        if o.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            p.push(format!("optim.betas must be in [0, 1), got {:?}", o.betas));
        }
        if !(o.eps.is_finite() && o.eps > 0.0) {
            p.push(format!("optim.eps must be > 0, got {}", o.eps));
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            p.push(format!(
                "optim.weight_decay must be >= 0, got {}",
                o.weight_decay
            ));
        }
        if o.max_grad_norm.is_some_and(|n| !(n.is_finite() && n > 0.0)) {
            p.push("optim.max_grad_norm must be > 0 (omit it to disable clipping)".to_owned());
        }
        let b = &self.batch;
        if b.micro_batch == 0 || b.batch == 0 || !b.batch.is_multiple_of(b.micro_batch) {
            p.push(format!(
                "batch.batch ({}) must be a positive multiple of batch.micro_batch ({})",
                b.batch, b.micro_batch
            ));
        }
        if b.max_seq_len < 2 {
            p.push("batch.max_seq_len must be at least 2".to_owned());
        }
        if self.run.epochs == 0 {
            p.push("run.epochs must be at least 1".to_owned());
        }
        if self.run.max_steps == Some(0) {
            p.push("run.max_steps must be at least 1".to_owned());
        }
        if self.checkpoint.keep_last == 0 {
            p.push("checkpoint.keep_last must be at least 1".to_owned());
        }
        if let Err(e) = self.lora.validate(usize::MAX) {
            p.push(e.to_string());
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(Error::Config {
                path: origin.to_path_buf(),
                problems: p,
            })
        }
    }
}

/// Sets `section.key = value` in a TOML document.
fn apply_override(doc: &mut toml::Table, text: &str) -> std::result::Result<(), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("--set {text:?}: expected section.key=value"))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("--set {text:?}: empty key part"));
    }
    let value = value.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let (last, path) = parts
        .split_last()
        .ok_or_else(|| format!("--set {text:?}: no key"))?;
    let mut table = doc;
    for part in path {
        table = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("--set {text:?}: {part} is not a table"))?;
    }
    table.insert((*last).to_owned(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[run]\nmodel = \"m\"\ndata = \"d\"\n[lora]\nrank = 4\nalpha = 8.0\n";

    #[test]
    fn overrides_apply_and_unknown_keys_are_rejected() {
        let c = TrainConfig::from_toml(
            MINIMAL,
            Path::new("x.toml"),
            &["optim.lr=0.001".into(), "lora.targets=[\"k_proj\"]".into()],
        )
        .expect("valid");
        assert_eq!(c.optim.lr, 1e-3);
        assert_eq!(c.optim.betas, [0.9, 0.999]);
        assert_eq!(c.lora.targets[0].as_str(), "k_proj");
        let err = TrainConfig::from_toml(MINIMAL, Path::new("x.toml"), &["optim.lrr=1".into()])
            .expect_err("unknown key");
        assert!(err.to_string().contains("lrr"), "{err}");
    }

    #[test]
    fn validation_lists_every_problem() {
        let err = TrainConfig::from_toml(
            MINIMAL,
            Path::new("x.toml"),
            &["batch.micro_batch=3".into(), "optim.lr=-1".into()],
        )
        .expect_err("invalid");
        let msg = err.to_string();
        assert!(
            msg.contains("optim.lr") && msg.contains("micro_batch"),
            "{msg}"
        );
    }
}
