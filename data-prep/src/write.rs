//! Writing the dataset folder: one parquet file per split (rows in source order), the
//! rejects as JSON Lines, and the manifest, all under a temporary name renamed into place.
//! Per-split statistics are computed with Polars over the frames being written.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use polars::prelude::*;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::config::PrepConfig;
use crate::error::{Error, Result};
use crate::labels::LabelReport;
use crate::manifest::{Counts, FORMAT, Lengths, Manifest, SourceEntry, SplitEntry};
use crate::pipeline::{Row, sha256_file};
use crate::prompt::Prompts;
use crate::schema::{self as s};
use crate::sources::Reject;
use crate::split::Split;

/// The splits, in file order.
const SPLITS: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

/// A string column made by moving one field out of every row: each row's string is freed
/// as soon as its bytes are in the column, so building a split's frame needs little more
/// memory than the rows it replaces.
fn take_strings(rows: &mut [Row], name: &str, field: fn(&mut Row) -> &mut String) -> Column {
    let col: StringChunked = rows.iter_mut().map(|r| std::mem::take(field(r))).collect();
    col.with_name(name.into()).into_column()
}

/// Builds one split's frame with the columns of [`s::COLUMNS`], moving the rows' strings
/// into it (the rows keep their labels, task and group).
fn frame(rows: &mut [Row], cfg: &PrepConfig, prompts: &Prompts) -> Result<DataFrame> {
    let mut labels = ListStringChunkedBuilder::new(s::LABELS.into(), rows.len(), rows.len() * 2);
    for r in rows.iter() {
        labels.append_values_iter(r.labels.iter().map(String::as_str));
    }
    let label_col = labels.finish().into_series();
    let targets: Vec<String> = rows.par_iter().map(|r| r.target.to_string()).collect();
    let targets: StringChunked = targets.into_iter().collect();
    let messages: Vec<String> = rows
        .par_iter()
        .map(|r| prompts.messages(r.task, &r.prompt, &r.completion))
        .collect::<Result<_>>()?;
    let messages: StringChunked = messages.into_iter().collect();
    let columns = vec![
        take_strings(rows, s::ID, |r| &mut r.id),
        Column::new(
            s::TASK.into(),
            rows.iter().map(|r| r.task.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            s::SOURCE.into(),
            rows.iter()
                .map(|r| cfg.sources[r.source].name.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            s::LINE.into(),
            rows.iter().map(|r| r.line as u32).collect::<Vec<_>>(),
        ),
        Column::new(
            s::GROUP.into(),
            rows.iter().map(|r| r.group.as_str()).collect::<Vec<_>>(),
        ),
        take_strings(rows, s::TEXT, |r| &mut r.text),
        take_strings(rows, s::TEXT_RAW, |r| &mut r.text_raw),
        label_col.into(),
        targets.with_name(s::TARGET.into()).into_column(),
        take_strings(rows, s::PROMPT, |r| &mut r.prompt),
        take_strings(rows, s::COMPLETION, |r| &mut r.completion),
        messages.with_name(s::MESSAGES.into()).into_column(),
        Column::new(
            s::PROMPT_TOKENS.into(),
            rows.iter().map(|r| r.prompt_tokens).collect::<Vec<_>>(),
        ),
        Column::new(
            s::COMPLETION_TOKENS.into(),
            rows.iter().map(|r| r.completion_tokens).collect::<Vec<_>>(),
        ),
    ];
    DataFrame::new_infer_height(columns).map_err(|e| Error::polars("building a split frame", e))
}

/// Min, mean, median, p95 and max of a numeric expression, computed by Polars.
fn lengths(df: &DataFrame, e: Expr) -> Result<Option<Lengths>> {
    let stats = df
        .clone()
        .lazy()
        .select([e.cast(DataType::Float64).alias("v")])
        .select([
            col("v").min().alias("min"),
            col("v").mean().alias("mean"),
            col("v").median().alias("p50"),
            col("v")
                .quantile(lit(0.95), QuantileMethod::Linear)
                .alias("p95"),
            col("v").max().alias("max"),
        ])
        .collect()
        .map_err(|e| Error::polars("length statistics", e))?;
    let get = |name: &str| -> Option<f64> {
        stats
            .column(name)
            .ok()?
            .f64()
            .ok()?
            .get(0)
            .map(|v| (v * 100.0).round() / 100.0)
    };
    Ok(
        match (get("min"), get("mean"), get("p50"), get("p95"), get("max")) {
            (Some(min), Some(mean), Some(p50), Some(p95), Some(max)) => Some(Lengths {
                min,
                mean,
                p50,
                p95,
                max,
            }),
            _ => None,
        },
    )
}

fn split_entry(rows: &[Row], df: &DataFrame, sha256: String) -> Result<SplitEntry> {
    let mut tasks = BTreeMap::new();
    let mut labels = BTreeMap::new();
    let mut groups = std::collections::HashSet::new();
    for r in rows {
        *tasks.entry(r.task.to_string()).or_insert(0) += 1;
        for l in &r.labels {
            *labels.entry(l.clone()).or_insert(0) += 1;
        }
        groups.insert(r.group.as_str());
    }
    let tokens = if rows.iter().any(|r| r.prompt_tokens.is_some()) {
        lengths(df, col(s::PROMPT_TOKENS) + col(s::COMPLETION_TOKENS))?
    } else {
        None
    };
    Ok(SplitEntry {
        rows: rows.len(),
        groups: groups.len(),
        sha256,
        tasks,
        labels,
        text_chars: lengths(df, col(s::TEXT).str().len_chars())?.unwrap_or_default(),
        tokens,
    })
}

/// Writes `rejects` as JSON Lines to `path` (atomically).
///
/// # Errors
/// The file cannot be written.
pub(crate) fn rejects_file(path: &Path, rejects: &[Reject]) -> Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for r in rejects {
            serde_json::to_writer(&mut f, r)?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| Error::io(path, e))
}

fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    ParquetWriter::new(file)
        .with_statistics(StatisticsOptions::default())
        .finish(df)
        .map_err(|e| Error::polars(format!("writing {}", path.display()), e))?;
    Ok(())
}

/// Everything the pipeline hands to the writer.
pub(crate) struct Prepared {
    /// Kept rows, each with its split.
    pub rows: Vec<Row>,
    /// Rejected rows.
    pub rejects: Vec<Reject>,
    /// Per-source counts and hashes.
    pub sources: Vec<SourceEntry>,
    /// Row counts through the stages.
    pub counts: Counts,
    /// Label validation outcomes.
    pub labels: LabelReport,
    /// The tokenizer used, with its hash.
    pub tokenizer: Option<String>,
}

/// Writes the whole dataset folder and returns its manifest.
pub(crate) fn dataset(
    out: &Path,
    cfg: &PrepConfig,
    prepared: Prepared,
    force: bool,
) -> Result<Manifest> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    let stage = out.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    if stage.exists() {
        std::fs::remove_dir_all(&stage).map_err(|e| Error::io(&stage, e))?;
    }
    std::fs::create_dir_all(&stage).map_err(|e| Error::io(&stage, e))?;
    let result = write_into(&stage, cfg, prepared);
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&stage);
            return Err(e);
        }
    };
    if out.exists() && force {
        std::fs::remove_dir_all(out).map_err(|e| Error::io(out, e))?;
    }
    std::fs::rename(&stage, out).map_err(|e| Error::io(out, e))?;
    Ok(manifest)
}

fn write_into(dir: &Path, cfg: &PrepConfig, prepared: Prepared) -> Result<Manifest> {
    let Prepared {
        rows,
        rejects,
        sources,
        counts,
        labels,
        tokenizer,
    } = prepared;
    let prompts = Prompts::new(&cfg.prompt)?;
    let mut splits = BTreeMap::new();
    let mut fingerprint = Sha256::new();
    // Rows move into their split (keeping source order), and each split's strings move
    // into its frame, so the text is held about once at any time, not twice.
    let mut parts: [Vec<Row>; 3] = Default::default();
    for r in rows {
        let i = SPLITS.iter().position(|&s| s == r.split).unwrap_or(0);
        parts[i].push(r);
    }
    for (split, mut part) in SPLITS.into_iter().zip(parts) {
        let mut df = frame(&mut part, cfg, &prompts)?;
        let path = dir.join(format!("{split}.parquet"));
        write_parquet(&path, &mut df)?;
        let sha = sha256_file(&path)?;
        fingerprint.update(format!("{split}:{sha}\n").as_bytes());
        splits.insert(split.to_string(), split_entry(&part, &df, sha)?);
    }
    rejects_file(&dir.join("rejects.jsonl"), &rejects)?;
    let config = serde_json::to_value(cfg).map_err(|e| Error::Output {
        path: dir.to_path_buf(),
        message: format!("cannot serialise the recipe: {e}"),
    })?;
    let manifest = Manifest {
        format: FORMAT.into(),
        name: cfg.dataset.name.clone(),
        created_by: concat!("ctiforge-data-prep ", env!("CARGO_PKG_VERSION")).into(),
        fingerprint: format!("sha256:{:x}", fingerprint.finalize()),
        sources,
        counts,
        splits,
        labels,
        tokenizer,
        config,
    };
    let path = dir.join("manifest.json");
    let mut text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Output {
        path: path.clone(),
        message: e.to_string(),
    })?;
    text.push('\n');
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    Ok(manifest)
}
