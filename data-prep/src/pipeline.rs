//! `prepare`: sources → validated rows → cleaned → de-duplicated → split (grouped,
//! stratified, leakage-checked) → prompts → token limits → the dataset folder.
//!
//! Every stage is a function over the row table; the folder is written under a temporary
//! name and renamed into place, so a killed run never leaves a half-written dataset.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
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
    let base = &opts.base_dir;
    let catalog = load_catalog(cfg, base)?;
    let mut report = LabelReport::default();
    let mut rejects = Vec::new();
    let (mut rows, mut sources) = read_sources(cfg, base, &catalog, &mut report, &mut rejects)?;
    let read = rows.len() + rejects.len();
    info!(rows = rows.len(), rejected = rejects.len(), "sources read");

    let t = std::time::Instant::now();
    clean_rows(&mut rows, cfg, &mut rejects)?;
    info!(
        rows = rows.len(),
        secs = t.elapsed().as_secs_f32(),
        "texts cleaned"
    );
    let mut counts = Counts {
        read,
        ..Counts::default()
    };
    let t = std::time::Instant::now();
    rows = remove_duplicates(rows, cfg, &mut counts)?;
    info!(
        exact = counts.exact_duplicates,
        near = counts.near_duplicates,
        secs = t.elapsed().as_secs_f32(),
        "duplicates removed"
    );
    let t = std::time::Instant::now();
    assign_splits(&mut rows, cfg)?;
    check_leakage(&rows)?;
    info!(
        secs = t.elapsed().as_secs_f32(),
        "splits assigned, no leakage"
    );
    let t = std::time::Instant::now();
    render(&mut rows, cfg)?;
    info!(secs = t.elapsed().as_secs_f32(), "prompts rendered");
    let tokenizer = match &cfg.tokens.tokenizer {
        Some(t) => Some(tokens::apply(
            &mut rows,
            &resolve(base, t),
            cfg,
            &mut rejects,
        )?),
        None => None,
    };

    counts.rejected = rejects.len();
    counts.kept = rows.len();
    check_rejects(&rejects, read, cfg, out)?;
    for (i, s) in sources.iter_mut().enumerate() {
        s.rows_kept = rows.iter().filter(|r| r.source == i).count();
        s.rows_rejected = rejects.iter().filter(|r| r.source == s.name).count();
    }
    let prepared = write::Prepared {
        rows,
        rejects,
        sources,
        counts,
        labels: report,
        tokenizer,
    };
    write::dataset(out, cfg, prepared, opts.force)
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

/// Reads every source and validates its targets; bad rows go to `rejects`.
fn read_sources(
    cfg: &PrepConfig,
    base: &Path,
    catalog: &Catalog,
    report: &mut LabelReport,
    rejects: &mut Vec<Reject>,
) -> Result<(Vec<Row>, Vec<SourceEntry>)> {
    let mut rows = Vec::new();
    let mut entries = Vec::new();
    for (index, src) in cfg.sources.iter().enumerate() {
        let path = resolve(base, &src.path);
        let read = sources::read(src, &path, base)?;
        let task = src.task();
        let before = rows.len();
        let mut rejected = read.rejects.len();
        // Rejects name the file as the recipe does, so reruns elsewhere give the same bytes.
        rejects.extend(read.rejects.into_iter().map(|r| Reject {
            file: src.path.clone(),
            ..r
        }));
        for raw in read.rows {
            let line = raw.line;
            match validate_row(raw, task, index, &src.name, cfg, catalog, report) {
                Ok(row) => rows.push(row),
                Err(reason) => {
                    rejected += 1;
                    rejects.push(Reject {
                        source: src.name.clone(),
                        file: src.path.clone(),
                        line,
                        reason,
                    });
                }
            }
        }
        info!(source = %src.name, rows = rows.len() - before, rejected, "source read");
        entries.push(SourceEntry {
            name: src.name.clone(),
            kind: serde_json::to_value(src.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            path: src.path.clone(),
            sha256: sha256_file(&path)?,
            rows_read: rows.len() - before + rejected,
            rows_rejected: 0,
            rows_kept: 0,
        });
    }
    Ok((rows, entries))
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

/// Exact duplicates (per task, after normalisation) and then near duplicates (MinHash, per
/// task) are removed, keeping the first occurrence; exact duplicates of a technique row
/// give it their labels when `merge_labels` is on.
fn remove_duplicates(rows: Vec<Row>, cfg: &PrepConfig, counts: &mut Counts) -> Result<Vec<Row>> {
    let mut kept: Vec<Row> = Vec::with_capacity(rows.len());
    if cfg.dedup.exact {
        let mut first: HashMap<(Task, u64), usize> = HashMap::with_capacity(rows.len());
        for row in rows {
            let key = (row.task, row.key);
            match first.get(&key) {
                Some(&k) => {
                    counts.exact_duplicates += 1;
                    let merge = cfg.dedup.merge_labels
                        && row.task == Task::TechniqueClassification
                        && row.labels.iter().any(|l| !kept[k].labels.contains(l));
                    if merge {
                        counts.labels_merged += 1;
                        kept[k].labels.extend(row.labels);
                        kept[k].labels.sort();
                        kept[k].labels.dedup();
                    }
                }
                None => {
                    first.insert(key, kept.len());
                    kept.push(row);
                }
            }
        }
    } else {
        kept = rows;
    }
    if !cfg.dedup.near {
        return Ok(kept);
    }
    let minhash = cfg.minhash();
    let mut drop = vec![false; kept.len()];
    for task in Task::ALL {
        let idx: Vec<usize> = (0..kept.len()).filter(|&i| kept[i].task == task).collect();
        if idx.len() < 2 {
            continue;
        }
        let texts: Vec<&str> = idx.iter().map(|&i| kept[i].text.as_str()).collect();
        let dups = dedup::near_duplicates(&texts, &minhash).map_err(|e| Error::Config {
            problems: vec![format!("dedup: {e}")],
        })?;
        for (j, d) in dups.into_iter().enumerate() {
            if d.is_some() {
                drop[idx[j]] = true;
            }
        }
    }
    counts.near_duplicates = drop.iter().filter(|d| **d).count();
    Ok(kept
        .into_iter()
        .zip(drop)
        .filter_map(|(r, d)| (!d).then_some(r))
        .collect())
}

/// Union-find root with path halving.
fn root(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Assigns splits by group, stratified by each row's rarest label. Groups that share a
/// normalised text are merged first, so one text can never land in two splits.
fn assign_splits(rows: &mut [Row], cfg: &PrepConfig) -> Result<()> {
    // Group ids, merged across identical texts.
    let mut group_index: HashMap<&str, usize> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    let row_group: Vec<usize> = rows
        .iter()
        .map(|r| {
            *group_index.entry(r.group.as_str()).or_insert_with(|| {
                names.push(r.group.as_str());
                names.len() - 1
            })
        })
        .collect();
    let mut parent: Vec<usize> = (0..names.len()).collect();
    let mut by_text: HashMap<u64, usize> = HashMap::new();
    for (r, &g) in rows.iter().zip(&row_group) {
        let other = *by_text.entry(r.key).or_insert(g);
        let (a, b) = (root(&mut parent, g), root(&mut parent, other));
        if a != b {
            parent[a.max(b)] = a.min(b);
        }
    }
    let groups: Vec<&str> = row_group
        .iter()
        .map(|&g| names[root(&mut parent, g)])
        .collect();

    // Strata: task, plus the rarest label for classification.
    let mut freq: HashMap<&str, usize> = HashMap::new();
    for r in rows
        .iter()
        .filter(|r| r.task == Task::TechniqueClassification)
    {
        for l in &r.labels {
            *freq.entry(l.as_str()).or_default() += 1;
        }
    }
    let strata: Vec<String> = rows
        .iter()
        .map(|r| {
            let rarest = r
                .labels
                .iter()
                .min_by_key(|l| (freq.get(l.as_str()), l.as_str()));
            match (cfg.split.stratify, r.task, rarest) {
                (true, Task::TechniqueClassification, Some(l)) => format!("{}/{l}", r.task),
                (true, Task::TechniqueClassification, None) => format!("{}/none", r.task),
                _ => r.task.to_string(),
            }
        })
        .collect();
    let strata_refs: Vec<&str> = strata.iter().map(String::as_str).collect();
    let assigned =
        split::assign(&groups, &strata_refs, &cfg.splits()).map_err(|e| Error::Config {
            problems: vec![format!("split: {e}")],
        })?;
    for (r, s) in rows.iter_mut().zip(assigned) {
        r.split = s;
    }
    Ok(())
}

/// Fails if any normalised text appears in more than one split.
pub(crate) fn check_leakage(rows: &[Row]) -> Result<()> {
    let mut seen: HashMap<u64, (Split, usize)> = HashMap::with_capacity(rows.len());
    let mut leaks: BTreeMap<usize, (Split, Split)> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        match seen.get(&r.key) {
            Some(&(s, first)) if s != r.split => {
                leaks.entry(first).or_insert((s, r.split));
            }
            Some(_) => {}
            None => {
                seen.insert(r.key, (r.split, i));
            }
        }
    }
    let Some((&first, &(a, b))) = leaks.iter().next() else {
        return Ok(());
    };
    let example: String = rows[first].text.chars().take(80).collect();
    Err(Error::Leakage {
        count: leaks.len(),
        example,
        splits: format!("{a} and {b}"),
    })
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
fn render(rows: &mut [Row], cfg: &PrepConfig) -> Result<()> {
    let prompts = Prompts::new(&cfg.prompt)?;
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

    #[test]
    fn leakage_check_catches_a_planted_duplicate() {
        let mut rows = vec![
            row("a", "APT29 used PowerShell.", Split::Train),
            row("b", "Something else.", Split::Test),
            row("c", "apt29  used PowerShell.", Split::Train),
        ];
        check_leakage(&rows).expect("same split is fine");
        rows.push(row("d", "APT29 used   powershell.", Split::Test));
        let err = check_leakage(&rows).expect_err("planted duplicate");
        let msg = err.to_string();
        assert!(
            msg.contains("APT29 used PowerShell.") && msg.contains("train and test"),
            "{msg}"
        );
    }

    #[test]
    fn identical_texts_in_different_groups_share_a_split() {
        let cfg: PrepConfig = toml::from_str(
            "[[sources]]\nname = \"s\"\nkind = \"tram_sentences\"\npath = \"x\"\n\
             [dedup]\nexact = false\nnear = false\n",
        )
        .expect("cfg");
        let mut rows: Vec<Row> = (0..400)
            .map(|i| {
                row(
                    &format!("r{i}"),
                    &format!("sentence number {}", i % 200),
                    Split::Train,
                )
            })
            .collect();
        assign_splits(&mut rows, &cfg).expect("split");
        check_leakage(&rows).expect("groups merged by text");
        assert!(rows.iter().any(|r| r.split == Split::Test));
    }
}
