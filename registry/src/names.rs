//! External names in one place: MLflow REST endpoints (see
//! [the REST API reference](https://mlflow.org/docs/latest/api_reference/rest-api.html)),
//! the environment variables MLflow clients read, and the tag keys ctiforge reserves for
//! its own bookkeeping.

/// `MLFLOW_TRACKING_URI`: the server to use when no URI is given.
pub const ENV_TRACKING_URI: &str = "MLFLOW_TRACKING_URI";
/// `MLFLOW_TRACKING_USERNAME`: basic-auth user.
pub const ENV_USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
/// `MLFLOW_TRACKING_PASSWORD`: basic-auth password.
pub const ENV_PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";
/// `MLFLOW_TRACKING_TOKEN`: bearer token (wins over basic auth).
pub const ENV_TOKEN: &str = "MLFLOW_TRACKING_TOKEN";

/// The embedded store used when neither a URI nor `MLFLOW_TRACKING_URI` is given.
pub const DEFAULT_EMBEDDED_DIR: &str = ".ctiforge-registry";

/// Version tag holding the JSON list of a version's artifacts with their checksums
/// (MLflow backend; the embedded store keeps them in a table).
pub const TAG_ARTIFACTS: &str = "ctiforge.registry.artifacts";
/// Version tag holding the client-generated idempotency key of a registration.
pub const TAG_IDEMPOTENCY_KEY: &str = "ctiforge.registry.idempotency_key";
/// Version tag prefix of evaluation metrics read by promotion (`eval.technique.micro_f1`).
pub const TAG_EVAL_PREFIX: &str = "eval.";
/// The artifact promotion reads evaluation metrics from when no tag gives them.
pub const EVAL_ARTIFACT: &str = "eval.json";
/// Version tag recording a promotion decision (`promoted` or `refused`).
pub const TAG_PROMOTION_DECISION: &str = "ctiforge.promotion.decision";
/// Version tag recording the reasons of a promotion decision, `; `-separated.
pub const TAG_PROMOTION_REASONS: &str = "ctiforge.promotion.reasons";
/// Version tag recording the champion a promotion compared with (`none` if there was none).
pub const TAG_PROMOTION_COMPARED_WITH: &str = "ctiforge.promotion.compared_with";
/// Run tag MLflow uses for a run's display name.
pub const TAG_RUN_NAME: &str = "mlflow.runName";

/// Whether a tag key belongs to a backend (MLflow's `mlflow.*` or ctiforge's
/// `ctiforge.registry.*`) and is hidden from, and refused to, users.
pub fn is_reserved_tag(key: &str) -> bool {
    key.starts_with("mlflow.") || key.starts_with("ctiforge.registry.")
}

/// MLflow REST endpoints, relative to the server's base URL.
pub mod endpoint {
    /// `GET` an experiment by name.
    pub const EXPERIMENT_GET_BY_NAME: &str = "/api/2.0/mlflow/experiments/get-by-name";
    /// `GET` an experiment by id.
    pub const EXPERIMENT_GET: &str = "/api/2.0/mlflow/experiments/get";
    /// `POST` a new experiment.
    pub const EXPERIMENT_CREATE: &str = "/api/2.0/mlflow/experiments/create";
    /// `POST` a new run.
    pub const RUN_CREATE: &str = "/api/2.0/mlflow/runs/create";
    /// `POST` a run's status and end time.
    pub const RUN_UPDATE: &str = "/api/2.0/mlflow/runs/update";
    /// `GET` a run.
    pub const RUN_GET: &str = "/api/2.0/mlflow/runs/get";
    /// `POST` a run search.
    pub const RUN_SEARCH: &str = "/api/2.0/mlflow/runs/search";
    /// `POST` metrics, params and tags in one batch.
    pub const RUN_LOG_BATCH: &str = "/api/2.0/mlflow/runs/log-batch";
    /// `GET` one metric's history.
    pub const METRIC_HISTORY: &str = "/api/2.0/mlflow/metrics/get-history";
    /// `POST` a registered model.
    pub const MODEL_CREATE: &str = "/api/2.0/mlflow/registered-models/create";
    /// `POST` a registered-model search.
    pub const MODEL_SEARCH: &str = "/api/2.0/mlflow/registered-models/search";
    /// `GET` a registered model.
    pub const MODEL_GET: &str = "/api/2.0/mlflow/registered-models/get";
    /// `DELETE` a model version (only duplicates from a registration race).
    pub const VERSION_DELETE: &str = "/api/2.0/mlflow/model-versions/delete";
    /// `GET` the files in a folder of a run's artifacts, with sizes.
    pub const ARTIFACT_LIST: &str = "/api/2.0/mlflow/artifacts/list";
    /// `POST` a model version.
    pub const VERSION_CREATE: &str = "/api/2.0/mlflow/model-versions/create";
    /// `GET` a model version.
    pub const VERSION_GET: &str = "/api/2.0/mlflow/model-versions/get";
    /// `GET` a model-version search.
    pub const VERSION_SEARCH: &str = "/api/2.0/mlflow/model-versions/search";
    /// `POST` a model-version tag.
    pub const VERSION_SET_TAG: &str = "/api/2.0/mlflow/model-versions/set-tag";
    /// `POST` (set) or `DELETE` an alias.
    pub const ALIAS: &str = "/api/2.0/mlflow/registered-models/alias";
    /// `GET` the version an alias points at.
    pub const ALIAS_GET: &str = "/api/2.0/mlflow/registered-models/alias";
    /// Prefix of the artifact proxy (`PUT`/`GET` `<prefix>/<experiment>/<run>/artifacts/<path>`).
    pub const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";
    /// The server's liveness probe.
    pub const HEALTH: &str = "/health";
}

/// The scheme of artifact URIs served by the tracking server's artifact proxy.
pub const PROXY_ARTIFACT_SCHEME: &str = "mlflow-artifacts:";

/// MLflow's `runs/log-batch` limits per call.
pub mod batch {
    /// At most this many metrics per call.
    pub const MAX_METRICS: usize = 1000;
    /// At most this many params per call.
    pub const MAX_PARAMS: usize = 100;
    /// At most this many tags per call.
    pub const MAX_TAGS: usize = 100;
}

/// MLflow `error_code` values the client reacts to.
pub mod code {
    /// The thing asked for does not exist.
    pub const NOT_FOUND: &str = "RESOURCE_DOES_NOT_EXIST";
    /// The thing to create exists already.
    pub const ALREADY_EXISTS: &str = "RESOURCE_ALREADY_EXISTS";
}
