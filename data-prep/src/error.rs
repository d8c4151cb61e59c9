//! The error type of the `data-prep` crate. Every variant names the file, line, column or
//! config key that was wrong and what was expected, so the CLI can print it as is.

use std::path::PathBuf;

/// Errors raised while reading sources, preparing or writing a dataset.
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
    /// A whole file did not parse (a JSON document, a STIX bundle, a TSV table).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong, with line and column where known.
        message: String,
    },
    /// The prep configuration is invalid; every problem is listed.
    #[error("invalid prep configuration:\n  {}", problems.join("\n  "))]
    Config {
        /// One line per bad key, naming it.
        problems: Vec<String>,
    },
    /// A source lacks a column the mapping asks for, or has it with the wrong type.
    #[error("{path}: {message}")]
    Schema {
        /// The source file.
        path: PathBuf,
        /// The column and what was expected.
        message: String,
    },
    /// More rows were rejected than the configured threshold allows.
    #[error(
        "{rejected} of {total} rows rejected ({percent:.2}%), above the limit of \
         {limit_percent:.2}% (`reject.max_fraction`); see {rejects_file} \
         (first: {first})"
    )]
    TooManyRejects {
        /// Rows rejected.
        rejected: usize,
        /// Rows read.
        total: usize,
        /// `rejected / total` in percent.
        percent: f64,
        /// The limit in percent.
        limit_percent: f64,
        /// Where the rejects were written.
        rejects_file: PathBuf,
        /// The first few rejects, as `file:line: reason`.
        first: String,
    },
    /// The same normalised text ended up in two splits.
    #[error(
        "leakage: {count} normalised text(s) appear in more than one split, e.g. {example:?} \
         in {splits}; enable de-duplication or fix the grouping"
    )]
    Leakage {
        /// How many texts leak.
        count: usize,
        /// One leaking text (shortened).
        example: String,
        /// The splits it appears in.
        splits: String,
    },
    /// A Polars operation failed.
    #[error("{context}: {source}")]
    Polars {
        /// What was being done.
        context: String,
        /// The Polars error.
        #[source]
        source: polars::error::PolarsError,
    },
    /// A prompt template failed to compile or render.
    #[error("prompt template `{name}`: {message}")]
    Template {
        /// The template's config key.
        name: String,
        /// The template engine's message.
        message: String,
    },
    /// The tokenizer named in the config could not be loaded or run.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The `tokenizer.json` file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A source's rows differ between the two passes over it: the file was edited while
    /// the dataset was being prepared.
    #[error(
        "{file}: the source changed while the dataset was being prepared (its rows differ \
         between the two passes over it); run again once it is stable"
    )]
    SourceChanged {
        /// The source's path as the recipe gives it.
        file: String,
    },
    /// A pipeline stage's thread panicked (a bug).
    #[error("{0}")]
    Stage(String),
    /// A pipeline stage stopped because the stage it feeds failed; that stage's error is
    /// the one reported, so users do not see this one.
    #[error("stopped because another stage failed")]
    Stopped,
    /// The output folder exists and `--force` was not given, or another output problem.
    #[error("{path}: {message}")]
    Output {
        /// The output folder.
        path: PathBuf,
        /// What was wrong and what to do.
        message: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Polars`] with the operation it interrupted.
    pub fn polars(context: impl Into<String>, source: polars::error::PolarsError) -> Self {
        Self::Polars {
            context: context.into(),
            source,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
