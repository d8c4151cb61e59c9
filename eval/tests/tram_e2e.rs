//! End to end on the bundled data: the TRAM technique dataset is prepared with the shipped
//! recipe, the bundled tiny Llama (aidreams260K) is LoRA-tuned with the shipped recipe,
//! and base and tuned are evaluated on the test split. The tuned model scores higher and
//! the report says so; an interrupted evaluation resumes to the same predictions.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ctiforge_data_prep::config::PrepConfig;
use ctiforge_data_prep::{Options, prepare};
use ctiforge_eval::bootstrap::BootstrapConfig;
use ctiforge_eval::harness::{GenSettings, PARTIAL_FILE};
use ctiforge_eval::report::{EvalReport, read_predictions};
use ctiforge_eval::{DataSource, EvalOptions, Scorer, evaluate};
use ctiforge_train::{RunOptions, TrainConfig, train};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model() -> String {
    root()
        .join("datasets/models/aidreams260K")
        .display()
        .to_string()
}

/// The shipped TRAM recipe's dataset, prepared once per test binary.
fn dataset() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = root().join("configs/prep/tram-techniques.toml");
        let text = std::fs::read_to_string(&path).expect("recipe");
        let cfg = PrepConfig::from_toml(&text, &path).expect("recipe");
        let out = tmp.path().join("tram");
        let opts = Options {
            base_dir: root(),
            force: false,
        };
        prepare(&cfg, &out, &opts).expect("prepare");
        (tmp, out)
    })
    .1
}

fn options(out: &Path, adapter: Option<PathBuf>) -> EvalOptions {
    EvalOptions {
        model: Some(model()),
        adapter,
        data: DataSource::Dataset {
            dir: dataset().to_path_buf(),
            split: "test".into(),
        },
        out: out.to_path_buf(),
        limit: None,
        scorer: Scorer::Generate,
        generation: GenSettings::default(),
        device: "cpu".into(),
        attack: Some(root().join("datasets/attack/enterprise_techniques.tsv")),
        baseline: None,
        require: Vec::new(),
        bootstrap: BootstrapConfig::default(),
        force: false,
        // The recipe trains on rows of up to 256 tokens; base and tuned see the same.
        context: Some(256),
    }
}

#[test]
fn tuned_model_beats_its_base_on_the_tram_test_split() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = tmp.path().join("run");
    let sets = vec![
        format!("run.model={:?}", model()),
        format!("run.data={:?}", dataset().display().to_string()),
        "eval.every_steps=0".to_owned(),
        "checkpoint.every_steps=0".to_owned(),
    ];
    let cfg = TrainConfig::from_file(&root().join("configs/train/tram-lora.toml"), &sets)
        .expect("recipe");
    train(&cfg, &run, &RunOptions::default()).expect("train");

    let base_dir = tmp.path().join("base");
    let base = evaluate(&options(&base_dir, None), &mut |_, _| {}).expect("base eval");
    let tuned_dir = tmp.path().join("tuned");
    let mut opts = options(&tuned_dir, Some(run.clone()));
    opts.baseline = Some(base_dir.clone());
    opts.require = vec![
        "technique.micro_f1 >= +0.01".parse().expect("requirement"),
        "lm.perplexity <= 10".parse().expect("requirement"),
    ];
    let tuned = evaluate(&opts, &mut |_, _| {}).expect("tuned eval");

    let m = |r: &EvalReport, k: &str| r.flat_metrics()[k];
    println!(
        "micro F1 {:.4} -> {:.4}, perplexity {:.1} -> {:.2}",
        m(&base, "technique.micro_f1"),
        m(&tuned, "technique.micro_f1"),
        m(&base, "lm.perplexity"),
        m(&tuned, "lm.perplexity")
    );
    assert_eq!(tuned.counts.examples, base.counts.examples);
    assert!(m(&tuned, "technique.micro_f1") > m(&base, "technique.micro_f1"));
    assert!(m(&tuned, "lm.perplexity") < m(&base, "lm.perplexity") / 10.0);

    let c = tuned.comparison.as_ref().expect("comparison");
    assert!(c.passed, "{}", c.table());
    let f1 = c
        .deltas
        .iter()
        .find(|d| d.metric == "technique.micro_f1")
        .expect("micro F1 delta");
    assert!(f1.delta > 0.0 && f1.low > 0.0, "{f1:?}");
    // The lineage of the run is in the report.
    let lineage = tuned.model.run.as_ref().expect("run.json");
    assert!(lineage["dataset_fingerprint"].is_string(), "{lineage}");

    // The files a person and a gate read.
    let back = EvalReport::read(&tuned_dir).expect("eval.json");
    let (a, b) = (back.flat_metrics(), tuned.flat_metrics());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert!(
            (v - b[k]).abs() <= 1e-12 * v.abs().max(1.0),
            "{k}: {v} vs {}",
            b[k]
        );
    }
    assert_eq!(back.counts, tuned.counts);
    let preds = read_predictions(&tuned_dir).expect("predictions");
    assert_eq!(preds.len(), tuned.counts.examples);
    let html = std::fs::read_to_string(tuned_dir.join("report.html")).expect("html");
    assert!(
        html.contains("The candidate scores higher on technique.micro_f1"),
        "the page says the tuned model is better"
    );
    assert!(!tuned_dir.join(PARTIAL_FILE).exists());
}

#[test]
fn an_interrupted_evaluation_resumes_to_the_same_predictions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let whole = tmp.path().join("whole");
    let mut opts = options(&whole, None);
    opts.limit = Some(40);
    opts.generation.batch_size = 8;
    evaluate(&opts, &mut |_, _| {}).expect("uninterrupted");

    let cut = tmp.path().join("cut");
    opts.out = cut.clone();
    // Stop (as a kill would) after the second batch has been written.
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = evaluate(&opts, &mut |done, _| {
            assert!(done < 16, "killed after {done} examples");
        });
    }));
    assert!(killed.is_err());
    let partial = std::fs::read_to_string(cut.join(PARTIAL_FILE)).expect("partial file");
    assert_eq!(partial.lines().count(), 1 + 16, "header and two batches");

    let mut seen = Vec::new();
    evaluate(&opts, &mut |done, _| seen.push(done)).expect("resumed");
    assert_eq!(
        seen.first(),
        Some(&16),
        "continued after the finished examples"
    );
    let a = read_predictions(&whole).expect("whole");
    let b = read_predictions(&cut).expect("resumed");
    assert_eq!(a, b);

    // Other settings do not reuse the partial answers.
    std::fs::write(cut.join(PARTIAL_FILE), partial).expect("restore partial");
    opts.generation.max_new_tokens = Some(5);
    let err = evaluate(&opts, &mut |_, _| {}).expect_err("other settings");
    assert!(err.to_string().contains("--force"), "{err}");
    opts.force = true;
    evaluate(&opts, &mut |_, _| {}).expect("--force starts over");
}
