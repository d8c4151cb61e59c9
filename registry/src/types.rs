//! The registry's vocabulary: runs, metrics, artifacts, model versions and pages. These
//! are ctiforge's words, not MLflow's; the MLflow backend maps them onto the
//! [MLflow REST API](https://mlflow.org/docs/latest/api_reference/rest-api.html) objects.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// String key/value tags (on runs and on model versions).
pub type Tags = BTreeMap<String, String>;

/// The identifier of a run, opaque to callers (32 lowercase hex digits in both backends).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunId(pub String);

impl RunId {
    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The lifecycle state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Still being written.
    Running,
    /// Ended normally.
    Finished,
    /// Ended with an error.
    Failed,
    /// Stopped by the user.
    Killed,
}

impl RunStatus {
    /// The status as MLflow spells it (`RUNNING`, `FINISHED`, `FAILED`, `KILLED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Killed => "KILLED",
        }
    }

    /// Parses MLflow's spelling; `SCHEDULED` counts as running.
    ///
    /// # Errors
    /// [`Error::Invalid`] for anything else.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "RUNNING" | "SCHEDULED" => Ok(Self::Running),
            "FINISHED" => Ok(Self::Finished),
            "FAILED" => Ok(Self::Failed),
            "KILLED" => Ok(Self::Killed),
            other => Err(Error::invalid(
                "run status",
                format!("{other:?} is not RUNNING, FINISHED, FAILED or KILLED"),
            )),
        }
    }
}

/// One metric value at one optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// The metric name, e.g. `loss` or `technique.micro_f1`.
    pub key: String,
    /// The value; must be finite.
    pub value: f64,
    /// The optimizer step (0 for one-off evaluation metrics).
    pub step: u64,
    /// When it was measured, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Metric {
    /// A metric measured now.
    pub fn now(key: impl Into<String>, value: f64, step: u64) -> Self {
        Self {
            key: key.into(),
            value,
            step,
            timestamp_ms: now_ms(),
        }
    }
}

/// A run as read back from the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Its identifier.
    pub id: RunId,
    /// The experiment it belongs to, by name.
    pub experiment: String,
    /// Its display name.
    pub name: String,
    /// Its state.
    pub status: RunStatus,
    /// Parameters (write-once values).
    pub params: BTreeMap<String, String>,
    /// The latest value of each metric.
    pub metrics: BTreeMap<String, f64>,
    /// User tags (backend-internal tags such as `mlflow.*` are left out).
    pub tags: Tags,
}

/// A file stored in the registry, with the checksum recorded when it was uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// The path relative to the run's artifact root, `/`-separated (e.g. `gguf/model.gguf`).
    pub path: String,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    /// The size in bytes.
    pub size_bytes: u64,
}

/// A registered model version.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    /// The registered model's name.
    pub model: String,
    /// The version number as a string (`"1"`, `"2"`, ...), as MLflow sends it.
    pub version: String,
    /// The run that produced it.
    pub run_id: RunId,
    /// Its artifacts with the checksums recorded at registration, sorted by path.
    pub artifacts: Vec<ArtifactRecord>,
    /// User tags (backend-internal tags are left out).
    pub tags: Tags,
    /// The aliases pointing at it, sorted.
    pub aliases: Vec<String>,
}

impl ModelVersion {
    /// The recorded artifact at `path`.
    ///
    /// # Errors
    /// [`Error::NotFound`] naming the artifacts the version does have.
    pub fn artifact(&self, path: &str) -> Result<&ArtifactRecord> {
        self.artifacts
            .iter()
            .find(|a| a.path == path)
            .ok_or_else(|| Error::NotFound {
                what: format!(
                    "artifact {path:?} of model {:?} version {}",
                    self.model, self.version
                ),
                hint: format!(
                    "the version has {}",
                    self.artifacts
                        .iter()
                        .map(|a| a.path.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

/// Which page of a listing to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many items (1..=1000).
    pub max_results: u32,
    /// The `next_token` of the previous page, or `None` for the first page.
    pub token: Option<String>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            max_results: 100,
            token: None,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// Pass this as [`PageRequest::token`] to read the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
