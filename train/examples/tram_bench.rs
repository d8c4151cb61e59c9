//! Trains the shipped TRAM recipe (`configs/train/tram-lora.toml`) on the bundled tiny Llama
//! (aidreams260K) and prints the validation loss before and after, the step time and the
//! training throughput (issue #4, "Learning for real" and the benchmark), and how much of
//! each step's rows is padding (with `--set batch.packing=true`, sequence packing).
//!
//! ```text
//! cargo run --release -p ctiforge-train --example tram_bench -- [--set key=value ...]
//! ```
//!
//! The TRAM dataset is prepared from the bundled sources into a temporary folder first
//! (without the AnnoCTR source, as in the tests).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ctiforge_data_prep::config::PrepConfig;
use ctiforge_data_prep::dataset::read_split;
use ctiforge_data_prep::{Options, prepare};
use ctiforge_model::{Device, LoadedModel};
use ctiforge_train::data::{Example, collate, collate_packed, load_split};
use ctiforge_train::trainer::step_batch;
use ctiforge_train::{RunOptions, TrainConfig, read_metrics, train};

fn main() -> Result<(), Box<dyn Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir()?;

    let prep_path = root.join("configs/prep/tram-techniques.toml");
    let mut doc: toml::Table = toml::from_str(&std::fs::read_to_string(&prep_path)?)?;
    if let Some(sources) = doc.get_mut("sources").and_then(|s| s.as_array_mut()) {
        sources.retain(|s| s.get("name").and_then(|n| n.as_str()) != Some("annoctr_linked"));
    }
    let prep = PrepConfig::from_toml(&toml::to_string(&doc)?, &prep_path)?;
    let data = tmp.path().join("tram");
    let opts = Options {
        base_dir: root.clone(),
        force: false,
    };
    prepare(&prep, &data, &opts)?;
    let rows = |split: &str| read_split(&data, split).map(|r| r.len());
    println!(
        "TRAM rows: train {}, validation {}",
        rows("train")?,
        rows("validation")?
    );

    let mut sets = vec![
        format!(
            "run.model={:?}",
            root.join("datasets/models/aidreams260K")
                .display()
                .to_string()
        ),
        format!("run.data={:?}", data.display().to_string()),
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.clone().next()) {
            ("--set", Some(v)) => {
                sets.push(v.clone());
                it.next();
            }
            _ => return Err(format!("unexpected argument {a:?}: expected --set key=value").into()),
        }
    }
    let config = TrainConfig::from_file(&root.join("configs/train/tram-lora.toml"), &sets)?;
    let out: PathBuf = tmp.path().join("run");
    let started = Instant::now();
    let summary = train(&config, &out, &RunOptions::default())?;
    let wall = started.elapsed().as_secs_f64();
    let metrics = read_metrics(&out)?;
    let n = metrics.len().max(1) as f64;
    let mean_tps = metrics.iter().map(|m| m.tokens_per_sec).sum::<f64>() / n;
    let evals: Vec<(u64, f64)> = metrics
        .iter()
        .filter_map(|m| m.val_loss.map(|v| (m.step, v)))
        .collect();
    println!(
        "steps {} | batch {} (micro {}) | max_seq_len {} | rank {} | targets {}",
        summary.steps,
        config.batch.batch,
        config.batch.micro_batch,
        config.batch.max_seq_len,
        config.lora.rank,
        config.lora.targets.len()
    );
    println!(
        "val loss {:.4} -> {:.4} (ppl {:.2} -> {:.2}); evals {evals:?}",
        summary.initial_val_loss,
        summary.final_val_loss,
        summary.initial_val_loss.exp(),
        summary.final_val_loss.exp()
    );
    let first = metrics.first().map_or(f64::NAN, |m| m.loss);
    println!(
        "train loss {first:.4} (step 1) -> {:.4} (last)",
        summary.final_loss
    );
    println!(
        "wall {wall:.2} s total ({:.3} s/step incl. load, tokenising, evals), \
         mean {mean_tps:.0} input tokens/s per step, peak RSS {:.1} MiB",
        wall / n,
        summary.peak_rss_bytes.unwrap_or(0) as f64 / (1024.0 * 1024.0)
    );
    let layout = step_layout(&config, metrics.len())?;
    let (real, slots) = layout
        .iter()
        .fold((0, 0), |(r, s), (real, slots)| (r + real, s + slots));
    let step_secs: f64 = layout
        .iter()
        .zip(&metrics)
        .map(|((real, _), m)| *real as f64 / m.tokens_per_sec.max(1e-9))
        .sum();
    println!(
        "packing {}: {slots} row slots for {real} input tokens ({:.1}% padding); \
         mean step {:.3} s, {:.0} input tokens/s (forward/backward/update only)",
        config.batch.packing,
        100.0 * (slots - real) as f64 / slots.max(1) as f64,
        step_secs / n,
        real as f64 / step_secs.max(1e-9)
    );
    Ok(())
}

/// Real input tokens and row slots (`batch * seq`, padding included) of each of the first
/// `steps` optimizer steps, from the same example order and collation as the trainer.
fn step_layout(config: &TrainConfig, steps: usize) -> Result<Vec<(usize, usize)>, Box<dyn Error>> {
    let loaded = LoadedModel::resolve(&config.run.model, &Device::flex())?;
    let b = &config.batch;
    let examples = load_split(
        &config.run.data,
        "train",
        loaded.tokenizer()?,
        b.max_seq_len,
        config.run.completion_only,
    )?;
    let mut out = Vec::with_capacity(steps);
    for step in 0..steps {
        let batch: Vec<&Example> =
            step_batch(examples.len(), config.run.seed, b.batch, step as u64)
                .into_iter()
                .map(|i| &examples[i])
                .collect();
        let (mut real, mut slots) = (0, 0);
        for chunk in batch.chunks(b.micro_batch) {
            let mb = if b.packing {
                collate_packed(chunk, b.max_seq_len, 0, None)
            } else {
                collate(chunk, 0, None)
            };
            real += mb.input_tokens;
            slots += mb.forward.batch * mb.forward.seq;
        }
        out.push((real, slots));
    }
    Ok(out)
}
