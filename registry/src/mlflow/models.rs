//! Registered models, versions, version tags and aliases on an MLflow server
//! (`registered-models/*`, `model-versions/*`), idempotent registration, and artifact
//! downloads through the proxy.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::MlflowRegistry;
use super::wire;
use crate::error::{Error, Result};
use crate::names::{self, code, endpoint};
use crate::registry::AliasSwap;
use crate::types::{ArtifactRecord, ModelVersion, Page, PageRequest, RunId, Tags};
use crate::validate;

/// How long to wait for a version in `PENDING_REGISTRATION` to become `READY`.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

impl MlflowRegistry {
    pub(super) fn register_version_impl(
        &self,
        model: &str,
        run: &RunId,
        artifacts: &[ArtifactRecord],
        tags: &Tags,
        idempotency_key: &str,
    ) -> Result<ModelVersion> {
        validate::name("model", model)?;
        validate::registration(artifacts, tags, idempotency_key)?;
        if let Some(found) = self.find_by_key(model, idempotency_key)? {
            return self.accept_existing(found, run, idempotency_key);
        }
        self.check_uploaded(run, artifacts)?;
        self.ensure_model(model)?;
        let mut sorted = artifacts.to_vec();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = serde_json::to_string(&sorted)
            .map_err(|e| Error::invalid("artifacts", e.to_string()))?;
        if manifest.len() > validate::MAX_TAG_VALUE_LEN {
            return Err(Error::invalid(
                "artifacts",
                format!(
                    "the artifact list takes {} characters, more than the {} an MLflow tag holds; \
                     bundle the files into fewer artifacts",
                    manifest.len(),
                    validate::MAX_TAG_VALUE_LEN
                ),
            ));
        }
        let mut all_tags = tags.clone();
        all_tags.insert(names::TAG_ARTIFACTS.to_string(), manifest);
        all_tags.insert(
            names::TAG_IDEMPOTENCY_KEY.to_string(),
            idempotency_key.to_string(),
        );
        let body = json!({
            "name": model,
            "source": format!("runs:/{run}/"),
            "run_id": run.as_str(),
            "tags": all_tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        });
        let created = self.create_once_with_key(model, idempotency_key, &body)?;
        let winner = self.settle_duplicates(model, idempotency_key, created)?;
        let version = self.wait_ready(model, &winner)?;
        tracing::info!(model, version = %version.version, run = %run, "registered on MLflow");
        Ok(version)
    }

    /// Sends `model-versions/create` without blind retries: after a transient failure the
    /// key is searched first, since the server may have created the version anyway.
    fn create_once_with_key(
        &self,
        model: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> Result<String> {
        let policy = self.http.retry().clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.http.send_json::<wire::ModelVersionReply>(
                Method::POST,
                endpoint::VERSION_CREATE,
                body,
                false,
            ) {
                Ok(reply) => return Ok(reply.model_version.version),
                Err(e) if is_transient(&e) && attempt < policy.max_attempts.max(1) => {
                    tracing::warn!(model, attempt, error = %e, "create lost in transit");
                    std::thread::sleep(policy.backoff(attempt));
                    if let Some(found) = self.find_by_key(model, key)? {
                        return Ok(found.version);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// If a race with the same key created more than one version, keeps the lowest number
    /// and deletes ours when it is not that one.
    fn settle_duplicates(&self, model: &str, key: &str, ours: String) -> Result<String> {
        let all = self.search_versions(&key_filter(model, key), 10, None)?.0;
        let lowest = all
            .iter()
            .filter_map(|v| {
                v.version
                    .parse::<u64>()
                    .ok()
                    .map(|n| (n, v.version.clone()))
            })
            .min()
            .map(|(_, v)| v);
        match lowest {
            Some(lowest) if lowest != ours => {
                tracing::warn!(
                    model,
                    ours,
                    lowest,
                    "duplicate registration for one key; deleting ours"
                );
                let _: wire::Empty = self.http.send_json(
                    Method::DELETE,
                    endpoint::VERSION_DELETE,
                    &json!({ "name": model, "version": ours }),
                    true,
                )?;
                Ok(lowest)
            }
            _ => Ok(ours),
        }
    }

    fn wait_ready(&self, model: &str, version: &str) -> Result<ModelVersion> {
        let start = Instant::now();
        loop {
            let raw = self.fetch_version(model, version)?;
            match raw.status.as_str() {
                "PENDING_REGISTRATION" if start.elapsed() < READY_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                "FAILED_REGISTRATION" => {
                    return Err(Error::Conflict(format!(
                        "MLflow reports the registration of {model:?} version {version} failed"
                    )));
                }
                _ => return convert_version(raw),
            }
        }
    }

    fn accept_existing(
        &self,
        found: wire::ModelVersion,
        run: &RunId,
        key: &str,
    ) -> Result<ModelVersion> {
        if found.run_id != run.0 {
            let number = found.version.parse().unwrap_or(0);
            return Err(Error::key_conflict(
                &found.name,
                number,
                key,
                &found.run_id,
                run,
            ));
        }
        tracing::debug!(model = %found.name, version = %found.version, "idempotent: exists");
        convert_version(found)
    }

    fn find_by_key(&self, model: &str, key: &str) -> Result<Option<wire::ModelVersion>> {
        let (mut found, _) = self.search_versions(&key_filter(model, key), 10, None)?;
        found.sort_by_key(|v| v.version.parse::<u64>().unwrap_or(u64::MAX));
        Ok(found.into_iter().next())
    }

    /// Checks that every artifact was uploaded to the run with the recorded size.
    fn check_uploaded(&self, run: &RunId, artifacts: &[ArtifactRecord]) -> Result<()> {
        let mut listed: std::collections::BTreeMap<String, Vec<(String, u64)>> = Default::default();
        for artifact in artifacts {
            let dir = artifact
                .path
                .rsplit_once('/')
                .map_or("", |(dir, _)| dir)
                .to_string();
            if !listed.contains_key(&dir) {
                let sizes = match self.stored_sizes(run, &dir) {
                    Ok(sizes) => sizes,
                    Err(e) if e.is_not_found() => Vec::new(),
                    Err(e) => return Err(e),
                };
                listed.insert(dir.clone(), sizes);
            }
            let stored = listed[&dir].iter().find(|(path, _)| path == &artifact.path);
            match stored {
                None => {
                    return Err(Error::NotFound {
                        what: format!("artifact {:?} of run {run}", artifact.path),
                        hint: "upload it to the run before registering".into(),
                    });
                }
                Some((_, size)) if *size != artifact.size_bytes => {
                    return Err(Error::Conflict(format!(
                        "artifact {:?} of run {run} is stored with {size} bytes, not {}",
                        artifact.path, artifact.size_bytes
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn ensure_model(&self, model: &str) -> Result<()> {
        match self
            .http
            .post::<wire::Empty>(endpoint::MODEL_CREATE, &json!({ "name": model }))
        {
            Ok(_) => Ok(()),
            Err(Error::Mlflow { code: c, .. }) if c == code::ALREADY_EXISTS => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn require_model(&self, model: &str) -> Result<()> {
        let _: wire::Empty = self
            .http
            .get(endpoint::MODEL_GET, &[("name", model)])
            .map_err(|e| {
                if e.is_not_found() {
                    Error::not_found(format!("registered model {model:?}"))
                } else {
                    e
                }
            })?;
        Ok(())
    }

    fn fetch_version(&self, model: &str, version: &str) -> Result<wire::ModelVersion> {
        validate::version(version)?;
        let reply: wire::ModelVersionReply = self
            .http
            .get(
                endpoint::VERSION_GET,
                &[("name", model), ("version", version)],
            )
            .map_err(|e| {
                if e.is_not_found() {
                    Error::not_found(format!("model {model:?} version {version}"))
                } else {
                    e
                }
            })?;
        Ok(reply.model_version)
    }

    pub(super) fn get_version_impl(&self, model: &str, version: &str) -> Result<ModelVersion> {
        convert_version(self.fetch_version(model, version)?)
    }

    fn search_versions(
        &self,
        filter: &str,
        max_results: u32,
        token: Option<&str>,
    ) -> Result<(Vec<wire::ModelVersion>, Option<String>)> {
        let max = max_results.to_string();
        let mut query = vec![
            ("filter", filter),
            ("max_results", max.as_str()),
            ("order_by", "version_number ASC"),
        ];
        if let Some(t) = token {
            query.push(("page_token", t));
        }
        let reply: wire::SearchVersionsReply = self.http.get(endpoint::VERSION_SEARCH, &query)?;
        Ok((
            reply.model_versions,
            reply.next_page_token.filter(|t| !t.is_empty()),
        ))
    }

    pub(super) fn list_models_impl(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("max_results", "1000")];
            if let Some(t) = &token {
                query.push(("page_token", t.as_str()));
            }
            let reply: wire::SearchModelsReply = self.http.get(endpoint::MODEL_SEARCH, &query)?;
            names.extend(reply.registered_models.into_iter().map(|m| m.name));
            match reply.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        names.sort();
        Ok(names)
    }

    pub(super) fn list_versions_impl(
        &self,
        model: &str,
        page: &PageRequest,
    ) -> Result<Page<ModelVersion>> {
        validate::name("model", model)?;
        let (raw, next_token) = self.search_versions(
            &format!("name = '{model}'"),
            page.max_results.clamp(1, 1000),
            page.token.as_deref(),
        )?;
        let items = raw
            .into_iter()
            .map(convert_version)
            .collect::<Result<_>>()?;
        Ok(Page { items, next_token })
    }

    pub(super) fn set_alias_impl(&self, model: &str, alias: &str, version: &str) -> Result<()> {
        validate::alias(alias)?;
        self.fetch_version(model, version)?;
        let _: wire::Empty = self.http.post(
            endpoint::ALIAS,
            &json!({ "name": model, "alias": alias, "version": version }),
        )?;
        Ok(())
    }

    pub(super) fn get_alias_impl(&self, model: &str, alias: &str) -> Result<Option<ModelVersion>> {
        validate::alias(alias)?;
        match self.http.get::<wire::ModelVersionReply>(
            endpoint::ALIAS_GET,
            &[("name", model), ("alias", alias)],
        ) {
            Ok(reply) => convert_version(reply.model_version).map(Some),
            // MLflow answers an unset alias with RESOURCE_DOES_NOT_EXIST or, in 3.x,
            // 400 INVALID_PARAMETER_VALUE "Registered model alias ... not found".
            Err(e) if e.is_not_found() || is_alias_not_found(&e) => {
                self.require_model(model)?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn delete_alias_impl(&self, model: &str, alias: &str) -> Result<()> {
        validate::alias(alias)?;
        self.require_model(model)?;
        match self.http.send_json::<wire::Empty>(
            Method::DELETE,
            endpoint::ALIAS,
            &json!({ "name": model, "alias": alias }),
            true,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(super) fn swap_alias_impl(&self, model: &str, swap: &AliasSwap<'_>) -> Result<bool> {
        if let Some(previous) = swap.keep_previous_as {
            validate::alias(previous)?;
        }
        let current = self.get_alias_impl(model, swap.alias)?.map(|v| v.version);
        if current.as_deref() != swap.expected {
            return Ok(false);
        }
        self.set_alias_impl(model, swap.alias, swap.version)?;
        // Re-read: if another writer moved it in between, we lost the race.
        let now = self.get_alias_impl(model, swap.alias)?.map(|v| v.version);
        if now.as_deref() != Some(swap.version) {
            return Ok(false);
        }
        if let (Some(previous), Some(old)) = (swap.keep_previous_as, current) {
            self.set_alias_impl(model, previous, &old)?;
        }
        Ok(true)
    }

    pub(super) fn set_version_tag_impl(
        &self,
        model: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        validate::tag(key, value)?;
        self.fetch_version(model, version)?;
        let _: wire::Empty = self.http.post(
            endpoint::VERSION_SET_TAG,
            &json!({ "name": model, "version": version, "key": key, "value": value }),
        )?;
        Ok(())
    }

    pub(super) fn download_artifact_impl(
        &self,
        version: &ModelVersion,
        artifact_path: &str,
        dest: &Path,
    ) -> Result<ArtifactRecord> {
        validate::artifact_path(artifact_path)?;
        let record = version.artifact(artifact_path)?;
        let root = self.proxy_root(&version.run_id)?;
        let url = self
            .http
            .url(endpoint::ARTIFACTS, &[&root, artifact_path], &[])?;
        super::http::ensure_parent(dest)?;
        let (sha256, size_bytes) = self.http.get_to_file(endpoint::ARTIFACTS, &url, dest)?;
        Ok(ArtifactRecord {
            path: record.path.clone(),
            sha256,
            size_bytes,
        })
    }
}

/// The search filter for versions of `model` carrying idempotency key `key` (both are
/// validated, so neither holds a quote).
fn key_filter(model: &str, key: &str) -> String {
    format!(
        "name = '{model}' AND tags.`{}` = '{key}'",
        names::TAG_IDEMPOTENCY_KEY
    )
}

fn is_alias_not_found(error: &Error) -> bool {
    matches!(error, Error::Mlflow { status: 400, message, .. }
        if message.contains("alias") && message.contains("not found"))
}

fn is_transient(error: &Error) -> bool {
    match error {
        Error::Transport { .. } => true,
        Error::Mlflow { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

fn convert_version(raw: wire::ModelVersion) -> Result<ModelVersion> {
    let mut artifacts: Vec<ArtifactRecord> = Vec::new();
    let mut tags = Tags::new();
    for kv in raw.tags {
        if kv.key == names::TAG_ARTIFACTS {
            artifacts = serde_json::from_str(&kv.value).map_err(|e| Error::Protocol {
                endpoint: endpoint::VERSION_GET.to_string(),
                message: format!(
                    "model {:?} version {}: tag {} is not ctiforge's artifact list: {e}",
                    raw.name,
                    raw.version,
                    names::TAG_ARTIFACTS
                ),
            })?;
        } else if !names::is_reserved_tag(&kv.key) {
            tags.insert(kv.key, kv.value);
        }
    }
    artifacts.sort_by(|a, b| a.path.cmp(&b.path));
    let mut aliases = raw.aliases;
    aliases.sort();
    Ok(ModelVersion {
        model: raw.name,
        version: raw.version,
        run_id: RunId(raw.run_id),
        artifacts,
        tags,
        aliases,
    })
}
