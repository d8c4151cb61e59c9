//! The error type of the `registry` crate. Every variant names the run, model, version,
//! file or endpoint involved and what was expected, so the CLI can print it as is.
//! Credentials never appear in an error: HTTP errors carry the server's base URL without
//! user info and the endpoint path, never headers.

use std::path::PathBuf;

/// Errors raised by a [`crate::Registry`] backend, by pull or by promotion.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The embedded store's database failed.
    #[error("embedded registry {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// A run, model, version, alias or artifact does not exist.
    #[error("{what} not found{}", hint_suffix(hint))]
    NotFound {
        /// What was looked up, e.g. `model "cti" version 3`.
        what: String,
        /// What to do about it, if anything useful can be said.
        hint: String,
    },
    /// The caller passed a value the registry cannot accept (a bad name, an over-long
    /// parameter, an artifact path that escapes its folder, a non-finite metric).
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The argument or field, e.g. `artifact path` or `param "lr"`.
        field: String,
        /// What was wrong and what is expected.
        message: String,
    },
    /// The operation contradicts what is already recorded (a param re-logged with another
    /// value, a finished run written to, an idempotency key reused for another run).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The registry URI could not be understood.
    #[error(
        "registry URI {uri:?}: {message} (expected a folder path, a file: URI or an \
         http(s)://host:port MLflow tracking URI)"
    )]
    Uri {
        /// The URI as given (user info removed).
        uri: String,
        /// What was wrong.
        message: String,
    },
    /// The MLflow server refused the credentials (HTTP 401 or 403).
    #[error(
        "MLflow server {base_url} refused the credentials for {endpoint} (HTTP {status}); \
         check MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"
    )]
    Unauthorized {
        /// The server's base URL.
        base_url: String,
        /// The endpoint path, e.g. `/api/2.0/mlflow/runs/create`.
        endpoint: String,
        /// The HTTP status (401 or 403).
        status: u16,
    },
    /// The MLflow server answered with an error.
    #[error("MLflow {endpoint} failed with HTTP {status} {code}: {message}")]
    Mlflow {
        /// The endpoint path.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// MLflow's `error_code`, e.g. `RESOURCE_DOES_NOT_EXIST`.
        code: String,
        /// MLflow's message.
        message: String,
    },
    /// The MLflow server could not be reached, even after retrying.
    #[error("MLflow {endpoint} at {base_url}: {message} (after {attempts} attempts)")]
    Transport {
        /// The server's base URL.
        base_url: String,
        /// The endpoint path.
        endpoint: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        message: String,
    },
    /// The MLflow server answered with something that is not the documented JSON.
    #[error("MLflow {endpoint}: unexpected reply: {message}")]
    Protocol {
        /// The endpoint path.
        endpoint: String,
        /// What was wrong.
        message: String,
    },
    /// A downloaded artifact does not match the SHA-256 recorded at registration.
    #[error(
        "{artifact} of {model} version {version}: SHA-256 mismatch (registered {expected}, \
         downloaded {actual}); the download was discarded"
    )]
    ChecksumMismatch {
        /// The model name.
        model: String,
        /// The version.
        version: String,
        /// The artifact path.
        artifact: String,
        /// The SHA-256 recorded at registration.
        expected: String,
        /// The SHA-256 of the bytes received.
        actual: String,
    },
    /// A promotion gate file is invalid; every problem is listed.
    #[error("gate {path}:\n  {}", problems.join("\n  "))]
    Gate {
        /// The gate file (or `<inline>`).
        path: PathBuf,
        /// One line per problem, naming the key or rule.
        problems: Vec<String>,
    },
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!("; {hint}")
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An [`Error::NotFound`] without a hint.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound {
            what: what.into(),
            hint: String::new(),
        }
    }

    /// The error for an idempotency key that already registered version `number` of
    /// `model` from another run.
    pub fn key_conflict(
        model: &str,
        number: u64,
        key: &str,
        first_run: &str,
        run: &crate::RunId,
    ) -> Self {
        Self::Conflict(format!(
            "idempotency key {key:?} already registered {model:?} version {number} from run \
             {first_run}, not run {run}; use a fresh key for a new version"
        ))
    }

    /// Whether this error says that the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::NotFound { .. } => true,
            Self::Mlflow { code, .. } => code == "RESOURCE_DOES_NOT_EXIST",
            _ => false,
        }
    }
}

/// The result type of the `registry` crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
