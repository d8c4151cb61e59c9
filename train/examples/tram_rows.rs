//! Writes the token ids the TRAM recipe (`configs/train/tram-lora.toml`) trains on, batch by
//! batch in the trainer's order, as JSON lines, so that `ci/reference_lora_bench.py` can
//! time Hugging Face PEFT on exactly the same micro-batches.
//!
//! ```text
//! cargo run -p ctiforge-train --example tram_rows -- OUT.jsonl [--steps 40]
//! ```
//!
//! One line per example: `{"step": s, "micro_batch": k, "tokens": [...], "loss_from": i}`,
//! where `step` is the 0-based optimizer step, `micro_batch` its micro-batch and
//! `loss_from` the index of the first token that carries loss (as `train::data::Example`).
//! The dataset is prepared from the bundled sources into a temporary folder first (without
//! the AnnoCTR source, as in `tram_bench`).

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

use ctiforge_data_prep::config::PrepConfig;
use ctiforge_data_prep::{Options, prepare};
use ctiforge_model::{Device, LoadedModel};
use ctiforge_train::TrainConfig;
use ctiforge_train::data::load_split;
use ctiforge_train::trainer::epoch_order;

fn main() -> Result<(), Box<dyn Error>> {
    let (out, steps) = parse_args()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("tram");
    prepare_tram(&root, &data)?;

    let config = TrainConfig::from_file(&root.join("configs/train/tram-lora.toml"), &[])?;
    let loaded = LoadedModel::load(&root.join("datasets/models/aidreams260K"), &Device::flex())?;
    let examples = load_split(
        &data,
        "train",
        loaded.tokenizer()?,
        config.batch.max_seq_len,
        config.run.completion_only,
    )?;
    let (batch, micro) = (config.batch.batch, config.batch.micro_batch);
    let steps_per_epoch = examples.len().div_ceil(batch) as u64;

    let mut file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    for step in 0..steps {
        // The same slice of the same epoch permutation as `train`.
        let order = epoch_order(examples.len(), config.run.seed, step / steps_per_epoch);
        let first = ((step % steps_per_epoch) as usize) * batch;
        let rows = &order[first..(first + batch).min(order.len())];
        for (k, chunk) in rows.chunks(micro).enumerate() {
            for &i in chunk {
                let e = &examples[i];
                let line = serde_json::json!({
                    "step": step,
                    "micro_batch": k,
                    "tokens": e.tokens,
                    "loss_from": e.loss_from,
                });
                writeln!(file, "{line}")?;
            }
        }
    }
    file.flush()?;
    eprintln!(
        "wrote {steps} steps of {batch} rows (micro-batches of {micro}) from {} training \
         examples to {}",
        examples.len(),
        out.display()
    );
    Ok(())
}

/// `OUT.jsonl [--steps N]`.
fn parse_args() -> Result<(PathBuf, u64), Box<dyn Error>> {
    let mut out = None;
    let mut steps = 40;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--steps" => {
                steps = args.next().ok_or("--steps needs a number")?.parse()?;
            }
            _ if out.is_none() && !a.starts_with("--") => out = Some(PathBuf::from(a)),
            _ => {
                return Err(
                    format!("unexpected argument {a:?}: expected OUT.jsonl [--steps N]").into(),
                );
            }
        }
    }
    Ok((out.ok_or("missing OUT.jsonl")?, steps))
}

/// Prepares the bundled TRAM technique data (without AnnoCTR) into `data`.
fn prepare_tram(root: &Path, data: &Path) -> Result<(), Box<dyn Error>> {
    let prep_path = root.join("configs/prep/tram-techniques.toml");
    let mut doc: toml::Table = toml::from_str(&std::fs::read_to_string(&prep_path)?)?;
    if let Some(sources) = doc.get_mut("sources").and_then(|s| s.as_array_mut()) {
        sources.retain(|s| s.get("name").and_then(|n| n.as_str()) != Some("annoctr_linked"));
    }
    let prep = PrepConfig::from_toml(&toml::to_string(&doc)?, &prep_path)?;
    let opts = Options {
        base_dir: root.to_path_buf(),
        force: false,
    };
    prepare(&prep, data, &opts)?;
    Ok(())
}
