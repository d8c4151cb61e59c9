//! Drift: how far new data (or a model's predictions on it) has moved from the data a
//! model version was trained on, and the verdict that promotion reads.
//!
//! A drift report (`drift.json` and `drift.html`, see `DESIGN.md` and issue 7) compares a
//! reference [`DriftInput`] with a current one and scores each feature with the statistics
//! in [`stats`] and [`ks`]: label and IOC-kind mix (PSI, Jensen-Shannon distance), text
//! length and token-count distributions (PSI on reference deciles, Kolmogorov-Smirnov,
//! normalised Wasserstein), vocabulary (out-of-vocabulary rate, Jaccard overlap) and, with
//! a model, its predicted label mix. Each statistic is judged against a [`DriftConfig`]
//! threshold pair, and the worst judgement is the report's [`DriftVerdict`], recorded on
//! the model version as the tag `drift.verdict` (`pass`, `warn` or `fail`) that the
//! promotion [`crate::Gate`] can require.
//!
//! The layer is pure: callers (the CLI) read datasets and fill [`DriftInput`].

mod config;
mod html;
mod input;
mod kinds;
pub mod ks;
mod report;
pub mod stats;

pub use config::{DriftConfig, Threshold, Thresholds};
pub use input::{DriftInput, NO_LABEL, words};
pub use kinds::{Direction, Feature, StatKind};
pub use report::{
    DriftReport, HTML_FILE, Histogram, JSON_FILE, ReportPaths, SCHEMA_VERSION, SampleSummary,
    Share, StatisticResult, drift_report, judge, write_report,
};

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The version tag holding the drift verdict.
pub const TAG_VERDICT: &str = "drift.verdict";

/// The outcome of a drift check, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftVerdict {
    /// Every statistic is within its threshold.
    Pass,
    /// Some statistic is near its threshold.
    Warn,
    /// Some statistic is past its threshold.
    Fail,
}

impl DriftVerdict {
    /// Parses `pass`, `warn` or `fail`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the text.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "pass" => Ok(Self::Pass),
            "warn" => Ok(Self::Warn),
            "fail" => Ok(Self::Fail),
            other => Err(Error::invalid(
                "drift verdict",
                format!("{other:?} is not pass, warn or fail"),
            )),
        }
    }
}

impl fmt::Display for DriftVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        })
    }
}
