//! MLflow client fault handling that needs no MLflow server: a scripted local HTTP server
//! answers with 5xx, 401 or a canned reply, and the client must retry, give up after its
//! bound, or report bad credentials clearly without ever showing them.

// Helpers outside `#[test]` bodies unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::proxy::{Fault, Proxy};
use ctiforge_registry::mlflow::{Credentials, RetryPolicy};
use ctiforge_registry::{Error, MlflowConfig, MlflowRegistry, Registry, RunId, Tags};

fn config(url: &str, attempts: u32) -> MlflowConfig {
    let mut config = MlflowConfig::new(url).unwrap();
    config.retry = RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
    };
    config
}

const RUN_REPLY: &str = r#"{"run": {"info": {"run_id": "abc", "experiment_id": "7",
    "run_name": "r", "status": "RUNNING", "artifact_uri": "mlflow-artifacts:/7/abc/artifacts"},
    "data": {"params": [{"key": "lr", "value": "0.1"}], "tags": [{"key": "mlflow.user",
    "value": "ci"}, {"key": "team", "value": "cti"}]}}}"#;

#[test]
fn transient_server_errors_are_retried_then_succeed() {
    let server = Proxy::start(None);
    server.fail("/runs/get", Fault::Reject(503), 2);
    server.fail("/runs/get", Fault::Reply(200, RUN_REPLY.into()), 1);
    server.fail(
        "/experiments/get",
        Fault::Reply(200, r#"{"experiment": {"name": "e"}}"#.into()),
        1,
    );
    let reg = MlflowRegistry::new(config(&server.url, 4)).unwrap();
    let run = reg.get_run(&RunId("abc".into())).unwrap();
    assert_eq!(server.hits("/runs/get"), 3);
    assert_eq!((run.experiment.as_str(), run.name.as_str()), ("e", "r"));
    assert_eq!(
        run.tags.len(),
        1,
        "mlflow.* tags must be hidden: {:?}",
        run.tags
    );
    assert_eq!(run.params["lr"], "0.1");
}

#[test]
fn retries_are_bounded_and_client_errors_are_not_retried() {
    let server = Proxy::start(None);
    server.fail("/runs/get", Fault::Reject(500), 100);
    let reg = MlflowRegistry::new(config(&server.url, 3)).unwrap();
    let error = reg.get_run(&RunId("abc".into())).unwrap_err();
    assert!(
        matches!(error, Error::Mlflow { status: 500, .. }),
        "{error}"
    );
    assert_eq!(server.hits("/runs/get"), 3);

    let body = r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "bad run id"}"#;
    server.fail("/runs/update", Fault::Reply(400, body.into()), 100);
    let error = reg
        .finish_run(&RunId("abc".into()), ctiforge_registry::RunStatus::Failed)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("INVALID_PARAMETER_VALUE: bad run id"),
        "{error}"
    );
    assert_eq!(server.hits("/runs/update"), 1);
}

#[test]
fn unreachable_server_is_a_transport_error_after_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let reg = MlflowRegistry::new(config(&format!("http://127.0.0.1:{port}"), 2)).unwrap();
    let error = reg.list_models().unwrap_err();
    match &error {
        Error::Transport { attempts, .. } => assert_eq!(*attempts, 2),
        other => panic!("expected a transport error, got {other}"),
    }
}

#[test]
fn wrong_credentials_fail_clearly_and_are_never_shown() {
    let server = Proxy::start(None);
    server.require_auth("Bearer right-token");
    server.fail(
        "/registered-models/search",
        Fault::Reply(200, r#"{"registered_models": [{"name": "m"}]}"#.into()),
        1,
    );
    let mut good = config(&server.url, 3);
    good.credentials = Credentials::Bearer("right-token".into());
    assert_eq!(
        MlflowRegistry::new(good).unwrap().list_models().unwrap(),
        ["m"]
    );

    let mut wrong = config(&server.url, 3);
    wrong.credentials = Credentials::Basic {
        username: "ci".into(),
        password: "hunter2-secret".into(),
    };
    let reg = MlflowRegistry::new(wrong).unwrap();
    let before = server.hits("/runs/create");
    let error = reg.create_run("exp", "r", &Tags::new()).unwrap_err();
    assert!(
        matches!(error, Error::Unauthorized { status: 401, .. }),
        "{error}"
    );
    let shown = format!("{error} {error:?} {reg:?}");
    assert!(shown.contains("MLFLOW_TRACKING_USERNAME"), "{shown}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    assert_eq!(
        server.hits("/runs/create") + server.hits("/experiments") - before,
        1,
        "401 must not be retried"
    );
}
