//! `cargo xtask ci`: the full check, cheapest step first, stopping at the first failure.
//!
//! fmt → markers → clippy → docs → reference env → tests. The tests run with
//! `--include-ignored`, which brings in the parity tests that compare against Hugging
//! Face `transformers` through the interpreter named by `CTIFORGE_REF_PYTHON`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

use crate::markers;
use crate::step::{self, Timings, cargo, workspace_root};

/// The environment variable that hands the reference interpreter to the tests.
pub const REF_PYTHON_VAR: &str = "CTIFORGE_REF_PYTHON";

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
        let python = t.step(
            "reference env",
            "bash ci/setup-reference.sh",
            reference_python,
        )?;
        let mut test = cargo();
        test.args(["test", "--workspace", "--", "--include-ignored"])
            .env(REF_PYTHON_VAR, &python);
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

/// The reference interpreter: `$CTIFORGE_REF_PYTHON` if already set, else the one
/// `ci/setup-reference.sh` creates (once) and prints.
///
/// # Errors
/// Fails if the script fails or prints a path that does not exist.
pub fn reference_python() -> Result<PathBuf> {
    if let Some(preset) = std::env::var_os(REF_PYTHON_VAR) {
        let python = PathBuf::from(preset);
        eprintln!("using {REF_PYTHON_VAR}={}", python.display());
        return Ok(python);
    }
    let mut cmd = Command::new("bash");
    cmd.current_dir(workspace_root())
        .arg("ci/setup-reference.sh");
    let out = step::capture(&mut cmd)?;
    let Some(last) = out.lines().rev().find(|l| !l.trim().is_empty()) else {
        bail!("ci/setup-reference.sh printed no interpreter path");
    };
    let python = PathBuf::from(last.trim());
    if !python.exists() {
        bail!(
            "ci/setup-reference.sh printed `{}`, which does not exist; delete the \
             half-made environment under ~/.cache/ctiforge and rerun",
            python.display()
        );
    }
    eprintln!("reference python: {}", python.display());
    Ok(python)
}
