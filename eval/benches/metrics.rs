//! Throughput of ROUGE, BLEU and multi-label F1 on 10k pairs built from the bundled TRAM
//! sentences. The inputs are also written to `target/eval-bench-inputs.json` (or the path in
//! `CTIFORGE_EVAL_BENCH_INPUTS`) so `ci/reference_metrics_bench.py` can time rouge-score,
//! sacrebleu and scikit-learn on exactly the same pairs.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use ctiforge_eval::metrics::bleu::{BleuOptions, corpus_bleu};
use ctiforge_eval::metrics::classification::{MultiLabelOptions, multi_label};
use ctiforge_eval::metrics::rouge::RougeScorer;

const PAIRS: usize = 10_000;

struct Inputs {
    hyps: Vec<String>,
    refs: Vec<String>,
    pred_labels: Vec<Vec<String>>,
    gold_labels: Vec<Vec<String>>,
}

/// A small deterministic generator (SplitMix64), so the inputs are the same on every run.
struct SplitMix(u64);

impl SplitMix {
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
}

fn load() -> Inputs {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("datasets/tram/tram_bootstrap_sentences.jsonl");
    let text = std::fs::read_to_string(&path).expect("read the TRAM sentences");
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let mut rng = SplitMix(2024);
    let mut inputs = Inputs {
        hyps: vec![],
        refs: vec![],
        pred_labels: vec![],
        gold_labels: vec![],
    };
    for i in 0..PAIRS {
        let row = &rows[i % rows.len()];
        let reference = row["text"].as_str().expect("text").to_string();
        // The hypothesis: the reference with ~20% of words dropped and one word from another
        // sentence inserted, so scores spread over the whole range.
        let mut words: Vec<&str> = reference.split(' ').filter(|_| rng.below(5) != 0).collect();
        let other = rows[rng.below(rows.len())]["text"].as_str().expect("text");
        if let Some(w) = other.split(' ').nth(rng.below(8)) {
            let at = rng.below(words.len() + 1);
            words.insert(at, w);
        }
        inputs.hyps.push(words.join(" "));
        inputs.refs.push(reference);
        let gold: Vec<String> = row["labels"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut pred: Vec<String> = gold.iter().filter(|_| rng.below(4) != 0).cloned().collect();
        if rng.below(3) == 0 {
            let donor = &rows[rng.below(rows.len())]["labels"];
            if let Some(l) = donor
                .as_array()
                .and_then(|a| a.first())
                .and_then(|l| l.as_str())
            {
                pred.push(l.to_string());
            }
        }
        inputs.gold_labels.push(gold);
        inputs.pred_labels.push(pred);
    }
    inputs
}

fn write_inputs(inputs: &Inputs) {
    let path = std::env::var_os("CTIFORGE_EVAL_BENCH_INPUTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/eval-bench-inputs.json")
        });
    let doc = serde_json::json!({
        "hyps": inputs.hyps, "refs": inputs.refs,
        "pred_labels": inputs.pred_labels, "gold_labels": inputs.gold_labels,
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create the bench input folder");
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, doc.to_string()).expect("write bench inputs");
    std::fs::rename(&tmp, &path).expect("rename bench inputs");
    eprintln!("bench inputs written to {}", path.display());
}

fn bench(c: &mut Criterion) {
    let inputs = load();
    write_inputs(&inputs);
    let mut group = c.benchmark_group("eval_10k_pairs");
    group.sample_size(10);
    let plain = RougeScorer::new(false);
    group.bench_function("rouge_1_2_L_Lsum", |b| {
        b.iter(|| {
            for (r, h) in inputs.refs.iter().zip(&inputs.hyps) {
                black_box(plain.score(r, h));
            }
        })
    });
    let stemmed = RougeScorer::new(true);
    group.bench_function("rouge_1_2_L_Lsum_stemmed", |b| {
        b.iter(|| {
            for (r, h) in inputs.refs.iter().zip(&inputs.hyps) {
                black_box(stemmed.score(r, h));
            }
        })
    });
    let refs: Vec<Vec<&str>> = inputs.refs.iter().map(|r| vec![r.as_str()]).collect();
    group.bench_function("corpus_bleu", |b| {
        b.iter(|| {
            black_box(corpus_bleu(&inputs.hyps, &refs, &BleuOptions::default()).expect("bleu"))
        })
    });
    group.bench_function("multi_label_f1", |b| {
        b.iter(|| {
            black_box(
                multi_label(
                    &inputs.pred_labels,
                    &inputs.gold_labels,
                    MultiLabelOptions::default(),
                )
                .expect("f1"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
