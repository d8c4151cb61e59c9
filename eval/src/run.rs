//! The `ctiforge eval` job: examples in, model run (or a baseline scorer), outputs scored,
//! `eval.json` + `predictions.jsonl` + `report.html` out. A killed run continues from its
//! partial predictions when started again with the same arguments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ctiforge_data_prep::Manifest;
use ctiforge_data_prep::Task;
use ctiforge_data_prep::attack::Catalog;
use ctiforge_data_prep::config::PromptSection;
use ctiforge_data_prep::dataset::read_split;
use ctiforge_data_prep::prompt::Prompts;
use ctiforge_model::{LoadedModel, parse_device};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::baseline;
use crate::bootstrap::BootstrapConfig;
use crate::compare::compare;
use crate::error::{Error, Result};
use crate::example::{self, EvalExample, RawSpec};
use crate::harness::{GenSettings, PARTIAL_FILE, Runner, Throughput, read_partial};
use crate::report::{
    self, Counts, DataInfo, EvalReport, FORMAT, ModelInfo, Settings, read_predictions,
};
use crate::score::{Outcome, RawOutput, ScoreContext, aggregate, score_one};
use crate::threshold::Requirement;

/// Where the examples come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A split of a `ctiforge prep` dataset folder.
    Dataset {
        /// The folder.
        dir: PathBuf,
        /// `train`, `validation` or `test`.
        split: String,
    },
    /// A labelled JSONL file, rendered with the run's (or the built-in) prompt templates.
    Jsonl {
        /// The file.
        path: PathBuf,
        /// Its fields and task.
        spec: RawSpec,
    },
}

/// How examples are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scorer {
    /// The model generates each answer (the real evaluation).
    Generate,
    /// Technique candidates ranked by the model's log-likelihood (no sampling).
    Likelihood {
        /// How many of the most frequent training techniques are candidates.
        candidates: usize,
    },
    /// Indicators found by the regex extractor (no model).
    Regex,
}

impl Scorer {
    fn name(self) -> &'static str {
        match self {
            Scorer::Generate => "generate",
            Scorer::Likelihood { .. } => "likelihood",
            Scorer::Regex => "regex",
        }
    }
}

/// Everything `ctiforge eval` takes.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The model (folder or hub id); not needed by the regex scorer.
    pub model: Option<String>,
    /// A training run (or PEFT adapter folder) applied on top of the model.
    pub adapter: Option<PathBuf>,
    /// The examples.
    pub data: DataSource,
    /// The report folder.
    pub out: PathBuf,
    /// Score only the first N examples.
    pub limit: Option<usize>,
    /// How answers are produced.
    pub scorer: Scorer,
    /// Generation settings.
    pub generation: GenSettings,
    /// `cpu`, `cuda:0`, ...
    pub device: String,
    /// The ATT&CK technique table (TSV); found from the dataset's recipe when not given.
    pub attack: Option<PathBuf>,
    /// A report of another model on the same data to compare with.
    pub baseline: Option<PathBuf>,
    /// Checks on the comparison (`technique.micro_f1 >= +0.05`).
    pub require: Vec<Requirement>,
    /// Bootstrap settings of the comparison.
    pub bootstrap: BootstrapConfig,
    /// Discard partial predictions of an earlier run instead of continuing it.
    pub force: bool,
    /// Context length in tokens, overriding `max_position_embeddings` (for a model
    /// fine-tuned on longer rows than it was pre-trained on). Default: the adapter run's
    /// `batch.max_seq_len` when that is longer, else the model's own.
    pub context: Option<usize>,
}

/// Runs the evaluation and writes the report into `opts.out`. `progress(done, total)`
/// is called as examples finish.
///
/// # Errors
/// Unreadable data, model or adapter; a scorer that does not fit the task; a comparison
/// baseline without common examples; I/O on the report folder. A requirement that fails
/// is not an error: see [`EvalReport::comparison`].
pub fn evaluate(opts: &EvalOptions, progress: &mut dyn FnMut(usize, usize)) -> Result<EvalReport> {
    let started = Instant::now();
    let prompts_cfg = prompt_section(opts)?;
    let prompts = Prompts::new(&prompts_cfg).map_err(|e| Error::Input {
        path: "prompt templates".into(),
        message: e.to_string(),
    })?;
    let (mut examples, mut data) = match &opts.data {
        DataSource::Dataset { dir, split } => {
            let ex = example::from_dataset(dir, split)?;
            let manifest = Manifest::read(dir).ok();
            let info = DataInfo {
                source: dir.display().to_string(),
                split: Some(split.clone()),
                name: manifest.as_ref().map(|m| m.name.clone()),
                fingerprint: manifest.as_ref().map(|m| m.fingerprint.clone()),
                available: ex.len(),
            };
            (ex, info)
        }
        DataSource::Jsonl { path, spec } => {
            let ex = example::from_jsonl(path, spec, &prompts)?;
            let info = DataInfo {
                source: path.display().to_string(),
                available: ex.len(),
                ..DataInfo::default()
            };
            (ex, info)
        }
    };
    if let Some(n) = opts.limit {
        examples.truncate(n);
    }
    if examples.is_empty() {
        return Err(Error::Input {
            path: data.source.clone().into(),
            message: "no examples to evaluate".to_owned(),
        });
    }
    data.available = data.available.max(examples.len());
    let ctx = ScoreContext {
        catalog: catalog(opts)?,
    };

    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let partial = opts.out.join(PARTIAL_FILE);
    if opts.force && partial.exists() {
        std::fs::remove_file(&partial).map_err(|e| Error::io(&partial, e))?;
    }
    let fingerprint = fingerprint(opts, &examples);

    let mut model_info = ModelInfo::default();
    let (outputs, throughput) = match opts.scorer {
        Scorer::Regex => {
            let mut out = BTreeMap::new();
            for ex in &examples {
                out.insert(ex.id.clone(), baseline::regex_answer(ex)?);
            }
            progress(examples.len(), examples.len());
            (out, Throughput::default())
        }
        Scorer::Generate | Scorer::Likelihood { .. } => {
            let spec = opts.model.as_deref().ok_or_else(|| Error::Input {
                path: "--model".into(),
                message: format!("the {} scorer needs a model", opts.scorer.name()),
            })?;
            let device = parse_device(&opts.device).map_err(Error::model)?;
            let mut loaded = LoadedModel::resolve(spec, &device).map_err(Error::model)?;
            model_info = ModelInfo {
                model: spec.to_owned(),
                dir: loaded.dir.display().to_string(),
                adapter: opts.adapter.as_ref().map(|a| a.display().to_string()),
                run: None,
                parameters: loaded.model.config.parameter_count(),
                context: loaded.model.config.max_seq_len,
            };
            if let Some(dir) = &opts.adapter {
                loaded.model = ctiforge_model::adapter::apply_adapter(loaded.model, dir)
                    .map_err(Error::model)?;
                model_info.run = read_json(&dir.join("run.json"));
            }
            let own = loaded.model.config.max_seq_len;
            let trained = opts.adapter.as_deref().and_then(trained_context);
            if let Some(ctx) = opts.context.or(trained.filter(|t| *t > own)) {
                tracing::info!(
                    context = ctx,
                    model = own,
                    "context length set beyond config.json's max_position_embeddings"
                );
                loaded.model.config.max_seq_len = ctx;
            }
            model_info.context = loaded.model.config.max_seq_len;
            let runner = Runner {
                model: &loaded.model,
                tokenizer: loaded.tokenizer().map_err(Error::model)?,
                stop_token_ids: loaded.stop_token_ids(),
            };
            let done = read_partial(&partial, &fingerprint)?;
            match opts.scorer {
                Scorer::Likelihood { candidates } => {
                    likelihood(opts, &runner, &prompts, &examples, candidates, progress)?
                }
                _ => runner.run(
                    &examples,
                    &opts.generation,
                    done,
                    &partial,
                    &fingerprint,
                    progress,
                )?,
            }
        }
    };

    let outcomes: Vec<Outcome> = examples
        .iter()
        .map(|ex| {
            let out = outputs.get(&ex.id).cloned().unwrap_or_default();
            score_one(ex, &out, &ctx)
        })
        .collect();
    let refs: Vec<&Outcome> = outcomes.iter().collect();
    let (metrics, per_label) = aggregate(&refs, 20)?;
    let mut counts = Counts {
        examples: outcomes.len(),
        ..Counts::default()
    };
    for o in &outcomes {
        *counts.by_task.entry(o.task.to_string()).or_default() += 1;
        counts.truncated_prompts += usize::from(o.truncated);
        if let Some(f) = &o.finish {
            *counts.finish.entry(f.clone()).or_default() += 1;
        }
    }
    let comparison = match &opts.baseline {
        None => None,
        Some(base) => {
            let base_outcomes = read_predictions(base)?;
            let mut c = compare(
                &base_outcomes,
                &outcomes,
                (&base.display().to_string(), &opts.out.display().to_string()),
                &opts.bootstrap,
            )?;
            c.check(&opts.require)?;
            Some(c)
        }
    };
    let report = EvalReport {
        format: FORMAT.to_owned(),
        created_by: format!("ctiforge-eval {}", env!("CARGO_PKG_VERSION")),
        model: model_info,
        data,
        settings: Settings {
            scorer: opts.scorer.name().to_owned(),
            generation: opts.generation.clone(),
            limit: opts.limit,
            device: opts.device.clone(),
        },
        counts,
        metrics,
        per_label,
        comparison,
        throughput,
        duration_secs: started.elapsed().as_secs_f64(),
    };
    report::write_report(&opts.out, &report, &outcomes)?;
    if partial.exists() {
        std::fs::remove_file(&partial).map_err(|e| Error::io(&partial, e))?;
    }
    Ok(report)
}

fn likelihood(
    opts: &EvalOptions,
    runner: &Runner<'_>,
    prompts: &Prompts,
    examples: &[EvalExample],
    k: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(BTreeMap<String, RawOutput>, Throughput)> {
    let started = Instant::now();
    // Candidates from the training split; for a raw file, from its own references.
    let labels: Vec<Vec<String>> = match &opts.data {
        DataSource::Dataset { dir, .. } => read_split(dir, "train")
            .map_err(|e| Error::Input {
                path: dir.clone(),
                message: e.to_string(),
            })?
            .into_iter()
            .filter(|r| r.task == Task::TechniqueClassification)
            .map(|r| example::normalise_ids(r.labels))
            .collect(),
        DataSource::Jsonl { .. } => examples
            .iter()
            .filter_map(|e| match &e.reference {
                example::Reference::Techniques(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
    };
    let cands = baseline::candidates(&labels, k);
    let mut out = BTreeMap::new();
    for (i, ex) in examples.iter().enumerate() {
        out.insert(
            ex.id.clone(),
            baseline::likelihood_answer(runner, prompts, ex, &cands)?,
        );
        progress(i + 1, examples.len());
    }
    let t = Throughput {
        examples: examples.len(),
        generated_tokens: 0,
        secs: started.elapsed().as_secs_f64(),
    };
    Ok((out, t))
}

/// `batch.max_seq_len` of a training run's resolved config.
fn trained_context(run: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(run.join("config.toml")).ok()?;
    let doc: toml::Table = toml::from_str(&text).ok()?;
    let n = doc.get("batch")?.get("max_seq_len")?.as_integer()?;
    usize::try_from(n).ok()
}

fn read_json(path: &Path) -> Option<Value> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

/// The dataset whose recipe holds the prompt templates and technique table: the
/// evaluated dataset, else the one the adapter's run was trained on.
fn recipe_dataset(opts: &EvalOptions) -> Option<PathBuf> {
    match &opts.data {
        DataSource::Dataset { dir, .. } => Some(dir.clone()),
        DataSource::Jsonl { .. } => {
            let run = opts.adapter.as_ref()?;
            let text = std::fs::read_to_string(run.join("config.toml")).ok()?;
            let doc: toml::Table = toml::from_str(&text).ok()?;
            let data = doc.get("run")?.get("data")?.as_str()?;
            Some(PathBuf::from(data))
        }
    }
}

/// The prompt templates: the recipe's `[prompt]` section from the dataset's manifest, or
/// the built-in templates when there is none (a base model on a raw file).
fn prompt_section(opts: &EvalOptions) -> Result<PromptSection> {
    let Some(dir) = recipe_dataset(opts) else {
        return Ok(PromptSection::default());
    };
    let Ok(manifest) = Manifest::read(&dir) else {
        if matches!(opts.data, DataSource::Jsonl { .. }) {
            tracing::warn!(
                dataset = %dir.display(),
                "the run's dataset is not readable; rendering prompts with the built-in templates"
            );
        }
        return Ok(PromptSection::default());
    };
    match manifest.config.get("prompt") {
        None | Some(Value::Null) => Ok(PromptSection::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::Input {
            path: dir.join("manifest.json"),
            message: format!("config.prompt: {e}"),
        }),
    }
}

/// The technique table: `--attack`, else the recipe's `attack.techniques` when that file
/// exists, else none (IDs are then scored as written, and not checked).
fn catalog(opts: &EvalOptions) -> Result<Option<Catalog>> {
    let path = opts.attack.clone().or_else(|| {
        let dir = recipe_dataset(opts)?;
        let manifest = Manifest::read(&dir).ok()?;
        let p = manifest.config.get("attack")?.get("techniques")?.as_str()?;
        Some(PathBuf::from(p)).filter(|p| p.is_file())
    });
    match path {
        Some(p) => Catalog::from_tsv(&p).map(Some).map_err(|e| Error::Input {
            path: p,
            message: e.to_string(),
        }),
        None => {
            tracing::warn!(
                "no ATT&CK technique table (--attack); technique IDs are scored as written and \
                 unknown or revoked IDs are not counted"
            );
            Ok(None)
        }
    }
}

/// Identifies one evaluation, so partial predictions are only reused by the same one.
fn fingerprint(opts: &EvalOptions, examples: &[EvalExample]) -> String {
    let data = match &opts.data {
        DataSource::Dataset { dir, split } => json!({"dir": dir, "split": split}),
        DataSource::Jsonl { path, spec } => json!({
            "path": path, "task": spec.task, "text": spec.text_field, "label": spec.label_field,
        }),
    };
    let key = json!({
        "model": opts.model,
        "adapter": opts.adapter,
        "data": data,
        "scorer": opts.scorer.name(),
        "generation": opts.generation,
        "context": opts.context,
        "ids": examples.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        "prompts": examples.iter().map(|e| e.prompt.as_str()).collect::<Vec<_>>(),
    });
    format!("sha256:{:x}", Sha256::digest(key.to_string().as_bytes()))
}
