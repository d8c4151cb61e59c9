//! Experiments, runs, params, metrics, tags and artifact uploads on an MLflow server:
//! `experiments/*`, `runs/*`, `metrics/get-history`, `artifacts/list` and the artifact
//! proxy. `runs/log-batch` is chunked to MLflow's per-call limits.

use std::path::Path;

use serde_json::{Value, json};

use super::MlflowRegistry;
use super::wire;
use crate::error::{Error, Result};
use crate::names::{self, batch, code, endpoint};
use crate::types::{ArtifactRecord, Metric, Page, PageRequest, Run, RunId, RunStatus, Tags};
use crate::validate;

fn key_values(pairs: &Tags) -> Vec<Value> {
    pairs
        .iter()
        .map(|(key, value)| json!({ "key": key, "value": value }))
        .collect()
}

impl MlflowRegistry {
    /// The id of `experiment`, creating it if needed (`None` with `create == false` and no
    /// such experiment).
    fn experiment_id(&self, experiment: &str, create: bool) -> Result<Option<String>> {
        if let Some(id) = self.cache().get(experiment) {
            return Ok(Some(id.clone()));
        }
        let found = match self.http.get::<wire::ExperimentReply>(
            endpoint::EXPERIMENT_GET_BY_NAME,
            &[("experiment_name", experiment)],
        ) {
            Ok(reply) if reply.experiment.lifecycle_stage == "deleted" => {
                return Err(Error::Conflict(format!(
                    "experiment {experiment:?} is deleted on the MLflow server; restore it \
                     (`mlflow experiments restore`) or use another name"
                )));
            }
            Ok(reply) => Some(reply.experiment.experiment_id),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let id = match (found, create) {
            (Some(id), _) => id,
            (None, false) => return Ok(None),
            (None, true) => {
                match self.http.post::<wire::CreateExperimentReply>(
                    endpoint::EXPERIMENT_CREATE,
                    &json!({ "name": experiment }),
                ) {
                    Ok(reply) => reply.experiment_id,
                    // Another client created it between our lookup and create.
                    Err(Error::Mlflow { code: c, .. }) if c == code::ALREADY_EXISTS => {
                        self.http
                            .get::<wire::ExperimentReply>(
                                endpoint::EXPERIMENT_GET_BY_NAME,
                                &[("experiment_name", experiment)],
                            )?
                            .experiment
                            .experiment_id
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let mut cache = self.cache();
        cache.insert(experiment.to_string(), id.clone());
        cache.insert(format!("#{id}"), experiment.to_string());
        Ok(Some(id))
    }

    fn experiment_name(&self, id: &str) -> Result<String> {
        if let Some(name) = self.cache().get(&format!("#{id}")) {
            return Ok(name.clone());
        }
        let reply: wire::ExperimentReply = self
            .http
            .get(endpoint::EXPERIMENT_GET, &[("experiment_id", id)])?;
        let name = reply.experiment.name;
        self.cache().insert(format!("#{id}"), name.clone());
        Ok(name)
    }

    pub(super) fn create_run_impl(
        &self,
        experiment: &str,
        name: &str,
        tags: &Tags,
    ) -> Result<RunId> {
        validate::name("experiment", experiment)?;
        for (key, value) in tags {
            validate::tag(key, value)?;
        }
        let experiment_id = self.experiment_id(experiment, true)?.unwrap_or_default();
        let reply: wire::RunReply = self.http.post(
            endpoint::RUN_CREATE,
            &json!({
                "experiment_id": experiment_id,
                "run_name": name,
                "start_time": crate::types::now_ms(),
                "tags": key_values(tags),
            }),
        )?;
        let id = RunId(reply.run.info.run_id);
        tracing::debug!(run = %id, experiment, "created MLflow run");
        Ok(id)
    }

    pub(super) fn fetch_run(&self, run: &RunId) -> Result<wire::Run> {
        let reply: wire::RunReply = self
            .http
            .get(endpoint::RUN_GET, &[("run_id", run.as_str())])?;
        Ok(reply.run)
    }

    pub(super) fn convert_run(&self, raw: wire::Run) -> Result<Run> {
        let experiment = self.experiment_name(&raw.info.experiment_id)?;
        let mut name = raw.info.run_name;
        let mut tags = Tags::new();
        for kv in raw.data.tags {
            if kv.key == names::TAG_RUN_NAME && name.is_empty() {
                name = kv.value;
            } else if !names::is_reserved_tag(&kv.key) {
                tags.insert(kv.key, kv.value);
            }
        }
        Ok(Run {
            id: RunId(raw.info.run_id),
            experiment,
            name,
            status: RunStatus::parse(&raw.info.status)?,
            params: raw
                .data
                .params
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect(),
            metrics: raw
                .data
                .metrics
                .into_iter()
                .filter_map(|m| m.value.map(|v| (m.key, v)))
                .collect(),
            tags,
        })
    }

    pub(super) fn list_runs_impl(&self, experiment: &str, page: &PageRequest) -> Result<Page<Run>> {
        let Some(experiment_id) = self.experiment_id(experiment, false)? else {
            return Ok(Page {
                items: Vec::new(),
                next_token: None,
            });
        };
        let mut body = json!({
            "experiment_ids": [experiment_id],
            "max_results": page.max_results.clamp(1, 1000),
            "order_by": ["attributes.start_time DESC"],
        });
        if let Some(token) = &page.token {
            body["page_token"] = json!(token);
        }
        let reply: wire::SearchRunsReply = self.http.post(endpoint::RUN_SEARCH, &body)?;
        let items = reply
            .runs
            .into_iter()
            .map(|r| self.convert_run(r))
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            next_token: reply.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    fn log_batch(
        &self,
        run: &RunId,
        metrics: &[Value],
        params: &[Value],
        tags: &[Value],
    ) -> Result<()> {
        let _: wire::Empty = self.http.post(
            endpoint::RUN_LOG_BATCH,
            &json!({ "run_id": run.as_str(), "metrics": metrics, "params": params, "tags": tags }),
        )?;
        Ok(())
    }

    pub(super) fn log_params_impl(&self, run: &RunId, params: &Tags) -> Result<()> {
        for (key, value) in params {
            validate::key("param", key)?;
            validate::param_value(key, value)?;
        }
        // Params are write-once: report a changed value as a conflict, and skip re-sending
        // values that are already recorded.
        let existing = self.fetch_run(run)?.data.params;
        let mut fresh = Tags::new();
        for (key, value) in params {
            match existing.iter().find(|kv| &kv.key == key) {
                Some(kv) if &kv.value != value => {
                    return Err(Error::Conflict(format!(
                        "param {key:?} of run {run} is already {:?}; params are write-once, \
                         so {value:?} was refused",
                        kv.value
                    )));
                }
                Some(_) => {}
                None => {
                    fresh.insert(key.clone(), value.clone());
                }
            }
        }
        let all = key_values(&fresh);
        for chunk in all.chunks(batch::MAX_PARAMS) {
            self.log_batch(run, &[], chunk, &[])?;
        }
        Ok(())
    }

    pub(super) fn log_metrics_impl(&self, run: &RunId, metrics: &[Metric]) -> Result<()> {
        metrics.iter().try_for_each(validate::metric)?;
        let all: Vec<Value> = metrics
            .iter()
            .map(|m| {
                json!({
                    "key": m.key,
                    "value": m.value,
                    "timestamp": m.timestamp_ms,
                    "step": m.step,
                })
            })
            .collect();
        if all.is_empty() {
            self.fetch_run(run)?;
        }
        for chunk in all.chunks(batch::MAX_METRICS) {
            self.log_batch(run, chunk, &[], &[])?;
        }
        Ok(())
    }

    pub(super) fn metric_history_impl(&self, run: &RunId, key: &str) -> Result<Vec<Metric>> {
        let mut values = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("run_id", run.as_str()), ("metric_key", key)];
            if let Some(t) = &token {
                query.push(("page_token", t.as_str()));
            }
            let reply: wire::MetricHistoryReply =
                self.http.get(endpoint::METRIC_HISTORY, &query)?;
            values.extend(reply.metrics.into_iter().filter_map(|m| {
                Some(Metric {
                    key: m.key,
                    value: m.value?,
                    step: u64::try_from(m.step).unwrap_or(0),
                    timestamp_ms: m.timestamp,
                })
            }));
            match reply.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        values.sort_by_key(|m| (m.step, m.timestamp_ms));
        Ok(values)
    }

    pub(super) fn set_run_tags_impl(&self, run: &RunId, tags: &Tags) -> Result<()> {
        for (key, value) in tags {
            validate::tag(key, value)?;
        }
        let all = key_values(tags);
        if all.is_empty() {
            self.fetch_run(run)?;
        }
        for chunk in all.chunks(batch::MAX_TAGS) {
            self.log_batch(run, &[], &[], chunk)?;
        }
        Ok(())
    }

    /// The artifact proxy path of a run's artifact root (`<experiment>/<run>/artifacts`).
    pub(super) fn proxy_root(&self, run: &RunId) -> Result<String> {
        let uri = self.fetch_run(run)?.info.artifact_uri;
        proxy_root_of(&uri).ok_or_else(|| {
            Error::invalid(
                format!("artifact root of run {run}"),
                format!(
                    "{uri:?} is not served by the tracking server's artifact proxy; start the \
                     server with --serve-artifacts (the default) and its default artifact root"
                ),
            )
        })
    }

    pub(super) fn upload_artifact_impl(
        &self,
        run: &RunId,
        local_path: &Path,
        artifact_path: &str,
    ) -> Result<ArtifactRecord> {
        validate::artifact_path(artifact_path)?;
        let (sha256, size_bytes) = crate::fsutil::sha256_file(local_path)?;
        let root = self.proxy_root(run)?;
        let url = self
            .http
            .url(endpoint::ARTIFACTS, &[&root, artifact_path], &[])?;
        self.http.put_file(endpoint::ARTIFACTS, &url, local_path)?;
        tracing::debug!(run = %run, artifact_path, size_bytes, "uploaded artifact to MLflow");
        Ok(ArtifactRecord {
            path: artifact_path.to_string(),
            sha256,
            size_bytes,
        })
    }

    /// The size of each file directly in `dir` of the run's artifacts (`""`: the root).
    pub(super) fn stored_sizes(&self, run: &RunId, dir: &str) -> Result<Vec<(String, u64)>> {
        let mut sizes = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("run_id", run.as_str())];
            if !dir.is_empty() {
                query.push(("path", dir));
            }
            if let Some(t) = &token {
                query.push(("page_token", t.as_str()));
            }
            let reply: wire::ListArtifactsReply = self.http.get(endpoint::ARTIFACT_LIST, &query)?;
            for file in reply.files.into_iter().filter(|f| !f.is_dir) {
                let size = match &file.file_size {
                    Some(Value::Number(n)) => n.as_u64(),
                    Some(Value::String(s)) => s.parse().ok(),
                    _ => None,
                };
                sizes.push((file.path, size.unwrap_or(u64::MAX)));
            }
            match reply.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(sizes),
            }
        }
    }

    pub(super) fn finish_run_impl(&self, run: &RunId, status: RunStatus) -> Result<()> {
        if status == RunStatus::Running {
            return Err(Error::invalid(
                "run status",
                "a run cannot be finished as RUNNING",
            ));
        }
        let _: wire::Empty = self.http.post(
            endpoint::RUN_UPDATE,
            &json!({
                "run_id": run.as_str(),
                "status": status.as_str(),
                "end_time": crate::types::now_ms(),
            }),
        )?;
        Ok(())
    }
}

/// `mlflow-artifacts:/1/abc/artifacts` or `mlflow-artifacts://host:port/1/abc/artifacts` →
/// `1/abc/artifacts`; `None` for other schemes.
pub(super) fn proxy_root_of(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix(names::PROXY_ARTIFACT_SCHEME)?;
    let path = match rest.strip_prefix("//") {
        Some(with_host) => &with_host[with_host.find('/')?..],
        None => rest,
    };
    let trimmed = path.trim_matches('/');
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::proxy_root_of;

    #[test]
    fn proxy_roots() {
        assert_eq!(
            proxy_root_of("mlflow-artifacts:/1/ab/artifacts").unwrap(),
            "1/ab/artifacts"
        );
        assert_eq!(
            proxy_root_of("mlflow-artifacts://h:5000/1/ab/artifacts").unwrap(),
            "1/ab/artifacts"
        );
        assert!(proxy_root_of("s3://bucket/1/ab/artifacts").is_none());
        assert!(proxy_root_of("/var/mlruns/1/ab/artifacts").is_none());
    }
}
