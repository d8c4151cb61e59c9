//! `ctiforge pipeline`: prep → train → eval (base and tuned) → export → drift → register →
//! promote, as one command driven by a TOML file (`configs/pipeline/`).
//!
//! Like a build system, each stage records a fingerprint of its inputs (its config, the
//! files that config names, the fingerprints of the stages it reads from, the code
//! version) in `OUT/stages/<stage>.json`; a stage whose record matches and whose outputs
//! exist is skipped, and says so. A changed recipe re-runs its stage and everything
//! downstream, because their fingerprints include it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use ctiforge_data_prep::PrepConfig;
use ctiforge_eval::bootstrap::BootstrapConfig;
use ctiforge_eval::harness::GenSettings;
use ctiforge_eval::report::EvalReport;
use ctiforge_eval::threshold::Requirement;
use ctiforge_eval::{DataSource, EvalOptions, Scorer, evaluate};
use ctiforge_export::{ExportOptions, FileType, QualityOptions, export_gguf};
use ctiforge_registry::drift::{DriftConfig, DriftReport, drift_report, write_report};
use ctiforge_registry::{Gate, RegisterRequest, open, promote, register};
use ctiforge_train::{RunOptions, TrainConfig, train};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Arguments of `ctiforge pipeline`.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// The pipeline file (see configs/pipeline/).
    #[arg(long)]
    config: PathBuf,
    /// Registry: a folder or `file:` URI (embedded) or `http(s)://host:port` (MLflow).
    /// Default: the file's `pipeline.registry`, then `MLFLOW_TRACKING_URI`, then an
    /// embedded store in OUT/registry.
    #[arg(long, value_name = "URI")]
    registry: Option<String>,
    /// The registered model's name (overrides `pipeline.model_name`).
    #[arg(long)]
    model_name: Option<String>,
    /// The output folder (overrides `pipeline.out`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a key of the pipeline file, e.g. `--set train.max_steps=50` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Run every stage even when its outputs are up to date.
    #[arg(long)]
    force: bool,
    /// Only check the file: parse it and the recipes, gate and drift config it names.
    #[arg(long)]
    check: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// The pipeline file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// `[pipeline]`.
    pub pipeline: PipelineSection,
    /// `[model]`.
    pub model: ModelSection,
    /// `[prep]`.
    pub prep: RecipeSection,
    /// `[pretrain]`: continued pre-training of the base on raw CTI text before the LoRA
    /// stage; omit to tune the base model directly.
    pub pretrain: Option<PretrainSection>,
    /// `[train]`.
    pub train: TrainSection,
    /// `[eval]`.
    #[serde(default)]
    pub eval: EvalSection,
    /// `[export]`.
    #[serde(default)]
    pub export: ExportSection,
    /// `[drift]`: omit to skip the drift report.
    pub drift: Option<DriftSection>,
    /// `[register]`.
    #[serde(default)]
    pub register: RegisterSection,
    /// `[promote]`: omit to register without promoting.
    pub promote: Option<PromoteSection>,
}

/// `[pipeline]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// A name for logs and the summary.
    pub name: String,
    /// The output folder.
    pub out: PathBuf,
    /// The registered model's name.
    pub model_name: String,
    /// The registry URI (see `--registry`).
    #[serde(default)]
    pub registry: Option<String>,
    /// `cpu`, `cuda:0`, ... for training and evaluation.
    #[serde(default = "cpu")]
    pub device: String,
}

fn cpu() -> String {
    "cpu".into()
}

/// `[model]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// The base model: a folder, or org/name in the Hugging Face hub cache.
    pub base: String,
}

/// `[prep]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeSection {
    /// The prep recipe.
    pub config: PathBuf,
}

/// `[pretrain]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainSection {
    /// The prep recipe of the text corpus (`text` rows).
    pub prep: PathBuf,
    /// The training recipe (`run.mode = "full"`, configs/train/cti-cpt.toml).
    pub config: PathBuf,
    /// Overrides of that recipe.
    #[serde(default)]
    pub set: Vec<String>,
}

/// `[train]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// The training recipe.
    pub config: PathBuf,
    /// Overrides of the recipe (`optim.lr=1e-3`).
    #[serde(default)]
    pub set: Vec<String>,
}

/// `[eval]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// The split both models are scored on.
    pub split: String,
    /// Score only the first N examples (0: all).
    pub limit: usize,
    /// Context length for both models (0: the run's `batch.max_seq_len` when longer than
    /// the model's).
    pub context: usize,
    /// Prompts per batch.
    pub batch_size: usize,
    /// Checks of tuned against base (`technique.micro_f1 >= +0.01`); recorded in the
    /// report, and the pipeline fails when one does not hold.
    pub require: Vec<String>,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            split: "test".into(),
            limit: 0,
            context: 0,
            batch_size: 8,
            require: Vec::new(),
        }
    }
}

/// `[export]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSection {
    /// GGUF types to write (`q8_0`, `q4_k_m`, ...); empty skips the export.
    pub quants: Vec<String>,
    /// Measure each file's quality against the merged model.
    pub quality: bool,
}

impl Default for ExportSection {
    fn default() -> Self {
        ExportSection {
            quants: vec!["q8_0".into()],
            quality: true,
        }
    }
}

/// `[drift]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftSection {
    /// The new data: a dataset folder (default: the prepared dataset's `current_split`).
    #[serde(default)]
    pub current: Option<PathBuf>,
    /// The split of the prepared dataset that stands in for new data when `current` is
    /// not given.
    #[serde(default = "test_split")]
    pub current_split: String,
    /// Thresholds (see configs/drift/); default: the documented defaults.
    #[serde(default)]
    pub config: Option<PathBuf>,
}

fn test_split() -> String {
    "test".into()
}

/// `[register]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegisterSection {
    /// The experiment the registry run goes into.
    pub experiment: String,
}

impl Default for RegisterSection {
    fn default() -> Self {
        RegisterSection {
            experiment: "ctiforge".into(),
        }
    }
}

/// `[promote]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteSection {
    /// The gate file (configs/gates/).
    pub gate: PathBuf,
}

/// What one stage did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    /// The stage.
    pub stage: String,
    /// Its input fingerprint.
    pub fingerprint: String,
    /// `ran` or `skipped`.
    #[serde(default)]
    pub status: String,
    /// Seconds it took when it ran.
    pub secs: f64,
    /// What it produced (paths, numbers) for the summary.
    pub result: Value,
}

struct Ctx {
    out: PathBuf,
    force: bool,
    records: Vec<StageRecord>,
    /// Stages this pipeline has, for the `[n/total]` progress lines.
    total: usize,
}

impl Ctx {
    fn record_path(&self, stage: &str) -> PathBuf {
        self.out.join("stages").join(format!("{stage}.json"))
    }

    /// Runs `work` unless the stage's record matches `fingerprint` and `outputs` exist.
    fn stage(
        &mut self,
        stage: &str,
        fingerprint: &str,
        outputs: &[&Path],
        work: impl FnOnce() -> Result<Value>,
    ) -> Result<StageRecord> {
        let n = self.records.len() + 1;
        let total = self.total;
        let path = self.record_path(stage);
        let old: Option<StageRecord> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if let Some(mut old) = old.filter(|o| {
            !self.force && o.fingerprint == fingerprint && outputs.iter().all(|p| p.exists())
        }) {
            eprintln!("[{n}/{total}] {stage}: up to date, skipped");
            old.status = "skipped".into();
            self.records.push(old.clone());
            return Ok(old);
        }
        for p in outputs {
            if p.is_dir() {
                std::fs::remove_dir_all(p).with_context(|| format!("clearing {}", p.display()))?;
            } else if p.is_file() {
                std::fs::remove_file(p).with_context(|| format!("clearing {}", p.display()))?;
            }
        }
        eprintln!("[{n}/{total}] {stage}: running");
        let started = Instant::now();
        let result = work().with_context(|| format!("pipeline stage {stage}"))?;
        let record = StageRecord {
            stage: stage.to_owned(),
            fingerprint: fingerprint.to_owned(),
            status: "ran".into(),
            secs: started.elapsed().as_secs_f64(),
            result,
        };
        write_json(&path, &serde_json::to_value(&record)?)?;
        eprintln!("[{n}/{total}] {stage}: done in {:.1}s", record.secs);
        self.records.push(record.clone());
        Ok(record)
    }
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// SHA-256 of a JSON key made of the parts given.
fn fingerprint(parts: &Value) -> String {
    format!("sha256:{:x}", Sha256::digest(parts.to_string().as_bytes()))
}

/// The contents of a file for a fingerprint (its SHA-256), or an error naming it.
fn file_hash(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// A model folder's identity: file names and sizes (hub ids are taken as named).
fn model_identity(spec: &str) -> Value {
    let dir = Path::new(spec);
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            files.push((e.file_name().to_string_lossy().into_owned(), size));
        }
    }
    files.sort();
    json!({ "spec": spec, "files": files })
}

/// Loads a pipeline file with `--set` overrides.
///
/// # Errors
/// Unreadable or invalid TOML, unknown keys, bad overrides (naming the file).
pub fn load(path: &Path, overrides: &[String]) -> Result<PipelineFile> {
    crate::settings::load(Some(path), overrides)
}

/// Checks that the files a pipeline names exist and parse: the prep and train recipes
/// (with the pipeline's overrides), the gate, the drift config and the quant names.
///
/// # Errors
/// Every problem found, with the file it is in.
pub fn validate(p: &PipelineFile) -> Result<()> {
    let mut problems = Vec::new();
    match std::fs::read_to_string(&p.prep.config) {
        Ok(text) => {
            if let Err(e) = PrepConfig::from_toml(&text, &p.prep.config) {
                problems.push(format!("prep.config: {e}"));
            }
        }
        Err(e) => problems.push(format!("prep.config {}: {e}", p.prep.config.display())),
    }
    if let Err(e) = TrainConfig::from_file(&p.train.config, &p.train.set) {
        problems.push(format!("train.config: {e}"));
    }
    if let Some(pt) = &p.pretrain {
        match std::fs::read_to_string(&pt.prep) {
            Ok(text) => {
                if let Err(e) = PrepConfig::from_toml(&text, &pt.prep) {
                    problems.push(format!("pretrain.prep: {e}"));
                }
            }
            Err(e) => problems.push(format!("pretrain.prep {}: {e}", pt.prep.display())),
        }
        if let Err(e) = TrainConfig::from_file(&pt.config, &pt.set) {
            problems.push(format!("pretrain.config: {e}"));
        }
    }
    for q in &p.export.quants {
        if let Err(e) = q.parse::<FileType>() {
            problems.push(format!("export.quants: {q:?}: {e}"));
        }
    }
    for r in &p.eval.require {
        if let Err(e) = r.parse::<Requirement>() {
            problems.push(format!("eval.require: {e}"));
        }
    }
    if let Some(Err(e)) = p.promote.as_ref().map(|pr| Gate::load(&pr.gate)) {
        problems.push(format!("promote.gate: {e}"));
    }
    let drift_config = p.drift.as_ref().and_then(|d| d.config.as_deref());
    if let Some(Err(e)) = drift_config.map(DriftConfig::from_file) {
        problems.push(format!("drift.config: {e}"));
    }
    if !problems.is_empty() {
        bail!(
            "{} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// Runs `ctiforge pipeline`; returns the exit code (0, or 3 when the gate refused the
/// candidate).
pub fn run(a: &PipelineArgs) -> Result<i32> {
    let mut p = load(&a.config, &a.overrides)
        .with_context(|| format!("pipeline {}", a.config.display()))?;
    if let Some(o) = &a.out {
        p.pipeline.out = o.clone();
    }
    if let Some(m) = &a.model_name {
        p.pipeline.model_name = m.clone();
    }
    validate(&p).with_context(|| format!("pipeline {}", a.config.display()))?;
    if a.check {
        println!(
            "{}: valid (model {}, out {})",
            a.config.display(),
            p.model.base,
            p.pipeline.out.display()
        );
        return Ok(0);
    }
    let registry_uri = a
        .registry
        .clone()
        .or_else(|| p.pipeline.registry.clone())
        .or_else(|| std::env::var("MLFLOW_TRACKING_URI").ok())
        .unwrap_or_else(|| p.pipeline.out.join("registry").display().to_string());
    let summary = execute(&p, &registry_uri, a.force)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    let promoted = summary["promotion"]["promoted"].as_bool();
    Ok(if promoted == Some(false) {
        crate::registry::EXIT_REFUSED
    } else {
        0
    })
}

/// Runs the stages of `p` and returns the summary.
///
/// # Errors
/// The first stage that fails, named.
pub fn execute(p: &PipelineFile, registry_uri: &str, force: bool) -> Result<Value> {
    let started = Instant::now();
    let out = p.pipeline.out.clone();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut ctx = Ctx {
        out: out.clone(),
        force,
        records: Vec::new(),
        total: 6
            + 2 * usize::from(p.pretrain.is_some())
            + usize::from(p.drift.is_some())
            + usize::from(p.promote.is_some()),
    };
    let code = env!("CARGO_PKG_VERSION");
    let data = out.join("data");
    let run_dir = out.join("run");
    let base_eval = out.join("eval/base");
    let tuned_eval = out.join("eval/tuned");
    let export_dir = out.join("export");
    let drift_dir = out.join("drift");

    // 1. prep
    let prep_fp = fingerprint(&json!({
        "stage": "prep", "code": code,
        "recipe": p.prep.config, "recipe_sha": file_hash(&p.prep.config)?,
    }));
    let prep = ctx.stage("prep", &prep_fp, &[&data], || {
        let text = std::fs::read_to_string(&p.prep.config)?;
        let cfg = PrepConfig::from_toml(&text, &p.prep.config)?;
        let opts = ctiforge_data_prep::Options {
            base_dir: PathBuf::from("."),
            force: true,
        };
        let m = ctiforge_data_prep::prepare(&cfg, &data, &opts)?;
        let splits: serde_json::Map<_, _> = m
            .splits
            .iter()
            .map(|(k, v)| (k.clone(), json!(v.rows)))
            .collect();
        Ok(json!({
            "dataset": data, "name": m.name, "fingerprint": m.fingerprint,
            "counts": m.counts, "splits": splits,
        }))
    })?;
    let data_fp = prep.result["fingerprint"].clone();

    // Continued pre-training (optional): the LoRA stage then tunes its output.
    let (lora_base, lora_base_identity, pretrained) = match &p.pretrain {
        None => (p.model.base.clone(), model_identity(&p.model.base), None),
        Some(pt) => {
            let corpus = out.join("corpus");
            let cpt_dir = out.join("pretrain");
            let corpus_fp = fingerprint(&json!({
                "stage": "corpus", "code": code,
                "recipe": pt.prep, "recipe_sha": file_hash(&pt.prep)?,
            }));
            let corpus_rec = ctx.stage("corpus", &corpus_fp, &[&corpus], || {
                let text = std::fs::read_to_string(&pt.prep)?;
                let cfg = PrepConfig::from_toml(&text, &pt.prep)?;
                let opts = ctiforge_data_prep::Options {
                    base_dir: PathBuf::from("."),
                    force: true,
                };
                let m = ctiforge_data_prep::prepare(&cfg, &corpus, &opts)?;
                Ok(json!({ "dataset": corpus, "fingerprint": m.fingerprint, "counts": m.counts }))
            })?;
            let mut sets = pt.set.clone();
            sets.push(format!(
                "run.model={}",
                serde_json::to_string(&p.model.base)?
            ));
            sets.push(format!(
                "run.data={}",
                serde_json::to_string(&corpus.display().to_string())?
            ));
            sets.push(format!(
                "run.device={}",
                serde_json::to_string(&p.pipeline.device)?
            ));
            let cfg = TrainConfig::from_file(&pt.config, &sets)?;
            let cpt_fp = fingerprint(&json!({
                "stage": "pretrain", "code": code, "data": corpus_rec.result["fingerprint"],
                "model": model_identity(&p.model.base),
                "recipe_sha": file_hash(&pt.config)?, "set": sets,
            }));
            let rec = ctx.stage("pretrain", &cpt_fp, &[&cpt_dir], || {
                let s = train(&cfg, &cpt_dir, &RunOptions::default())?;
                Ok(json!({
                    "model": cpt_dir, "steps": s.steps,
                    "initial_val_loss": s.initial_val_loss, "final_val_loss": s.final_val_loss,
                    "duration_secs": s.duration_secs,
                }))
            })?;
            let identity = json!({ "pretrain": rec.fingerprint });
            (cpt_dir.display().to_string(), identity, Some(rec))
        }
    };

    // Fine-tuning (LoRA by the recipe) of the base, or of the pre-trained model.
    let mut sets = p.train.set.clone();
    sets.push(format!("run.model={}", serde_json::to_string(&lora_base)?));
    sets.push(format!(
        "run.data={}",
        serde_json::to_string(&data.display().to_string())?
    ));
    sets.push(format!(
        "run.device={}",
        serde_json::to_string(&p.pipeline.device)?
    ));
    let train_cfg = TrainConfig::from_file(&p.train.config, &sets)?;
    let train_fp = fingerprint(&json!({
        "stage": "train", "code": code, "data": data_fp,
        "model": lora_base_identity,
        "recipe_sha": file_hash(&p.train.config)?, "set": sets,
    }));
    let trained = ctx.stage("train", &train_fp, &[&run_dir], || {
        let s = train(&train_cfg, &run_dir, &RunOptions::default())?;
        Ok(json!({
            "run": run_dir, "steps": s.steps, "final_loss": s.final_loss,
            "initial_val_loss": s.initial_val_loss, "final_val_loss": s.final_val_loss,
            "duration_secs": s.duration_secs,
        }))
    })?;

    // 3 and 4. eval: base, then tuned against it
    let eval_opts =
        |out_dir: &Path, model: &str, adapter: Option<PathBuf>| -> Result<EvalOptions> {
            Ok(EvalOptions {
                model: Some(model.to_owned()),
                adapter,
                data: DataSource::Dataset {
                    dir: data.clone(),
                    split: p.eval.split.clone(),
                },
                out: out_dir.to_path_buf(),
                limit: (p.eval.limit > 0).then_some(p.eval.limit),
                scorer: Scorer::Generate,
                generation: GenSettings {
                    batch_size: p.eval.batch_size,
                    ..GenSettings::default()
                },
                device: p.pipeline.device.clone(),
                attack: None,
                baseline: None,
                require: Vec::new(),
                bootstrap: BootstrapConfig::default(),
                force: false,
                context: (p.eval.context > 0)
                    .then_some(p.eval.context)
                    .or(Some(train_cfg.batch.max_seq_len)),
            })
        };
    let eval_key = json!({
        "split": p.eval.split, "limit": p.eval.limit, "context": p.eval.context,
        "batch": p.eval.batch_size, "code": code, "data": data_fp,
    });
    let base_fp = fingerprint(&json!({
        "stage": "eval-base", "eval": eval_key, "model": model_identity(&p.model.base),
    }));
    let base = ctx.stage("eval-base", &base_fp, &[&base_eval], || {
        let r = evaluate(&eval_opts(&base_eval, &p.model.base, None)?, &mut |_, _| {})?;
        Ok(json!({ "report": base_eval, "metrics": r.metrics, "examples": r.counts.examples }))
    })?;
    let tuned_fp = fingerprint(&json!({
        "stage": "eval-tuned", "eval": eval_key, "base": base.fingerprint,
        "run": trained.fingerprint, "require": p.eval.require,
    }));
    let tuned = ctx.stage("eval-tuned", &tuned_fp, &[&tuned_eval], || {
        let mut o = eval_opts(&tuned_eval, &lora_base, Some(run_dir.clone()))?;
        o.baseline = Some(base_eval.clone());
        o.require = p
            .eval
            .require
            .iter()
            .map(|r| r.parse::<Requirement>())
            .collect::<Result<_, _>>()?;
        let r: EvalReport = evaluate(&o, &mut |_, _| {})?;
        let c = r.comparison.as_ref();
        Ok(json!({
            "report": tuned_eval, "metrics": r.metrics, "examples": r.counts.examples,
            "deltas": c.map(|c| &c.deltas), "requirements": c.map(|c| &c.requirements),
            "passed": c.is_none_or(|c| c.passed),
        }))
    })?;
    if tuned.result["passed"] == json!(false) {
        bail!(
            "the tuned model fails an eval requirement ({}); see {}",
            p.eval.require.join(", "),
            tuned_eval.join("report.html").display()
        );
    }

    // 5. export
    let export_fp = fingerprint(&json!({
        "stage": "export", "code": code, "run": trained.fingerprint,
        "model": lora_base_identity, "export": p.export,
    }));
    let exported = ctx.stage("export", &export_fp, &[&export_dir], || {
        let mut files = Vec::new();
        for q in &p.export.quants {
            let quant: FileType = q.parse()?;
            let gguf = export_dir.join(format!("{}-{q}.gguf", p.pipeline.model_name));
            let r = export_gguf(&ExportOptions {
                model_dir: PathBuf::from(&lora_base),
                adapter_dir: Some(run_dir.clone()),
                quant,
                out: gguf,
                force: true,
                name: Some(p.pipeline.model_name.clone()),
                pre_tokenizer: "default".into(),
                quality: p.export.quality.then(QualityOptions::default),
            })?;
            files.push(json!({
                "gguf": r.gguf, "quant": r.manifest.quant, "bytes": r.manifest.file_bytes,
                "sha256": r.manifest.sha256, "quality": r.manifest.quality,
            }));
        }
        Ok(json!({ "dir": export_dir, "files": files }))
    })?;

    // 6. drift
    let drift = match &p.drift {
        None => None,
        Some(d) => {
            let drift_fp = fingerprint(&json!({
                "stage": "drift", "code": code, "data": data_fp, "drift": d,
                "config_sha": d.config.as_deref().map(file_hash).transpose()?,
            }));
            Some(ctx.stage("drift", &drift_fp, &[&drift_dir], || {
                let config = match &d.config {
                    Some(c) => DriftConfig::from_file(c)?,
                    None => DriftConfig::default(),
                };
                let reference = crate::drift::input(&data, Some("train"))?;
                let current = match &d.current {
                    Some(dir) => crate::drift::input(dir, None)?,
                    None => crate::drift::input(&data, Some(&d.current_split))?,
                };
                let report: DriftReport = drift_report(&reference, &current, &config)?;
                write_report(&report, &drift_dir)?;
                Ok(json!({ "dir": drift_dir, "verdict": report.verdict.to_string() }))
            })?)
        }
    };

    // 7. register
    let register_fp = fingerprint(&json!({
        "stage": "register", "registry": registry_uri, "model": p.pipeline.model_name,
        "run": trained.fingerprint, "eval": tuned.fingerprint, "export": exported.fingerprint,
        "drift": drift.as_ref().map(|d| &d.fingerprint),
    }));
    let registered = ctx.stage("register", &register_fp, &[], || {
        let reg = open(Some(registry_uri))?;
        let request = RegisterRequest {
            model: p.pipeline.model_name.clone(),
            experiment: p.register.experiment.clone(),
            run_name: Some(p.pipeline.name.clone()),
            run_dir: Some(run_dir.clone()),
            eval: Some(tuned_eval.clone()),
            export_dir: (!p.export.quants.is_empty()).then(|| export_dir.clone()),
            drift_dir: drift.as_ref().map(|_| drift_dir.clone()),
            ..RegisterRequest::default()
        };
        let r = register(reg.as_ref(), &request)?;
        Ok(json!({
            "registry": reg.describe(), "model": r.version.model, "version": r.version.version,
            "run_id": r.run.0,
        }))
    })?;

    // 8. promote
    let promotion = match &p.promote {
        None => None,
        Some(pr) => {
            let promote_fp = fingerprint(&json!({
                "stage": "promote", "registered": registered.fingerprint,
                "version": registered.result["version"], "gate_sha": file_hash(&pr.gate)?,
            }));
            Some(ctx.stage("promote", &promote_fp, &[], || {
                let reg = open(Some(registry_uri))?;
                let gate = Gate::load(&pr.gate)?;
                let version = registered.result["version"].as_str().unwrap_or_default();
                let d = promote(reg.as_ref(), &p.pipeline.model_name, version, &gate)?;
                Ok(json!({
                    "promoted": d.promoted, "compared_with": d.compared_with,
                    "reasons": d.reasons, "version": version,
                }))
            })?)
        }
    };

    Ok(json!({
        "pipeline": p.pipeline.name,
        "out": out,
        "duration_secs": started.elapsed().as_secs_f64(),
        "stages": ctx.records.iter().map(|r| json!({
            "stage": r.stage, "status": r.status, "secs": r.secs, "fingerprint": r.fingerprint,
        })).collect::<Vec<_>>(),
        "dataset": prep.result,
        "pretrain": pretrained.map(|r| r.result),
        "train": trained.result,
        "eval": { "base": base.result, "tuned": tuned.result },
        "export": exported.result,
        "drift": drift.map(|d| d.result),
        "registry": registered.result,
        "promotion": promotion.map(|p| p.result),
    }))
}

fn print_summary(s: &Value) {
    let num = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.4}"));
    println!(
        "pipeline {} ({:.1}s)",
        s["pipeline"].as_str().unwrap_or(""),
        s["duration_secs"].as_f64().unwrap_or(0.0)
    );
    println!("{:<12} {:<8} {:>8}", "stage", "status", "secs");
    for st in s["stages"].as_array().into_iter().flatten() {
        println!(
            "{:<12} {:<8} {:>8.1}",
            st["stage"].as_str().unwrap_or(""),
            st["status"].as_str().unwrap_or(""),
            st["secs"].as_f64().unwrap_or(0.0)
        );
    }
    let d = &s["dataset"];
    println!(
        "dataset     {} rows kept ({} read, {} rejected); splits {}",
        d["counts"]["kept"], d["counts"]["read"], d["counts"]["rejected"], d["splits"]
    );
    let pt = &s["pretrain"];
    if !pt.is_null() {
        println!(
            "pretrain    {} steps on the corpus, validation loss {} -> {}",
            pt["steps"],
            num(&pt["initial_val_loss"]),
            num(&pt["final_val_loss"])
        );
    }
    let t = &s["train"];
    println!(
        "train       {} steps, validation loss {} -> {}",
        t["steps"],
        num(&t["initial_val_loss"]),
        num(&t["final_val_loss"])
    );
    println!(
        "{:<32} {:>10} {:>10} {:>10}",
        "metric", "base", "tuned", "delta"
    );
    for m in s["eval"]["tuned"]["deltas"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = m["metric"].as_str().unwrap_or("");
        if name.contains("micro_f1")
            || name.contains("macro_f1")
            || name.contains("exact_match")
            || name.starts_with("lm.perplexity")
            || name.contains("rougeL")
            || name.contains("strict_f1")
        {
            println!(
                "{:<32} {:>10} {:>10} {:>10}  [{}, {}]",
                name,
                num(&m["baseline"]),
                num(&m["candidate"]),
                num(&m["delta"]),
                num(&m["low"]),
                num(&m["high"])
            );
        }
    }
    for f in s["export"]["files"].as_array().into_iter().flatten() {
        println!(
            "export      {} ({} bytes), perplexity change {}%",
            f["gguf"].as_str().unwrap_or(""),
            f["bytes"],
            num(&f["quality"]["ppl_change_pct"])
        );
    }
    if let Some(v) = s["drift"]["verdict"].as_str() {
        println!("drift       {v}");
    }
    let r = &s["registry"];
    println!(
        "registry    {} version {} in {}",
        r["model"].as_str().unwrap_or(""),
        r["version"].as_str().unwrap_or(""),
        r["registry"].as_str().unwrap_or("")
    );
    let pr = &s["promotion"];
    if !pr.is_null() {
        println!(
            "promotion   {}",
            if pr["promoted"] == json!(true) {
                "promoted to champion"
            } else {
                "refused by the gate"
            }
        );
        for reason in pr["reasons"].as_array().into_iter().flatten() {
            println!("            {}", reason.as_str().unwrap_or(""));
        }
    }
}
