//! `cargo xtask demo` and `cargo xtask ci-pipeline`: build the `ctiforge` binary once and
//! run the shipped demo pipeline, or the very script the CI definitions in `ci/github/`
//! and `ci/gitlab/` run (`ci/pipeline-job.sh`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::step::{self, Timings};

/// Builds the workspace (the same selection as `cargo xtask ci`, so nothing is rebuilt
/// for other features) and returns the `ctiforge` binary.
fn build(t: &mut Timings) -> Result<PathBuf> {
    t.command(
        "build",
        step::cargo().args(["build", "--workspace"]),
        "fix the build errors above",
    )?;
    Ok(step::target_dir().join("debug").join("ctiforge"))
}

/// `cargo xtask demo`: the demo pipeline on the bundled data and tiny model.
pub fn demo(extra: &[&str]) -> Result<()> {
    let mut t = Timings::default();
    let bin = build(&mut t)?;
    let mut cmd = Command::new(bin);
    cmd.current_dir(step::workspace_root())
        .args(["pipeline", "--config", "configs/pipeline/demo.toml"])
        .args(extra);
    t.command("demo pipeline", &mut cmd, "see the stage that failed above")?;
    eprintln!("{}", t.summary());
    Ok(())
}

/// `cargo xtask ci-pipeline run|drift`: `ci/pipeline-job.sh` with this checkout's binary.
/// The registry comes from `MLFLOW_TRACKING_URI` (unset: an embedded store in the output
/// folder), as in CI.
pub fn ci_pipeline(mode: &str) -> Result<()> {
    let mut t = Timings::default();
    let bin = build(&mut t)?;
    let root = step::workspace_root();
    let mut cmd = Command::new(root.join("ci/pipeline-job.sh"));
    cmd.current_dir(&root).arg(mode).env("CTIFORGE", bin);
    t.command(
        &format!("ci/pipeline-job.sh {mode}"),
        &mut cmd,
        "see the pipeline output above",
    )?;
    eprintln!("{}", t.summary());
    Ok(())
}
