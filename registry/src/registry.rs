//! The [`Registry`] trait: the operations CI and inference services need from the system of
//! record, in ctiforge's vocabulary. Two implementations satisfy it with the same
//! observable behaviour: [`crate::embedded::EmbeddedStore`] and
//! [`crate::mlflow::MlflowRegistry`] (over the
//! [MLflow REST API](https://mlflow.org/docs/latest/api_reference/rest-api.html)); the
//! contract tests in `registry/tests/contract/` run unchanged against both.

use std::fmt::Debug;
use std::path::Path;

use crate::error::Result;
use crate::types::{ArtifactRecord, Metric, ModelVersion, Page, PageRequest, Run, RunId};
use crate::types::{RunStatus, Tags};

/// A conditional alias move: the building block of race-free promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasSwap<'a> {
    /// The alias to move, e.g. `champion`.
    pub alias: &'a str,
    /// The version the alias must point at now (`None`: it must be unset).
    pub expected: Option<&'a str>,
    /// The version to point it at.
    pub version: &'a str,
    /// If set, this alias is pointed at the old target (when there was one), e.g. `previous`.
    pub keep_previous_as: Option<&'a str>,
}

/// The system of record for runs, model versions, aliases and artifacts.
///
/// All methods take `&self`; implementations are safe to share between threads, and the
/// embedded store is also safe against other processes writing the same folder.
pub trait Registry: Send + Sync + Debug {
    /// A one-line description for logs (`embedded store at ...`, `MLflow at ...`), without
    /// credentials.
    fn describe(&self) -> String;

    /// Starts a run in `experiment` (created if missing) with a display `name` and tags.
    ///
    /// # Errors
    /// Invalid names or tags, or a backend failure.
    fn create_run(&self, experiment: &str, name: &str, tags: &Tags) -> Result<RunId>;

    /// Reads a run back: status, params, latest metrics and user tags.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] for an unknown run.
    fn get_run(&self, run: &RunId) -> Result<Run>;

    /// The runs of `experiment`, newest first (an unknown experiment has none).
    ///
    /// # Errors
    /// A backend failure.
    fn list_runs(&self, experiment: &str, page: &PageRequest) -> Result<Page<Run>>;

    /// Logs parameters (sent as strings). Params are write-once: logging a key again with
    /// the same value is accepted, with another value is a conflict.
    ///
    /// # Errors
    /// Keys or values over MLflow's limits (key 250, value 6000 characters), a conflict,
    /// an unknown or finished run.
    fn log_params(&self, run: &RunId, params: &Tags) -> Result<()>;

    /// Logs metric values (any number; the MLflow backend chunks them).
    ///
    /// # Errors
    /// Bad keys, non-finite values, an unknown or finished run.
    fn log_metrics(&self, run: &RunId, metrics: &[Metric]) -> Result<()>;

    /// Every value logged for one metric, ordered by step then timestamp.
    ///
    /// # Errors
    /// An unknown run.
    fn metric_history(&self, run: &RunId, key: &str) -> Result<Vec<Metric>>;

    /// Sets (or overwrites) run tags.
    ///
    /// # Errors
    /// Bad or reserved keys, an unknown run.
    fn set_run_tags(&self, run: &RunId, tags: &Tags) -> Result<()>;

    /// Stores a local file as `artifact_path` under the run, streaming it, and returns its
    /// size and SHA-256.
    ///
    /// # Errors
    /// An artifact path that is absolute or has `..`; an unreadable file; an unknown or
    /// finished run; a transfer failure.
    fn upload_artifact(
        &self,
        run: &RunId,
        local_path: &Path,
        artifact_path: &str,
    ) -> Result<ArtifactRecord>;

    /// Ends a run with `status` (not [`RunStatus::Running`]).
    ///
    /// # Errors
    /// An unknown run, or `Running` as the status.
    fn finish_run(&self, run: &RunId, status: RunStatus) -> Result<()>;

    /// Registers a new version of `model` (created if missing) from artifacts uploaded to
    /// `run`. Idempotent: registering again with the same `idempotency_key` returns the
    /// version the first call created, never a second one. The version becomes visible only
    /// once every artifact is stored with the recorded size.
    ///
    /// # Errors
    /// An artifact that was not uploaded to `run` (or differs from the record); a key
    /// reused for another run; a backend failure.
    fn register_version(
        &self,
        model: &str,
        run: &RunId,
        artifacts: &[ArtifactRecord],
        tags: &Tags,
        idempotency_key: &str,
    ) -> Result<ModelVersion>;

    /// Reads one version.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] for an unknown model or version.
    fn get_version(&self, model: &str, version: &str) -> Result<ModelVersion>;

    /// The names of all registered models, sorted.
    ///
    /// # Errors
    /// A backend failure.
    fn list_models(&self) -> Result<Vec<String>>;

    /// One page of a model's versions, oldest (lowest number) first.
    ///
    /// # Errors
    /// An invalid page token, a backend failure.
    fn list_versions(&self, model: &str, page: &PageRequest) -> Result<Page<ModelVersion>>;

    /// Points `alias` at `version`, moving it if it pointed elsewhere.
    ///
    /// # Errors
    /// An invalid alias, an unknown version.
    fn set_alias(&self, model: &str, alias: &str, version: &str) -> Result<()>;

    /// The version `alias` points at, or `None` when it is unset.
    ///
    /// # Errors
    /// An invalid alias, an unknown model, a backend failure.
    fn get_alias(&self, model: &str, alias: &str) -> Result<Option<ModelVersion>>;

    /// Removes `alias` (removing an unset alias is not an error).
    ///
    /// # Errors
    /// An invalid alias, an unknown model.
    fn delete_alias(&self, model: &str, alias: &str) -> Result<()>;

    /// Moves an alias only if it still points where the caller last saw it. Returns
    /// whether it moved. The embedded store does this in one transaction; the MLflow
    /// backend checks, sets and re-reads (see [`crate::mlflow`] for the residual race).
    ///
    /// # Errors
    /// Invalid aliases, an unknown version.
    fn swap_alias(&self, model: &str, swap: &AliasSwap<'_>) -> Result<bool>;

    /// Sets (or overwrites) a tag on a version.
    ///
    /// # Errors
    /// Bad or reserved keys, an unknown version.
    fn set_version_tag(&self, model: &str, version: &str, key: &str, value: &str) -> Result<()>;

    /// Copies a version's artifact to `dest` as it is stored (no verification: see
    /// [`crate::pull()`], which verifies) and returns the size and SHA-256 of the bytes
    /// written.
    ///
    /// # Errors
    /// An artifact the version does not have; a transfer or write failure.
    fn download_artifact(
        &self,
        version: &ModelVersion,
        artifact_path: &str,
        dest: &Path,
    ) -> Result<ArtifactRecord>;
}
