//! Parity with the reference implementations: scikit-learn, seqeval, rouge-score (and its
//! nltk Porter stemmer) and sacrebleu, run by `ci/reference_metrics.py` on the same
//! generated and real (TRAM, CTID summaries) inputs. Floats must agree to 1e-9, integers,
//! tokens, stems and signatures exactly.
//!
//! `#[ignore]`d for plain `cargo test`: they need the environment of `ci/setup-evalref.sh`,
//! whose interpreter they read from `CTIFORGE_EVALREF_PYTHON`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ctiforge_eval::metrics::bio::{BioMode, span_report};
use ctiforge_eval::metrics::bleu::{
    BleuOptions, BleuTokenizer, Smoothing, corpus_bleu, tokenize_13a,
};
use ctiforge_eval::metrics::classification::{MultiLabelOptions, multi_label};
use ctiforge_eval::metrics::porter;
use ctiforge_eval::metrics::rouge::{RougeScorer, RougeType};
use ctiforge_eval::metrics::tokenize::default_tokens;
use ctiforge_eval::metrics::{Prf, ZeroDivision};
use serde_json::{Value, json};

const TOL: f64 = 1e-9;

/// SplitMix64: a tiny seeded generator so the inputs are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

fn datasets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets")
}

fn jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn tram_sentences() -> Vec<String> {
    jsonl(&datasets().join("tram/tram_bootstrap_sentences.jsonl"))
        .iter()
        .map(|v| v["text"].as_str().expect("text").to_string())
        .collect()
}

fn summaries() -> Vec<String> {
    jsonl(&datasets().join("actor_summaries/ctid_intelligence_summaries.jsonl"))
        .iter()
        .map(|v| v["text"].as_str().expect("text").to_string())
        .collect()
}

/// Runs the reference script on `tasks` and returns its results, one per task.
fn reference(tasks: Vec<Value>) -> Vec<Value> {
    let python = std::env::var("CTIFORGE_EVALREF_PYTHON").expect(
        "CTIFORGE_EVALREF_PYTHON is not set: run `ci/setup-evalref.sh` and set the variable to \
         the interpreter path it prints (cargo xtask ci does both)",
    );
    let dir = std::env::temp_dir().join(format!("ctiforge-evalref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let n = tasks.len();
    let tag = format!(
        "{:x}",
        tasks
            .iter()
            .map(|t| t.to_string().len() as u64)
            .sum::<u64>()
            ^ n as u64
    );
    let input = dir.join(format!("in-{tag}.json"));
    let output = dir.join(format!("out-{tag}.json"));
    std::fs::write(&input, json!({ "tasks": tasks }).to_string()).expect("write tasks");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/reference_metrics.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(&input)
        .arg(&output)
        .output()
        .expect("run the reference script");
    assert!(
        out.status.success(),
        "reference_metrics.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&output).expect("read results"))
        .expect("results JSON");
    let results = v["results"].as_array().expect("results").clone();
    let _ = (std::fs::remove_file(&input), std::fs::remove_file(&output));
    assert_eq!(results.len(), n);
    results
}

fn num(v: &Value) -> f64 {
    if v.is_null() {
        f64::NAN
    } else {
        v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
    }
}

fn close(ours: f64, theirs: &Value, what: &str) {
    let t = num(theirs);
    let ok = (ours.is_nan() && t.is_nan()) || (ours - t).abs() <= TOL;
    assert!(ok, "{what}: ours {ours:?}, reference {t:?}");
}

fn prf(ours: &Prf, theirs: &Value, f1_key: &str, what: &str) {
    close(
        ours.precision,
        &theirs["precision"],
        &format!("{what} precision"),
    );
    close(ours.recall, &theirs["recall"], &format!("{what} recall"));
    close(ours.f1, &theirs[f1_key], &format!("{what} f1"));
}

/// Varied text: real sentences, punctuation, unicode, IOCs, empty strings.
fn odd_texts() -> Vec<String> {
    [
        "",
        " ",
        "...",
        "The actor used PowerShell (T1059.001) to download http://evil.example[.]com/a.ps1; \
         then 10.0.0.1:8080!",
        "Ünïcödé naïve café ΣΑΣ ΟΔΟΣ İstanbul \u{212a}elvin straße — «quotes» 1,000.50 -3",
        "tabs\tand\u{a0}nbsp\u{3000}ideographic\u{1f}unit-sep\u{85}nel end  ",
        "HTML &amp; entities &lt;b&gt; &quot;x&quot; <skipped> line-\nbreak\nnew line",
        "Numbers: 3.14, 2,5 and 1-2 or a-b, version 1.2.3-beta.",
        "CVE-2021-44228 / MD5 d41d8cd98f00b204e9800998ecf8427e, SHA256 \
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "dying lying skies news proceeding generalizations hopefulness relational controlling",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A "prediction" derived from a reference: words dropped, swapped and borrowed.
fn perturb(rng: &mut Rng, text: &str, pool: &[String]) -> String {
    let mut words: Vec<String> = text
        .split(' ')
        .filter(|_| rng.below(4) != 0)
        .map(str::to_string)
        .collect();
    if words.len() > 2 && rng.below(2) == 0 {
        let i = rng.below(words.len() - 1);
        words.swap(i, i + 1);
    }
    for _ in 0..rng.below(3) {
        let donor = rng.pick(pool);
        if let Some(w) = donor.split(' ').nth(rng.below(6)) {
            let at = rng.below(words.len() + 1);
            words.insert(at, w.to_string());
        }
    }
    if rng.below(5) == 0 {
        return words.join("\n");
    }
    words.join(" ")
}

#[test]
#[ignore = "needs the evalref reference env (CTIFORGE_EVALREF_PYTHON)"]
fn porter_stemmer_matches_nltk() {
    let mut words: Vec<String> = tram_sentences()
        .iter()
        .flat_map(|s| default_tokens(s, false))
        .collect();
    words.extend(summaries().iter().flat_map(|s| default_tokens(s, false)));
    words.extend(
        [
            "y", "yy", "ay", "by", "sky", "skies", "ied", "ties", "spied", "flies", "syzygy",
            "yyyy", "agreed", "feed",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    words.sort();
    words.dedup();
    let theirs = reference(vec![json!({"kind": "stem", "words": words})]);
    let theirs = theirs[0].as_array().expect("stems");
    let mut wrong = Vec::new();
    for (w, t) in words.iter().zip(theirs) {
        let ours = porter::stem(w);
        if ours != t.as_str().expect("stem") {
            wrong.push(format!("{w}: ours {ours}, nltk {t}"));
        }
    }
    assert!(words.len() > 5_000, "only {} distinct words", words.len());
    assert!(
        wrong.is_empty(),
        "{} of {} stems differ: {:?}",
        wrong.len(),
        words.len(),
        &wrong[..wrong.len().min(20)]
    );
}

#[test]
#[ignore = "needs the evalref reference env (CTIFORGE_EVALREF_PYTHON)"]
fn rouge_tokenizer_and_scores_match_rouge_score() {
    let tram = tram_sentences();
    let mut rng = Rng(11);
    let mut targets: Vec<String> = Vec::new();
    let mut preds: Vec<String> = Vec::new();
    for _ in 0..400 {
        let t = rng.pick(&tram).clone();
        preds.push(perturb(&mut rng, &t, &tram));
        targets.push(t);
    }
    // Multi-sentence summaries for ROUGE-Lsum: sentences joined by newlines.
    // The first 4000 characters of each, to keep rouge-score's pure-Python LCS quick.
    for s in summaries() {
        let s: String = s.chars().take(4000).collect();
        let lines: Vec<String> = s.split(". ").map(str::to_string).collect();
        let t = lines.join("\n");
        let p: Vec<String> = lines.iter().map(|l| perturb(&mut rng, l, &tram)).collect();
        targets.push(t);
        preds.push(p.join("\n"));
    }
    let odd = odd_texts();
    for a in &odd {
        for b in &odd {
            targets.push(a.clone());
            preds.push(b.clone());
        }
    }
    let types = ["rouge1", "rouge2", "rouge3", "rougeL", "rougeLsum"];
    let mut tasks = Vec::new();
    for stem in [false, true] {
        let texts: Vec<_> = odd.iter().chain(&targets).collect();
        tasks.push(json!({"kind": "rouge_tokenize", "texts": texts, "stem": stem}));
        tasks.push(json!({
            "kind": "rouge", "types": types, "stem": stem, "targets": targets, "predictions": preds
        }));
    }
    let theirs = reference(tasks);
    for (k, stem) in [false, true].into_iter().enumerate() {
        let texts: Vec<&String> = odd.iter().chain(&targets).collect();
        for (text, t) in texts.iter().zip(theirs[2 * k].as_array().expect("tokens")) {
            let t: Vec<String> = serde_json::from_value(t.clone()).expect("token list");
            assert_eq!(
                default_tokens(text, stem),
                t,
                "tokens of {text:?} (stem {stem})"
            );
        }
        let scorer = RougeScorer {
            types: vec![
                RougeType::N(1),
                RougeType::N(2),
                RougeType::N(3),
                RougeType::L,
                RougeType::Lsum,
            ],
            ..RougeScorer::new(stem)
        };
        let rows = theirs[2 * k + 1].as_array().expect("rows");
        for (i, ((t, p), row)) in targets.iter().zip(&preds).zip(rows).enumerate() {
            let ours = scorer.score(t, p);
            for (ty, s) in scorer.types.iter().zip(&ours) {
                let r = &row[ty.name()];
                let what = format!("pair {i} {} stem={stem}", ty.name());
                close(s.precision, &r["precision"], &what);
                close(s.recall, &r["recall"], &what);
                close(s.fmeasure, &r["fmeasure"], &what);
            }
        }
    }
}

fn bleu_task(hyps: &[String], refs: &[Vec<String>], opts: Value) -> Value {
    json!({"kind": "bleu", "hyps": hyps, "refs": refs, "options": opts})
}

#[test]
#[ignore = "needs the evalref reference env (CTIFORGE_EVALREF_PYTHON)"]
fn bleu_and_13a_match_sacrebleu() {
    let tram = tram_sentences();
    let odd = odd_texts();
    let mut rng = Rng(23);
    let mut hyps = Vec::new();
    let mut refs1 = Vec::new();
    let mut refs_multi = Vec::new();
    let mut refs_var = Vec::new();
    for i in 0..300 {
        let r = if i % 10 == 0 {
            rng.pick(&odd).clone()
        } else {
            rng.pick(&tram).clone()
        };
        let h = perturb(&mut rng, &r, &tram);
        let r2 = perturb(&mut rng, &r, &tram);
        let r3 = perturb(&mut rng, &r, &tram);
        hyps.push(h);
        refs1.push(vec![r.clone()]);
        refs_multi.push(vec![r.clone(), r2.clone(), r3]);
        refs_var.push(if i % 3 == 0 { vec![r] } else { vec![r, r2] });
    }
    let short_h: Vec<String> = hyps[..5]
        .iter()
        .map(|h| h.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    let configs: Vec<(Value, BleuOptions)> = vec![
        (json!({}), BleuOptions::default()),
        (
            json!({"lowercase": true}),
            BleuOptions {
                lowercase: true,
                ..Default::default()
            },
        ),
        (
            json!({"tokenize": "none"}),
            BleuOptions {
                tokenizer: BleuTokenizer::None,
                ..Default::default()
            },
        ),
        (
            json!({"smooth_method": "floor", "smooth_value": 0.1}),
            BleuOptions {
                smoothing: Smoothing::Floor(0.1),
                ..Default::default()
            },
        ),
        (
            json!({"smooth_method": "add-k", "smooth_value": 1}),
            BleuOptions {
                smoothing: Smoothing::AddK(1.0),
                ..Default::default()
            },
        ),
        (
            json!({"smooth_method": "none"}),
            BleuOptions {
                smoothing: Smoothing::None,
                ..Default::default()
            },
        ),
        (
            json!({"effective_order": true, "max_ngram_order": 6}),
            BleuOptions {
                effective_order: true,
                max_ngram_order: 6,
                ..Default::default()
            },
        ),
    ];
    let corpora: Vec<(&[String], &[Vec<String>])> = vec![
        (&hyps, &refs1),
        (&hyps, &refs_multi),
        (&hyps, &refs_var),
        (&short_h, &refs1[..5]),
    ];
    let mut tasks = Vec::new();
    let mut ours = Vec::new();
    for (h, r) in &corpora {
        for (py, opts) in &configs {
            tasks.push(bleu_task(h, r, py.clone()));
            ours.push(corpus_bleu(h, r, opts).expect("bleu"));
        }
    }
    let lines: Vec<String> = odd.iter().chain(tram.iter().take(2000)).cloned().collect();
    tasks.push(json!({"kind": "tok13a", "lines": lines}));
    let theirs = reference(tasks);
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        let what = format!("corpus/config {i}");
        close(o.score, &t["score"], &format!("{what} score"));
        close(o.bp, &t["bp"], &format!("{what} bp"));
        assert_eq!(
            o.sys_len as u64,
            t["sys_len"].as_u64().expect("sys_len"),
            "{what}"
        );
        assert_eq!(
            o.ref_len as u64,
            t["ref_len"].as_u64().expect("ref_len"),
            "{what}"
        );
        for k in 0..o.counts.len() {
            close(o.counts[k], &t["counts"][k], &format!("{what} counts[{k}]"));
            close(o.totals[k], &t["totals"][k], &format!("{what} totals[{k}]"));
            close(
                o.precisions[k],
                &t["precisions"][k],
                &format!("{what} precisions[{k}]"),
            );
        }
        assert_eq!(
            o.signature,
            t["signature"].as_str().expect("signature"),
            "{what}"
        );
    }
    let toks = theirs.last().expect("tok13a").as_array().expect("lines");
    for (line, t) in lines.iter().zip(toks) {
        assert_eq!(
            tokenize_13a(line),
            t.as_str().expect("line"),
            "13a of {line:?}"
        );
    }
}

fn random_label_sets(rng: &mut Rng, n: usize, labels: &[&str], max: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|_| {
            (0..rng.below(max + 1))
                .map(|_| rng.pick(labels).to_string())
                .collect()
        })
        .collect()
}

#[test]
#[ignore = "needs the evalref reference env (CTIFORGE_EVALREF_PYTHON)"]
fn multilabel_matches_sklearn() {
    let labels = [
        "T1059",
        "T1059.001",
        "T1566.001",
        "T1071",
        "T1105",
        "T1027",
        "T1547.001",
        "T1082",
        "T1003",
        "T1486",
    ];
    let mut rng = Rng(5);
    let mut cases = Vec::new();
    for (n, max) in [(1, 3), (7, 2), (50, 4), (300, 3), (1000, 5)] {
        let gold = random_label_sets(&mut rng, n, &labels, max);
        // Predictions: mostly the reference with errors, sometimes unrelated.
        let pred: Vec<Vec<String>> = gold
            .iter()
            .map(|g| {
                let mut p: Vec<String> = g.iter().filter(|_| rng.below(4) != 0).cloned().collect();
                if rng.below(3) == 0 {
                    p.push(rng.pick(&labels).to_string());
                }
                p
            })
            .collect();
        cases.push((gold, pred));
    }
    let mut tasks = Vec::new();
    for (gold, pred) in &cases {
        for zd in [0, 1] {
            tasks.push(
                json!({"kind": "multilabel", "gold": gold, "pred": pred, "zero_division": zd}),
            );
        }
    }
    let theirs = reference(tasks);
    let mut k = 0;
    for (gold, pred) in &cases {
        for zd in [ZeroDivision::Zero, ZeroDivision::One] {
            let t = &theirs[k];
            k += 1;
            let o =
                multi_label(pred, gold, MultiLabelOptions { zero_division: zd }).expect("scores");
            let what = format!("case {k}");
            prf(&o.micro, &t["micro"], "f1", &format!("{what} micro"));
            prf(&o.macro_avg, &t["macro"], "f1", &format!("{what} macro"));
            prf(&o.samples, &t["samples"], "f1", &format!("{what} samples"));
            close(
                o.exact_match,
                &t["exact_match"],
                &format!("{what} exact match"),
            );
            close(
                o.hamming_loss,
                &t["hamming_loss"],
                &format!("{what} hamming"),
            );
            let per = t["per_label"].as_array().expect("per label");
            assert_eq!(o.per_label.len(), per.len(), "{what} labels");
            for (ol, tl) in o.per_label.iter().zip(per) {
                assert_eq!(ol.label, tl["label"].as_str().expect("label"));
                assert_eq!(ol.support as u64, tl["support"].as_u64().expect("support"));
                prf(&ol.scores, tl, "f1", &format!("{what} label {}", ol.label));
            }
        }
    }
}

/// Random tag sequences: valid IOB2, orphan `I-`s, type switches, and (for the default
/// mode) malformed tags seqeval still chunks.
fn random_tags(rng: &mut Rng, sentences: usize, malformed: bool) -> Vec<Vec<String>> {
    let types = [
        "Malware",
        "Indicator",
        "System",
        "Organization",
        "Vulnerability",
    ];
    let weird = [
        "B",
        "I",
        "E-Malware",
        "S-System",
        "X-Indicator",
        ".",
        "B-",
        "I-a-b",
        "O-System",
        "Bx-y",
    ];
    (0..sentences)
        .map(|_| {
            let len = rng.below(15);
            (0..len)
                .map(|_| match rng.below(if malformed { 12 } else { 10 }) {
                    0..=4 => "O".to_string(),
                    5..=6 => format!("B-{}", rng.pick(&types)),
                    7..=9 => format!("I-{}", rng.pick(&types)),
                    _ => rng.pick(&weird).to_string(),
                })
                .collect()
        })
        .collect()
}

/// A prediction: the reference with some tags replaced.
fn noisy(rng: &mut Rng, gold: &[Vec<String>], malformed: bool) -> Vec<Vec<String>> {
    gold.iter()
        .map(|s| {
            let alt = random_tags(rng, 1, malformed).pop().unwrap_or_default();
            s.iter()
                .enumerate()
                .map(|(i, t)| {
                    if rng.below(5) == 0 {
                        alt.get(i).cloned().unwrap_or_else(|| "O".into())
                    } else {
                        t.clone()
                    }
                })
                .collect()
        })
        .collect()
}

#[test]
#[ignore = "needs the evalref reference env (CTIFORGE_EVALREF_PYTHON)"]
fn bio_spans_match_seqeval() {
    let mut rng = Rng(99);
    let mut cases = Vec::new();
    for (n, malformed, mode) in [
        (5, false, BioMode::Conlleval),
        (200, false, BioMode::Conlleval),
        (200, true, BioMode::Conlleval),
        (500, true, BioMode::Conlleval),
        (200, false, BioMode::StrictIob2),
        (500, false, BioMode::StrictIob2),
    ] {
        let gold = random_tags(&mut rng, n, malformed);
        let pred = noisy(&mut rng, &gold, malformed);
        cases.push((gold, pred, mode));
    }
    let tasks = cases
        .iter()
        .map(|(g, p, m)| {
            json!({"kind": "seqeval", "gold": g, "pred": p,
                   "mode": if *m == BioMode::StrictIob2 { "strict" } else { "default" }})
        })
        .collect();
    let theirs = reference(tasks);
    for (i, ((gold, pred, mode), t)) in cases.iter().zip(&theirs).enumerate() {
        let o = span_report(gold, pred, *mode).expect("report");
        let what = format!("case {i} ({mode:?})");
        let t = t.as_object().expect("report");
        let types: Vec<&String> = t.keys().filter(|k| !k.ends_with(" avg")).collect();
        assert_eq!(
            o.per_type.len(),
            types.len(),
            "{what}: types {types:?} vs {:?}",
            o.per_type.keys()
        );
        for name in types {
            let row = o
                .per_type
                .get(name)
                .unwrap_or_else(|| panic!("{what}: type {name} missing"));
            prf(&row.scores, &t[name], "f1-score", &format!("{what} {name}"));
            assert_eq!(
                row.support as u64,
                t[name]["support"].as_u64().expect("support"),
                "{what} {name}"
            );
        }
        prf(
            &o.micro.scores,
            &t["micro avg"],
            "f1-score",
            &format!("{what} micro"),
        );
        prf(
            &o.macro_avg.scores,
            &t["macro avg"],
            "f1-score",
            &format!("{what} macro"),
        );
        prf(
            &o.weighted.scores,
            &t["weighted avg"],
            "f1-score",
            &format!("{what} weighted"),
        );
        assert_eq!(
            o.micro.support as u64,
            t["micro avg"]["support"].as_u64().expect("support")
        );
    }
}
