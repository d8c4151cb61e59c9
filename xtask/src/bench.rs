//! `cargo xtask bench`: prompt-processing and generation throughput of ctiforge and of
//! Hugging Face `transformers` (PyTorch, CPU, f32, eager attention) on the same weights and
//! machine, with the same method (one untimed warm-up, median of timed repeats, greedy
//! decoding one token per forward pass over a KV cache).
//!
//! Models: the bundled aidreams260K Llama and a ~100M-parameter random Llama made with
//! `ctiforge model init`. The table is printed and written between the
//! `<!-- bench:start -->` and `<!-- bench:end -->` markers of `docs/benchmarks.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::ci::reference_python;
use crate::step::{
    Timings, capture, cargo, last_json, machine, replace_between, target_dir, today, workspace_root,
};

const START: &str = "<!-- bench:start -->";
const END: &str = "<!-- bench:end -->";

/// One benchmarked model and the workload it runs.
struct Case {
    name: &'static str,
    prompt_tokens: usize,
    new_tokens: usize,
    repeats: usize,
}

/// The ~100M-parameter Llama: 12 layers, d_model 768, 12 query / 4 kv heads, 32k vocabulary.
const LLAMA_100M: [&str; 8] = [
    "hidden_size=768",
    "intermediate_size=2048",
    "num_hidden_layers=12",
    "num_attention_heads=12",
    "num_key_value_heads=4",
    "head_dim=64",
    "max_position_embeddings=2048",
    "tie_word_embeddings=false",
];

/// Runs the benchmark and updates `docs/benchmarks.md`.
///
/// # Errors
/// Fails if a model cannot be made, a benchmark fails, or the doc cannot be written.
pub fn run(quick: bool) -> Result<()> {
    let mut t = Timings::default();
    let python = t.step(
        "reference env",
        "bash ci/setup-reference.sh",
        reference_python,
    )?;
    let big = llama_100m(&mut t)?;
    let repeats = if quick { 1 } else { 3 };
    let cases = [
        (
            workspace_root().join("datasets/models/aidreams260K"),
            Case {
                name: "aidreams260K (0.26M, bundled)",
                prompt_tokens: 64,
                new_tokens: 60,
                repeats,
            },
        ),
        (
            big.clone(),
            Case {
                name: "random Llama ~100M",
                prompt_tokens: 128,
                new_tokens: 32,
                repeats,
            },
        ),
    ];
    let mut rows = Vec::new();
    for (model, case) in &cases {
        let ours = t.step(
            &format!("ctiforge {}", case.name),
            "ctiforge model bench",
            || measure(ctiforge_command(model, case), "ctiforge"),
        )?;
        let theirs = t.step(
            &format!("transformers {}", case.name),
            "reference_bench.py",
            || measure(reference_command(&python, model, case), "transformers"),
        )?;
        rows.push((case, ours, theirs));
    }
    let table = render(&rows);
    println!("{table}");
    update_doc(&workspace_root().join("docs/benchmarks.md"), &table)?;
    eprintln!("\nbench done: {}", t.summary());
    Ok(())
}

/// The ~100M-parameter random Llama under `$CARGO_TARGET_DIR/bench/llama-100m`, made
/// (with a 32k BPE tokenizer trained on TRAM sentences) when it is not there yet.
///
/// # Errors
/// The corpus or the model cannot be written.
pub fn llama_100m(t: &mut Timings) -> Result<PathBuf> {
    let dir = target_dir().join("bench");
    let big = dir.join("llama-100m");
    if !big.join("model.safetensors").is_file() {
        let corpus = t.step("corpus", "TRAM sentences", || {
            crate::fixtures::write_corpus(&dir)
        })?;
        t.step("llama-100m", "ctiforge model init", || {
            make_100m(&corpus, &big)
        })?;
    }
    Ok(big)
}

fn make_100m(corpus: &Path, out: &Path) -> Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "ctiforge-cli",
        "--",
        "model",
        "init",
        "--arch",
        "llama",
    ])
    .args([
        "--preset",
        "small",
        "--vocab-size",
        "32000",
        "--seed",
        "100",
        "--force",
    ])
    .arg("--tokenizer-corpus")
    .arg(corpus)
    .arg("--out")
    .arg(out);
    for o in LLAMA_100M {
        cmd.args(["--set", o]);
    }
    crate::step::run(&mut cmd)
}

fn ctiforge_command(model: &Path, case: &Case) -> Command {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "ctiforge-cli",
        "--",
        "model",
        "bench",
        "--json",
        "--model",
    ])
    .arg(model)
    .args(["--prompt-tokens", &case.prompt_tokens.to_string()])
    .args(["--new-tokens", &case.new_tokens.to_string()])
    .args(["--repeats", &case.repeats.to_string()]);
    cmd
}

fn reference_command(python: &Path, model: &Path, case: &Case) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("ci/reference_bench.py"))
        .arg(model)
        .args(["--prompt-tokens", &case.prompt_tokens.to_string()])
        .args(["--new-tokens", &case.new_tokens.to_string()])
        .args(["--repeats", &case.repeats.to_string()])
        .args(["--threads", "2"]);
    cmd
}

/// (prompt tokens/s, generation tokens/s) from a benchmark's JSON line.
fn measure(mut cmd: Command, what: &str) -> Result<(f64, f64)> {
    let out = capture(&mut cmd)?;
    let value = last_json(&out, what)?;
    let get = |key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_f64)
            .with_context(|| format!("{what}: no {key}"))
    };
    Ok((
        get("prompt_tokens_per_sec")?,
        get("generation_tokens_per_sec")?,
    ))
}

type Row<'a> = (&'a Case, (f64, f64), (f64, f64));

fn render(rows: &[Row<'_>]) -> String {
    let mut s = String::from(
        "| model | prompt / new tokens | ctiforge prompt tok/s | transformers prompt tok/s \
         | ratio | ctiforge gen tok/s | transformers gen tok/s | ratio |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (case, ours, theirs) in rows {
        s.push_str(&format!(
            "| {} | {} / {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} | {:.2} |\n",
            case.name,
            case.prompt_tokens,
            case.new_tokens,
            ours.0,
            theirs.0,
            ours.0 / theirs.0,
            ours.1,
            theirs.1,
            ours.1 / theirs.1
        ));
    }
    s
}

fn update_doc(path: &Path, table: &str) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = machine();
    let cpu = cpu.split(',').next().unwrap_or("unknown CPU");
    let body = format!(
        "Measured {} on {cpu}, {cores} cores, with `cargo xtask bench`.\n\n{table}",
        today()
    );
    replace_between(path, START, END, &body)
}
