//! `ctiforge train`: LoRA fine-tuning from a recipe (`configs/train/`), writing the run
//! folder (PEFT adapter, checkpoints, `metrics.jsonl`, `run.json`); `--resume` continues a
//! killed run from its newest checkpoint with the same losses.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use ctiforge_train::{RunOptions, TrainConfig, train};

/// Arguments of `ctiforge train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The recipe (see configs/train/).
    #[arg(long)]
    config: PathBuf,
    /// The base model (overrides `run.model`): a folder or org/name in the hub cache.
    #[arg(long)]
    model: Option<String>,
    /// The dataset folder written by `ctiforge prep` (overrides `run.data`).
    #[arg(long)]
    data: Option<String>,
    /// Stop after this many optimizer steps (overrides `run.max_steps`).
    #[arg(long)]
    max_steps: Option<u64>,
    /// The run folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Continue from the newest checkpoint in `--out`.
    #[arg(long)]
    resume: bool,
    /// Override a recipe key, e.g. `--set optim.lr=1e-3` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Print the run summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `ctiforge train`.
pub fn run(a: &TrainArgs) -> Result<()> {
    let mut sets = a.overrides.clone();
    // Flags win over --set, which wins over the file; TOML strings are quoted as JSON.
    if let Some(m) = &a.model {
        sets.push(format!("run.model={}", serde_json::to_string(m)?));
    }
    if let Some(d) = &a.data {
        sets.push(format!("run.data={}", serde_json::to_string(d)?));
    }
    if let Some(n) = a.max_steps {
        sets.push(format!("run.max_steps={n}"));
    }
    let cfg = TrainConfig::from_file(&a.config, &sets)
        .with_context(|| format!("recipe {}", a.config.display()))?;
    // A progress bar with the loss and ETA when a person watches; log lines otherwise.
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} step {pos}/{len}  {msg}  ETA {eta}")
        {
            bar.set_style(style);
        }
        bar
    });
    let progress: Option<ctiforge_train::trainer::ProgressFn> = bar.clone().map(|bar| {
        std::sync::Arc::new(move |m: &ctiforge_train::StepMetrics, total: u64| {
            bar.set_length(total);
            bar.set_position(m.step);
            let val = m
                .val_loss
                .map(|v| format!("  val {v:.4}"))
                .unwrap_or_default();
            bar.set_message(format!(
                "loss {:.4}{val}  {:.0} tok/s",
                m.loss, m.tokens_per_sec
            ));
        }) as ctiforge_train::trainer::ProgressFn
    });
    let opts = RunOptions {
        resume: a.resume,
        halt_after: None,
        progress,
    };
    let summary =
        train(&cfg, &a.out, &opts).with_context(|| format!("training into {}", a.out.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        eprintln!(
            "{} steps in {:.1}s: validation loss {:.4} -> {:.4}, last training loss {:.4}",
            summary.steps,
            summary.duration_secs,
            summary.initial_val_loss,
            summary.final_val_loss,
            summary.final_loss
        );
        println!("{}", a.out.display());
    }
    Ok(())
}
