//! `prepare`: sources → validated rows → cleaned → de-duplicated → split (grouped,
//! stratified, leakage-checked) → prompts → token limits → the dataset folder.
//!
//! Every stage is a function over the row table; the folder is written under a temporary
//! name and renamed into place, so a killed run never leaves a half-written dataset.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::info;

use crate::attack::Catalog;
use crate::config::{PrepConfig, resolve};
use crate::dedup;
use crate::error::{Error, Result};
use crate::ioc::{self, Ioc, IocKind};
use crate::labels::LabelReport;
use crate::manifest::{Counts, Manifest, SourceEntry};
use crate::prompt::Prompts;
use crate::schema::Task;
use crate::sources::{self, RawRow, Reject};
use crate::split::{self, Split};
use crate::{clean, tokens, write};

/// How `prepare` is run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The folder relative recipe paths are resolved against (usually the current one).
    pub base_dir: PathBuf,
    /// Replace an existing output folder.
    pub force: bool,
}

/// One row on its way through the pipeline.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub id: String,
    pub task: Task,
    pub source: usize,
    pub line: usize,
    pub group: String,
    /// The group's number in the plan (set by the second pass).
    pub group_id: u32,
    pub text_raw: String,
    pub text: String,
    /// [`dedup::exact_key`] of `text`, set once cleaning is done.
    pub key: u64,
    pub labels: Vec<String>,
    pub target: Value,
    pub iocs: Vec<Ioc>,
    pub split: Split,
    pub prompt: String,
    pub completion: String,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
}

/// Marks a row of the plan that is not written (an exact duplicate).
const DROPPED: u32 = u32::MAX;

/// Prepares the dataset the recipe describes into `out`.
///
/// # Errors
/// A source is unreadable or lacks a mapped column, more rows are rejected than
/// `reject.max_fraction` allows, a text leaks across splits, a template fails, or `out`
/// exists without `force`.
pub fn prepare(cfg: &PrepConfig, out: &Path, opts: &Options) -> Result<Manifest> {
    cfg.validate()?;
    if out.exists() && !opts.force {
        return Err(Error::Output {
            path: out.to_path_buf(),
            message: "already exists; pass --force to replace it".into(),
        });
    }
    let stage = write::stage_dir(out)?;
    match prepare_into(cfg, out, &stage, opts) {
        Ok(manifest) => {
            write::commit(&stage, out, opts.force)?;
            Ok(manifest)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&stage);
            Err(e)
        }
    }
}

/// Both passes, writing into the staging folder `stage`.
fn prepare_into(cfg: &PrepConfig, out: &Path, stage: &Path, opts: &Options) -> Result<Manifest> {
    let base = &opts.base_dir;
    let catalog = load_catalog(cfg, base)?;
    let mut report = LabelReport::default();
    let mut rejects = Vec::new();

    // Pass 1: plan which rows survive and where they go.
    let t = std::time::Instant::now();
    let mut plan = Plan::new(cfg, stage)?;
    let mut sources = Vec::with_capacity(cfg.sources.len());
    let mut source_ends = Vec::with_capacity(cfg.sources.len());
    for (index, src) in cfg.sources.iter().enumerate() {
        let path = resolve(base, &src.path);
        let mut rows_read = 0;
        read_ahead(cfg.dataset.chunk_rows, src, &path, base, &mut |chunk| {
            rows_read += chunk.rows.len() + chunk.rejects.len();
            let rows = load_chunk(chunk, index, cfg, &catalog, &mut report, &mut rejects)?;
            plan.add(rows)
        })?;
        source_ends.push(plan.slots.len());
        info!(source = %src.name, rows = rows_read, "source read");
        sources.push(SourceEntry {
            name: src.name.clone(),
            kind: serde_json::to_value(src.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            path: src.path.clone(),
            sha256: sha256_file(&path)?,
            rows_read,
            rows_rejected: 0,
            rows_kept: 0,
        });
    }
    let read: usize = sources.iter().map(|s| s.rows_read).sum();
    let mut counts = Counts {
        read,
        exact_duplicates: plan.exact_duplicates,
        labels_merged: plan.labels_merged,
        ..Counts::default()
    };
    info!(
        rows = plan.slots.len(),
        rejected = rejects.len(),
        exact = counts.exact_duplicates,
        secs = t.elapsed().as_secs_f32(),
        "sources read, cleaned and de-duplicated exactly"
    );
    sort_rejects(&mut rejects, cfg);
    check_rejects(&rejects, read, cfg, out)?;
    let t = std::time::Instant::now();
    counts.near_duplicates = plan.remove_near_duplicates()?;
    info!(
        near = counts.near_duplicates,
        secs = t.elapsed().as_secs_f32(),
        "near duplicates removed"
    );
    let t = std::time::Instant::now();
    plan.assign_splits(cfg)?;
    info!(secs = t.elapsed().as_secs_f32(), "splits assigned");

    // Pass 2: read again, render and write the kept rows. Parquet encoding runs on its
    // own thread, a chunk behind the rendering.
    let t = std::time::Instant::now();
    let prompts = Prompts::new(&cfg.prompt)?;
    let counter = match &cfg.tokens.tokenizer {
        Some(t) => Some(tokens::Counter::load(&resolve(base, t))?),
        None => None,
    };
    let writer = write::DatasetWriter::new(stage, cfg)?;
    let mut leakage = LeakageCheck::suspecting(plan.leak_suspects());
    let mut ordinal = 0_usize;
    let mut scratch_report = LabelReport::default();
    let writer = std::thread::scope(|scope| -> Result<write::DatasetWriter<'_>> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Row>>(1);
        let encoder = scope.spawn(move || -> Result<write::DatasetWriter<'_>> {
            let mut writer = writer;
            while let Ok(rows) = rx.recv() {
                writer.push(rows)?;
            }
            Ok(writer)
        });
        let mut render_all = || -> Result<()> {
            for (index, src) in cfg.sources.iter().enumerate() {
                let path = resolve(base, &src.path);
                let mut kept = 0;
                let mut ignored = Vec::new();
                read_ahead(cfg.dataset.chunk_rows, src, &path, base, &mut |chunk| {
                    let rows = load_chunk(
                        chunk,
                        index,
                        cfg,
                        &catalog,
                        &mut scratch_report,
                        &mut ignored,
                    )?;
                    ignored.clear();
                    let mut rows = plan.select(rows, &mut ordinal, &src.path)?;
                    render(&mut rows, &prompts, cfg)?;
                    if let Some(counter) = &counter {
                        counter.apply(&mut rows, cfg, &prompts, &mut rejects)?;
                    }
                    rows.iter().for_each(|r| leakage.see(r));
                    kept += rows.len();
                    // A closed channel means the encoder failed; its error is reported.
                    tx.send(rows).map_err(|_| stopped())
                })?;
                if ordinal != source_ends[index] {
                    return Err(changed(&src.path));
                }
                sources[index].rows_kept = kept;
            }
            Ok(())
        };
        let rendered = render_all();
        drop(tx);
        let encoded = encoder
            .join()
            .unwrap_or_else(|_| Err(panicked("parquet encoder")));
        // The encoder's own failure is the cause of a "stopped" renderer.
        match (rendered, encoded) {
            (_, Err(e)) if !is_stopped(&e) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(()), encoded) => encoded,
        }
    })?;
    leakage.finish()?;
    info!(
        secs = t.elapsed().as_secs_f32(),
        "rows rendered and written"
    );

    counts.rejected = rejects.len();
    counts.kept = sources.iter().map(|s| s.rows_kept).sum();
    sort_rejects(&mut rejects, cfg);
    check_rejects(&rejects, read, cfg, out)?;
    for s in &mut sources {
        s.rows_rejected = rejects.iter().filter(|r| r.source == s.name).count();
    }
    writer.finish(write::Finished {
        rejects,
        sources,
        counts,
        labels: report,
        tokenizer: counter.map(|c| c.describe()),
    })
}

/// Rejects in file order: by source as the recipe lists them, then by line (stable, so
/// one line's rejects keep the order they were found in).
fn sort_rejects(rejects: &mut [Reject], cfg: &PrepConfig) {
    let order: HashMap<&str, usize> = cfg
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    rejects.sort_by_key(|r| (order.get(r.source.as_str()).copied(), r.line));
}

/// Reads one source on its own thread, a chunk ahead of `each`, which runs on this one.
fn read_ahead(
    chunk_rows: usize,
    src: &crate::config::SourceConfig,
    path: &Path,
    base: &Path,
    each: &mut dyn FnMut(sources::SourceRead) -> Result<()>,
) -> Result<()> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let reader = scope.spawn(move || {
            sources::read_chunks(src, path, base, chunk_rows, &mut |chunk| {
                // A closed channel means `each` failed; its error is reported.
                tx.send(chunk).map_err(|_| stopped())
            })
        });
        let mut result = Ok(());
        while let Ok(chunk) = rx.recv() {
            result = each(chunk);
            if result.is_err() {
                break;
            }
        }
        drop(rx);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(panicked("source reader")));
        match (result, read) {
            (Err(e), _) => Err(e),
            (Ok(()), read) => read,
        }
    })
}

/// What a pipeline stage returns when the stage it feeds has gone (and reported why).
fn stopped() -> Error {
    Error::Stopped
}

fn is_stopped(e: &Error) -> bool {
    matches!(e, Error::Stopped)
}

fn panicked(stage: &str) -> Error {
    Error::Stage(format!(
        "the {stage} thread panicked (a bug; please report it)"
    ))
}

/// The error for a source whose rows differ between the two passes.
fn changed(file: &str) -> Error {
    Error::SourceChanged {
        file: file.to_owned(),
    }
}

/// One chunk of a source, validated and cleaned: the rows that pass, in order. Rejects
/// (from reading, validation and cleaning) are appended to `rejects`.
fn load_chunk(
    chunk: sources::SourceRead,
    index: usize,
    cfg: &PrepConfig,
    catalog: &Catalog,
    report: &mut LabelReport,
    rejects: &mut Vec<Reject>,
) -> Result<Vec<Row>> {
    let src = &cfg.sources[index];
    let task = src.task();
    // Rejects name the file as the recipe does, so reruns elsewhere give the same bytes.
    rejects.extend(chunk.rejects.into_iter().map(|r| Reject {
        file: src.path.clone(),
        ..r
    }));
    let mut rows = Vec::with_capacity(chunk.rows.len());
    for raw in chunk.rows {
        let line = raw.line;
        match validate_row(raw, task, index, &src.name, cfg, catalog, report) {
            Ok(row) => rows.push(row),
            Err(reason) => rejects.push(Reject {
                source: src.name.clone(),
                file: src.path.clone(),
                line,
                reason,
            }),
        }
    }
    clean_rows(&mut rows, cfg, rejects)?;
    Ok(rows)
}

/// Strings stored once each in one buffer, numbered in order of first sight.
#[derive(Default)]
struct Interner {
    text: String,
    /// End of each string in `text`.
    ends: Vec<usize>,
    /// XXH3 of a string to its number; a (rare) colliding second string goes to `other`.
    by_hash: HashMap<u64, u32>,
    other: HashMap<String, u32>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        let hash = xxhash_rust::xxh3::xxh3_64(s.as_bytes());
        match self.by_hash.get(&hash) {
            Some(&id) if self.get(id) == s => return id,
            Some(_) => {
                if let Some(&id) = self.other.get(s) {
                    return id;
                }
                let id = self.push(s);
                self.other.insert(s.to_owned(), id);
                return id;
            }
            None => {}
        }
        let id = self.push(s);
        self.by_hash.insert(hash, id);
        id
    }

    fn push(&mut self, s: &str) -> u32 {
        self.text.push_str(s);
        self.ends.push(self.text.len());
        (self.ends.len() - 1) as u32
    }

    fn get(&self, id: u32) -> &str {
        let end = self.ends[id as usize];
        let start = match id {
            0 => 0,
            _ => self.ends[id as usize - 1],
        };
        &self.text[start..end]
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// What the first pass keeps of a row that survived exact de-duplication.
#[derive(Debug, Clone, Copy)]
struct Planned {
    key: u64,
    group: u32,
    /// The row's label ids: `plan.label_ids[labels_at..labels_at + labels_len]`.
    labels_at: u32,
    labels_len: u32,
    task: Task,
    split: Split,
    near_duplicate: bool,
}

/// The first pass's result: for every row read (in order), whether and where it goes.
struct Plan {
    /// Per cleaned row, in read order: its entry in `rows`, or [`DROPPED`].
    slots: Vec<u32>,
    rows: Vec<Planned>,
    label_ids: Vec<u32>,
    labels: Interner,
    groups: Interner,
    /// First row of each (task, key), while exact duplicates are dropped.
    first: HashMap<(Task, u64), u32>,
    exact: bool,
    merge_labels: bool,
    /// Per task (in [`Task::ALL`] order): the near-duplicate finder and its rows, made when
    /// the task's first row arrives.
    near: Vec<Option<(dedup::NearDuplicateFinder, Vec<u32>)>>,
    /// `dedup.near`, with its settings, and the folder for the finders' spill files.
    minhash: Option<(dedup::MinHashConfig, PathBuf)>,
    exact_duplicates: usize,
    labels_merged: usize,
}

impl Plan {
    fn new(cfg: &PrepConfig, stage: &Path) -> Result<Self> {
        Ok(Self {
            slots: Vec::new(),
            rows: Vec::new(),
            label_ids: Vec::new(),
            labels: Interner::default(),
            groups: Interner::default(),
            first: HashMap::new(),
            exact: cfg.dedup.exact,
            merge_labels: cfg.dedup.merge_labels,
            near: Task::ALL.iter().map(|_| None).collect(),
            minhash: cfg.dedup.near.then(|| (cfg.minhash(), stage.to_path_buf())),
            exact_duplicates: 0,
            labels_merged: 0,
        })
    }

    /// The near-duplicate finder of `task`'s rows, made on first use.
    fn finder(
        &mut self,
        task: Task,
    ) -> Result<Option<&mut (dedup::NearDuplicateFinder, Vec<u32>)>> {
        let Some((config, dir)) = &self.minhash else {
            return Ok(None);
        };
        let slot = &mut self.near[task_index(task)];
        if slot.is_none() {
            let spill = dir.join(format!(".minhash-{task}.bin"));
            let finder =
                dedup::NearDuplicateFinder::new(config, Some(&spill)).map_err(dedup_error)?;
            *slot = Some((finder, Vec::new()));
        }
        Ok(slot.as_mut())
    }

    /// Records a chunk of cleaned rows: exact duplicates (per task, after normalisation)
    /// are dropped, keeping the first occurrence and, with `merge_labels`, giving a
    /// technique row its duplicates' labels; the rest are sketched for near duplicates.
    fn add(&mut self, rows: Vec<Row>) -> Result<()> {
        let mut sketch: Vec<Vec<&str>> = vec![Vec::new(); Task::ALL.len()];
        for r in &rows {
            let key = (r.task, r.key);
            if self.exact
                && let Some(&k) = self.first.get(&key)
            {
                self.exact_duplicates += 1;
                self.slots.push(DROPPED);
                let merge = self.merge_labels
                    && r.task == Task::TechniqueClassification
                    && r.labels
                        .iter()
                        .any(|l| !self.labels_of(k).contains(&l.as_str()));
                if merge {
                    self.labels_merged += 1;
                    let mut all: Vec<String> =
                        self.labels_of(k).into_iter().map(str::to_owned).collect();
                    all.extend(r.labels.iter().cloned());
                    all.sort();
                    all.dedup();
                    self.set_labels(k, &all)?;
                }
                continue;
            }
            let id = plan_index(self.rows.len(), "rows")?;
            if self.exact {
                self.first.insert(key, id);
            }
            self.slots.push(id);
            self.rows.push(Planned {
                key: r.key,
                group: self.groups.id(&r.group),
                labels_at: 0,
                labels_len: 0,
                task: r.task,
                split: Split::Train,
                near_duplicate: false,
            });
            self.set_labels(id, &r.labels)?;
            if let Some((_, members)) = self.finder(r.task)? {
                members.push(id);
                sketch[task_index(r.task)].push(&r.text);
            }
        }
        for (t, texts) in sketch.iter().enumerate() {
            if let Some((finder, _)) = &mut self.near[t]
                && !texts.is_empty()
            {
                finder.add(texts).map_err(dedup_error)?;
            }
        }
        Ok(())
    }

    fn set_labels(&mut self, row: u32, labels: &[String]) -> Result<()> {
        let at = plan_index(self.label_ids.len(), "technique labels")?;
        let len = plan_index(labels.len(), "labels of one row")?;
        plan_index(self.label_ids.len() + labels.len(), "technique labels")?;
        for l in labels {
            let id = self.labels.id(l);
            self.label_ids.push(id);
        }
        let r = &mut self.rows[row as usize];
        r.labels_at = at;
        r.labels_len = len;
        Ok(())
    }

    fn label_ids_of(&self, row: u32) -> &[u32] {
        let r = &self.rows[row as usize];
        let at = r.labels_at as usize;
        &self.label_ids[at..at + r.labels_len as usize]
    }

    fn labels_of(&self, row: u32) -> Vec<&str> {
        self.label_ids_of(row)
            .iter()
            .map(|&id| self.labels.get(id))
            .collect()
    }

    /// Near duplicates (MinHash, per task) of the kept rows, keeping the first occurrence.
    /// Returns how many were removed.
    fn remove_near_duplicates(&mut self) -> Result<usize> {
        self.first = HashMap::new();
        let mut removed = 0;
        for slot in &mut self.near {
            let Some((finder, members)) = slot.take() else {
                continue;
            };
            for (j, d) in finder
                .finish()
                .map_err(dedup_error)?
                .into_iter()
                .enumerate()
            {
                if d.is_some() {
                    self.rows[members[j] as usize].near_duplicate = true;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Assigns splits by group, stratified by each row's rarest label. Groups that share a
    /// normalised text are merged first, so one text can never land in two splits.
    fn assign_splits(&mut self, cfg: &PrepConfig) -> Result<()> {
        let live: Vec<u32> = (0..self.rows.len() as u32)
            .filter(|&i| !self.rows[i as usize].near_duplicate)
            .collect();
        // Group ids, merged across identical texts.
        let mut parent: Vec<usize> = (0..self.groups.len()).collect();
        let mut by_text: HashMap<u64, usize> = HashMap::new();
        for &i in &live {
            let r = &self.rows[i as usize];
            let g = r.group as usize;
            let other = *by_text.entry(r.key).or_insert(g);
            let (a, b) = (root(&mut parent, g), root(&mut parent, other));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
        drop(by_text);
        let groups: Vec<&str> = live
            .iter()
            .map(|&i| {
                let g = self.rows[i as usize].group as usize;
                self.groups.get(root(&mut parent, g) as u32)
            })
            .collect();

        // Strata: task, plus the rarest label for classification.
        let mut freq = vec![0_usize; self.labels.len()];
        for &i in &live {
            if self.rows[i as usize].task == Task::TechniqueClassification {
                for &l in self.label_ids_of(i) {
                    freq[l as usize] += 1;
                }
            }
        }
        let mut strata = Interner::default();
        let stratum_of: Vec<u32> = live
            .iter()
            .map(|&i| {
                let task = self.rows[i as usize].task;
                let rarest = self
                    .label_ids_of(i)
                    .iter()
                    .min_by_key(|&&l| (freq[l as usize], self.labels.get(l)));
                let name = match (cfg.split.stratify, task, rarest) {
                    (true, Task::TechniqueClassification, Some(&l)) => {
                        format!("{task}/{}", self.labels.get(l))
                    }
                    (true, Task::TechniqueClassification, None) => format!("{task}/none"),
                    _ => task.to_string(),
                };
                strata.id(&name)
            })
            .collect();
        let strata_refs: Vec<&str> = stratum_of.iter().map(|&s| strata.get(s)).collect();
        let assigned =
            split::assign(&groups, &strata_refs, &cfg.splits()).map_err(|e| Error::Config {
                problems: vec![format!("split: {e}")],
            })?;
        drop(groups);
        for (&i, s) in live.iter().zip(assigned) {
            self.rows[i as usize].split = s;
        }
        Ok(())
    }

    /// Keys of the normalised texts that the plan puts in more than one split (none, as
    /// groups sharing a text are merged; the leakage check makes sure).
    fn leak_suspects(&self) -> HashSet<u64> {
        let mut placed: Vec<(u64, Split)> = self
            .rows
            .iter()
            .filter(|r| !r.near_duplicate)
            .map(|r| (r.key, r.split))
            .collect();
        placed.par_sort_unstable();
        placed.dedup();
        placed
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|run| run.len() > 1)
            .map(|run| run[0].0)
            .collect()
    }

    /// The second pass's view of a chunk: the rows to write, with their final labels and
    /// splits. `ordinal` counts rows across chunks; a row that differs from the first
    /// pass's means the source file changed in between.
    fn select(&self, rows: Vec<Row>, ordinal: &mut usize, file: &str) -> Result<Vec<Row>> {
        let mut out = Vec::with_capacity(rows.len());
        for mut r in rows {
            let Some(&slot) = self.slots.get(*ordinal) else {
                return Err(changed(file));
            };
            *ordinal += 1;
            if slot == DROPPED {
                continue;
            }
            let p = &self.rows[slot as usize];
            if p.key != r.key || p.task != r.task {
                return Err(changed(file));
            }
            if p.near_duplicate {
                continue;
            }
            r.labels = self
                .labels_of(slot)
                .into_iter()
                .map(str::to_owned)
                .collect();
            r.split = p.split;
            r.group_id = p.group;
            out.push(r);
        }
        Ok(out)
    }
}

/// `n` as a plan index: below [`DROPPED`], else an error naming what overflowed.
fn plan_index(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|&i| i != DROPPED)
        .ok_or_else(|| Error::Config {
            problems: vec![format!(
                "dataset: more than {} {what}; split the sources into several recipes",
                DROPPED - 1
            )],
        })
}

fn task_index(task: Task) -> usize {
    Task::ALL.iter().position(|&t| t == task).unwrap_or(0)
}

/// A spill file that cannot be written is an output problem (the files live in the
/// staging folder); the rest are configuration or input-size problems.
fn dedup_error(e: dedup::DedupError) -> Error {
    match e {
        dedup::DedupError::Spill { path, message } => Error::Output {
            path: path.into(),
            message: format!("near-duplicate spill file: {message}"),
        },
        e => Error::Config {
            problems: vec![format!("dedup: {e}")],
        },
    }
}

/// The catalog of `[attack]`: a TSV table or a STIX bundle, plus explicit replacements.
fn load_catalog(cfg: &PrepConfig, base: &Path) -> Result<Catalog> {
    let explicit = cfg.attack.replacements.iter().filter_map(|(a, b)| {
        Some((a.parse().ok()?, b.parse().ok()?)) // validated in PrepConfig::validate
    });
    if cfg.attack.techniques.is_empty() {
        return Ok(Catalog::default());
    }
    let path = resolve(base, &cfg.attack.techniques);
    let catalog = if path.extension().is_some_and(|e| e == "json") {
        let b = crate::stix::read_bundle(&path)?;
        Catalog::new(b.techniques, b.replacements)
    } else {
        Catalog::from_tsv(&path)?
    };
    info!(techniques = catalog.len(), path = %path.display(), "ATT&CK catalog loaded");
    Ok(catalog.with_replacements(explicit))
}

/// SHA-256 of a file, hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(format!("{:x}", h.finalize()))
}

/// Turns a raw row into a validated one: labels resolved, indicators validated, the
/// structured target built.
fn validate_row(
    raw: RawRow,
    task: Task,
    source: usize,
    source_name: &str,
    cfg: &PrepConfig,
    catalog: &Catalog,
    report: &mut LabelReport,
) -> std::result::Result<Row, String> {
    let id = match &raw.id {
        Some(id) => format!("{source_name}:{id}"),
        None if raw.part > 0 => format!("{source_name}:{}#{}", raw.line, raw.part),
        None => format!("{source_name}:{}", raw.line),
    };
    if raw.text.trim().is_empty() {
        return Err("empty text".into());
    }
    let mut iocs = Vec::new();
    let (labels, target) = match task {
        Task::TechniqueClassification => {
            let t = report.techniques(&raw.labels, catalog, &cfg.attack)?;
            (t, Value::Null)
        }
        Task::IocExtraction => {
            iocs = report.iocs(&raw.iocs)?;
            let mut kinds: Vec<String> = iocs.iter().map(|i| i.kind.to_string()).collect();
            kinds.sort();
            kinds.dedup();
            let list: Vec<Value> = iocs
                .iter()
                .map(|i| json!({"kind": i.kind.as_str(), "value": i.value}))
                .collect();
            (kinds, json!({ "iocs": list }))
        }
        Task::EntityExtraction => {
            let mut kinds: Vec<String> = raw.entities.iter().map(|e| e.kind.clone()).collect();
            kinds.sort();
            kinds.dedup();
            (kinds, json!({ "entities": raw.entities }))
        }
        Task::Summarization => match raw.summary.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => (Vec::new(), json!({ "summary": s })),
            _ => return Err("no reference summary".into()),
        },
        Task::Text => (Vec::new(), json!({})),
    };
    let text = clean::normalize_unicode(&raw.text, cfg.clean.unicode);
    Ok(Row {
        group: raw.group.unwrap_or_else(|| id.clone()),
        group_id: 0,
        id,
        task,
        source,
        line: raw.line,
        text_raw: raw.text,
        text,
        key: 0,
        labels,
        target,
        iocs,
        split: Split::Train,
        prompt: String::new(),
        completion: String::new(),
        prompt_tokens: None,
        completion_tokens: None,
    })
}

/// Runs the Polars cleaning pass and rejects texts outside `[min_chars, max_chars]`.
fn clean_rows(rows: &mut Vec<Row>, cfg: &PrepConfig, rejects: &mut Vec<Reject>) -> Result<()> {
    let texts: Vec<String> = rows
        .iter_mut()
        .map(|r| std::mem::take(&mut r.text))
        .collect();
    let apply: Vec<bool> = rows
        .iter()
        .map(|r| r.task != Task::EntityExtraction)
        .collect();
    let cleaned = clean::clean_texts(texts, apply, &cfg.clean)?;
    for (r, t) in rows.iter_mut().zip(cleaned) {
        r.text = t;
    }
    // Reference summaries get the same cleaning as inputs.
    let summaries: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].task == Task::Summarization)
        .collect();
    if !summaries.is_empty() {
        let texts: Vec<String> = summaries
            .iter()
            .map(|&i| {
                rows[i].target["summary"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        let cleaned = clean::clean_texts(texts, vec![true; summaries.len()], &cfg.clean)?;
        for (&i, t) in summaries.iter().zip(cleaned) {
            rows[i].target = json!({ "summary": t });
        }
    }
    let (min, max) = (cfg.clean.min_chars, cfg.clean.max_chars);
    rows.retain(|r| {
        let n = r.text.chars().count();
        let reason = if n < min.max(1) {
            format!("cleaned text has {n} characters, fewer than clean.min_chars = {min}")
        } else if max > 0 && n > max {
            format!("cleaned text has {n} characters, more than clean.max_chars = {max}")
        } else {
            return true;
        };
        rejects.push(Reject {
            source: cfg.sources[r.source].name.clone(),
            file: cfg.sources[r.source].path.clone(),
            line: r.line,
            reason,
        });
        false
    });
    // Every later stage (exact duplicates, split groups, the leakage check) compares
    // texts by this key, so it is computed once, on every core.
    rows.par_iter_mut()
        .for_each(|r| r.key = dedup::exact_key(&r.text));
    Ok(())
}

/// Union-find root with path halving.
fn root(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// The leakage check over the rows as written: fails if any normalised text appears in
/// more than one split. It follows only the texts it is told to suspect (the plan's
/// [`Plan::leak_suspects`]), or every text when made with `default`.
#[derive(Default)]
pub(crate) struct LeakageCheck {
    suspects: Option<HashSet<u64>>,
    seen: HashMap<u64, Split>,
    leaks: BTreeMap<u64, (Split, Split)>,
    example: Option<String>,
}

impl LeakageCheck {
    fn suspecting(keys: HashSet<u64>) -> Self {
        Self {
            suspects: Some(keys),
            ..Self::default()
        }
    }

    pub(crate) fn see(&mut self, r: &Row) {
        if self.suspects.as_ref().is_some_and(|s| !s.contains(&r.key)) {
            return;
        }
        match self.seen.get(&r.key) {
            Some(&s) if s != r.split => {
                if let std::collections::btree_map::Entry::Vacant(e) = self.leaks.entry(r.key) {
                    e.insert((s, r.split));
                    if self.example.is_none() {
                        self.example = Some(r.text.chars().take(80).collect());
                    }
                }
            }
            Some(_) => {}
            None => {
                self.seen.insert(r.key, r.split);
            }
        }
    }

    pub(crate) fn finish(self) -> Result<()> {
        let (Some(example), Some((_, &(a, b)))) = (self.example, self.leaks.iter().next()) else {
            return Ok(());
        };
        Err(Error::Leakage {
            count: self.leaks.len(),
            example,
            splits: format!("{a} and {b}"),
        })
    }
}

/// The input text as a prompt shows it: indicators refanged, or defanged when configured.
fn display_text(r: &Row, defang: bool) -> Cow<'_, str> {
    if r.task != Task::IocExtraction {
        return Cow::Borrowed(&r.text);
    }
    let mut text = ioc::refang(&r.text).into_owned();
    if defang {
        for i in &r.iocs {
            if matches!(
                i.kind,
                IocKind::Ipv4 | IocKind::Ipv6 | IocKind::Domain | IocKind::Url | IocKind::Email
            ) {
                text = text.replace(&i.value, &i.defanged());
            }
        }
    }
    Cow::Owned(text)
}

/// Renders prompts and completions (the writer derives `messages` from them); builds
/// technique targets from final labels.
fn render(rows: &mut [Row], prompts: &Prompts, cfg: &PrepConfig) -> Result<()> {
    let defang = cfg.ioc.defang_in_prompts;
    rows.par_iter_mut().try_for_each(|r| {
        if r.task == Task::TechniqueClassification {
            r.target = json!({ "techniques": r.labels });
        }
        let defanged;
        let shown = if r.task == Task::IocExtraction && defang {
            let list: Vec<Value> = r
                .iocs
                .iter()
                .map(|i| json!({"kind": i.kind.as_str(), "value": i.defanged()}))
                .collect();
            defanged = json!({ "iocs": list });
            &defanged
        } else {
            &r.target
        };
        let (prompt, completion) = prompts.render_pair(r.task, &display_text(r, defang), shown)?;
        r.prompt = prompt;
        r.completion = completion;
        Ok(())
    })
}

/// Fails when more rows were rejected than allowed, writing the rejects beside `out`.
fn check_rejects(rejects: &[Reject], read: usize, cfg: &PrepConfig, out: &Path) -> Result<()> {
    if rejects.is_empty() {
        return Ok(());
    }
    let fraction = rejects.len() as f64 / read.max(1) as f64;
    tracing::warn!(
        "{} of {} rows rejected ({:.2}%)",
        rejects.len(),
        read,
        100.0 * fraction
    );
    if fraction <= cfg.reject.max_fraction {
        return Ok(());
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    let side = out.with_file_name(format!("{name}.rejects.jsonl"));
    write::rejects_file(&side, rejects)?;
    let first: Vec<String> = rejects
        .iter()
        .take(3)
        .map(|r| format!("{}:{}: {}", r.file, r.line, r.reason))
        .collect();
    Err(Error::TooManyRejects {
        rejected: rejects.len(),
        total: read,
        percent: 100.0 * fraction,
        limit_percent: 100.0 * cfg.reject.max_fraction,
        rejects_file: side,
        first: first.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, text: &str, split: Split) -> Row {
        Row {
            id: id.into(),
            task: Task::TechniqueClassification,
            source: 0,
            line: 1,
            group: id.into(),
            group_id: 0,
            text_raw: text.into(),
            text: text.into(),
            key: dedup::exact_key(text),
            labels: Vec::new(),
            target: Value::Null,
            iocs: Vec::new(),
            split,
            prompt: String::new(),
            completion: String::new(),
            prompt_tokens: None,
            completion_tokens: None,
        }
    }

    fn check(rows: &[Row]) -> Result<()> {
        let mut leakage = LeakageCheck::default();
        rows.iter().for_each(|r| leakage.see(r));
        leakage.finish()
    }

    fn recipe(extra: &str) -> PrepConfig {
        toml::from_str(&format!(
            "[[sources]]\nname = \"s\"\nkind = \"tram_sentences\"\npath = \"x\"\n{extra}"
        ))
        .expect("cfg")
    }

    #[test]
    fn leakage_check_catches_a_planted_duplicate() {
        let mut rows = vec![
            row("a", "APT29 used PowerShell.", Split::Train),
            row("b", "Something else.", Split::Test),
            row("c", "apt29  used PowerShell.", Split::Train),
        ];
        check(&rows).expect("same split is fine");
        rows.push(row("d", "APT29 used   powershell.", Split::Test));
        let err = check(&rows).expect_err("planted duplicate");
        let msg = err.to_string();
        assert!(
            msg.contains("APT29 used   powershell.") && msg.contains("train and test"),
            "{msg}"
        );
    }

    #[test]
    fn identical_texts_in_different_groups_share_a_split() {
        let cfg = recipe("[dedup]\nexact = false\nnear = false\n");
        let dir = tempfile::tempdir().expect("tmp");
        let mut plan = Plan::new(&cfg, dir.path()).expect("plan");
        let rows: Vec<Row> = (0..400)
            .map(|i| {
                row(
                    &format!("r{i}"),
                    &format!("sentence number {}", i % 200),
                    Split::Train,
                )
            })
            .collect();
        plan.add(rows.clone()).expect("add");
        plan.assign_splits(&cfg).expect("split");
        let mut ordinal = 0;
        let written = plan.select(rows, &mut ordinal, "x").expect("select");
        assert_eq!(written.len(), 400);
        check(&written).expect("groups merged by text");
        assert!(written.iter().any(|r| r.split == Split::Test));
    }

    #[test]
    fn exact_duplicates_merge_labels_into_the_first_row() {
        let cfg = recipe("[dedup]\nnear = false\n");
        let dir = tempfile::tempdir().expect("tmp");
        let mut plan = Plan::new(&cfg, dir.path()).expect("plan");
        let mut a = row("a", "APT29 used PowerShell.", Split::Train);
        a.labels = vec!["T1059.001".into()];
        let mut b = row("b", "apt29 used  powershell.", Split::Train);
        b.labels = vec!["T1059".into(), "T1059.001".into()];
        let c = row("c", "Something else.", Split::Train);
        plan.add(vec![a.clone(), b.clone()]).expect("first chunk");
        plan.add(vec![c.clone()]).expect("second chunk");
        assert_eq!((plan.exact_duplicates, plan.labels_merged), (1, 1));
        plan.assign_splits(&cfg).expect("split");
        let mut ordinal = 0;
        let written = plan
            .select(vec![a, b, c], &mut ordinal, "x")
            .expect("select");
        let ids: Vec<&str> = written.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(written[0].labels, ["T1059", "T1059.001"]);
    }

    #[test]
    fn a_source_that_changes_between_the_passes_is_an_error() {
        let cfg = recipe("[dedup]\nnear = false\n");
        let dir = tempfile::tempdir().expect("tmp");
        let mut plan = Plan::new(&cfg, dir.path()).expect("plan");
        let rows = vec![
            row("a", "one text", Split::Train),
            row("b", "two", Split::Train),
        ];
        plan.add(rows).expect("add");
        plan.assign_splits(&cfg).expect("split");
        let edited = vec![
            row("a", "one text", Split::Train),
            row("b", "three", Split::Train),
        ];
        let err = plan
            .select(edited, &mut 0, "reports.jsonl")
            .expect_err("edited");
        assert!(err.to_string().contains("reports.jsonl"), "{err}");
        assert!(err.to_string().contains("changed"), "{err}");
        let longer = vec![row("a", "one text", Split::Train); 3];
        assert!(plan.select(longer, &mut 0, "x").is_err());
    }

    #[test]
    fn a_text_planned_into_two_splits_fails_the_leakage_check() {
        let cfg = recipe("[dedup]\nexact = false\nnear = false\n");
        let dir = tempfile::tempdir().expect("tmp");
        let mut plan = Plan::new(&cfg, dir.path()).expect("plan");
        let rows = vec![
            row("a", "APT29 used PowerShell.", Split::Train),
            row("b", "Something else.", Split::Train),
            row("c", "apt29 used  powershell.", Split::Train),
        ];
        plan.add(rows.clone()).expect("add");
        plan.assign_splits(&cfg).expect("split");
        assert!(
            plan.leak_suspects().is_empty(),
            "groups sharing a text are merged"
        );
        // Plant a fault: the same text in two splits.
        plan.rows[0].split = Split::Train;
        plan.rows[2].split = Split::Test;
        let suspects = plan.leak_suspects();
        assert_eq!(suspects.len(), 1);
        let mut leakage = LeakageCheck::suspecting(suspects);
        let written = plan.select(rows, &mut 0, "x").expect("select");
        written.iter().for_each(|r| leakage.see(r));
        let err = leakage.finish().expect_err("planted leak");
        assert!(err.to_string().contains("train and test"), "{err}");
    }

    #[test]
    fn a_spill_failure_is_an_output_error_naming_the_file() {
        let err = dedup_error(dedup::DedupError::Spill {
            path: "/data/.tram.tmp-7/.minhash-text.bin".into(),
            message: "No space left on device".into(),
        });
        assert!(matches!(err, Error::Output { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(".minhash-text.bin") && msg.contains("No space left"),
            "{msg}"
        );
    }

    #[test]
    fn plan_indices_stop_below_the_dropped_marker() {
        assert_eq!(plan_index(7, "rows").expect("small"), 7);
        assert!(plan_index(DROPPED as usize - 1, "rows").is_ok());
        let err = plan_index(DROPPED as usize, "rows").expect_err("marker");
        assert!(err.to_string().contains("rows"), "{err}");
        assert!(plan_index(usize::MAX, "technique labels").is_err());
    }

    #[test]
    fn interned_strings_keep_their_first_number() {
        let mut names = Interner::default();
        let words = ["report-1", "", "report-2", "report-1", "ümlaut", ""];
        let ids: Vec<u32> = words.iter().map(|w| names.id(w)).collect();
        assert_eq!(ids, [0, 1, 2, 0, 3, 1]);
        assert_eq!(names.len(), 4);
        for (w, id) in words.iter().zip(ids) {
            assert_eq!(names.get(id), *w);
        }
    }
}
