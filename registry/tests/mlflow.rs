//! The contract suite and fault tests against a REAL MLflow tracking server, started once
//! per test binary from the reference environment (`ci/setup-mlflow.sh`, interpreter in
//! `CTIFORGE_MLFLOW_PYTHON`). Fault tests put a fault-injecting proxy
//! (`common/proxy.rs`) between the client and the server.

// Helpers outside `#[test]` bodies unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::proxy::{Fault, Proxy};
use common::{run_with_artifacts, tags, unique};
use ctiforge_registry::mlflow::{Credentials, RetryPolicy};
use ctiforge_registry::{Error, MlflowConfig, MlflowRegistry, PageRequest, Registry, Tags, pull};

/// A running `mlflow server`; killed on drop, and by a watchdog when the test process
/// exits (statics are never dropped).
struct Server {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    match std::env::var_os("CTIFORGE_MLFLOW_PYTHON") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "CTIFORGE_MLFLOW_PYTHON is not set: run `ci/setup-mlflow.sh` and export the \
             interpreter path it prints, e.g. \
             `export CTIFORGE_MLFLOW_PYTHON=$(ci/setup-mlflow.sh)`"
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server() -> Server {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    // The shell wrapper stops the server once this test process is gone.
    let script = format!(
        "\"$PY\" -m mlflow server --host 127.0.0.1 --port {port} --workers 1 \
         --backend-store-uri sqlite:///$DIR/mlflow.db --artifacts-destination $DIR/artifacts \
         --serve-artifacts & srv=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $srv 2>/dev/null; do sleep 1; done; \
         kill $srv 2>/dev/null; sleep 3; kill -9 $srv 2>/dev/null; wait",
        parent = std::process::id()
    );
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("PY", &python)
        .env("DIR", dir.path())
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", python.display()));
    let url = format!("http://127.0.0.1:{port}");
    let server = Server { child, url, dir };
    let probe = MlflowRegistry::new(MlflowConfig::new(&server.url).unwrap()).unwrap();
    let start = Instant::now();
    while probe.health().is_err() {
        if start.elapsed() > Duration::from_secs(180) {
            let log =
                std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default();
            panic!("mlflow server did not answer /health within 180 s; log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!(
        "mlflow server up at {} in {:.1?}",
        server.url,
        start.elapsed()
    );
    server
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start_server)
}

fn fast_retries(url: &str) -> MlflowConfig {
    let mut config = MlflowConfig::new(url).unwrap();
    config.retry = RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
    };
    config
}

fn client() -> MlflowRegistry {
    MlflowRegistry::new(fast_retries(&server().url)).unwrap()
}

#[test]
#[ignore = "needs the MLflow reference env (CTIFORGE_MLFLOW_PYTHON)"]
fn contract_runs() {
    common::runs(&client());
}

#[test]
#[ignore = "needs the MLflow reference env (CTIFORGE_MLFLOW_PYTHON)"]
fn contract_versions() {
    let scratch = tempfile::tempdir().unwrap();
    common::versions(&client(), scratch.path());
}

#[test]
#[ignore = "needs the MLflow reference env (CTIFORGE_MLFLOW_PYTHON)"]
fn contract_promotion() {
    let scratch = tempfile::tempdir().unwrap();
    common::promotion(&client(), scratch.path());
}

#[test]
#[ignore = "needs the MLflow reference env (CTIFORGE_MLFLOW_PYTHON)"]
fn racing_promotions_only_ever_crown_a_version_that_passed() {
    let scratch = tempfile::tempdir().unwrap();
    // The champion always carries a `promoted` decision (asserted inside); with MLflow's
    // residual race it may be the weaker of two candidates that both beat the old one.
    let wrong = common::racing_promotions(&client(), scratch.path(), 4);
    eprintln!("{wrong} of 4 rounds ended on the weaker candidate (MLflow residual race)");
}

#[test]
#[ignore = "needs the MLflow reference env (CTIFORGE_MLFLOW_PYTHON)"]
fn open_uses_mlflow_for_http_uris() {
    let registry = ctiforge_registry::open(Some(&server().url)).unwrap();
    assert_eq!(registry.describe(), format!("MLflow at {}", server().url));
    registry.list_models().unwrap();
}

#[test]
#[ignore = "needs the MLflow reference env (CTIFORGE_MLFLOW_PYTHON)"]
fn corrupted_artifact_on_the_server_is_refused() {
    let reg = client();
    let scratch = tempfile::tempdir().unwrap();
    let model = unique("corrupt");
    let (run, records, _) = run_with_artifacts(&reg, scratch.path(), &unique("exp"));
    reg.register_version(&model, &run, &records, &Tags::new(), "k")
        .unwrap();
    // Flip a byte of the stored file behind the server's back.
    let stored = find_file(
        &server().dir.path().join("artifacts"),
        &run.0,
        "adapter_model.safetensors",
    );
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[5] ^= 0x55;
    std::fs::write(&stored, bytes).unwrap();
    let out = scratch.path().join("out");
    let error = pull(&reg, &format!("{model}/1"), &records[0].path, &out).unwrap_err();
    assert!(matches!(error, Error::ChecksumMismatch { .. }), "{error}");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "a file was left behind"
    );
}

fn find_file(root: &std::path::Path, run_id: &str, name: &str) -> PathBuf {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.ends_with(name) && path.to_string_lossy().contains(run_id) {
                return path;
            }
        }
    }
    panic!("{name} of run {run_id} not found under {}", root.display());
}

#[test]
#[ignore = "needs the MLflow reference env (CTIFORGE_MLFLOW_PYTHON)"]
fn server_errors_are_retried_and_registration_stays_idempotent() {
    let upstream = server().url.trim_start_matches("http://").to_string();
    let proxy = Proxy::start(Some(upstream));
    let reg = MlflowRegistry::new(fast_retries(&proxy.url)).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let model = unique("flaky");

    proxy.fail("/runs/create", Fault::Reject(503), 2);
    proxy.fail("/mlflow-artifacts/artifacts/", Fault::Reject(502), 1);
    let (run, records, _) = run_with_artifacts(&reg, scratch.path(), &unique("exp"));
    assert_eq!(proxy.hits("/runs/create"), 3);

    proxy.fail("/runs/log-batch", Fault::Reject(500), 3);
    reg.log_metrics(&run, &[ctiforge_registry::Metric::now("loss", 1.0, 1)])
        .unwrap();
    assert_eq!(reg.metric_history(&run, "loss").unwrap().len(), 1);

    // The server creates the version but the reply is lost: the retry must find it.
    proxy.fail("/model-versions/create", Fault::ForwardThenFail(502), 1);
    let version = reg
        .register_version(&model, &run, &records, &Tags::new(), "once")
        .unwrap();
    assert_eq!(version.version, "1");
    assert_eq!(proxy.hits("/model-versions/create"), 1);
    let again = reg
        .register_version(&model, &run, &records, &Tags::new(), "once")
        .unwrap();
    assert_eq!(again.version, "1");
    let listed = reg.list_versions(&model, &PageRequest::default()).unwrap();
    assert_eq!(listed.items.len(), 1, "a retry created a second version");

    // Retries are bounded.
    proxy.fail("/registered-models/search", Fault::Reject(503), 100);
    let before = proxy.hits("/registered-models/search");
    let error = reg.list_models().unwrap_err();
    assert!(
        matches!(error, Error::Mlflow { status: 503, .. }),
        "{error}"
    );
    assert_eq!(proxy.hits("/registered-models/search") - before, 4);
}

#[test]
#[ignore = "needs the MLflow reference env (CTIFORGE_MLFLOW_PYTHON)"]
fn credentials_reach_the_server_and_wrong_ones_fail_clearly() {
    let upstream = server().url.trim_start_matches("http://").to_string();
    let proxy = Proxy::start(Some(upstream));
    proxy.require_auth("Basic Y2k6cmlnaHQtcGFzcw=="); // ci:right-pass
    let mut good = fast_retries(&proxy.url);
    good.credentials = Credentials::Basic {
        username: "ci".into(),
        password: "right-pass".into(),
    };
    let reg = MlflowRegistry::new(good).unwrap();
    let run = reg
        .create_run(&unique("exp"), "r", &tags(&[("a", "b")]))
        .unwrap();
    assert_eq!(reg.get_run(&run).unwrap().tags["a"], "b");

    let mut wrong = fast_retries(&proxy.url);
    wrong.credentials = Credentials::Basic {
        username: "ci".into(),
        password: "wrong-pass".into(),
    };
    let error = MlflowRegistry::new(wrong)
        .unwrap()
        .get_run(&run)
        .unwrap_err();
    assert!(
        matches!(error, Error::Unauthorized { status: 401, .. }),
        "{error}"
    );
    assert!(!format!("{error:?}").contains("wrong-pass"));
}
