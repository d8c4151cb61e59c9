//! Reading a prepared dataset back: one split's parquet file as plain records, for the
//! stages that consume datasets without doing frame work of their own (drift reports,
//! evaluation, training data loaders).

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::schema::{self as s, Task};

/// The split names a dataset folder holds.
pub const SPLITS: [&str; 3] = ["train", "validation", "test"];

/// One row of a split.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Stable row id.
    pub id: String,
    /// The task the row serves.
    pub task: Task,
    /// The cleaned input text.
    pub text: String,
    /// Label strings (technique IDs, IOC kinds, entity types).
    pub labels: Vec<String>,
    /// The structured target.
    pub target: Value,
    /// The rendered prompt.
    pub prompt: String,
    /// The rendered completion.
    pub completion: String,
    /// Prompt plus completion tokens, when the recipe counted them.
    pub tokens: Option<u32>,
}

/// The parquet file of `split` in the dataset folder `dir`.
///
/// # Errors
/// An unknown split name, or a folder without that file.
pub fn split_path(dir: &Path, split: &str) -> Result<PathBuf> {
    if !SPLITS.contains(&split) {
        return Err(Error::Config {
            problems: vec![format!(
                "unknown split {split:?}; expected one of {}",
                SPLITS.join(", ")
            )],
        });
    }
    let path = dir.join(format!("{split}.parquet"));
    if !path.is_file() {
        return Err(Error::Output {
            path,
            message: "not found: is this a folder written by `ctiforge prep`?".into(),
        });
    }
    Ok(path)
}

/// Reads every row of `split` from the dataset folder `dir`.
///
/// # Errors
/// A missing file or column, a column of the wrong type, an unknown task name, or a
/// target that is not JSON; each names the file and, for values, the row.
pub fn read_split(dir: &Path, split: &str) -> Result<Vec<Record>> {
    let path = split_path(dir, split)?;
    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| Error::polars(format!("reading {}", path.display()), e))?;
    records(&df, &path)
}

fn strings<'a>(df: &'a DataFrame, name: &str, path: &Path) -> Result<&'a StringChunked> {
    df.column(name)
        .and_then(|c| c.str())
        .map_err(|e| Error::polars(format!("{}: column {name:?}", path.display()), e))
}

fn counts<'a>(df: &'a DataFrame, name: &str, path: &Path) -> Result<Option<&'a UInt32Chunked>> {
    match df.column(name) {
        Err(_) => Ok(None),
        Ok(c) => c
            .u32()
            .map(Some)
            .map_err(|e| Error::polars(format!("{}: column {name:?}", path.display()), e)),
    }
}

fn records(df: &DataFrame, path: &Path) -> Result<Vec<Record>> {
    let bad = |row: usize, what: String| Error::Parse {
        path: path.to_path_buf(),
        message: format!("row {}: {what}", row + 1),
    };
    let ids = strings(df, s::ID, path)?;
    let tasks = strings(df, s::TASK, path)?;
    let texts = strings(df, s::TEXT, path)?;
    let targets = strings(df, s::TARGET, path)?;
    let prompts = strings(df, s::PROMPT, path)?;
    let completions = strings(df, s::COMPLETION, path)?;
    let labels = df
        .column(s::LABELS)
        .and_then(|c| c.list())
        .map_err(|e| Error::polars(format!("{}: column \"labels\"", path.display()), e))?;
    let prompt_tokens = counts(df, s::PROMPT_TOKENS, path)?;
    let completion_tokens = counts(df, s::COMPLETION_TOKENS, path)?;

    let mut out = Vec::with_capacity(df.height());
    for (row, list) in labels.amortized_iter().enumerate() {
        let get = |c: &StringChunked| c.get(row).unwrap_or_default().to_owned();
        let task_name = tasks.get(row).unwrap_or_default();
        let task: Task = task_name
            .parse()
            .map_err(|_| bad(row, format!("unknown task {task_name:?}")))?;
        let target = serde_json::from_str(targets.get(row).unwrap_or("{}"))
            .map_err(|e| bad(row, format!("target is not JSON: {e}")))?;
        let mut row_labels = Vec::new();
        if let Some(list) = list {
            let list = list
                .as_ref()
                .str()
                .map_err(|e| Error::polars(format!("{}: column \"labels\"", path.display()), e))?;
            row_labels.extend(list.iter().flatten().map(str::to_owned));
        }
        let tokens = match (prompt_tokens, completion_tokens) {
            (Some(p), Some(c)) => p.get(row).zip(c.get(row)).map(|(p, c)| p + c),
            _ => None,
        };
        out.push(Record {
            id: get(ids),
            task,
            text: get(texts),
            labels: row_labels,
            target,
            prompt: get(prompts),
            completion: get(completions),
            tokens,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_split_and_missing_folder_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = read_split(dir.path(), "dev")
            .expect_err("bad split")
            .to_string();
        assert!(err.contains("dev") && err.contains("validation"), "{err}");
        let err = read_split(dir.path(), "train")
            .expect_err("missing")
            .to_string();
        assert!(err.contains("train.parquet"), "{err}");
    }
}
