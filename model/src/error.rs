//! The error type of the `model` crate: every variant names the file, tensor or field that
//! was wrong and what was expected, so the CLI can print it as is.

use std::path::PathBuf;

/// Errors raised while configuring, loading, saving or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file did not parse or did not match its expected schema.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// The parser's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A model configuration value is missing, out of range or unsupported.
    #[error("{path}: {message}")]
    Config {
        /// The configuration file (or a description of where the value came from).
        path: PathBuf,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The checkpoint's weights are missing, mis-shaped, truncated or of an unsupported dtype.
    #[error("{path}: {message}")]
    Weights {
        /// The safetensors file or index.
        path: PathBuf,
        /// What was wrong, naming the tensor and both shapes where relevant.
        message: String,
    },
    /// The tokenizer could not be loaded, trained, or disagrees with the model.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file (or folder).
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A chat template failed to compile or render.
    #[error("chat template: {message}")]
    ChatTemplate {
        /// What was wrong.
        message: String,
    },
    /// A model named as `org/name` could not be resolved in the Hugging Face hub cache.
    #[error("{message}")]
    Hub {
        /// What was wrong: the cache folder searched and the files missing.
        message: String,
    },
    /// The requested device is unknown or its backend was not compiled in.
    #[error("device {device:?}: {message}")]
    Device {
        /// The device string as given by the user.
        device: String,
        /// What was wrong and how to fix it.
        message: String,
    },
    /// Generation or forward arguments were invalid (empty batch, bad token id, ...).
    #[error("{0}")]
    Invalid(String),
}

/// The `Result` type of the `model` crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A weights error for `path` with `message`.
    pub fn weights(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Weights {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A configuration error for `path` with `message`.
    pub fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A tokenizer error for `path` with `message`.
    pub fn tokenizer(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Tokenizer {
            path: path.into(),
            message: message.into(),
        }
    }
}
