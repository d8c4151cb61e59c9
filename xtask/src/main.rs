//! `cargo xtask`: developer automation for the ctiforge workspace.
//!
//! - `cargo xtask ci [--skip-reference]`: the full check CI runs (fmt, markers, clippy,
//!   docs, tests including the `#[ignore]`d reference tests).
//! - `cargo xtask fixtures`: regenerate the seeded tiny models under `target/fixtures/`.
//! - `cargo xtask bench [--quick]`: throughput of ctiforge and of Hugging Face
//!   `transformers` on the same weights, as a Markdown table for `docs/benchmarks.md`.
//! - `cargo xtask bench-train [--quick]`: LoRA training throughput and peak memory of
//!   ctiforge and of Hugging Face PEFT on the same model, recipe and micro-batches.
//! - `cargo xtask bench-registry [--size-mib N] [--repeats R]`: artifact upload/download
//!   through a local MLflow server, ctiforge against `curl`, and ctiforge's peak memory.
//! - `cargo xtask bench-prep [--rows N]`: `ctiforge prep` against the same pipeline in
//!   pandas on a synthetic corpus of N rows (default 1,000,000), for `docs/benchmarks.md`.

mod bench;
mod bench_prep;
mod bench_registry;
mod bench_train;
mod ci;
mod fixtures;
mod markers;
mod pipeline_job;
mod prep_corpus;
mod step;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  ci [--skip-reference]   fmt, markers, clippy, docs, tests (with the reference tests)
  fixtures                regenerate the seeded model fixtures under target/fixtures/
  bench [--quick]         ctiforge vs transformers throughput table (docs/benchmarks.md)
  bench-train [--quick]   ctiforge train vs Hugging Face PEFT: tokens/s and peak memory
                          (docs/benchmarks.md)
  bench-registry [--size-mib N] [--repeats R]
                          artifact transfer through a local MLflow server, ctiforge vs
                          curl, 1024 MiB x 3 by default (docs/benchmarks.md)
  bench-prep [--rows N]   ctiforge prep vs pandas on N synthetic rows, default 1000000
                          (docs/benchmarks.md)
  demo [ARGS]             the demo pipeline (configs/pipeline/demo.toml); ARGS go to
                          `ctiforge pipeline` (e.g. --out DIR --json)
  ci-pipeline run|drift   ci/pipeline-job.sh, what the GitHub/GitLab definitions in ci/ run,
                          against $MLFLOW_TRACKING_URI (unset: an embedded store)";

fn main() {
    if let Err(err) = run(std::env::args().skip(1).collect()) {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let flags: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match args.first().map(String::as_str) {
        Some("ci") => {
            let skip_reference = match flags.as_slice() {
                [] => false,
                ["--skip-reference"] => true,
                other => bail!("ci: unknown flags {other:?}\n\n{USAGE}"),
            };
            ci::run(&ci::Options { skip_reference })
        }
        Some("fixtures") if flags.is_empty() => fixtures::run(),
        Some("bench") => {
            let quick = match flags.as_slice() {
                [] => false,
                ["--quick"] => true,
                other => bail!("bench: unknown flags {other:?}\n\n{USAGE}"),
            };
            bench::run(quick)
        }
        Some("bench-train") => {
            let quick = match flags.as_slice() {
                [] => false,
                ["--quick"] => true,
                other => bail!("bench-train: unknown flags {other:?}\n\n{USAGE}"),
            };
            bench_train::run(quick)
        }
        Some("bench-registry") => {
            let mut opts = bench_registry::Options::default();
            let mut it = flags.iter();
            while let Some(flag) = it.next() {
                let value = it
                    .next()
                    .with_context(|| format!("bench-registry: {flag} needs a value"))?;
                match *flag {
                    "--size-mib" => {
                        opts.size_mib = value.parse().with_context(|| {
                            format!("bench-registry: --size-mib {value:?} is not a number")
                        })?;
                    }
                    "--repeats" => {
                        opts.repeats = value.parse().with_context(|| {
                            format!("bench-registry: --repeats {value:?} is not a number")
                        })?;
                    }
                    other => bail!("bench-registry: unknown flag {other:?}\n\n{USAGE}"),
                }
            }
            bench_registry::run(&opts)
        }
        Some("bench-prep") => {
            let rows = match flags.as_slice() {
                [] => bench_prep::DEFAULT_ROWS,
                ["--rows", n] => n
                    .replace('_', "")
                    .parse()
                    .with_context(|| format!("bench-prep: --rows {n:?} is not a row count"))?,
                other => bail!("bench-prep: unknown flags {other:?}\n\n{USAGE}"),
            };
            bench_prep::run(rows)
        }
        Some("demo") => pipeline_job::demo(&flags),
        Some("ci-pipeline") => match flags.as_slice() {
            [mode @ ("run" | "drift")] => pipeline_job::ci_pipeline(mode),
            other => bail!("ci-pipeline: expected run or drift, got {other:?}\n\n{USAGE}"),
        },
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}
