//! `cargo xtask bench-train [--quick]`: LoRA training throughput and peak memory of
//! `ctiforge train` and of Hugging Face PEFT + PyTorch (`ci/reference_lora_bench.py`) on
//! the same CPU, model, recipe and micro-batches.
//!
//! Both sides train `configs/train/tram-lora.toml` (rank 8 on all seven projections, batch
//! 16 in micro-batches of 8, sequences up to 256 tokens, dropout 0.05, AdamW, clipping) on
//! the TRAM technique dataset, prepared once with `ctiforge prep`. The `tram_rows` example
//! writes the token ids of every step in the trainer's order; PEFT trains on exactly those.
//! Throughput is the mean over steps of input tokens (padding excluded) per second of step
//! time (forward, backward, optimizer update), which is what `metrics.jsonl`'s
//! `tokens_per_sec` and the reference script both report; peak memory is each process's
//! peak resident set (`run.json`'s `peak_rss_bytes`, `ru_maxrss` in Python).
//!
//! Models: the bundled aidreams260K and the ~100M-parameter random Llama of `cargo xtask
//! bench`. The table is printed and written between the `<!-- bench-train:start -->` and
//! `<!-- bench-train:end -->` markers of `docs/benchmarks.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::ci::reference_python;
use crate::step::{
    Timings, capture, cargo, last_json, machine, median, replace_between, target_dir, today,
    workspace_root,
};

const START: &str = "<!-- bench-train:start -->";
const END: &str = "<!-- bench-train:end -->";

/// One benchmarked model and how many optimizer steps each side trains.
struct Case {
    name: &'static str,
    model: PathBuf,
    steps: u64,
}

/// What one side measured.
#[derive(Debug, Clone, Copy)]
struct Measured {
    tokens_per_sec: f64,
    median_step_secs: f64,
    peak_rss_bytes: f64,
    first_loss: f64,
    last_loss: f64,
}

/// Runs the benchmark and updates `docs/benchmarks.md`.
///
/// # Errors
/// Fails if the data or a model cannot be made, a side fails, or the doc cannot be written.
pub fn run(quick: bool) -> Result<()> {
    let mut t = Timings::default();
    let root = workspace_root();
    let python = t.step(
        "reference env",
        "bash ci/setup-reference.sh",
        reference_python,
    )?;
    let big = crate::bench::llama_100m(&mut t)?;
    let mut build = cargo();
    build.args([
        "build",
        "--quiet",
        "--workspace",
        "--bins",
        "--example",
        "tram_rows",
    ]);
    t.command(
        "build",
        &mut build,
        "ctiforge and the tram_rows example must build before they can be measured",
    )?;
    let bin = target_dir().join("debug");
    let dir = target_dir().join("bench-train");
    let data = dir.join("tram-techniques");
    if !data.join("manifest.json").is_file() {
        let mut prep = Command::new(bin.join("ctiforge"));
        prep.current_dir(&root)
            .args([
                "prep",
                "--config",
                "configs/prep/tram-techniques.toml",
                "--force",
            ])
            .arg("--out")
            .arg(&data);
        t.command("prep", &mut prep, "the TRAM dataset must prepare")?;
    }

    let scale = if quick { 4 } else { 1 };
    let cases = [
        Case {
            name: "aidreams260K (0.26M, bundled)",
            model: root.join("datasets/models/aidreams260K"),
            steps: 40 / scale,
        },
        Case {
            name: "random Llama ~100M",
            model: big,
            steps: 8 / scale,
        },
    ];
    let mut rows = Vec::new();
    for case in &cases {
        let slug = case
            .model
            .file_name()
            .map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned());
        let step_rows = dir.join(format!("rows-{slug}-{}.jsonl", case.steps));
        let mut write_rows = Command::new(bin.join("examples/tram_rows"));
        write_rows
            .arg(&step_rows)
            .args(["--steps", &case.steps.to_string()])
            .arg("--model")
            .arg(&case.model)
            .arg("--data")
            .arg(&data);
        t.command(
            &format!("rows {}", case.name),
            &mut write_rows,
            "tram_rows writes the trainer's batches",
        )?;
        let run_dir = dir.join(format!("run-{slug}"));
        let ours = t.step(&format!("ctiforge {}", case.name), "ctiforge train", || {
            ctiforge(&bin.join("ctiforge"), case, &data, &run_dir)
        })?;
        let theirs = t.step(
            &format!("peft {}", case.name),
            "ci/reference_lora_bench.py",
            || peft(&python, case, &step_rows),
        )?;
        rows.push((case, ours, theirs));
    }
    let table = render(&rows);
    println!("{table}");
    let command = if quick {
        "cargo xtask bench-train --quick"
    } else {
        "cargo xtask bench-train"
    };
    let body = format!(
        "Measured {} with `{command}`.\nMachine: {}.\n\n{table}",
        today(),
        machine()
    );
    replace_between(&root.join("docs/benchmarks.md"), START, END, &body)?;
    eprintln!("\nbench-train done: {}", t.summary());
    Ok(())
}

/// Trains with `ctiforge train` and reads its metrics and summary.
fn ctiforge(bin: &Path, case: &Case, data: &Path, run_dir: &Path) -> Result<Measured> {
    if run_dir.exists() {
        std::fs::remove_dir_all(run_dir)
            .with_context(|| format!("removing {}", run_dir.display()))?;
    }
    let mut cmd = Command::new(bin);
    cmd.current_dir(workspace_root())
        .args(["train", "--config", "configs/train/tram-lora.toml"])
        .arg("--model")
        .arg(&case.model)
        .arg("--data")
        .arg(data)
        .args(["--max-steps", &case.steps.to_string()])
        // Validation only before and after, on a few rows; no intermediate checkpoints.
        .args([
            "--set",
            "eval.every_steps=0",
            "--set",
            "eval.max_examples=16",
        ])
        .args(["--set", "checkpoint.every_steps=0"])
        .arg("--out")
        .arg(run_dir);
    capture(&mut cmd)?;
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .with_context(|| format!("reading {}/metrics.jsonl", run_dir.display()))?;
    let steps: Vec<Value> = metrics
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("parsing metrics.jsonl")?;
    if steps.is_empty() {
        bail!("{} has no steps", run_dir.display());
    }
    let field = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_f64)
            .with_context(|| format!("metrics.jsonl: no {key}"))
    };
    let mut rates = Vec::new();
    let mut secs = Vec::new();
    for s in &steps {
        let rate = field(s, "tokens_per_sec")?;
        rates.push(rate);
        // Runs from before `step_secs` existed: derive nothing, report NaN.
        secs.push(field(s, "step_secs").unwrap_or(f64::NAN));
    }
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("run.json"))
            .with_context(|| format!("reading {}/run.json", run_dir.display()))?,
    )
    .context("parsing run.json")?;
    Ok(Measured {
        tokens_per_sec: rates.iter().sum::<f64>() / rates.len() as f64,
        median_step_secs: median(&secs),
        peak_rss_bytes: summary
            .get("peak_rss_bytes")
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN),
        first_loss: field(&steps[0], "loss")?,
        last_loss: field(&steps[steps.len() - 1], "loss")?,
    })
}

/// Trains with PEFT on the same rows.
fn peft(python: &Path, case: &Case, rows: &Path) -> Result<Measured> {
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("ci/reference_lora_bench.py"))
        .arg(&case.model)
        .arg(rows)
        .args(["--threads", "2"]);
    let out = capture(&mut cmd)?;
    let v = last_json(&out, "reference_lora_bench.py")?;
    let get = |key: &str| {
        v.get(key)
            .and_then(Value::as_f64)
            .with_context(|| format!("reference_lora_bench.py: no {key}"))
    };
    Ok(Measured {
        tokens_per_sec: get("mean_tokens_per_sec")?,
        median_step_secs: get("median_step_secs")?,
        peak_rss_bytes: get("peak_rss_bytes")?,
        first_loss: get("first_loss")?,
        last_loss: get("last_loss")?,
    })
}

type Row<'a> = (&'a Case, Measured, Measured);

fn render(rows: &[Row<'_>]) -> String {
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let mut s = String::from(
        "| model | steps | ctiforge tok/s | PEFT tok/s | speed ratio | ctiforge step (median) \
         | PEFT step (median) | ctiforge peak RSS | PEFT peak RSS | memory ratio \
         | loss first → last (ctiforge / PEFT) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (case, ours, theirs) in rows {
        s.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} s | {:.2} s | {:.0} MiB | {:.0} MiB | \
             {:.2} | {:.3} → {:.3} / {:.3} → {:.3} |\n",
            case.name,
            case.steps,
            ours.tokens_per_sec,
            theirs.tokens_per_sec,
            ours.tokens_per_sec / theirs.tokens_per_sec,
            ours.median_step_secs,
            theirs.median_step_secs,
            mib(ours.peak_rss_bytes),
            mib(theirs.peak_rss_bytes),
            ours.peak_rss_bytes / theirs.peak_rss_bytes,
            ours.first_loss,
            ours.last_loss,
            theirs.first_loss,
            theirs.last_loss,
        ));
    }
    s.push_str(
        "\nSpeed ratio: ctiforge tokens/s over PEFT's (above 1: ctiforge is faster). Memory \
         ratio: ctiforge's peak RSS over PEFT's (below 1: ctiforge uses less).\n",
    );
    s
}
