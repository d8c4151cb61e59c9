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
        vec!["prep", "--help"],
        vec!["export", "gguf", "--help"],
        vec!["export", "inspect", "--help"],
        vec!["export", "lora", "--help"],
        vec!["export", "merge", "--help"],
        vec!["registry", "drift", "--help"],
        vec!["train", "--help"],
        vec!["eval", "--help"],
        vec!["eval", "compare", "--help"],
        vec!["merge", "--help"],
        vec!["registry", "register", "--help"],
        vec!["registry", "promote", "--help"],
        vec!["registry", "pull", "--help"],
        vec!["registry", "ls", "--help"],
        vec!["registry", "show", "--help"],
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

#[test]
fn export_gguf_and_inspect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("tiny");
    init(&model, &[]);
    let model_s = model.display().to_string();
    let gguf = dir.path().join("tiny-q8_0.gguf");
    let gguf_s = gguf.display().to_string();
    let report: Value = serde_json::from_str(&ok(&[
        "export", "gguf", "--model", &model_s, "--quant", "q8_0", "--out", &gguf_s, "--json",
    ]))
    .expect("json report");
    assert!(report["file_bytes"].as_u64().expect("size") > 0, "{report}");
    assert_eq!(report["quant"], "Q8_0", "{report}");
    // Quality against the unquantised model, measured on the built-in CTI sample.
    let kl = report["quality"]["mean_kl"].as_f64().expect("mean KL");
    assert!((0.0..0.1).contains(&kl), "{report}");
    let modelfile = std::fs::read_to_string(dir.path().join("Modelfile")).expect("Modelfile");
    assert!(modelfile.contains("FROM ./tiny-q8_0.gguf"), "{modelfile}");
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("export.json")).expect("export.json"),
    )
    .expect("json");
    assert_eq!(written["sha256"], report["sha256"]);

    let summary: Value =
        serde_json::from_str(&ok(&["export", "inspect", &gguf_s, "--json"])).expect("json");
    assert_eq!(summary["version"], 3);
    let keys: Vec<&str> = summary["metadata"]
        .as_array()
        .expect("metadata")
        .iter()
        .filter_map(|kv| kv["key"].as_str())
        .collect();
    for key in [
        "general.architecture",
        "llama.block_count",
        "tokenizer.ggml.tokens",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    let tensors = summary["tensors"].as_array().expect("tensors");
    let types: Vec<&str> = tensors
        .iter()
        .filter(|t| t["name"] == "blk.0.attn_q.weight")
        .filter_map(|t| t["ty"].as_str())
        .collect();
    assert_eq!(types, ["Q8_0"], "{tensors:?}");
    let text = ok(&["export", "inspect", &gguf_s]);
    assert!(text.contains("token_embd.weight"), "{text}");

    // An existing file needs --force; an unknown type names the valid ones.
    let err = fails(&[
        "export", "gguf", "--model", &model_s, "--quant", "q8_0", "--out", &gguf_s,
    ]);
    assert!(err.contains("exists"), "{err}");
    let err = fails(&[
        "export", "gguf", "--model", &model_s, "--quant", "q3_x", "--out", &gguf_s, "--force",
    ]);
    assert!(err.contains("q3_x") && err.contains("Q4_K_M"), "{err}");
}

/// Writes `text` to `path`, creating its folder.
fn put(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A run, eval report and export folder with the given technique F1, under `root`.
fn outputs(root: &Path, f1: f64) -> [String; 3] {
    put(&root.join("run/config.toml"), "[lora]\nrank = 8\n");
    put(
        &root.join("run/metrics.jsonl"),
        "{\"step\":1,\"epoch\":0,\"loss\":2.5}\n{\"step\":2,\"epoch\":0,\"loss\":2.1}\n",
    );
    put(&root.join("run/adapter_model.safetensors"), "adapter bytes");
    put(
        &root.join("eval/eval.json"),
        &format!("{{\"metrics\":{{\"technique\":{{\"micro_f1\":{f1}}}}}}}"),
    );
    put(&root.join("export/model.gguf"), &format!("gguf bytes {f1}"));
    ["run", "eval", "export"].map(|d| root.join(d).display().to_string())
}

#[test]
fn registry_register_promote_pull_ls_show() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = dir.path().join("registry").display().to_string();
    let gate = dir.path().join("gate.toml");
    put(
        &gate,
        "rules = [\"technique.micro_f1 >= 0.3\", \"technique.micro_f1 >= champion + 0.01\"]\n\
         [drift]\nrequire = \"pass\"\n",
    );
    let gate = gate.display().to_string();
    let register = |root: &Path, f1: f64| -> Value {
        let [run, eval, export] = outputs(root, f1);
        let args = [
            "registry",
            "register",
            "--registry",
            &reg,
            "--model",
            "cti",
            "--run",
            &run,
            "--eval",
            &eval,
            "--export",
            &export,
            "--drift",
            "pass",
            "--json",
        ];
        serde_json::from_str(&ok(&args)).expect("json")
    };
    let promote = |version: &str| -> Output {
        ctiforge(&[
            "registry",
            "promote",
            "--registry",
            &reg,
            "--model",
            "cti",
            "--version",
            version,
            "--gate",
            &gate,
            "--json",
        ])
    };

    let v1 = register(&dir.path().join("a"), 0.4);
    assert_eq!(v1["version"], "1");
    assert_eq!(v1["tags"]["eval.technique.micro_f1"], "0.4");
    // Registering the same outputs again gives the same version.
    assert_eq!(register(&dir.path().join("a"), 0.4)["version"], "1");
    let out = promote("1");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A worse candidate is refused with exit code 3 and the champion stays.
    let v2 = register(&dir.path().join("b"), 0.35);
    assert_eq!(v2["version"], "2");
    let out = promote("2");
    assert_eq!(out.status.code(), Some(3));
    let decision: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(decision["promoted"], false);
    assert_eq!(decision["compared_with"], "1");

    let shown: Value = serde_json::from_str(&ok(&[
        "registry",
        "show",
        "--registry",
        &reg,
        "cti@champion",
        "--json",
    ]))
    .expect("json");
    assert_eq!(shown["version"], "1");
    let listed: Value = serde_json::from_str(&ok(&[
        "registry",
        "ls",
        "--registry",
        &reg,
        "cti",
        "--json",
    ]))
    .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(2));

    // Pull verifies the checksum and keeps the artifact's relative path.
    let out_dir = dir.path().join("pulled");
    let pulled: Value = serde_json::from_str(&ok(&[
        "registry",
        "pull",
        "--registry",
        &reg,
        "cti@champion",
        "--artifact",
        "export/model.gguf",
        "--out",
        &out_dir.display().to_string(),
        "--json",
    ]))
    .expect("json");
    assert_eq!(pulled["version"], "1");
    let got = std::fs::read_to_string(out_dir.join("export/model.gguf")).expect("pulled file");
    assert_eq!(got, "gguf bytes 0.4");

    let err = fails(&[
        "registry",
        "pull",
        "--registry",
        &reg,
        "cti@champion",
        "--artifact",
        "../escape",
    ]);
    assert!(err.contains("escape") || err.contains(".."), "{err}");
    let err = fails(&["registry", "show", "--registry", &reg, "cti"]);
    assert!(err.contains("NAME@alias"), "{err}");
}

#[test]
fn registry_drift_reports_and_records_the_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_s = small_dataset(dir.path(), "powershell", "T1059.001", "PowerShell script");
    let reg = dir.path().join("registry").display().to_string();
    let [run_dir, eval, export] = outputs(&dir.path().join("outputs"), 0.5);
    ok(&[
        "registry",
        "register",
        "--registry",
        &reg,
        "--model",
        "cti",
        "--run",
        &run_dir,
        "--eval",
        &eval,
        "--export",
        &export,
    ]);

    // The same data on both sides: no drift, recorded on the version.
    let report_dir = dir.path().join("drift-same");
    let report: Value = serde_json::from_str(&ok(&[
        "registry",
        "drift",
        "--registry",
        &reg,
        "--reference",
        &data_s,
        "--current",
        &data_s,
        "--out",
        &report_dir.display().to_string(),
        "--attach",
        "cti/1",
        "--json",
    ]))
    .expect("json");
    assert_eq!(report["verdict"], "pass", "{report}");
    assert!(report_dir.join("drift.json").is_file() && report_dir.join("drift.html").is_file());
    let shown: Value = serde_json::from_str(&ok(&[
        "registry",
        "show",
        "--registry",
        &reg,
        "cti/1",
        "--json",
    ]))
    .expect("json");
    assert_eq!(shown["tags"]["drift.verdict"], "pass");

    // Other techniques in other words: the label mix fails, exit 4.
    let other = small_dataset(dir.path(), "phishing", "T1566.001", "Spearphishing mail");
    let out = ctiforge(&[
        "registry",
        "drift",
        "--reference",
        &data_s,
        "--current",
        &other,
        "--out",
        &dir.path().join("drift-other").display().to_string(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("labels.psi"));

    // A folder that is not a dataset is named.
    let err = fails(&[
        "registry",
        "drift",
        "--reference",
        &reg,
        "--current",
        &data_s,
        "--out",
        &data_s,
    ]);
    assert!(err.contains("train.parquet"), "{err}");
}

/// Prepares a 40-row technique dataset of `label` rows about `topic` under `dir/name`.
fn small_dataset(dir: &Path, name: &str, label: &str, topic: &str) -> String {
    let rows: String = (0..40)
        .map(|i| {
            format!(
                "{{\"text\": \"{topic} number {i} ran on host-{} for step {}\", \
                 \"labels\": [\"{label}\"]}}\n",
                i * 7,
                i % 5
            )
        })
        .collect();
    let source = dir.join(format!("{name}.jsonl"));
    put(&source, &rows);
    let tsv = root().join("datasets/attack/enterprise_techniques.tsv");
    let recipe = dir.join(format!("{name}.toml"));
    put(
        &recipe,
        &format!(
            "[dataset]\nname = \"{name}\"\nseed = 1\n[attack]\ntechniques = {tsv:?}\n\
             [[sources]]\nname = \"{name}\"\nkind = \"jsonl\"\npath = {source:?}\n\
             columns = {{ text = \"text\", labels = \"labels\" }}\n\
             [dedup]\nexact = false\nnear = false\n"
        ),
    );
    let out = dir.join(name).display().to_string();
    ok(&[
        "prep",
        "--config",
        &recipe.display().to_string(),
        "--out",
        &out,
    ]);
    out
}

#[test]
fn train_then_merge_and_export_the_adapter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = small_dataset(dir.path(), "powershell", "T1059.001", "PowerShell script");
    let run = dir.path().join("run");
    let run_s = run.display().to_string();
    let out = ctiforge_in_root(&[
        "train",
        "--config",
        "configs/train/tram-lora.toml",
        "--data",
        &data,
        "--max-steps",
        "3",
        "--set",
        "batch.batch=4",
        "--set",
        "batch.micro_batch=2",
        "--out",
        &run_s,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["steps"], 3, "{summary}");
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "metrics.jsonl",
        "run.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let lines = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    assert_eq!(lines.lines().count(), 3, "{lines}");

    // The adapter merges into its base, and exports with the merge.
    let base = root()
        .join("datasets/models/aidreams260K")
        .display()
        .to_string();
    let merged = dir.path().join("merged").display().to_string();
    ok(&[
        "merge",
        "--model",
        &base,
        "--adapter",
        &run_s,
        "--out",
        &merged,
    ]);
    assert!(Path::new(&merged).join("config.json").is_file());
    let gguf = dir.path().join("tuned.gguf").display().to_string();
    let report: Value = serde_json::from_str(&ok(&[
        "export",
        "gguf",
        "--model",
        &base,
        "--adapter",
        &run_s,
        "--quant",
        "f32",
        "--out",
        &gguf,
        "--no-quality",
        "--json",
    ]))
    .expect("json");
    assert!(report["adapter"].is_object(), "{report}");

    // A recipe key that does not exist is named.
    let bad = ctiforge_in_root(&[
        "train",
        "--config",
        "configs/train/tram-lora.toml",
        "--data",
        &data,
        "--set",
        "optim.learning_rate=1",
        "--out",
        &dir.path().join("bad").display().to_string(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("learning_rate"));
}

#[test]
fn eval_scores_a_labelled_file_and_compare_checks_requirements() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| dir.path().join(name).display().to_string();

    // Indicators with the regex scorer: no model needed.
    put(
        &dir.path().join("iocs.jsonl"),
        "{\"text\": \"C2 at 203.0.113[.]7 and evil[.]com\", \"iocs\": [\"ip: 203.0.113.7\", \
         \"domain: evil.com\"]}\n{\"text\": \"No indicator.\", \"iocs\": []}\n",
    );
    let out = ok(&[
        "eval",
        "--scorer",
        "regex",
        "--data",
        &p("iocs.jsonl"),
        "--task",
        "ioc_extraction",
        "--label-field",
        "iocs",
        "--out",
        &p("regex"),
        "--json",
    ]);
    let report: Value = serde_json::from_str(&out).expect("eval.json on stdout");
    assert_eq!(report["metrics"]["ioc"]["strict_f1"], 1.0, "{report}");
    assert!(dir.path().join("regex/report.html").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("regex/predictions.jsonl"))
            .expect("predictions")
            .lines()
            .count(),
        2
    );

    // Techniques with the bundled model, generating.
    put(
        &dir.path().join("ttps.jsonl"),
        "{\"id\": \"a\", \"sentence\": \"It ran PowerShell.\", \"ttps\": [\"T1059.001\"]}\n\
         {\"id\": \"b\", \"sentence\": \"Nothing here.\", \"ttps\": \"none\"}\n",
    );
    let model = root()
        .join("datasets/models/aidreams260K")
        .display()
        .to_string();
    let args = [
        "eval",
        "--model",
        &model,
        "--data",
        &p("ttps.jsonl"),
        "--task",
        "technique_classification",
        "--text-field",
        "sentence",
        "--label-field",
        "ttps",
        "--id-field",
        "id",
        "--out",
        &p("base"),
        "--json",
    ];
    let report: Value = serde_json::from_str(&ok(&args)).expect("eval.json");
    assert!(
        report["metrics"]["technique"]["micro_f1"].is_number(),
        "{report}"
    );
    assert!(
        report["metrics"]["lm"]["perplexity"].is_number(),
        "{report}"
    );
    assert_eq!(report["counts"]["examples"], 2);

    // The same report against itself: no gain, so a positive delta fails with exit code 5.
    let same = ctiforge(&[
        "eval",
        "compare",
        &p("base"),
        &p("base"),
        "--require",
        "technique.micro_f1 >= +0.01",
    ]);
    assert_eq!(
        same.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    assert!(String::from_utf8_lossy(&same.stdout).contains("FAIL technique.micro_f1"));
    let json: Value = serde_json::from_str(&ok(&[
        "eval",
        "compare",
        &p("base"),
        &p("base"),
        "--require",
        "lm.perplexity <= +0",
        "--json",
    ]))
    .expect("comparison json");
    assert_eq!(json["passed"], true, "{json}");

    // Bad input names the file, line and field.
    put(&dir.path().join("bad.jsonl"), "{\"sentence\": \"x\"}\n");
    let err = fails(&[
        "eval",
        "--model",
        &model,
        "--data",
        &p("bad.jsonl"),
        "--task",
        "technique_classification",
        "--text-field",
        "sentence",
        "--label-field",
        "ttps",
        "--out",
        &p("bad"),
    ]);
    assert!(err.contains("bad.jsonl:1") && err.contains("ttps"), "{err}");
    let err = fails(&[
        "eval",
        "--model",
        &model,
        "--data",
        &p("ttps.jsonl"),
        "--out",
        &p("x"),
    ]);
    assert!(err.contains("--task"), "{err}");
    let err = fails(&[
        "generate",
        "--model",
        &model,
        "--adapter",
        &p("regex"),
        "--prompt",
        "x",
    ]);
    assert!(err.contains("adapter_config.json"), "{err}");
}

#[test]
fn drift_with_a_model_compares_its_predicted_techniques() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("tram").display().to_string();
    let run = ctiforge_in_root(&[
        "prep",
        "--config",
        "configs/prep/tram-techniques.toml",
        "--out",
        &data,
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = dir.path().join("drift");
    let model = root()
        .join("datasets/models/aidreams260K")
        .display()
        .to_string();
    let report: Value = serde_json::from_str(&ok(&[
        "registry",
        "drift",
        "--reference",
        &data,
        "--current",
        &data,
        "--split",
        "test",
        "--model",
        &model,
        "--out",
        out.to_str().expect("utf-8"),
        "--json",
    ]))
    .expect("drift json");
    let stats = report["statistics"].as_array().expect("statistics");
    let psi = stats
        .iter()
        .find(|s| s["id"] == "predicted_labels.psi")
        .expect("predicted-technique statistic");
    // The same data and model: the same predictions, no drift.
    assert_eq!(psi["value"], 0.0, "{psi}");
    assert!(
        out.join("predictions/current/test/predictions.jsonl")
            .is_file()
    );
}
