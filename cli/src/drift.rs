//! `ctiforge registry drift`: a drift report between the dataset a model version was
//! trained on and new data (label mix, text and token lengths, vocabulary, IOC kinds),
//! written as `drift.json` + `drift.html`, optionally recorded on a version as tags.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use ctiforge_data_prep::Task;
use ctiforge_data_prep::dataset::{self, Record};
use ctiforge_registry::ModelRef;
use ctiforge_registry::drift::{DriftConfig, DriftInput, DriftVerdict, drift_report, write_report};

use crate::registry::Location;

/// Exit code of `registry drift` when the verdict is `fail` (errors exit 1).
pub const EXIT_DRIFT_FAIL: i32 = 4;

/// Arguments of `registry drift`.
#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    location: Location,
    /// The dataset the model was trained on (a `ctiforge prep` folder).
    #[arg(long)]
    reference: PathBuf,
    /// The new data (a `ctiforge prep` folder).
    #[arg(long)]
    current: PathBuf,
    /// Which split of each dataset; default: all three together.
    #[arg(long)]
    split: Option<String>,
    /// Thresholds (TOML, see configs/drift/default.toml); default: the documented ones.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The folder for drift.json and drift.html.
    #[arg(long)]
    out: PathBuf,
    /// Record the verdict and statistics as tags on this version (NAME/VERSION or
    /// NAME@alias), where `registry promote` reads them.
    #[arg(long, value_name = "MODEL_REF")]
    attach: Option<String>,
    /// A model (folder or hub id): its predicted techniques on both datasets are compared
    /// too (`predicted_labels.*`). Needs technique-classification rows.
    #[arg(long)]
    model: Option<String>,
    /// A training run (or PEFT adapter folder) applied to --model.
    #[arg(long, requires = "model")]
    adapter: Option<PathBuf>,
    /// Context length for --model (see `ctiforge eval --context`).
    #[arg(long, requires = "model")]
    context: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `registry drift`; returns the exit code (4 when the verdict is `fail`).
pub fn run(a: &DriftArgs) -> Result<i32> {
    let config = match &a.config {
        Some(path) => DriftConfig::from_file(path)?,
        None => DriftConfig::default(),
    };
    let mut reference = input(&a.reference, a.split.as_deref())?;
    let mut current = input(&a.current, a.split.as_deref())?;
    if let Some(model) = &a.model {
        for (name, dir, target) in [
            ("reference", &a.reference, &mut reference),
            ("current", &a.current, &mut current),
        ] {
            let work = a.out.join("predictions").join(name);
            target.predicted_labels = Some(predicted_techniques(a, model, dir, &work)?);
        }
    }
    let report = drift_report(&reference, &current, &config)?;
    let paths = write_report(&report, &a.out)
        .with_context(|| format!("writing the report to {}", a.out.display()))?;
    if let Some(target) = &a.attach {
        let reg = a.location.open()?;
        let version = target.parse::<ModelRef>()?.resolve(reg.as_ref())?;
        for (key, value) in report.tags() {
            reg.set_version_tag(&version.model, &version.version, &key, &value)?;
        }
        eprintln!(
            "recorded drift.verdict = {} on {}/{}",
            report.verdict, version.model, version.version
        );
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("drift verdict: {}", report.verdict);
        for s in report.flagged() {
            println!("  {:<28} {:>10.4}  {}", s.id, s.value, s.verdict);
        }
        eprintln!(
            "wrote {} and {}",
            paths.json.display(),
            paths.html.display()
        );
    }
    Ok(if report.verdict == DriftVerdict::Fail {
        EXIT_DRIFT_FAIL
    } else {
        0
    })
}

/// The techniques `model` predicts for every row of the splits [`input`] reads, in the
/// same order, through the evaluation harness (its reports land in `work`).
fn predicted_techniques(
    a: &DriftArgs,
    model: &str,
    dir: &Path,
    work: &Path,
) -> Result<Vec<Vec<String>>> {
    use ctiforge_eval::{DataSource, EvalOptions, Scorer, evaluate};
    let splits: Vec<&str> = match a.split.as_deref() {
        Some(s) => vec![s],
        None => dataset::SPLITS.to_vec(),
    };
    let mut out = Vec::new();
    for split in splits {
        let opts = EvalOptions {
            model: Some(model.to_owned()),
            adapter: a.adapter.clone(),
            data: DataSource::Dataset {
                dir: dir.to_path_buf(),
                split: split.to_owned(),
            },
            out: work.join(split),
            limit: None,
            scorer: Scorer::Generate,
            generation: ctiforge_eval::harness::GenSettings {
                measure_loss: false,
                ..Default::default()
            },
            device: "cpu".into(),
            attack: None,
            baseline: None,
            require: Vec::new(),
            bootstrap: Default::default(),
            force: false,
            context: a.context,
        };
        evaluate(&opts, &mut |_, _| {})
            .with_context(|| format!("predicting techniques on {} ({split})", dir.display()))?;
        for o in ctiforge_eval::report::read_predictions(&work.join(split))? {
            let Some(ids) = o.prediction.get("techniques").and_then(|v| v.as_array()) else {
                anyhow::bail!(
                    "{} ({split}) row {:?} is a {} row; predicted-technique drift needs \
                     technique_classification rows",
                    dir.display(),
                    o.id,
                    o.task
                );
            };
            out.push(
                ids.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// The drift features of a dataset folder (one split, or all of them).
pub(crate) fn input(dir: &Path, split: Option<&str>) -> Result<DriftInput> {
    let splits: Vec<&str> = match split {
        Some(s) => vec![s],
        None => dataset::SPLITS.to_vec(),
    };
    let mut out = DriftInput::default();
    let mut tokens = Vec::new();
    let mut all_counted = true;
    for s in splits {
        let records = dataset::read_split(dir, s)
            .with_context(|| format!("reading the {s} split of {}", dir.display()))?;
        for r in &records {
            add(&mut out, r);
            match r.tokens {
                Some(n) => tokens.push(f64::from(n)),
                None => all_counted = false,
            }
        }
    }
    if all_counted && !tokens.is_empty() {
        out.token_counts = Some(tokens);
    }
    Ok(out)
}

fn add(out: &mut DriftInput, r: &Record) {
    out.labels.push(r.labels.clone());
    out.add_text(&r.text);
    if r.task == Task::IocExtraction {
        let iocs = r.target["iocs"].as_array().into_iter().flatten();
        for kind in iocs.filter_map(|i| i["kind"].as_str()) {
            *out.ioc_kinds.entry(kind.to_owned()).or_default() += 1;
        }
    }
}
