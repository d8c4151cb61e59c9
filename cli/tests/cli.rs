//! End-to-end tests of the `ctiforge` binary: the commands a user runs, their JSON output,
//! and the errors bad input gets (non-zero exit, the file or field named on stderr).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The binary with test settings: offline hub, quiet logs.
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ctiforge"));
    cmd.args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("RUST_LOG", "warn");
    cmd
}

fn ctiforge(args: &[&str]) -> Output {
    command(args).output().expect("run ctiforge")
}

fn ok(args: &[&str]) -> String {
    let out = ctiforge(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

fn fails(args: &[&str]) -> String {
    let out = ctiforge(args);
    assert!(!out.status.success(), "{args:?} should fail");
    assert_eq!(out.status.code(), Some(1), "{args:?}: exit code");
    String::from_utf8(out.stderr).expect("utf-8 stderr")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn corpus() -> String {
    root()
        .join("datasets/tram/tram_bootstrap_sentences.jsonl")
        .display()
        .to_string()
}

fn init(out: &Path, extra: &[&str]) {
    let out = out.display().to_string();
    let mut args = vec!["model", "init", "--arch", "llama", "--preset", "tiny"];
    args.extend(["--vocab-size", "400", "--seed", "3", "--tokenizer-corpus"]);
    let corpus = corpus();
    args.extend([corpus.as_str(), "--out", out.as_str()]);
    args.extend(extra);
    ok(&args);
}

#[test]
fn init_inspect_generate_and_logits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("tiny");
    init(&model, &["--set", "num_hidden_layers=3"]);
    let m = model.display().to_string();

    let report: Value =
        serde_json::from_str(&ok(&["model", "inspect", &m, "--json"])).expect("json");
    assert_eq!(report["n_layers"], 3);
    assert_eq!(report["vocab_size"], 400);
    assert!(
        report["n_kv_heads"].as_u64() < report["n_heads"].as_u64(),
        "tiny uses GQA"
    );
    assert!(ok(&["model", "inspect", &m]).contains("parameters"));

    // Greedy generation is deterministic, and an empty prompt starts from BOS.
    let run = |prompt: &str| -> Value {
        let args = [
            "generate",
            "--model",
            &m,
            "--prompt",
            prompt,
            "--max-new-tokens",
            "8",
            "--json",
        ];
        serde_json::from_str(&ok(&args)).expect("json")
    };
    let a = run("");
    assert_eq!(a, run(""));
    let ids = a["generated_ids"].as_array().expect("ids");
    assert!(!ids.is_empty() && ids.len() <= 8);
    assert!(a["text"].is_string());
    assert!(run("APT29 used PowerShell")["generated_ids"].is_array());

    // Sampling with a seed is reproducible; the chat template renders.
    let sample = |seed: &str| {
        ok(&[
            "generate",
            "--model",
            &m,
            "--prompt",
            "x",
            "--temperature",
            "1.0",
            "--seed",
            seed,
            "--max-new-tokens",
            "12",
            "--json",
        ])
    };
    assert_eq!(sample("1"), sample("1"));
    ok(&[
        "generate",
        "--model",
        &m,
        "--prompt",
        "hello",
        "--chat",
        "--max-new-tokens",
        "4",
    ]);

    let logits: Value = serde_json::from_str(&ok(&[
        "model", "logits", "--model", &m, "--tokens", "0,5,9", "--json",
    ]))
    .expect("json");
    assert_eq!(logits["tokens"], serde_json::json!([0, 5, 9]));
    let rows = logits["logits"].as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].as_array().expect("row").len(), 400);
}

#[test]
fn init_is_seeded_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    init(&a, &[]);
    init(&b, &[]);
    let read = |p: &Path| std::fs::read(p.join("model.safetensors")).expect("weights");
    assert!(read(&a) == read(&b), "same seed, same bytes");

    let corpus = corpus();
    let a_str = a.display().to_string();
    let err = fails(&[
        "model",
        "init",
        "--tokenizer-corpus",
        &corpus,
        "--out",
        &a_str,
    ]);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    let err = fails(&[
        "model",
        "init",
        "--tokenizer-corpus",
        &corpus,
        "--out",
        &dir.path().join("c").display().to_string(),
        "--set",
        "num_attention_heads=3",
    ]);
    assert!(
        err.contains("num_attention_heads") || err.contains("head"),
        "{err}"
    );
    assert!(
        !dir.path().join("c").exists(),
        "a failed init leaves nothing behind"
    );
}

#[test]
fn bundled_demo_runs() {
    let out = ok(&["demo", "--max-new-tokens", "40", "--json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("datasets/models/aidreams260K/reference_greedy.json"))
            .expect("reference"),
    )
    .expect("json");
    assert_eq!(v["generated_ids"], reference["generated_ids"]);
}

#[test]
fn bad_input_names_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("m");
    init(&model, &[]);
    let m = model.display().to_string();

    let err = fails(&[
        "generate",
        "--model",
        &dir.path().join("nope").display().to_string(),
    ]);
    assert!(err.contains("no such model folder"), "{err}");

    let err = fails(&["generate", "--model", "some-org/not-cached"]);
    assert!(
        err.contains("Hugging Face cache") && err.contains("config.json"),
        "{err}"
    );

    let err = fails(&["model", "logits", "--model", &m, "--tokens", "1,99999"]);
    assert!(err.contains("99999") && err.contains("vocab"), "{err}");

    let err = fails(&["generate", "--model", &m, "--device", "cuda:0"]);
    assert!(err.contains("--features cuda"), "{err}");

    // A truncated weights file.
    let weights = model.join("model.safetensors");
    let bytes = std::fs::read(&weights).expect("weights");
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = fails(&["model", "logits", "--model", &m, "--tokens", "1"]);
    assert!(err.contains("model.safetensors"), "{err}");
    std::fs::write(&weights, &bytes).expect("restore");

    // A config whose sizes disagree with the weights: tensor and both shapes named.
    let config_path = model.join("config.json");
    let good = std::fs::read_to_string(&config_path).expect("config");
    let mut config: Value = serde_json::from_str(&good).expect("json");
    config["intermediate_size"] = 100.into();
    std::fs::write(&config_path, config.to_string()).expect("write");
    let err = fails(&["model", "logits", "--model", &m, "--tokens", "1"]);
    assert!(
        err.contains("gate_proj") && err.contains("[100, 64]"),
        "{err}"
    );

    // Malformed and unknown-architecture configs.
    std::fs::write(&config_path, "{\"model_type\": ").expect("write");
    let err = fails(&["model", "logits", "--model", &m, "--tokens", "1"]);
    assert!(
        err.contains("config.json") && err.contains("invalid JSON"),
        "{err}"
    );
    config["model_type"] = "gpt2".into();
    config["architectures"] = serde_json::json!(["GPT2LMHeadModel"]);
    std::fs::write(&config_path, config.to_string()).expect("write");
    let err = fails(&["model", "logits", "--model", &m, "--tokens", "1"]);
    assert!(err.contains("gpt2") && err.contains("llama"), "{err}");

    // A tokenizer whose vocabulary is larger than the model's.
    let mut small: Value = serde_json::from_str(&good).expect("json");
    small["vocab_size"] = 100.into();
    std::fs::write(&config_path, small.to_string()).expect("write");
    let err = fails(&["generate", "--model", &m]);
    assert!(
        err.contains("tokenizer") && err.contains("vocab_size 100"),
        "{err}"
    );
    std::fs::remove_file(&config_path).expect("rm");
    let err = fails(&["generate", "--model", &m]);
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn hub_cache_layout_resolves_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("src");
    init(&model, &[]);
    // Lay the folder out as huggingface_hub does: blobs, refs/main, snapshots/<commit>/.
    let repo = dir.path().join("hub/models--acme--tiny-cti");
    let commit = "a".repeat(40);
    let snapshot = repo.join("snapshots").join(&commit);
    std::fs::create_dir_all(&snapshot).expect("mkdir");
    std::fs::create_dir_all(repo.join("blobs")).expect("mkdir");
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
    std::fs::write(repo.join("refs/main"), &commit).expect("ref");
    for entry in std::fs::read_dir(&model).expect("ls") {
        let entry = entry.expect("entry");
        let blob = repo.join("blobs").join(entry.file_name());
        std::fs::copy(entry.path(), &blob).expect("copy");
        std::os::unix::fs::symlink(&blob, snapshot.join(entry.file_name())).expect("link");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ctiforge"))
        .args(["model", "inspect", "acme/tiny-cti", "--json"])
        .env("HF_HUB_CACHE", dir.path().join("hub"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["path"], Value::from(snapshot.display().to_string()));
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["model", "--help"],
        vec!["model", "init", "--help"],
        vec!["model", "inspect", "--help"],
        vec!["model", "logits", "--help"],
        vec!["model", "bench", "--help"],
        vec!["generate", "--help"],
        vec!["demo", "--help"],
    ] {
        assert!(ok(&cmd).contains("Usage"), "{cmd:?}");
    }
}

/// Runs from the repository root, where recipes' relative paths resolve.
fn ctiforge_in_root(args: &[&str]) -> Output {
    command(args)
        .current_dir(root())
        .output()
        .expect("run ctiforge")
}

#[test]
fn prep_writes_a_dataset_and_stats_reads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("summaries");
    let out_s = out.display().to_string();
    let recipe = "configs/prep/actor-summaries.toml";
    let run = ctiforge_in_root(&["prep", "--config", recipe, "--out", &out_s, "--json"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let manifest: Value = serde_json::from_slice(&run.stdout).expect("manifest json");
    assert_eq!(manifest["counts"]["kept"], 11);
    for f in [
        "train.parquet",
        "validation.parquet",
        "test.parquet",
        "rejects.jsonl",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let stats = ok(&["prep", "stats", &out_s]);
    assert!(
        stats.contains("actor-summaries") && stats.contains("summarization"),
        "{stats}"
    );
    let json: Value =
        serde_json::from_str(&ok(&["prep", "stats", &out_s, "--json"])).expect("json");
    assert_eq!(json["fingerprint"], manifest["fingerprint"]);

    // Existing output without --force, and an unknown key, fail with the cause named.
    let again = ctiforge_in_root(&["prep", "--config", recipe, "--out", &out_s]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let bad = ctiforge_in_root(&[
        "prep",
        "--config",
        recipe,
        "--out",
        &out_s,
        "--force",
        "--set",
        "split.tain=0.5",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("tain") && err.contains("actor-summaries.toml"),
        "{err}"
    );
    let err = fails(&[
        "prep",
        "stats",
        &dir.path().join("nothing").display().to_string(),
    ]);
    assert!(err.contains("manifest.json"), "{err}");
}
