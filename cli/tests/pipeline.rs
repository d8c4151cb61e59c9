//! `ctiforge pipeline` end to end: the shipped pipeline files validate; the demo pipeline
//! runs on the embedded registry, re-runs as a no-op, and registers and promotes into a
//! real MLflow server through `ci/pipeline-job.sh`, the script the GitHub and GitLab
//! definitions in `ci/` run.

// Helpers outside `#[test]` bodies unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ctiforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ctiforge"))
        .args(args)
        .current_dir(root())
        .env("RUST_LOG", "warn")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap()
}

#[test]
fn shipped_pipelines_validate() {
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("configs/pipeline")).unwrap() {
        let path = entry.unwrap().path();
        let out = ctiforge(&["pipeline", "--config", path.to_str().unwrap(), "--check"]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        seen += 1;
    }
    assert!(seen >= 3, "demo, llama3-8b-gpu and mistral-7b-gpu");

    // A broken file names the problem and the file.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(root().join("configs/pipeline/demo.toml")).unwrap();
    std::fs::write(&bad, text.replace("q8_0", "q3_zz")).unwrap();
    let out = ctiforge(&["pipeline", "--config", bad.to_str().unwrap(), "--check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("bad.toml") && err.contains("q3_zz"), "{err}");
    let out = ctiforge(&[
        "pipeline",
        "--config",
        bad.to_str().unwrap(),
        "--check",
        "--set",
        "trian.x=1",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("trian"));
}

/// A running `mlflow server` on loopback, stopped on drop.
struct Mlflow {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Mlflow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mlflow() -> Mlflow {
    let python = std::env::var("CTIFORGE_MLFLOW_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CTIFORGE_MLFLOW_PYTHON is not set: export CTIFORGE_MLFLOW_PYTHON=$(ci/setup-mlflow.sh)"
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let child = Command::new(&python)
        .args([
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--workers",
            "1",
        ])
        .args(["--port", &port.to_string()])
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}/mlflow.db", dir.path().display()))
        .arg("--artifacts-destination")
        .arg(dir.path().join("artifacts"))
        .arg("--serve-artifacts")
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "mlflow did not start"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    Mlflow {
        child,
        url,
        _dir: dir,
    }
}

fn job(mode: &str, out: &Path, registry: Option<&str>) -> Value {
    let mut cmd = Command::new(root().join("ci/pipeline-job.sh"));
    cmd.arg(mode)
        .current_dir(root())
        .env("CTIFORGE", env!("CARGO_BIN_EXE_ctiforge"))
        .env("PIPELINE_CONFIG", "configs/pipeline/demo.toml")
        .env("PIPELINE_OUT", out)
        .env("CTIFORGE_PUBLISH", out.join("publish"))
        .env("RUST_LOG", "warn")
        .env_remove("MLFLOW_TRACKING_URI");
    if let Some(url) = registry {
        cmd.env("MLFLOW_TRACKING_URI", url);
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "pipeline-job.sh {mode}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary = out.join("publish/summary.json");
    serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap()
}

fn statuses(summary: &Value) -> Vec<(String, String)> {
    summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs MLflow: CTIFORGE_MLFLOW_PYTHON from ci/setup-mlflow.sh (cargo xtask ci)"]
fn demo_pipeline_runs_skips_and_promotes_on_embedded_and_mlflow() {
    // The CI definitions run ci/pipeline-job.sh, for the pipeline and the drift schedule.
    let python = std::env::var("CTIFORGE_MLFLOW_PYTHON").unwrap_or_default();
    let parsed = Command::new(&python)
        .arg("-c")
        .arg(
            "import sys, yaml, json; print(json.dumps([yaml.safe_load(open(p)) for p in \
             sys.argv[1:]]))",
        )
        .arg(root().join("ci/github/ctiforge-pipeline.yml"))
        .arg(root().join("ci/gitlab/.gitlab-ci.yml"))
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let docs: Value = serde_json::from_slice(&parsed.stdout).unwrap();
    let github = docs[0].to_string();
    let gitlab = docs[1].to_string();
    for text in [&github, &gitlab] {
        assert!(text.contains("ci/pipeline-job.sh run"), "{text}");
        assert!(text.contains("ci/pipeline-job.sh drift"), "{text}");
        assert!(text.contains("MLFLOW_TRACKING_URI"), "{text}");
    }
    // YAML reads the `on:` key as true.
    assert!(
        docs[0]["true"]["schedule"][0]["cron"].is_string(),
        "{github}"
    );
    assert!(
        docs[1]["ctiforge-drift"]["rules"][0]["if"]
            .as_str()
            .unwrap()
            .contains("schedule")
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");

    // Embedded registry: every stage runs, the tuned model beats its base, and is promoted.
    let first = job("run", &out, None);
    assert!(statuses(&first).iter().all(|(_, s)| s == "ran"), "{first}");
    let delta = first["eval"]["tuned"]["deltas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["metric"] == "technique.micro_f1")
        .unwrap()
        .clone();
    assert!(delta["delta"].as_f64().unwrap() > 0.0 && delta["low"].as_f64().unwrap() > 0.0);
    assert_eq!(first["promotion"]["promoted"], true, "{first}");
    assert_eq!(first["registry"]["version"], "1");
    for f in [
        "data/manifest.json",
        "run/adapter_model.safetensors",
        "run/run.json",
        "eval/base/eval.json",
        "eval/tuned/report.html",
        "eval/tuned/predictions.jsonl",
        "export/cti-tram-demo-q8_0.gguf",
        "export/Modelfile",
        "drift/drift.json",
        "publish/eval-report.html",
        "publish/drift.html",
    ] {
        assert!(out.join(f).is_file(), "{f} is missing");
    }

    // Nothing changed: every stage is skipped.
    let again = job("run", &out, None);
    assert!(
        statuses(&again).iter().all(|(_, s)| s == "skipped"),
        "{again}"
    );

    // The same outputs into a real MLflow server: only registration and promotion run.
    let server = mlflow();
    let remote = job("run", &out, Some(&server.url));
    for (stage, status) in statuses(&remote) {
        let expected = if stage == "register" || stage == "promote" {
            "ran"
        } else {
            "skipped"
        };
        assert_eq!(status, expected, "{stage}");
    }
    assert_eq!(remote["promotion"]["promoted"], true, "{remote}");
    assert!(
        remote["registry"]["registry"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1")
    );

    // The champion's GGUF comes back from MLflow with its checksum verified.
    let pulled = dir.path().join("pulled");
    let o = ctiforge(&[
        "registry",
        "pull",
        "--registry",
        &server.url,
        "cti-tram-demo@champion",
        "--artifact",
        "export/cti-tram-demo-q8_0.gguf",
        "--out",
        pulled.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = std::fs::read(out.join("export/cti-tram-demo-q8_0.gguf")).unwrap();
    let b = std::fs::read(pulled.join("export/cti-tram-demo-q8_0.gguf")).unwrap();
    assert_eq!(a, b);

    // The scheduled drift check records its verdict on the champion in MLflow.
    let mut cmd = Command::new(root().join("ci/pipeline-job.sh"));
    let o = cmd
        .arg("drift")
        .current_dir(root())
        .env("CTIFORGE", env!("CARGO_BIN_EXE_ctiforge"))
        .env("PIPELINE_CONFIG", "configs/pipeline/demo.toml")
        .env("PIPELINE_OUT", &out)
        .env("CTIFORGE_PUBLISH", out.join("publish"))
        .env("MLFLOW_TRACKING_URI", &server.url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown = ctiforge(&[
        "registry",
        "show",
        "--registry",
        &server.url,
        "cti-tram-demo@champion",
        "--json",
    ]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("drift.verdict") && text.contains("pass"),
        "{text}"
    );
}

#[test]
fn continued_pretraining_feeds_the_lora_stage() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cpt");
    let file = dir.path().join("cpt.toml");
    // The shipped recipes, shortened: a few steps each, a slice of the test split.
    std::fs::write(
        &file,
        format!(
            "[pipeline]\nname = \"cpt\"\nout = {out:?}\nmodel_name = \"cpt-test\"\n\
             [model]\nbase = \"datasets/models/aidreams260K\"\n\
             [prep]\nconfig = \"configs/prep/tram-techniques.toml\"\n\
             [pretrain]\nprep = \"configs/prep/cti-corpus.toml\"\n\
             config = \"configs/train/cti-cpt.toml\"\n\
             set = [\"run.max_steps=3\", \"eval.max_examples=8\", \"batch.max_seq_len=64\"]\n\
             [train]\nconfig = \"configs/train/tram-lora.toml\"\n\
             set = [\"run.max_steps=3\", \"eval.max_examples=8\", \"eval.every_steps=0\"]\n\
             [eval]\nlimit = 16\n[export]\nquants = []\n",
            out = out.display().to_string()
        ),
    )
    .unwrap();
    let o = ctiforge(&["pipeline", "--config", file.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    let stages: Vec<&str> = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "prep",
            "corpus",
            "pretrain",
            "train",
            "eval-base",
            "eval-tuned",
            "export",
            "register"
        ]
    );
    assert_eq!(summary["pretrain"]["steps"], 3);
    assert!(out.join("pretrain/model.safetensors").is_file());
    // The LoRA run was trained on the pre-trained model, the base evaluation on the base.
    let run_cfg = std::fs::read_to_string(out.join("run/config.toml")).unwrap();
    assert!(
        run_cfg.contains(&out.join("pretrain").display().to_string()),
        "{run_cfg}"
    );
    let tuned = std::fs::read_to_string(out.join("eval/tuned/eval.json")).unwrap();
    assert!(
        tuned.contains("pretrain"),
        "the tuned report names its model"
    );
}
