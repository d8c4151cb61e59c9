//! The vocabulary of a drift report: which [`Feature`] a statistic describes, which
//! statistic ([`StatKind`]) it is and which [`Direction`] is worse, with the snake_case
//! names that make up statistic ids (`labels.psi`), tags and config keys.

use serde::{Deserialize, Serialize};

use super::config::{DriftConfig, Threshold};

/// The feature a statistic describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// The gold label mix.
    Labels,
    /// Text length in characters.
    TextChars,
    /// Token count per example.
    TokenCounts,
    /// The word vocabulary.
    Vocabulary,
    /// The IOC-kind mix.
    IocKinds,
    /// The model's predicted label mix.
    PredictedLabels,
}

/// Which statistic a result holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatKind {
    /// Population Stability Index ([`crate::drift::stats::psi`],
    /// [`crate::drift::stats::psi_numeric`]).
    Psi,
    /// Jensen-Shannon distance, base 2 ([`crate::drift::stats::js_distance`]).
    JsDistance,
    /// Two-sample Kolmogorov-Smirnov p-value ([`crate::drift::ks::ks_2samp`]);
    /// `details.ks_statistic` holds `D`.
    KsPvalue,
    /// Wasserstein distance over the reference's standard deviation
    /// ([`crate::drift::stats::wasserstein_normalized`]); `details.wasserstein` holds the
    /// raw distance.
    WassersteinNorm,
    /// Out-of-vocabulary rate ([`crate::drift::stats::oov_rate`]).
    OovRate,
    /// Vocabulary Jaccard overlap ([`crate::drift::stats::jaccard`]).
    VocabJaccard,
}

impl StatKind {
    /// The snake_case name used in ids, tags and config keys.
    pub fn name(self) -> &'static str {
        match self {
            Self::Psi => "psi",
            Self::JsDistance => "js_distance",
            Self::KsPvalue => "ks_pvalue",
            Self::WassersteinNorm => "wasserstein_norm",
            Self::OovRate => "oov_rate",
            Self::VocabJaccard => "vocab_jaccard",
        }
    }

    /// Whether a larger value means more drift.
    pub fn direction(self) -> Direction {
        match self {
            Self::KsPvalue | Self::VocabJaccard => Direction::LowerIsWorse,
            _ => Direction::HigherIsWorse,
        }
    }

    /// This statistic's thresholds in `config`.
    pub fn threshold(self, config: &DriftConfig) -> Threshold {
        let t = &config.thresholds;
        match self {
            Self::Psi => t.psi,
            Self::JsDistance => t.js_distance,
            Self::KsPvalue => t.ks_pvalue,
            Self::WassersteinNorm => t.wasserstein_norm,
            Self::OovRate => t.oov_rate,
            Self::VocabJaccard => t.vocab_jaccard,
        }
    }
}

impl Feature {
    /// The snake_case name used in ids and tags.
    pub fn name(self) -> &'static str {
        match self {
            Self::Labels => "labels",
            Self::TextChars => "text_chars",
            Self::TokenCounts => "token_counts",
            Self::Vocabulary => "vocabulary",
            Self::IocKinds => "ioc_kinds",
            Self::PredictedLabels => "predicted_labels",
        }
    }
}

/// Which way a statistic gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Larger values mean more drift (distances, PSI, OOV rate).
    HigherIsWorse,
    /// Smaller values mean more drift (p-values, overlaps).
    LowerIsWorse,
}
