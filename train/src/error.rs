//! The error type of the `train` crate: each variant names the file, field or step that
//! failed and what was expected.

use std::path::PathBuf;

/// Errors raised while configuring, running or resuming a training run.
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
    /// The training config is invalid; every problem is listed.
    #[error("{path}: invalid training config: {}", problems.join("; "))]
    Config {
        /// The config file (or where the values came from).
        path: PathBuf,
        /// Each bad key with what was expected.
        problems: Vec<String>,
    },
    /// The dataset is missing, empty or does not fit the model.
    #[error("dataset {path}: {message}")]
    Data {
        /// The dataset folder or split file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "loss is {loss} at step {step}: training stopped; the last good checkpoint is {}",
        checkpoint_text(last_checkpoint.as_deref())
    )]
    NonFinite {
        /// The optimizer step whose loss was not finite.
        step: u64,
        /// The loss value.
        loss: f64,
        /// The newest checkpoint on disk.
        last_checkpoint: Option<PathBuf>,
    },
    /// A checkpoint or run folder is unusable for `--resume`.
    #[error("{path}: {message}")]
    Resume {
        /// The run or checkpoint folder.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The run stopped after the step `RunOptions::halt_after` named (a simulated kill).
    #[error("halted after step {step} as requested")]
    Halted {
        /// The last step done.
        step: u64,
    },
    /// The model crate failed (loading, forward, adapter files).
    #[error(transparent)]
    Model(#[from] ctiforge_model::Error),
    /// A weight of the model could not be read, written or placed (full training).
    #[error("model weights: {0}")]
    Weights(String),
    /// The data-prep crate failed reading the dataset.
    #[error(transparent)]
    Dataset(#[from] ctiforge_data_prep::Error),
}

/// The `Result` type of the `train` crate.
pub type Result<T> = std::result::Result<T, Error>;

/// How [`Error::NonFinite`] names the newest checkpoint.
fn checkpoint_text(path: Option<&std::path::Path>) -> String {
    path.map_or_else(
        || "none (no checkpoint written yet)".to_owned(),
        |p| p.display().to_string(),
    )
}

impl Error {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_loss_names_the_step_and_the_checkpoint() {
        let none = Error::NonFinite {
            step: 7,
            loss: f64::NAN,
            last_checkpoint: None,
        };
        let msg = none.to_string();
        assert!(
            msg.contains("step 7") && msg.contains("no checkpoint"),
            "{msg}"
        );
        let some = Error::NonFinite {
            step: 9,
            loss: f64::INFINITY,
            last_checkpoint: Some(PathBuf::from("run/checkpoints/step-00000008")),
        };
        let msg = some.to_string();
        assert!(
            msg.contains("inf") && msg.contains("step-00000008"),
            "{msg}"
        );
    }
}
