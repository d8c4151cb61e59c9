//! `manifest.json`: what a dataset is made of (sources with SHA-256, the resolved recipe,
//! row counts at each stage, label distributions, lengths) and its content fingerprint.
//! It holds no timestamps or absolute paths, so the same inputs give the same bytes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The manifest's format tag.
pub const FORMAT: &str = "ctiforge-dataset/1";

/// One source as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceEntry {
    /// Its name in the recipe.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// The path as the recipe gives it.
    pub path: String,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// Rows read (usable + rejected).
    pub rows_read: usize,
    /// Rows rejected while reading or validating.
    pub rows_rejected: usize,
    /// Rows in the final dataset.
    pub rows_kept: usize,
}

/// Row counts through the stages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Rows read from all sources.
    pub read: usize,
    /// Rows rejected (see `rejects.jsonl`).
    pub rejected: usize,
    /// Exact duplicates removed (after normalisation).
    pub exact_duplicates: usize,
    /// Of those, duplicates whose labels were merged into the kept row.
    pub labels_merged: usize,
    /// Near duplicates removed (MinHash).
    pub near_duplicates: usize,
    /// Rows written.
    pub kept: usize,
}

/// Summary statistics of a length distribution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lengths {
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Largest.
    pub max: f64,
}

/// One split's contents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitEntry {
    /// Rows.
    pub rows: usize,
    /// Distinct groups (reports, actors).
    pub groups: usize,
    /// SHA-256 of the parquet file.
    pub sha256: String,
    /// Rows per task.
    pub tasks: BTreeMap<String, usize>,
    /// Rows per label.
    pub labels: BTreeMap<String, usize>,
    /// Characters of the cleaned text.
    pub text_chars: Lengths,
    /// Prompt + completion tokens, with the recipe's tokenizer.
    pub tokens: Option<Lengths>,
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The recipe's dataset name.
    pub name: String,
    /// The crate that wrote it, with its version.
    pub created_by: String,
    /// Content fingerprint: SHA-256 over the split files' hashes.
    pub fingerprint: String,
    /// Sources in recipe order.
    pub sources: Vec<SourceEntry>,
    /// Row counts.
    pub counts: Counts,
    /// `train`, `validation`, `test`.
    pub splits: BTreeMap<String, SplitEntry>,
    /// Label validation outcomes.
    pub labels: crate::labels::LabelReport,
    /// The tokenizer used for token counts, with its SHA-256.
    pub tokenizer: Option<String>,
    /// The resolved recipe.
    pub config: Value,
}

impl Manifest {
    /// Reads `DIR/manifest.json`.
    ///
    /// # Errors
    /// The file is missing, unreadable or not a manifest.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join("manifest.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Parse {
            path,
            message: format!("not a dataset manifest: {e}"),
        })
    }
}
