//! `ctiforge registry ...`: register pipeline outputs as a model version, promote it
//! through a gate, pull an artifact with its checksum verified, and list or show what the
//! registry holds. Every command takes `--registry URI` (a folder or `file:` URI for the
//! embedded store, `http(s)://` for MLflow), defaulting to `MLFLOW_TRACKING_URI` and then
//! to the embedded store in `./.ctiforge-registry`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ctiforge_registry::drift::DriftVerdict;
use ctiforge_registry::{
    Gate, ModelRef, ModelVersion, PageRequest, RegisterRequest, Registry, Tags, open, promote,
    pull, register,
};
use serde_json::json;

/// Exit code of `registry promote` when the gate refuses the candidate (errors exit 1).
pub const EXIT_REFUSED: i32 = 3;

/// `ctiforge registry ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Register a run, eval report and export as a new model version (idempotent).
    Register(RegisterArgs),
    /// Move `champion` to a version if it passes a gate (exit 3 when refused).
    Promote(PromoteArgs),
    /// Download one artifact of NAME@alias or NAME/VERSION, verifying its SHA-256.
    Pull(PullArgs),
    /// List models, or the versions of one model.
    Ls(LsArgs),
    /// Show one version: artifacts, tags, aliases.
    Show(ShowArgs),
    /// Compare new data with a reference dataset (exit 4 when the verdict is fail).
    Drift(crate::drift::DriftArgs),
}

/// Where the registry is.
#[derive(Debug, Args)]
pub struct Location {
    /// A folder or `file:` URI (embedded store) or `http(s)://host:port` (MLflow).
    /// Default: `MLFLOW_TRACKING_URI`, then `./.ctiforge-registry`.
    #[arg(long, value_name = "URI")]
    registry: Option<String>,
}

impl Location {
    /// Opens the registry this names.
    pub fn open(&self) -> Result<Box<dyn Registry>> {
        let reg = open(self.registry.as_deref()).context("cannot open the registry")?;
        tracing::info!("registry: {}", reg.describe());
        Ok(reg)
    }
}

/// Arguments of `registry register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    location: Location,
    /// The registered model's name.
    #[arg(long)]
    model: String,
    /// The experiment the registry run goes into.
    #[arg(long, default_value = "ctiforge")]
    experiment: String,
    /// A training run folder (config, metrics.jsonl, adapter, run.json).
    #[arg(long = "run", value_name = "RUN_DIR")]
    run_dir: Option<PathBuf>,
    /// An eval report folder (or its eval.json).
    #[arg(long)]
    eval: Option<PathBuf>,
    /// An export folder (GGUF, Modelfile, export.json).
    #[arg(long = "export", value_name = "EXPORT_DIR")]
    export_dir: Option<PathBuf>,
    /// Another file to attach (repeatable).
    #[arg(long = "file")]
    files: Vec<PathBuf>,
    /// A tag for the run and the version, `KEY=VALUE` (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// The drift verdict to record: pass, warn or fail.
    #[arg(long, conflicts_with = "drift_report")]
    drift: Option<String>,
    /// A `registry drift` output folder: its verdict and statistics become version tags
    /// and its files are attached under `drift/`.
    #[arg(long, value_name = "DRIFT_DIR")]
    drift_report: Option<PathBuf>,
    /// Idempotency key (default: a hash of the model name and every file).
    #[arg(long)]
    key: Option<String>,
    /// Print the version as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `registry promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    location: Location,
    /// The registered model.
    #[arg(long)]
    model: String,
    /// The candidate version.
    #[arg(long)]
    version: String,
    /// The gate file.
    #[arg(long, default_value = "configs/gates/default.toml")]
    gate: PathBuf,
    /// Print the decision as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `registry pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    location: Location,
    /// `NAME@alias` or `NAME/VERSION`.
    reference: String,
    /// The artifact's path in the version (see `registry show`), e.g. `export/model.gguf`.
    #[arg(long)]
    artifact: String,
    /// The folder to write into (the artifact keeps its relative path).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Print what was pulled as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `registry ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    location: Location,
    /// List this model's versions instead of the models.
    model: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `registry show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    location: Location,
    /// `NAME@alias` or `NAME/VERSION`.
    reference: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a registry command; returns the process exit code.
pub fn run(cmd: &RegistryCommand) -> Result<i32> {
    match cmd {
        RegistryCommand::Register(a) => register_cmd(a).map(|()| 0),
        RegistryCommand::Promote(a) => promote_cmd(a),
        RegistryCommand::Pull(a) => pull_cmd(a).map(|()| 0),
        RegistryCommand::Ls(a) => ls_cmd(a).map(|()| 0),
        RegistryCommand::Show(a) => show_cmd(a).map(|()| 0),
        RegistryCommand::Drift(a) => crate::drift::run(a),
    }
}

fn parse_tags(pairs: &[String]) -> Result<Tags> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => bail!("--tag {p:?}: expected KEY=VALUE"),
        })
        .collect()
}

fn register_cmd(a: &RegisterArgs) -> Result<()> {
    let drift = a
        .drift
        .as_deref()
        .map(DriftVerdict::parse)
        .transpose()
        .context("--drift")?;
    let request = RegisterRequest {
        model: a.model.clone(),
        experiment: a.experiment.clone(),
        run_name: None,
        run_dir: a.run_dir.clone(),
        eval: a.eval.clone(),
        export_dir: a.export_dir.clone(),
        files: a.files.clone(),
        tags: parse_tags(&a.tags)?,
        drift_dir: a.drift_report.clone(),
        drift,
        key: a.key.clone(),
    };
    let reg = a.location.open()?;
    let done =
        register(reg.as_ref(), &request).with_context(|| format!("registering {}", a.model))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&version_json(&done.version))?
        );
    } else {
        eprintln!(
            "registered {} version {} from run {} ({} artifacts, {} params, {} metrics)",
            done.version.model,
            done.version.version,
            done.run.as_str(),
            done.version.artifacts.len(),
            done.params_logged,
            done.metrics_logged
        );
        println!("{}/{}", done.version.model, done.version.version);
    }
    Ok(())
}

fn promote_cmd(a: &PromoteArgs) -> Result<i32> {
    let gate = Gate::load(&a.gate).with_context(|| format!("gate {}", a.gate.display()))?;
    let reg = a.location.open()?;
    let decision = promote(reg.as_ref(), &a.model, &a.version, &gate)
        .with_context(|| format!("promoting {}/{}", a.model, a.version))?;
    if a.json {
        let doc = json!({
            "model": a.model,
            "version": a.version,
            "promoted": decision.promoted,
            "compared_with": decision.compared_with,
            "reasons": decision.reasons,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let against = decision
            .compared_with
            .as_deref()
            .map_or_else(|| "no champion".to_owned(), |v| format!("version {v}"));
        let verdict = if decision.promoted {
            "PROMOTED"
        } else {
            "REFUSED"
        };
        println!("{verdict}: {}/{} against {against}", a.model, a.version);
        for r in &decision.reasons {
            println!("  {r}");
        }
    }
    Ok(if decision.promoted { 0 } else { EXIT_REFUSED })
}

fn pull_cmd(a: &PullArgs) -> Result<()> {
    let reg = a.location.open()?;
    let got = pull(reg.as_ref(), &a.reference, &a.artifact, &a.out)
        .with_context(|| format!("pulling {} from {}", a.artifact, a.reference))?;
    if a.json {
        let doc = json!({
            "path": got.path,
            "model": got.version.model,
            "version": got.version.version,
            "sha256": got.record.sha256,
            "size_bytes": got.record.size_bytes,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        eprintln!(
            "verified sha256 {} ({} bytes) of {}/{}",
            got.record.sha256, got.record.size_bytes, got.version.model, got.version.version
        );
        println!("{}", got.path.display());
    }
    Ok(())
}

fn ls_cmd(a: &LsArgs) -> Result<()> {
    let reg = a.location.open()?;
    let Some(model) = &a.model else {
        let models = reg.list_models()?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&models)?);
        } else {
            for m in models {
                println!("{m}");
            }
        }
        return Ok(());
    };
    let mut versions = Vec::new();
    let mut page = PageRequest::default();
    loop {
        let p = reg.list_versions(model, &page)?;
        versions.extend(p.items);
        match p.next_token {
            Some(t) => page.token = Some(t),
            None => break,
        }
    }
    if a.json {
        let docs: Vec<_> = versions.iter().map(version_json).collect();
        println!("{}", serde_json::to_string_pretty(&docs)?);
    } else {
        println!(
            "{:>8}  {:<24}  {:>9}  run",
            "version", "aliases", "artifacts"
        );
        for v in &versions {
            println!(
                "{:>8}  {:<24}  {:>9}  {}",
                v.version,
                v.aliases.join(","),
                v.artifacts.len(),
                v.run_id.as_str()
            );
        }
    }
    Ok(())
}

fn show_cmd(a: &ShowArgs) -> Result<()> {
    let reg = a.location.open()?;
    let reference: ModelRef = a.reference.parse()?;
    let v = reference.resolve(reg.as_ref())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&version_json(&v))?);
        return Ok(());
    }
    println!(
        "{} version {} (run {})",
        v.model,
        v.version,
        v.run_id.as_str()
    );
    println!("aliases: {}", v.aliases.join(", "));
    println!("tags:");
    for (k, val) in &v.tags {
        println!("  {k} = {val}");
    }
    println!("artifacts:");
    for r in &v.artifacts {
        println!(
            "  {:<48} {:>12} bytes  sha256 {}",
            r.path, r.size_bytes, r.sha256
        );
    }
    Ok(())
}

fn version_json(v: &ModelVersion) -> serde_json::Value {
    json!({
        "model": v.model,
        "version": v.version,
        "run_id": v.run_id.as_str(),
        "aliases": v.aliases,
        "tags": v.tags,
        "artifacts": v.artifacts,
    })
}
