//! Trains the shipped TRAM recipe (`configs/train/tram-lora.toml`) on the bundled tiny Llama
//! (aidreams260K) and prints the validation loss before and after, the step time and the
//! training throughput (issue #4, "Learning for real" and the benchmark).
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
    Ok(())
}
