//! ctiforge's training stage: LoRA fine-tuning of the `model` crate's Llama and Mistral on
//! `data-prep` datasets (Hu et al., <https://arxiv.org/abs/2106.09685>), with AdamW,
//! warm-up + decay schedules, gradient accumulation, clipping, completion-only loss,
//! validation, atomic checkpoints with bit-exact resume, `metrics.jsonl` and `run.json`.
//!
//! The entry point is [`train`] with a [`TrainConfig`] read by [`TrainConfig::from_file`].

#![warn(missing_docs)]

pub mod config;
pub mod data;
pub mod error;
pub mod full;
pub mod optim;
pub mod trainer;

pub use config::TrainConfig;
pub use error::{Error, Result};
pub use trainer::{RunOptions, RunSummary, StepMetrics, read_metrics, train};
