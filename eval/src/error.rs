//! The error type of the `eval` crate. Every variant names the input, index or expression
//! that was wrong and what was expected, so the CLI can print it as is.

/// Errors raised while computing metrics or evaluating gate expressions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two inputs that must pair up element by element have different lengths.
    #[error("{what}: {left} predictions but {right} references; they must pair up one to one")]
    LengthMismatch {
        /// What was being compared (e.g. "BIO sentence 3").
        what: String,
        /// Number of predicted items.
        left: usize,
        /// Number of reference items.
        right: usize,
    },
    /// A metric needs at least one sample.
    #[error("{metric}: no samples to score; pass at least one prediction/reference pair")]
    Empty {
        /// The metric.
        metric: &'static str,
    },
    /// A BIO tag that the chosen scheme does not allow.
    #[error(
        "BIO {side} sentence {sentence}, token {token}: invalid tag {tag:?}; expected {expected}"
    )]
    InvalidTag {
        /// `"reference"` or `"predicted"`.
        side: &'static str,
        /// Index of the sentence.
        sentence: usize,
        /// Index of the token within the sentence.
        token: usize,
        /// The offending tag.
        tag: String,
        /// What the scheme allows.
        expected: &'static str,
    },
    /// A BLEU segment without any reference.
    #[error("BLEU segment {segment} has no reference; every segment needs at least one")]
    NoReference {
        /// Index of the segment.
        segment: usize,
    },
    /// A numeric input or option out of its domain.
    #[error("{what}: {value} is invalid; expected {expected}")]
    InvalidValue {
        /// The input or option.
        what: String,
        /// The value given, formatted.
        value: String,
        /// The allowed range.
        expected: &'static str,
    },
    /// A `--require` expression that does not parse.
    #[error("invalid requirement {expr:?} at character {position}: {message}")]
    Requirement {
        /// The whole expression.
        expr: String,
        /// 0-based character offset of the problem.
        position: usize,
        /// What was expected there.
        message: String,
    },
    /// A requirement names a metric the report does not have, or needs a baseline.
    #[error("requirement {expr:?}: {message}")]
    Gate {
        /// The expression.
        expr: String,
        /// What is missing.
        message: String,
    },
    /// An input file or folder that cannot be used (named, with the line or row where one
    /// applies).
    #[error("{}: {message}", path.display())]
    Input {
        /// The file (with `:line` where one applies) or folder.
        path: std::path::PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Loading or running the model failed.
    #[error("model: {0}")]
    Model(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A model-crate error, as text.
    pub fn model(e: impl std::fmt::Display) -> Self {
        Error::Model(e.to_string())
    }
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
