//! The drift configuration (`drift.toml`): a warn/fail threshold pair per statistic, the
//! number of numeric PSI bins and the PSI epsilon, with the conventional defaults of
//! [`crate::drift::stats`] and [`crate::drift::ks`]. Every key is optional; unknown keys
//! are refused.
//!
//! ```toml
//! numeric_bins = 10      # PSI bins on the reference's quantiles
//! psi_epsilon = 1e-4     # share given to empty bins
//! [thresholds]
//! psi = { warn = 0.1, fail = 0.25 }
//! ks_pvalue = { warn = 0.05, fail = 0.01 }   # lower is worse
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::kinds::Direction;
use super::stats::{DEFAULT_NUMERIC_BINS, PSI_EPSILON};
use crate::error::{Error, Result};

/// When a statistic warns and when it fails. For a statistic where higher is worse the
/// verdict is `warn` at `value ≥ warn` and `fail` at `value ≥ fail`; where lower is worse
/// (KS p-value, vocabulary overlap), at `value ≤ warn` and `value ≤ fail`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// The value at which the statistic warns.
    pub warn: f64,
    /// The value at which the statistic fails.
    pub fail: f64,
}

impl Threshold {
    const fn new(warn: f64, fail: f64) -> Self {
        Self { warn, fail }
    }
}

/// The threshold pair of each statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Population Stability Index, categorical and numeric. Default warn 0.1, fail 0.25
    /// (the credit-scoring convention: < 0.1 stable, 0.1–0.25 moderate, > 0.25 significant).
    pub psi: Threshold,
    /// Jensen-Shannon distance (base 2). Default warn 0.1, fail 0.2.
    pub js_distance: Threshold,
    /// Kolmogorov-Smirnov p-value (lower is worse). Default warn 0.05, fail 0.01.
    pub ks_pvalue: Threshold,
    /// Wasserstein distance over the reference's standard deviation. Default warn 0.1,
    /// fail 0.2.
    pub wasserstein_norm: Threshold,
    /// Share of current tokens unseen in the reference. Default warn 0.1, fail 0.25; no
    /// published convention exists, and CTI text (hashes, addresses) runs high.
    pub oov_rate: Threshold,
    /// Jaccard overlap of the vocabularies (lower is worse). Default warn 0.2, fail 0.05;
    /// overlap falls with sample size, so the defaults only catch a different language
    /// or domain.
    pub vocab_jaccard: Threshold,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            psi: Threshold::new(0.1, 0.25),
            js_distance: Threshold::new(0.1, 0.2),
            ks_pvalue: Threshold::new(0.05, 0.01),
            wasserstein_norm: Threshold::new(0.1, 0.2),
            oov_rate: Threshold::new(0.1, 0.25),
            vocab_jaccard: Threshold::new(0.2, 0.05),
        }
    }
}

/// The drift configuration; [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// How many quantile bins numeric PSI cuts the reference into (default 10, deciles).
    pub numeric_bins: usize,
    /// The share an empty PSI bin is floored at (default 1e-4).
    pub psi_epsilon: f64,
    /// The threshold pairs.
    pub thresholds: Thresholds,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            numeric_bins: DEFAULT_NUMERIC_BINS,
            psi_epsilon: PSI_EPSILON,
            thresholds: Thresholds::default(),
        }
    }
}

impl DriftConfig {
    /// Parses and validates TOML; `origin` names the source in errors.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `origin` and the key: a syntax error, an unknown key, or
    /// every out-of-range value at once.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let config: Self = toml::from_str(text)
            .map_err(|e| Error::invalid(format!("drift config {origin}"), e.to_string()))?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads [`Self::from_toml_str`] from a file.
    ///
    /// # Errors
    /// [`Error::Io`] if unreadable; [`Error::Invalid`] as [`Self::from_toml_str`].
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Checks every value, listing all problems.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `origin` and each bad key.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let mut problems = Vec::new();
        if !(2..=1000).contains(&self.numeric_bins) {
            problems.push(format!(
                "numeric_bins = {} (expected 2..=1000)",
                self.numeric_bins
            ));
        }
        if !(self.psi_epsilon > 0.0 && self.psi_epsilon < 0.5) {
            problems.push(format!(
                "psi_epsilon = {} (expected 0 < ε < 0.5)",
                self.psi_epsilon
            ));
        }
        let t = &self.thresholds;
        let pairs = [
            ("psi", t.psi, Direction::HigherIsWorse),
            ("js_distance", t.js_distance, Direction::HigherIsWorse),
            ("ks_pvalue", t.ks_pvalue, Direction::LowerIsWorse),
            (
                "wasserstein_norm",
                t.wasserstein_norm,
                Direction::HigherIsWorse,
            ),
            ("oov_rate", t.oov_rate, Direction::HigherIsWorse),
            ("vocab_jaccard", t.vocab_jaccard, Direction::LowerIsWorse),
        ];
        for (name, th, dir) in pairs {
            if !th.warn.is_finite() || !th.fail.is_finite() || th.warn < 0.0 || th.fail < 0.0 {
                problems.push(format!(
                    "thresholds.{name}: warn and fail must be finite and non-negative"
                ));
                continue;
            }
            match dir {
                Direction::HigherIsWorse if th.warn > th.fail => problems.push(format!(
                    "thresholds.{name}: warn {} above fail {} (higher is worse, so warn ≤ fail)",
                    th.warn, th.fail
                )),
                Direction::LowerIsWorse if th.warn < th.fail => problems.push(format!(
                    "thresholds.{name}: warn {} below fail {} (lower is worse, so warn ≥ fail)",
                    th.warn, th.fail
                )),
                _ => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(
                format!("drift config {origin}"),
                problems.join("; "),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults_and_keys_override() {
        assert_eq!(
            DriftConfig::from_toml_str("", "t").ok(),
            Some(DriftConfig::default())
        );
        let c = DriftConfig::from_toml_str(
            "numeric_bins = 5\n[thresholds]\npsi = { warn = 0.2, fail = 0.3 }\n",
            "t",
        )
        .unwrap_or_default();
        assert_eq!(c.numeric_bins, 5);
        assert_eq!(c.thresholds.psi, Threshold::new(0.2, 0.3));
        assert_eq!(c.thresholds.ks_pvalue, Threshold::new(0.05, 0.01));
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let err = DriftConfig::from_toml_str("bins = 3\n", "d.toml").map(|_| ());
        assert!(format!("{err:?}").contains("bins"), "{err:?}");
        let err = DriftConfig::from_toml_str(
            "numeric_bins = 1\n[thresholds]\npsi = { warn = 0.3, fail = 0.1 }\n\
             ks_pvalue = { warn = 0.01, fail = 0.05 }\n",
            "d.toml",
        )
        .map(|_| ());
        let text = format!("{err:?}");
        for needle in [
            "d.toml",
            "numeric_bins",
            "thresholds.psi",
            "thresholds.ks_pvalue",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        let err = DriftConfig::from_toml_str("[thresholds]\npsi = { warn = 0.1 }\n", "x");
        assert!(format!("{err:?}").contains("fail"), "{err:?}");
    }
}
