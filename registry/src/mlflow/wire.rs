//! MLflow's JSON messages, as far as ctiforge reads them (see the
//! [REST API reference](https://mlflow.org/docs/latest/api_reference/rest-api.html)).
//! Every field has a default so that fields added by newer servers, or left out when
//! empty, never break parsing.

use serde::Deserialize;

/// A `{key, value}` pair (params and tags).
#[derive(Debug, Deserialize, Default)]
pub struct KeyValue {
    /// The key.
    #[serde(default)]
    pub key: String,
    /// The value.
    #[serde(default)]
    pub value: String,
}

/// An experiment.
#[derive(Debug, Deserialize, Default)]
pub struct Experiment {
    /// Its id.
    #[serde(default)]
    pub experiment_id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
}

/// `experiments/get` and `experiments/get-by-name` replies.
#[derive(Debug, Deserialize, Default)]
pub struct ExperimentReply {
    /// The experiment.
    #[serde(default)]
    pub experiment: Experiment,
}

/// `experiments/create` reply.
#[derive(Debug, Deserialize, Default)]
pub struct CreateExperimentReply {
    /// The new experiment's id.
    #[serde(default)]
    pub experiment_id: String,
}

/// A run's metadata.
#[derive(Debug, Deserialize, Default)]
pub struct RunInfo {
    /// The run id.
    #[serde(default)]
    pub run_id: String,
    /// Its experiment's id.
    #[serde(default)]
    pub experiment_id: String,
    /// Its display name.
    #[serde(default)]
    pub run_name: String,
    /// `RUNNING`, `FINISHED`, ...
    #[serde(default)]
    pub status: String,
    /// Its artifact root, e.g. `mlflow-artifacts:/1/<run_id>/artifacts`.
    #[serde(default)]
    pub artifact_uri: String,
}

/// A metric value as MLflow sends it.
#[derive(Debug, Deserialize, Default)]
pub struct MetricValue {
    /// The key.
    #[serde(default)]
    pub key: String,
    /// The value (`null` for NaN, which ctiforge never logs).
    #[serde(default)]
    pub value: Option<f64>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub timestamp: i64,
    /// The step.
    #[serde(default)]
    pub step: i64,
}

/// A run's data.
#[derive(Debug, Deserialize, Default)]
pub struct RunData {
    /// Latest metric values.
    #[serde(default)]
    pub metrics: Vec<MetricValue>,
    /// Params.
    #[serde(default)]
    pub params: Vec<KeyValue>,
    /// Tags, `mlflow.*` included.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

/// A run.
#[derive(Debug, Deserialize, Default)]
pub struct Run {
    /// Metadata.
    #[serde(default)]
    pub info: RunInfo,
    /// Data.
    #[serde(default)]
    pub data: RunData,
}

/// `runs/create` and `runs/get` replies.
#[derive(Debug, Deserialize, Default)]
pub struct RunReply {
    /// The run.
    #[serde(default)]
    pub run: Run,
}

/// `runs/search` reply.
#[derive(Debug, Deserialize, Default)]
pub struct SearchRunsReply {
    /// The runs.
    #[serde(default)]
    pub runs: Vec<Run>,
    /// The next page's token.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// `metrics/get-history` reply.
#[derive(Debug, Deserialize, Default)]
pub struct MetricHistoryReply {
    /// The values.
    #[serde(default)]
    pub metrics: Vec<MetricValue>,
    /// The next page's token.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// One entry of `artifacts/list`.
#[derive(Debug, Deserialize, Default)]
pub struct FileInfo {
    /// The path relative to the run's artifact root.
    #[serde(default)]
    pub path: String,
    /// Whether it is a folder.
    #[serde(default)]
    pub is_dir: bool,
    /// The size (absent for folders); MLflow sends int64 as a number or a string.
    #[serde(default)]
    pub file_size: Option<serde_json::Value>,
}

/// `artifacts/list` reply.
#[derive(Debug, Deserialize, Default)]
pub struct ListArtifactsReply {
    /// The entries.
    #[serde(default)]
    pub files: Vec<FileInfo>,
    /// The next page's token.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// A registered model (only the name is used).
#[derive(Debug, Deserialize, Default)]
pub struct RegisteredModel {
    /// Its name.
    #[serde(default)]
    pub name: String,
}

/// `registered-models/search` reply.
#[derive(Debug, Deserialize, Default)]
pub struct SearchModelsReply {
    /// The models.
    #[serde(default)]
    pub registered_models: Vec<RegisteredModel>,
    /// The next page's token.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// A model version.
#[derive(Debug, Deserialize, Default)]
pub struct ModelVersion {
    /// The registered model's name.
    #[serde(default)]
    pub name: String,
    /// The version number, as a string.
    #[serde(default)]
    pub version: String,
    /// The run that produced it.
    #[serde(default)]
    pub run_id: String,
    /// `READY`, `PENDING_REGISTRATION` or `FAILED_REGISTRATION`.
    #[serde(default)]
    pub status: String,
    /// Tags, internal ones included.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    /// Aliases pointing at it.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// `model-versions/create`, `model-versions/get` and `registered-models/alias` replies.
#[derive(Debug, Deserialize, Default)]
pub struct ModelVersionReply {
    /// The version.
    #[serde(default)]
    pub model_version: ModelVersion,
}

/// `model-versions/search` reply.
#[derive(Debug, Deserialize, Default)]
pub struct SearchVersionsReply {
    /// The versions.
    #[serde(default)]
    pub model_versions: Vec<ModelVersion>,
    /// The next page's token.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// A reply whose content is not needed.
#[derive(Debug, Deserialize, Default)]
pub struct Empty {}
