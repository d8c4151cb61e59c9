//! `cargo xtask fixtures`: regenerates the seeded tiny models under `target/fixtures/`.
//!
//! Each fixture is a Hugging Face folder made by `ctiforge model init` with a fixed seed,
//! so the same code always writes the same bytes. Most tests build their own models in a
//! temporary directory; these folders are for poking at by hand (`ctiforge model
//! inspect`, `ctiforge generate`) and for tests that want a model on disk.
//!
//! The tokenizer is trained on the TRAM bootstrap sentences (`datasets/tram/`), written
//! out as one plain-text sentence per line in `target/fixtures/corpus.txt`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::step::{Timings, cargo, workspace_root};

/// The JSONL file whose `text` fields make the tokenizer corpus.
const CORPUS_SOURCE: &str = "datasets/tram/tram_bootstrap_sentences.jsonl";

/// A model made by `ctiforge model init`.
pub struct InitSpec<'a> {
    /// `llama` or `mistral`.
    pub arch: &'a str,
    /// `tiny` or `small`.
    pub preset: &'a str,
    /// Tokenizer vocabulary size.
    pub vocab_size: u32,
    /// Seed for the weights and anything else random.
    pub seed: u64,
}

/// The fixtures: (folder name under `target/fixtures/`, how to make it).
const FIXTURES: [(&str, InitSpec<'static>); 2] = [
    (
        "tiny-llama",
        InitSpec {
            arch: "llama",
            preset: "tiny",
            vocab_size: 512,
            seed: 1,
        },
    ),
    (
        "tiny-mistral",
        InitSpec {
            arch: "mistral",
            preset: "tiny",
            vocab_size: 512,
            seed: 2,
        },
    ),
];

/// `<workspace>/target/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("target").join("fixtures")
}

/// Rebuilds every fixture from scratch and inspects it.
///
/// # Errors
/// Fails at the first fixture that cannot be made, naming it.
pub fn run() -> Result<()> {
    let mut t = Timings::default();
    let dir = fixtures_dir();
    let corpus = t.step("corpus", CORPUS_SOURCE, || write_corpus(&dir))?;
    for (name, spec) in &FIXTURES {
        let out = dir.join(name);
        t.step(name, &format!("model init into {}", out.display()), || {
            init_model(spec, &corpus, &out, false)
        })?;
        t.command(
            &format!("inspect {name}"),
            cargo()
                .args([
                    "run",
                    "--quiet",
                    "-p",
                    "ctiforge-cli",
                    "--",
                    "model",
                    "inspect",
                ])
                .arg(&out),
            "the fixture was written but cannot be read back",
        )?;
    }
    eprintln!("\nfixtures written to {}: {}", dir.display(), t.summary());
    Ok(())
}

/// Writes `<dir>/corpus.txt` (one sentence per line, whitespace collapsed); returns its
/// path. The file is small and cheap to make, so it is always rebuilt.
///
/// # Errors
/// Fails if the source cannot be read or parsed, or the corpus cannot be written.
pub fn write_corpus(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("corpus.txt");
    let source = workspace_root().join(CORPUS_SOURCE);
    let rows = fs::read_to_string(&source)
        .with_context(|| format!("could not read {}", source.display()))?;
    let mut text = String::new();
    for (number, row) in rows
        .lines()
        .enumerate()
        .filter(|(_, r)| !r.trim().is_empty())
    {
        let value: serde_json::Value = serde_json::from_str(row)
            .with_context(|| format!("{}:{}: bad JSON", source.display(), number + 1))?;
        if let Some(sentence) = value.get("text").and_then(serde_json::Value::as_str) {
            text.push_str(&sentence.split_whitespace().collect::<Vec<_>>().join(" "));
            text.push('\n');
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let tmp = path.with_extension("txt.tmp");
    fs::write(&tmp, text).with_context(|| format!("could not write {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("could not rename to {}", path.display()))?;
    Ok(path)
}

/// Runs `ctiforge model init` for `spec` into `out`, replacing what was there.
///
/// # Errors
/// Fails if the old folder cannot be removed or the command fails.
pub fn init_model(spec: &InitSpec<'_>, corpus: &Path, out: &Path, release: bool) -> Result<()> {
    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("could not remove {}", out.display()))?;
    }
    let mut cmd = cargo();
    cmd.args(["run", "--quiet"]);
    if release {
        cmd.arg("--release");
    }
    cmd.args([
        "-p",
        "ctiforge-cli",
        "--",
        "model",
        "init",
        "--arch",
        spec.arch,
    ])
    .args(["--preset", spec.preset])
    .args(["--vocab-size", &spec.vocab_size.to_string()])
    .arg("--tokenizer-corpus")
    .arg(corpus)
    .args(["--seed", &spec.seed.to_string()])
    .arg("--out")
    .arg(out);
    crate::step::run(&mut cmd)
}
