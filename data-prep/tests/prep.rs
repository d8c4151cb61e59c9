//! End-to-end tests of `prepare` on the bundled real sources: counts and label
//! distributions checked against the source files read independently here, determinism,
//! leakage, rejects with file and line, and user data through a column mapping.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use ctiforge_data_prep::config::PrepConfig;
use ctiforge_data_prep::{Error, Manifest, Options, prepare};
use polars::prelude::*;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn recipe(name: &str, edits: &[(&str, toml::Value)]) -> PrepConfig {
    recipe_with_sources(name, edits, None)
}

/// A shipped recipe with `edits` applied and, if given, only the named sources kept.
fn recipe_with_sources(
    name: &str,
    edits: &[(&str, toml::Value)],
    keep: Option<&[&str]>,
) -> PrepConfig {
    let path = root().join("configs/prep").join(name);
    let text = std::fs::read_to_string(&path).expect("recipe");
    let mut doc: toml::Table = toml::from_str(&text).expect("toml");
    if let Some(keep) = keep {
        let sources = doc
            .get_mut("sources")
            .and_then(|s| s.as_array_mut())
            .expect("sources");
        sources.retain(|s| keep.contains(&s["name"].as_str().expect("name")));
    }
    for (key, value) in edits {
        let (table, k) = key.split_once('.').expect("dotted key");
        doc.entry(table)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("table")
            .insert(k.to_owned(), value.clone());
    }
    PrepConfig::from_toml(&toml::to_string(&doc).expect("ser"), &path).expect("valid recipe")
}

fn opts() -> Options {
    Options {
        base_dir: root(),
        force: false,
    }
}

fn read_split(dir: &Path, split: &str) -> DataFrame {
    let f = std::fs::File::open(dir.join(format!("{split}.parquet"))).expect("parquet");
    ParquetReader::new(f).finish().expect("read parquet")
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

fn strings(df: &DataFrame, name: &str) -> Vec<String> {
    df.column(name)
        .expect("column")
        .str()
        .expect("str")
        .iter()
        .map(|v| v.unwrap_or_default().to_owned())
        .collect()
}

fn no_dedup() -> Vec<(&'static str, toml::Value)> {
    vec![
        ("dedup.exact", toml::Value::Boolean(false)),
        ("dedup.near", toml::Value::Boolean(false)),
        ("tokens.max_tokens", toml::Value::Integer(0)),
    ]
}

#[test]
fn tram_spans_match_the_source_counts_and_labels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ds");
    let cfg = recipe_with_sources("tram-techniques.toml", &no_dedup(), Some(&["tram_spans"]));
    let m = prepare(&cfg, &out, &opts()).expect("prepare");

    // Independent count: distinct (report, start, end) spans and their labels.
    let mut spans: BTreeMap<(String, u64, u64), HashSet<String>> = BTreeMap::new();
    for r in jsonl(&root().join("datasets/tram/tram2_reports_train.jsonl")) {
        for a in r["annotations"].as_array().expect("annotations") {
            let key = (
                r["doc_id"].as_str().expect("doc").to_owned(),
                a["start"].as_u64().expect("start"),
                a["end"].as_u64().expect("end"),
            );
            let mut id = a["technique_id"].as_str().expect("id").to_owned();
            if id == "T1574.002" {
                id = "T1574.001".into();
            }
            spans.entry(key).or_default().insert(id);
        }
    }
    let src = &m.sources[0];
    assert_eq!(src.rows_read, spans.len());
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for labels in spans.values() {
        for l in labels {
            *expected.entry(l.clone()).or_default() += 1;
        }
    }
    let mut rejected_labels: BTreeMap<String, usize> = BTreeMap::new();
    for r in jsonl(&out.join("rejects.jsonl")) {
        assert!(r["line"].as_u64().expect("line") > 0);
        assert!(!r["reason"].as_str().expect("reason").is_empty());
        if r["source"] == "tram_spans" {
            *rejected_labels.entry("any".into()).or_default() += 1;
        }
    }
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for split in m.splits.values() {
        for (l, n) in &split.labels {
            *got.entry(l.clone()).or_default() += n;
        }
    }
    // Rows rejected for length drop their labels; with none rejected, the counts are equal.
    if rejected_labels.is_empty() {
        assert_eq!(got, expected);
    } else {
        for (l, n) in &got {
            assert!(n <= &expected[l], "{l}: {n} > {}", expected[l]);
        }
    }
    assert_eq!(
        expected.len(),
        76,
        "TRAM2 train reports cover 76 technique IDs"
    );
    assert!(got.len() >= 70, "{} labels survive", got.len());
    assert!(
        m.labels
            .replaced
            .get("T1574.002->T1574.001")
            .is_some_and(|n| *n > 0)
    );

    // Grouped by report: no doc_id in two splits.
    let mut owner: HashMap<String, String> = HashMap::new();
    for split in ["train", "validation", "test"] {
        let df = read_split(&out, split);
        for (g, source) in strings(&df, "group")
            .into_iter()
            .zip(strings(&df, "source"))
        {
            if source == "tram_spans" {
                let prev = owner.insert(g.clone(), split.to_owned());
                assert!(
                    prev.is_none() || prev.as_deref() == Some(split),
                    "{g} leaks"
                );
            }
        }
    }
    assert!(m.splits["test"].rows > 0 && m.splits["validation"].rows > 0);

    // The record reader gives back every row with the labels the manifest counted.
    for split in ["train", "validation", "test"] {
        let records = ctiforge_data_prep::dataset::read_split(&out, split).expect("records");
        assert_eq!(records.len(), m.splits[split].rows, "{split}");
        let mut counted: BTreeMap<String, usize> = BTreeMap::new();
        for r in &records {
            assert_eq!(r.task, ctiforge_data_prep::Task::TechniqueClassification);
            assert_eq!(
                r.target["techniques"].as_array().map(Vec::len),
                Some(r.labels.len())
            );
            assert!(r.prompt.contains(&r.text) && !r.completion.is_empty());
            for l in &r.labels {
                *counted.entry(l.clone()).or_default() += 1;
            }
        }
        assert_eq!(counted, m.splits[split].labels, "{split}");
    }
}

#[test]
fn same_inputs_give_byte_identical_datasets_and_no_text_leaks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = recipe("tram-techniques.toml", &[]);
    let a = prepare(&cfg, &dir.path().join("a"), &opts()).expect("first");
    let b = prepare(&cfg, &dir.path().join("b"), &opts()).expect("second");
    assert_eq!(a.fingerprint, b.fingerprint);
    for f in [
        "train.parquet",
        "validation.parquet",
        "test.parquet",
        "manifest.json",
    ] {
        let x = std::fs::read(dir.path().join("a").join(f)).expect("a");
        let y = std::fs::read(dir.path().join("b").join(f)).expect("b");
        assert!(x == y, "{f} differs between runs");
    }
    assert!(a.counts.exact_duplicates > 0, "TRAM has repeated spans");
    // Independent leakage check over the written files.
    let mut seen: HashMap<String, &str> = HashMap::new();
    for split in ["train", "validation", "test"] {
        for t in strings(&read_split(&dir.path().join("a"), split), "text") {
            let norm = t
                .to_lowercase()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if let Some(prev) = seen.insert(norm.clone(), split) {
                assert_eq!(prev, split, "{norm:?} is in {prev} and {split}");
            }
        }
    }
    // Prompts and completions are separate, and the tokenizer counted both.
    let df = read_split(&dir.path().join("a"), "train");
    let prompts = strings(&df, "prompt");
    assert!(prompts.iter().all(|p| p.ends_with("Techniques:")));
    assert!(df.column("prompt_tokens").expect("col").null_count() == 0);
    assert!(
        a.splits["train"]
            .tokens
            .as_ref()
            .is_some_and(|t| t.max <= 512.0)
    );
}

#[test]
fn a_malformed_row_goes_to_rejects_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = root().join("datasets/tram/tram2_single_label_train.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&src)
        .expect("read")
        .lines()
        .take(200)
        .map(str::to_owned)
        .collect();
    lines.insert(2, r#"{"text": "truncated row", "label": "#.into());
    lines.insert(
        5,
        r#"{"text": "bad label", "label": "T99", "doc_id": "x"}"#.into(),
    );
    let planted = dir.path().join("planted.jsonl");
    std::fs::write(&planted, lines.join("\n")).expect("write");
    let text = format!(
        "[[sources]]\nname = \"s\"\nkind = \"tram_single_label\"\npath = \"{}\"\n\
         [attack]\ntechniques = \"datasets/attack/enterprise_techniques.tsv\"\n\
         replacements = {{ \"T1574.002\" = \"T1574.001\" }}\n\
         [reject]\nmax_fraction = 0.05\n",
        planted.display()
    );
    let cfg = PrepConfig::from_toml(&text, Path::new("inline.toml")).expect("cfg");
    let out = dir.path().join("ds");
    let m = prepare(&cfg, &out, &opts()).expect("prepare");
    let rejects = jsonl(&out.join("rejects.jsonl"));
    assert_eq!(m.counts.rejected, 2);
    assert_eq!(rejects[0]["line"], 3);
    assert!(
        rejects[0]["file"]
            .as_str()
            .expect("file")
            .ends_with("planted.jsonl")
    );
    assert!(
        rejects[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("invalid row")
    );
    assert_eq!(rejects[1]["line"], 6);
    assert!(
        rejects[1]["reason"]
            .as_str()
            .expect("reason")
            .contains("T99")
    );

    // Past the threshold the run fails, names the count and keeps the rejects.
    let strict = PrepConfig::from_toml(
        &text.replace("max_fraction = 0.05", "max_fraction = 0.001"),
        Path::new("inline.toml"),
    )
    .expect("cfg");
    let err = prepare(&strict, &dir.path().join("strict"), &opts()).expect_err("too many");
    assert!(
        matches!(
            err,
            Error::TooManyRejects {
                rejected: 2,
                total: 202,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("2 of 202 rows rejected"), "{err}");
    assert!(dir.path().join("strict.rejects.jsonl").exists());
    assert!(!dir.path().join("strict").exists(), "no partial dataset");
}

#[test]
fn existing_output_is_refused_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = recipe("actor-summaries.toml", &[]);
    let out = dir.path().join("ds");
    // A killed run's staging folder (no such process) is removed; a live one (pid 1) is not.
    let stale = dir.path().join(".ds.tmp-4000000000");
    let live = dir.path().join(".ds.tmp-1");
    for d in [&stale, &live] {
        std::fs::create_dir_all(d).expect("mkdir");
        std::fs::write(d.join(".minhash-text.bin"), b"partial").expect("write");
    }
    let m = prepare(&cfg, &out, &opts()).expect("prepare");
    assert_eq!(
        m.counts.kept, 11,
        "11 CTID actors, each paired with its ATT&CK group"
    );
    if Path::new("/proc/1").exists() {
        assert!(
            !stale.exists(),
            "the killed run's staging folder is removed"
        );
        assert!(
            live.exists(),
            "a running process's staging folder is left alone"
        );
    }
    let err = prepare(&cfg, &out, &opts()).expect_err("exists");
    assert!(err.to_string().contains("--force"), "{err}");
    let forced = Options {
        force: true,
        ..opts()
    };
    prepare(&cfg, &out, &forced).expect("forced");
    let df = read_split(&out, "train");
    let completion = strings(&df, "completion");
    assert!(
        completion
            .iter()
            .all(|c| !c.contains("(Citation:") && !c.contains("](http"))
    );
}

#[test]
fn user_csv_with_a_column_mapping_and_a_missing_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("mine.csv");
    let mut body = String::from("report,body,ttps\n");
    for i in 0..40 {
        body.push_str(&format!(
            "r{},\"Actor {i} ran PowerShell scripts number {i} on hosts.\",\"T1059.001, T1105\"\n",
            i % 8
        ));
    }
    std::fs::write(&csv, body).expect("write");
    let make = |text_col: &str| {
        format!(
            "[[sources]]\nname = \"mine\"\nkind = \"csv\"\npath = \"{}\"\n\
             columns = {{ text = \"{text_col}\", labels = \"ttps\", group = \"report\" }}\n\
             [dedup]\nnear = false\n",
            csv.display()
        )
    };
    let cfg = PrepConfig::from_toml(&make("body"), Path::new("inline.toml")).expect("cfg");
    let m = prepare(&cfg, &dir.path().join("ds"), &opts()).expect("prepare");
    assert_eq!(m.counts.kept, 40);
    let total: usize = m.splits.values().map(|s| s.labels["T1059.001"]).sum();
    assert_eq!(total, 40);
    let groups: usize = m.splits.values().map(|s| s.groups).sum();
    assert_eq!(groups, 8, "rows grouped by report");

    let cfg = PrepConfig::from_toml(&make("text"), Path::new("inline.toml")).expect("cfg");
    let err = prepare(&cfg, &dir.path().join("bad"), &opts()).expect_err("missing column");
    let msg = err.to_string();
    assert!(
        msg.contains("mine.csv") && msg.contains("`text`") && msg.contains("body"),
        "{msg}"
    );
}

#[test]
fn every_shipped_recipe_parses_and_validates() {
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("configs/prep")).expect("configs/prep") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        PrepConfig::from_toml(&text, &path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen += 1;
    }
    assert!(seen >= 5);
}

#[test]
fn ioc_entities_and_corpus_recipes_run_on_the_real_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = prepare(
        &recipe("ioc-extraction.toml", &[]),
        &dir.path().join("ioc"),
        &opts(),
    )
    .expect("ioc");
    assert!(m.counts.kept > 250, "{:?}", m.counts);
    let df = read_split(&dir.path().join("ioc"), "train");
    let targets = strings(&df, "target");
    let t: Value = serde_json::from_str(&targets[0]).expect("json");
    assert!(t["iocs"].as_array().is_some_and(|a| !a.is_empty()));
    // Completions show refanged indicators (defang_in_prompts = false).
    assert!(
        strings(&df, "completion")
            .iter()
            .all(|c| !c.contains("[.]"))
    );

    let m = prepare(
        &recipe("entity-extraction.toml", &[]),
        &dir.path().join("ent"),
        &opts(),
    )
    .expect("entities");
    let malware: usize = m
        .splits
        .values()
        .filter_map(|s| s.labels.get("Malware"))
        .sum();
    assert!(malware > 300, "CyNER malware rows: {malware}");
    let df = read_split(&dir.path().join("ent"), "train");
    for (text, target) in strings(&df, "text")
        .iter()
        .zip(strings(&df, "target"))
        .take(200)
    {
        let t: Value = serde_json::from_str(&target).expect("json");
        for e in t["entities"].as_array().expect("entities") {
            let (s, e_) = (
                e["start"].as_u64().expect("s") as usize,
                e["end"].as_u64().expect("e") as usize,
            );
            let span: String = text.chars().skip(s).take(e_ - s).collect();
            assert_eq!(
                span,
                e["text"].as_str().expect("text"),
                "offsets point at the span"
            );
        }
    }
    let m = prepare(
        &recipe("cti-corpus.toml", &[]),
        &dir.path().join("corpus"),
        &opts(),
    )
    .expect("corpus");
    assert_eq!(
        m.splits["train"].tasks.keys().collect::<Vec<_>>(),
        vec!["text"]
    );
    assert!(m.counts.kept > 10_000);
    let got = Manifest::read(&dir.path().join("corpus")).expect("manifest");
    assert_eq!(got, m);
}

/// The dataset must not depend on how the sources are chunked: exact duplicates, label
/// merges and near duplicates across chunk boundaries, per-source limits that end inside
/// a chunk, and row groups that fill across chunks.
#[test]
fn chunk_size_does_not_change_the_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = recipe("tram-techniques.toml", &[]);
    let tiny = recipe(
        "tram-techniques.toml",
        &[("dataset.chunk_rows", toml::Value::Integer(7))],
    );
    let a = prepare(&whole, &dir.path().join("a"), &opts()).expect("default chunks");
    let b = prepare(&tiny, &dir.path().join("b"), &opts()).expect("7-row chunks");
    assert!(
        a.counts.exact_duplicates > 0 && a.counts.labels_merged > 0,
        "{:?}",
        a.counts
    );
    assert_eq!(a.counts, b.counts);
    assert_eq!(a.sources, b.sources);
    assert_eq!(a.fingerprint, b.fingerprint);
    for f in [
        "train.parquet",
        "validation.parquet",
        "test.parquet",
        "rejects.jsonl",
    ] {
        let x = std::fs::read(dir.path().join("a").join(f)).expect("a");
        let y = std::fs::read(dir.path().join("b").join(f)).expect("b");
        assert!(x == y, "{f} differs between chunk sizes");
    }
}

/// CSV and Parquet files are read by Polars a slice at a time; slices of 3 rows give the
/// rows, line numbers and rejects of one whole read.
#[test]
fn csv_and_parquet_sources_read_in_slices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 50;
    let texts: Vec<Option<String>> = (0..n)
        .map(|i| (i != 17).then(|| format!("Group {i} staged payload number {i} with curl.")))
        .collect();
    let groups: Vec<String> = (0..n).map(|i| format!("r{}", i % 9)).collect();
    let labels: Vec<&str> = (0..n)
        .map(|i| if i % 2 == 0 { "T1105" } else { "T1059" })
        .collect();
    let mut df = df!("body" => texts, "report" => groups, "ttps" => labels).expect("frame");
    let parquet = dir.path().join("mine.parquet");
    let file = std::fs::File::create(&parquet).expect("create");
    ParquetWriter::new(file)
        .finish(&mut df)
        .expect("write parquet");
    let csv = dir.path().join("mine.csv");
    let mut file = std::fs::File::create(&csv).expect("create");
    CsvWriter::new(&mut file)
        .finish(&mut df)
        .expect("write csv");
    for (kind, path, first_line) in [("parquet", &parquet, 1), ("csv", &csv, 2)] {
        let make = |chunk: usize| {
            let text = format!(
                "[dataset]\nchunk_rows = {chunk}\n\
                 [[sources]]\nname = \"mine\"\nkind = \"{kind}\"\npath = \"{}\"\n\
                 columns = {{ text = \"body\", labels = \"ttps\", group = \"report\" }}\n\
                 [dedup]\nnear = false\n",
                path.display()
            );
            PrepConfig::from_toml(&text, Path::new("inline.toml")).expect("cfg")
        };
        let whole = prepare(
            &make(1000),
            &dir.path().join(format!("{kind}-whole")),
            &opts(),
        )
        .expect("whole");
        let sliced = prepare(
            &make(3),
            &dir.path().join(format!("{kind}-sliced")),
            &opts(),
        )
        .expect("sliced");
        assert_eq!(whole.fingerprint, sliced.fingerprint, "{kind}");
        assert_eq!(
            (sliced.counts.read, sliced.counts.kept),
            (n, n - 1),
            "{kind}"
        );
        let rejects = jsonl(&dir.path().join(format!("{kind}-sliced/rejects.jsonl")));
        assert_eq!(rejects.len(), 1, "{kind}");
        assert_eq!(
            rejects[0]["line"],
            17 + first_line,
            "{kind}: the null text's line"
        );
        let mut lines: Vec<u32> = Vec::new();
        for split in ["train", "validation", "test"] {
            let df = read_split(&dir.path().join(format!("{kind}-sliced")), split);
            let col = df.column("line").expect("line").u32().expect("u32").clone();
            lines.extend(col.into_no_null_iter());
        }
        lines.sort_unstable();
        let expected: Vec<u32> = (0..n as u32)
            .filter(|&i| i != 17)
            .map(|i| i + first_line)
            .collect();
        assert_eq!(lines, expected, "{kind}");
    }
}
