//! The MLflow backend: [`Registry`] over the tracking server's
//! [REST API](https://mlflow.org/docs/latest/api_reference/rest-api.html), one small method
//! per endpoint (build the request, call, convert the reply).
//!
//! - Artifacts go through the server's artifact proxy (`mlflow server --serve-artifacts`,
//!   the default): `PUT`/`GET /api/2.0/mlflow-artifacts/artifacts/<root>/<path>`, where
//!   `<root>` is the run's `artifact_uri` without its `mlflow-artifacts:` scheme (normally
//!   `<experiment_id>/<run_id>/artifacts`). Bodies are streamed.
//! - A version's artifacts and checksums are kept in the version tag
//!   `ctiforge.registry.artifacts` (JSON), its idempotency key in
//!   `ctiforge.registry.idempotency_key`; both are set in the same `model-versions/create`
//!   call that makes the version visible, after checking (`artifacts/list`) that every
//!   artifact is stored with the recorded size.
//! - Registration is idempotent: before each attempt the client searches for a version
//!   carrying the key, and a create that failed in transit is never blindly re-sent. If two
//!   processes race with the same key and both create, the higher-numbered duplicate is
//!   deleted and both callers get the lower one.
//! - [`Registry::swap_alias`] reads the alias, sets it only if it still points at the
//!   expected version, then re-reads it. MLflow has no compare-and-set, so a residual race
//!   remains: two promoters that read the same champion within the same instant may both
//!   set it, and the later write wins; the loser sees the re-read mismatch and reports that
//!   it did not promote, so `champion` only ever lands on a version whose gate passed, but
//!   that version was compared with the champion both promoters saw, not with the other
//!   candidate.
//! - Credentials come from `MLFLOW_TRACKING_TOKEN` (bearer) or
//!   `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` (basic) and are never logged.
//! - Retries: connection errors, 429 and 5xx, with exponential backoff ([`RetryPolicy`]).
//!   Runs/create is retried too, which after a lost reply can leave an extra empty run.

mod http;
mod models;
mod runs;
mod wire;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Url;

use http::Transport;
pub use http::{Credentials, RetryPolicy};

use crate::error::{Error, Result};
use crate::names;
use crate::registry::{AliasSwap, Registry};
use crate::types::{
    ArtifactRecord, Metric, ModelVersion, Page, PageRequest, Run, RunId, RunStatus, Tags,
};

/// How to reach a tracking server.
#[derive(Debug, Clone)]
pub struct MlflowConfig {
    /// `http(s)://host:port[/prefix]`, without credentials.
    pub base_url: Url,
    /// Credentials (redacted in `Debug`).
    pub credentials: Credentials,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one API call.
    pub request_timeout: Duration,
    /// Time allowed for one artifact upload or download.
    pub transfer_timeout: Duration,
    /// How failed calls are retried.
    pub retry: RetryPolicy,
}

impl MlflowConfig {
    /// A configuration for `uri` with default timeouts and retries and no credentials.
    /// User info in the URI (`http://user:pass@host`) becomes basic-auth credentials and is
    /// removed from the URL.
    ///
    /// # Errors
    /// [`Error::Uri`] when `uri` is not an `http(s)` URL.
    pub fn new(uri: &str) -> Result<Self> {
        let mut url = Url::parse(uri).map_err(|e| Error::Uri {
            uri: redact_userinfo(uri),
            message: e.to_string(),
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(Error::Uri {
                uri: redact_userinfo(uri),
                message: "an MLflow tracking URI must start with http:// or https://".into(),
            });
        }
        let mut credentials = Credentials::None;
        if !url.username().is_empty() {
            credentials = Credentials::Basic {
                username: url.username().to_string(),
                password: url.password().unwrap_or_default().to_string(),
            };
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        url.set_query(None);
        url.set_fragment(None);
        Ok(Self {
            base_url: url,
            credentials,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            transfer_timeout: Duration::from_secs(6 * 3600),
            retry: RetryPolicy::default(),
        })
    }

    /// [`MlflowConfig::new`] plus credentials from the environment: `MLFLOW_TRACKING_TOKEN`
    /// (bearer), else `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` (basic).
    ///
    /// # Errors
    /// As [`MlflowConfig::new`].
    pub fn from_env(uri: &str) -> Result<Self> {
        let mut config = Self::new(uri)?;
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        if let Some(token) = var(names::ENV_TOKEN) {
            config.credentials = Credentials::Bearer(token);
        } else if let Some(username) = var(names::ENV_USERNAME) {
            let password = var(names::ENV_PASSWORD).unwrap_or_default();
            config.credentials = Credentials::Basic { username, password };
        }
        Ok(config)
    }
}

/// A URI with any `user:password@` removed, for messages.
fn redact_userinfo(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}<redacted>@{}", &uri[..scheme_end + 3], &uri[at + 1..])
        }
        _ => uri.to_string(),
    }
}

/// A [`Registry`] on an MLflow tracking server.
#[derive(Debug)]
pub struct MlflowRegistry {
    http: Transport,
    /// Experiment name → id, and id → name.
    experiments: Mutex<HashMap<String, String>>,
}

impl MlflowRegistry {
    /// A client for the server in `config` (no request is made yet).
    ///
    /// # Errors
    /// [`Error::Uri`] if the HTTP client cannot be built.
    pub fn new(config: MlflowConfig) -> Result<Self> {
        let http = Transport::new(
            config.base_url,
            config.credentials,
            config.connect_timeout,
            config.request_timeout,
            config.transfer_timeout,
            config.retry,
        )?;
        Ok(Self {
            http,
            experiments: Mutex::new(HashMap::new()),
        })
    }

    /// Checks that the server answers `GET /health` (one attempt, no retry).
    ///
    /// # Errors
    /// [`Error::Transport`] or [`Error::Unauthorized`].
    pub fn health(&self) -> Result<()> {
        http::health(&self.http)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.experiments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Registry for MlflowRegistry {
    fn describe(&self) -> String {
        format!("MLflow at {}", self.http.base())
    }

    fn create_run(&self, experiment: &str, name: &str, tags: &Tags) -> Result<RunId> {
        self.create_run_impl(experiment, name, tags)
    }

    fn get_run(&self, run: &RunId) -> Result<Run> {
        let raw = self.fetch_run(run)?;
        self.convert_run(raw)
    }

    fn list_runs(&self, experiment: &str, page: &PageRequest) -> Result<Page<Run>> {
        self.list_runs_impl(experiment, page)
    }

    fn log_params(&self, run: &RunId, params: &Tags) -> Result<()> {
        self.log_params_impl(run, params)
    }

    fn log_metrics(&self, run: &RunId, metrics: &[Metric]) -> Result<()> {
        self.log_metrics_impl(run, metrics)
    }

    fn metric_history(&self, run: &RunId, key: &str) -> Result<Vec<Metric>> {
        self.metric_history_impl(run, key)
    }

    fn set_run_tags(&self, run: &RunId, tags: &Tags) -> Result<()> {
        self.set_run_tags_impl(run, tags)
    }

    fn upload_artifact(
        &self,
        run: &RunId,
        local_path: &Path,
        artifact_path: &str,
    ) -> Result<ArtifactRecord> {
        self.upload_artifact_impl(run, local_path, artifact_path)
    }

    fn finish_run(&self, run: &RunId, status: RunStatus) -> Result<()> {
        self.finish_run_impl(run, status)
    }

    fn register_version(
        &self,
        model: &str,
        run: &RunId,
        artifacts: &[ArtifactRecord],
        tags: &Tags,
        idempotency_key: &str,
    ) -> Result<ModelVersion> {
        self.register_version_impl(model, run, artifacts, tags, idempotency_key)
    }

    fn get_version(&self, model: &str, version: &str) -> Result<ModelVersion> {
        self.get_version_impl(model, version)
    }

    fn list_models(&self) -> Result<Vec<String>> {
        self.list_models_impl()
    }

    fn list_versions(&self, model: &str, page: &PageRequest) -> Result<Page<ModelVersion>> {
        self.list_versions_impl(model, page)
    }

    fn set_alias(&self, model: &str, alias: &str, version: &str) -> Result<()> {
        self.set_alias_impl(model, alias, version)
    }

    fn get_alias(&self, model: &str, alias: &str) -> Result<Option<ModelVersion>> {
        self.get_alias_impl(model, alias)
    }

    fn delete_alias(&self, model: &str, alias: &str) -> Result<()> {
        self.delete_alias_impl(model, alias)
    }

    fn swap_alias(&self, model: &str, swap: &AliasSwap<'_>) -> Result<bool> {
        self.swap_alias_impl(model, swap)
    }

    fn set_version_tag(&self, model: &str, version: &str, key: &str, value: &str) -> Result<()> {
        self.set_version_tag_impl(model, version, key, value)
    }

    fn download_artifact(
        &self,
        version: &ModelVersion,
        artifact_path: &str,
        dest: &Path,
    ) -> Result<ArtifactRecord> {
        self.download_artifact_impl(version, artifact_path, dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_becomes_credentials_and_is_never_shown() {
        let config = MlflowConfig::new("http://alice:s3cret@127.0.0.1:5000/").unwrap();
        assert_eq!(config.base_url.as_str(), "http://127.0.0.1:5000/");
        assert!(
            matches!(&config.credentials, Credentials::Basic { password: p, .. } if p == "s3cret")
        );
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("alice"),
            "{shown}"
        );
        let error = MlflowConfig::new("ftp://bob:hunter2@host")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
        let registry = MlflowRegistry::new(MlflowConfig {
            credentials: Credentials::Bearer("tok-123".into()),
            ..config
        })
        .unwrap();
        assert!(!format!("{registry:?}").contains("tok-123"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        let first = policy.backoff(1);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(125));
        let second = policy.backoff(2);
        assert!(second >= Duration::from_millis(200) && second <= Duration::from_millis(250));
        let late = policy.backoff(10);
        assert!(late >= Duration::from_millis(300) && late <= Duration::from_millis(375));
    }
}
