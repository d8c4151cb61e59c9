//! `cargo xtask ci`: the full check, cheapest step first, stopping at the first failure.
//!
//! fmt → markers → clippy → docs → reference envs → tests. The tests run with
//! `--include-ignored`, which brings in the parity tests against independent references:
//! Hugging Face `transformers`, `rouge-score`/`sacrebleu`/`seqeval`/scikit-learn, a real
//! MLflow server, and gguf-py with llama.cpp; and the rendering test of `report.html` in
//! headless Chromium. Each lives in a cached virtual environment (Chromium: a system
//! package) made by a script in `ci/` and reaches the tests as an interpreter (or browser)
//! path in a variable.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

use crate::markers;
use crate::step::{self, Timings, cargo, workspace_root};

/// The environment variable that hands the transformers interpreter to the tests.
pub const REF_PYTHON_VAR: &str = "CTIFORGE_REF_PYTHON";

/// The reference environments: the script that creates one (once, cached under
/// `~/.cache/ctiforge`) and prints its interpreter, and the variable the tests read it from.
/// `ci/setup-chromium.sh` installs Debian's `chromium` instead and prints the browser.
pub const REFERENCES: [(&str, &str); 5] = [
    ("ci/setup-reference.sh", REF_PYTHON_VAR),
    ("ci/setup-evalref.sh", "CTIFORGE_EVALREF_PYTHON"),
    ("ci/setup-mlflow.sh", "CTIFORGE_MLFLOW_PYTHON"),
    ("ci/setup-gguf.sh", "CTIFORGE_GGUF_PYTHON"),
    ("ci/setup-chromium.sh", "CTIFORGE_CHROMIUM"),
];

/// Options of `cargo xtask ci`.
#[derive(Debug, Default)]
pub struct Options {
    /// Run `cargo test --workspace` without the ignored (reference) tests.
    pub skip_reference: bool,
}

/// Runs every step in order.
///
/// # Errors
/// Fails at the first failing step, naming it.
pub fn run(options: &Options) -> Result<()> {
    let mut t = Timings::default();

    t.command(
        "fmt",
        cargo().args(["fmt", "--all", "--check"]),
        "run `cargo fmt --all` and commit the result",
    )?;
    t.step(
        "markers",
        "git grep for issue-less markers in *.rs",
        markers::check,
    )?;
    t.command(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        "fix the clippy findings above",
    )?;
    t.command("docs", &mut doc_command(), "fix the rustdoc warnings above")?;

    if options.skip_reference {
        t.command(
            "tests",
            cargo().args(["test", "--workspace"]),
            "see the failing tests above",
        )?;
    } else {
        let mut test = cargo();
        test.args(["test", "--workspace", "--", "--include-ignored"]);
        for (script, var) in REFERENCES {
            let python = t.step(
                &format!("reference env {var}"),
                &format!("bash {script}"),
                || reference_env(script, var),
            )?;
            test.env(var, &python);
        }
        t.command("tests", &mut test, "see the failing tests above")?;
    }

    eprintln!("\nci passed: {}", t.summary());
    Ok(())
}

/// `cargo doc` with rustdoc warnings (broken links, bad markup) turned into errors.
fn doc_command() -> Command {
    let mut flags = std::env::var("RUSTDOCFLAGS").unwrap_or_default();
    if !flags.is_empty() {
        flags.push(' ');
    }
    flags.push_str("-D warnings");
    let mut cmd = cargo();
    cmd.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", flags);
    cmd
}

/// The transformers interpreter (see [`reference_env`]).
///
/// # Errors
/// As [`reference_env`].
pub fn reference_python() -> Result<PathBuf> {
    reference_env("ci/setup-reference.sh", REF_PYTHON_VAR)
}

/// A reference interpreter: `$var` if already set, else the one `script` creates (once)
/// and prints as its last line.
///
/// # Errors
/// Fails if the script fails or prints a path that does not exist.
pub fn reference_env(script: &str, var: &str) -> Result<PathBuf> {
    if let Some(preset) = std::env::var_os(var) {
        let python = PathBuf::from(preset);
        eprintln!("using {var}={}", python.display());
        return Ok(python);
    }
    let mut cmd = Command::new("bash");
    cmd.current_dir(workspace_root()).arg(script);
    let out = step::capture(&mut cmd)?;
    let Some(last) = out.lines().rev().find(|l| !l.trim().is_empty()) else {
        bail!("{script} printed no interpreter path");
    };
    let python = PathBuf::from(last.trim());
    if !python.exists() {
        bail!(
            "{script} printed `{}`, which does not exist; delete the half-made environment \
             under ~/.cache/ctiforge and rerun",
            python.display()
        );
    }
    eprintln!("{var}: {}", python.display());
    Ok(python)
}
