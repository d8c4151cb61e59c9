//! The eval report: `eval.json` (metrics overall and per task, per-label scores, counts,
//! model and dataset lineage), `predictions.jsonl` (one [`Outcome`] per example) and
//! `report.html`, all written atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compare::Comparison;
use crate::error::{Error, Result};
use crate::harness::{GenSettings, Throughput};
use crate::score::{Breakdown, Outcome};

/// The format tag of `eval.json`.
pub const FORMAT: &str = "ctiforge.eval/1";
/// File names inside a report folder.
pub const EVAL_FILE: &str = "eval.json";
/// One line per example.
pub const PREDICTIONS_FILE: &str = "predictions.jsonl";
/// The page people read.
pub const HTML_FILE: &str = "report.html";

/// What was evaluated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model as given (`--model`): a folder or a hub id.
    pub model: String,
    /// The folder it resolved to.
    pub dir: String,
    /// The adapter folder (a training run), if any.
    pub adapter: Option<String>,
    /// The run's `run.json` (lineage: dataset fingerprint, base model hash, code version).
    pub run: Option<Value>,
    /// Parameters of the network.
    pub parameters: usize,
    /// The context length used, in tokens.
    #[serde(default)]
    pub context: usize,
}

/// What it was evaluated on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// The dataset folder or JSONL file.
    pub source: String,
    /// The split, for a dataset folder.
    pub split: Option<String>,
    /// The dataset's name from its manifest.
    pub name: Option<String>,
    /// The dataset's content fingerprint from its manifest.
    pub fingerprint: Option<String>,
    /// Examples available before `--limit`.
    pub available: usize,
}

/// How the examples were answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `generate` (the model writes answers) or `likelihood` / `regex` (baselines).
    pub scorer: String,
    /// Generation settings.
    pub generation: GenSettings,
    /// `--limit`, if given.
    pub limit: Option<usize>,
    /// The device.
    pub device: String,
}

/// Example counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Examples scored.
    pub examples: usize,
    /// Examples per task.
    pub by_task: BTreeMap<String, usize>,
    /// Prompts cut to fit the model's context.
    pub truncated_prompts: usize,
    /// Why generation stopped, by reason.
    pub finish: BTreeMap<String, usize>,
}

/// `eval.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// [`FORMAT`].
    pub format: String,
    /// The crate that wrote it, with its version.
    pub created_by: String,
    /// The model.
    pub model: ModelInfo,
    /// The data.
    pub data: DataInfo,
    /// The settings.
    pub settings: Settings,
    /// Example counts.
    pub counts: Counts,
    /// Metrics by task (`technique`, `ioc`, `entity`, `summarization`, `lm`), stable keys
    /// such as `technique.micro_f1` and `lm.perplexity`.
    pub metrics: Value,
    /// Per-label scores and the most frequent confusions.
    pub per_label: Breakdown,
    /// The comparison with a baseline report (`--baseline`), if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    /// Throughput of this invocation.
    pub throughput: Throughput,
    /// Wall time of this invocation.
    pub duration_secs: f64,
}

impl EvalReport {
    /// Reads `eval.json` from a report folder or the file itself.
    ///
    /// # Errors
    /// The file is missing, unreadable or not an eval report.
    pub fn read(path: &Path) -> Result<EvalReport> {
        let file = if path.is_dir() {
            path.join(EVAL_FILE)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let report: EvalReport = serde_json::from_str(&text).map_err(|e| Error::Input {
            path: file.clone(),
            message: format!("not an eval report: {e}"),
        })?;
        if report.format != FORMAT {
            return Err(Error::Input {
                path: file,
                message: format!("format {:?}, expected {FORMAT:?}", report.format),
            });
        }
        Ok(report)
    }

    /// The numeric metrics as `dotted.path → value`.
    pub fn flat_metrics(&self) -> BTreeMap<String, f64> {
        crate::score::flatten(&self.metrics)
    }
}

/// Reads `predictions.jsonl` from a report folder (or the folder of an `eval.json`).
///
/// # Errors
/// The file is missing or a line is not an outcome (named with its line number).
pub fn read_predictions(path: &Path) -> Result<Vec<Outcome>> {
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    };
    let file = dir.join(PREDICTIONS_FILE);
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Input {
                path: format!("{}:{}", file.display(), i + 1).into(),
                message: format!("not a prediction line: {e}"),
            })
        })
        .collect()
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
///
/// # Errors
/// I/O failures, naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Writes `eval.json`, `predictions.jsonl` and `report.html` into `dir`.
///
/// # Errors
/// I/O failures, naming the file.
pub fn write_report(dir: &Path, report: &EvalReport, outcomes: &[Outcome]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut lines = String::new();
    for o in outcomes {
        lines.push_str(
            &serde_json::to_string(o).map_err(|e| Error::io(dir, std::io::Error::other(e)))?,
        );
        lines.push('\n');
    }
    write_atomic(&dir.join(PREDICTIONS_FILE), lines.as_bytes())?;
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| Error::io(dir, std::io::Error::other(e)))?;
    write_atomic(&dir.join(EVAL_FILE), json.as_bytes())?;
    let html = crate::html::render(report, outcomes);
    write_atomic(&dir.join(HTML_FILE), html.as_bytes())
}
