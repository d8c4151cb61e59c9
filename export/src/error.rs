//! The error type of the `export` crate. Every variant names the file, offset, field or
//! tensor that was wrong and what was expected, so the CLI can print it as is.
//! Format: [GGUF spec](https://github.com/ggml-org/ggml/blob/master/docs/gguf.md).

use std::path::PathBuf;

/// Errors raised while quantizing, writing or reading GGUF files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be created, read, written or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A GGUF file is truncated or corrupt at a known place.
    #[error("{path}: corrupt GGUF at byte offset {offset} ({field}): {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The byte offset of the field that failed to parse.
        offset: u64,
        /// The field being read, e.g. `kv[3].value` or `tensor_info[2].type`.
        field: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The target file exists and overwriting was not requested.
    #[error("{0}: already exists (pass overwrite to replace it)")]
    Exists(PathBuf),
    /// A writer method was called in the wrong phase (header → KV → tensor infos → data).
    #[error("gguf writer: {call} is not allowed in phase {phase}: {hint}")]
    WriterPhase {
        /// The method that was called.
        call: &'static str,
        /// The phase the writer was in.
        phase: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// A metadata key, tensor or value was rejected by the writer.
    #[error("gguf writer: {0}")]
    Invalid(String),
    /// A row or buffer does not fit the block layout of a ggml type.
    #[error("{ty}: {message}")]
    Shape {
        /// The ggml type (e.g. `Q4_K`).
        ty: String,
        /// What did not fit, with the sizes involved.
        message: String,
    },
    /// An unknown or unsupported ggml type, file type or name.
    #[error("unknown {what} {value:?}; expected one of: {expected}")]
    Unknown {
        /// What kind of name or id it was (`ggml type`, `file type`, ...).
        what: &'static str,
        /// The value given.
        value: String,
        /// The accepted values.
        expected: String,
    },
    /// A PEFT adapter folder is malformed or inconsistent with its own config.
    #[error("{path}: {message}")]
    Adapter {
        /// The adapter file involved (`adapter_config.json`, `adapter_model.safetensors`).
        path: PathBuf,
        /// What was wrong and what was expected.
        message: String,
    },
    /// An adapter tensor does not fit the base model it is applied to (an adapter trained
    /// for a different base).
    #[error(
        "adapter tensor {tensor}: expected shape {expected:?} (from base tensor {base} and \
         the adapter's rank), got {got:?}; is the adapter for a different base model?"
    )]
    AdapterShape {
        /// The adapter tensor.
        tensor: String,
        /// The base tensor it applies to.
        base: String,
        /// The shape the base model implies.
        expected: Vec<usize>,
        /// The shape in the adapter file.
        got: Vec<usize>,
    },
    /// The model's architecture is not one llama.cpp loads as `llama`.
    #[error(
        "{path}: architecture {found} cannot be exported for llama.cpp; supported: \
         LlamaForCausalLM / MistralForCausalLM (model_type llama or mistral)"
    )]
    Architecture {
        /// The `config.json`.
        path: PathBuf,
        /// The `architectures` / `model_type` found.
        found: String,
    },
    /// Loading or running a model with the `model` crate failed (quality measurement).
    #[error("model: {0}")]
    Model(#[from] ctiforge_model::Error),
    /// A requested tensor or key is not in the file.
    #[error("{path}: no {what} named {name:?}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// `tensor` or `metadata key`.
        what: &'static str,
        /// The name asked for.
        name: String,
    },
}

/// The `Result` of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
