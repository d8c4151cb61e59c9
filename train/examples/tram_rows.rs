//! Writes the token ids a training recipe trains on, batch by batch in the trainer's order,
//! as JSON lines, so that `ci/reference_lora_bench.py` can time Hugging Face PEFT on exactly
//! the same micro-batches (`cargo xtask bench-train` runs both).
//!
//! ```text
//! cargo run -p ctiforge-train --example tram_rows -- OUT.jsonl [--steps 40]
//!     [--model DIR] [--data DATASET] [--set key=value ...]
//! ```
//!
//! The recipe is `configs/train/tram-lora.toml` with the `--set` overrides; the model
//! defaults to the bundled aidreams260K (its tokenizer decides the ids). Without `--data`,
//! the TRAM technique dataset is prepared from the bundled sources into a temporary folder
//! first (without the AnnoCTR source, as in `tram_bench`). The line format is
//! `ctiforge_train::trainer::write_step_rows`'s.

use std::error::Error;
use std::path::{Path, PathBuf};

use ctiforge_data_prep::config::PrepConfig;
use ctiforge_data_prep::{Options, prepare};
use ctiforge_model::{Device, LoadedModel};
use ctiforge_train::TrainConfig;
use ctiforge_train::data::load_split;
use ctiforge_train::trainer::write_step_rows;

struct Args {
    out: PathBuf,
    steps: u64,
    model: Option<PathBuf>,
    data: Option<PathBuf>,
    sets: Vec<String>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir()?;
    let data = match &args.data {
        Some(d) => d.clone(),
        None => {
            let d = tmp.path().join("tram");
            prepare_tram(&root, &d)?;
            d
        }
    };
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| root.join("datasets/models/aidreams260K"));

    let config = TrainConfig::from_file(&root.join("configs/train/tram-lora.toml"), &args.sets)?;
    let loaded = LoadedModel::load(&model, &Device::flex())?;
    let examples = load_split(
        &data,
        "train",
        loaded.tokenizer()?,
        config.batch.max_seq_len,
        config.run.completion_only,
    )?;
    write_step_rows(
        &args.out,
        &examples,
        config.run.seed,
        &config.batch,
        args.steps,
    )?;
    eprintln!(
        "wrote {} steps of {} rows (micro-batches of {}) from {} training examples to {}",
        args.steps,
        config.batch.batch,
        config.batch.micro_batch,
        examples.len(),
        args.out.display()
    );
    Ok(())
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut out = None;
    let mut parsed = Args {
        out: PathBuf::new(),
        steps: 40,
        model: None,
        data: None,
        sets: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match a.as_str() {
            "--steps" => parsed.steps = value("--steps")?.parse()?,
            "--model" => parsed.model = Some(PathBuf::from(value("--model")?)),
            "--data" => parsed.data = Some(PathBuf::from(value("--data")?)),
            "--set" => parsed.sets.push(value("--set")?),
            _ if out.is_none() && !a.starts_with("--") => out = Some(PathBuf::from(a)),
            _ => {
                return Err(format!(
                    "unexpected argument {a:?}: expected OUT.jsonl [--steps N] [--model DIR] \
                     [--data DATASET] [--set key=value]"
                )
                .into());
            }
        }
    }
    parsed.out = out.ok_or("missing OUT.jsonl")?;
    Ok(parsed)
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
