//! Writing the dataset folder: one parquet file per split (rows in source order), the
//! rejects as JSON Lines, and the manifest, all under a temporary name renamed into place.
//! Rows arrive a chunk at a time and leave a parquet row group at a time; per-split
//! statistics are gathered on the way and summarised with Polars.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Rows per parquet row group. A split's rows wait in memory until a group is full, so
/// this bounds what the writer holds; it is fixed, so the files do not depend on how the
/// sources were chunked.
const ROW_GROUP_ROWS: usize = 8_192;

/// One split's statistics, gathered as its rows are written.
#[derive(Default)]
struct SplitStats {
    rows: usize,
    groups: HashSet<u32>,
    tasks: BTreeMap<String, usize>,
    labels: BTreeMap<String, usize>,
    text_chars: Vec<u32>,
    tokens: Vec<Option<u32>>,
}

impl SplitStats {
    fn add(&mut self, r: &Row) {
        self.rows += 1;
        self.groups.insert(r.group_id);
        bump(&mut self.tasks, r.task.as_str());
        for l in &r.labels {
            bump(&mut self.labels, l);
        }
        self.text_chars.push(r.text.chars().count() as u32);
        self.tokens
            .push(r.prompt_tokens.zip(r.completion_tokens).map(|(p, c)| p + c));
    }

    fn entry(self, sha256: String) -> Result<SplitEntry> {
        let frame = |values: Column| {
            DataFrame::new_infer_height(vec![values])
                .map_err(|e| Error::polars("length statistics", e))
        };
        let chars = frame(Column::new("v".into(), self.text_chars))?;
        let tokens = if self.tokens.iter().any(Option::is_some) {
            lengths(&frame(Column::new("v".into(), self.tokens))?, col("v"))?
        } else {
            None
        };
        Ok(SplitEntry {
            rows: self.rows,
            groups: self.groups.len(),
            sha256,
            tasks: self.tasks,
            labels: self.labels,
            text_chars: lengths(&chars, col("v"))?.unwrap_or_default(),
            tokens,
        })
    }
}

fn bump(map: &mut BTreeMap<String, usize>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// One split's parquet file, written a row group at a time.
struct SplitFile {
    split: Split,
    path: PathBuf,
    writer: Option<polars::io::parquet::write::BatchedWriter<std::fs::File>>,
    pending: Vec<Row>,
    stats: SplitStats,
}

impl SplitFile {
    /// Writes the first `n` pending rows as one row group.
    fn flush(&mut self, n: usize, cfg: &PrepConfig, prompts: &Prompts) -> Result<()> {
        let mut rows: Vec<Row> = self.pending.drain(..n).collect();
        let df = frame(&mut rows, cfg, prompts)?;
        let ctx = || format!("writing {}", self.path.display());
        if self.writer.is_none() {
            let file = std::fs::File::create(&self.path).map_err(|e| Error::io(&self.path, e))?;
            let writer = ParquetWriter::new(file)
                .with_statistics(StatisticsOptions::default())
                .batched(df.schema())
                .map_err(|e| Error::polars(ctx(), e))?;
            self.writer = Some(writer);
        }
        if let Some(w) = &mut self.writer {
            w.write_batch(&df).map_err(|e| Error::polars(ctx(), e))?;
        }
        Ok(())
    }
}

/// Everything the manifest needs besides the splits.
pub(crate) struct Finished {
    /// Rejected rows, in the order to write them.
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

/// Writes the dataset folder's files into the staging folder as rows arrive.
pub(crate) struct DatasetWriter<'a> {
    dir: PathBuf,
    cfg: &'a PrepConfig,
    prompts: Prompts,
    splits: Vec<SplitFile>,
}

impl<'a> DatasetWriter<'a> {
    pub(crate) fn new(dir: &Path, cfg: &'a PrepConfig) -> Result<Self> {
        let splits = SPLITS
            .into_iter()
            .map(|split| SplitFile {
                split,
                path: dir.join(format!("{split}.parquet")),
                writer: None,
                pending: Vec::new(),
                stats: SplitStats::default(),
            })
            .collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            cfg,
            prompts: Prompts::new(&cfg.prompt)?,
            splits,
        })
    }

    /// Appends rows (each with its split), in order, writing every full row group.
    pub(crate) fn push(&mut self, rows: Vec<Row>) -> Result<()> {
        for r in rows {
            let i = SPLITS.iter().position(|&s| s == r.split).unwrap_or(0);
            self.splits[i].stats.add(&r);
            self.splits[i].pending.push(r);
        }
        for file in &mut self.splits {
            while file.pending.len() >= ROW_GROUP_ROWS {
                file.flush(ROW_GROUP_ROWS, self.cfg, &self.prompts)?;
            }
        }
        Ok(())
    }

    /// Writes the last row groups, the rejects and the manifest.
    pub(crate) fn finish(self, rest: Finished) -> Result<Manifest> {
        let Self {
            dir,
            cfg,
            prompts,
            splits,
        } = self;
        let mut entries = BTreeMap::new();
        let mut fingerprint = Sha256::new();
        for mut file in splits {
            let n = file.pending.len();
            if n > 0 || file.writer.is_none() {
                file.flush(n, cfg, &prompts)?;
            }
            if let Some(w) = &file.writer {
                w.finish()
                    .map_err(|e| Error::polars(format!("writing {}", file.path.display()), e))?;
            }
            let sha = sha256_file(&file.path)?;
            fingerprint.update(format!("{}:{sha}\n", file.split).as_bytes());
            entries.insert(file.split.to_string(), file.stats.entry(sha)?);
        }
        rejects_file(&dir.join("rejects.jsonl"), &rest.rejects)?;
        let config = serde_json::to_value(cfg).map_err(|e| Error::Output {
            path: dir.clone(),
            message: format!("cannot serialise the recipe: {e}"),
        })?;
        let manifest = Manifest {
            format: FORMAT.into(),
            name: cfg.dataset.name.clone(),
            created_by: concat!("ctiforge-data-prep ", env!("CARGO_PKG_VERSION")).into(),
            fingerprint: format!("sha256:{:x}", fingerprint.finalize()),
            sources: rest.sources,
            counts: rest.counts,
            splits: entries,
            labels: rest.labels,
            tokenizer: rest.tokenizer,
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
}

/// A fresh staging folder beside `out` (`.NAME.tmp-PID`), where the dataset is written
/// before [`commit`] renames it into place.
///
/// # Errors
/// The folder cannot be created.
pub(crate) fn stage_dir(out: &Path) -> Result<PathBuf> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    remove_stale_stages(out, &name);
    let stage = out.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    if stage.exists() {
        std::fs::remove_dir_all(&stage).map_err(|e| Error::io(&stage, e))?;
    }
    std::fs::create_dir_all(&stage).map_err(|e| Error::io(&stage, e))?;
    Ok(stage)
}

/// Removes staging folders of `out` left by runs that were killed: those whose process
/// no longer exists (checked through `/proc`, so only where it is mounted). A failure to
/// remove one is only logged; it does not stop this run.
fn remove_stale_stages(out: &Path, name: &str) {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a killed run's staging folder")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot remove a stale staging folder: {e}")
            }
        }
    }
}

/// Renames the finished staging folder to `out`, replacing an existing `out` when `force`.
///
/// # Errors
/// `out` cannot be removed or the rename fails.
pub(crate) fn commit(stage: &Path, out: &Path, force: bool) -> Result<()> {
    if out.exists() && force {
        std::fs::remove_dir_all(out).map_err(|e| Error::io(out, e))?;
    }
    std::fs::rename(stage, out).map_err(|e| Error::io(out, e))
}
