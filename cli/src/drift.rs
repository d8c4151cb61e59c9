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
    let reference = input(&a.reference, a.split.as_deref())?;
    let current = input(&a.current, a.split.as_deref())?;
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
