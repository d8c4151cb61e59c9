//! The drift report: every statistic of a reference/current comparison judged against its
//! threshold, the overall [`DriftVerdict`], the distributions the HTML charts draw, and
//! the `drift.json`/`drift.html` files (`DESIGN.md`, "Drift report").

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::{DriftConfig, Threshold};
use super::input::DriftInput;
use super::kinds::{Direction, Feature, StatKind};
use super::{DriftVerdict, TAG_VERDICT, html, ks, stats};
use crate::error::{Error, Result};
use crate::fsutil;

/// The version of the `drift.json` layout.
pub const SCHEMA_VERSION: u32 = 1;
/// The file name of the JSON report.
pub const JSON_FILE: &str = "drift.json";
/// The file name of the HTML report.
pub const HTML_FILE: &str = "drift.html";
/// How many equal-width bins the length histograms have.
const HISTOGRAM_BINS: usize = 20;

/// One statistic of the report, judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatisticResult {
    /// `feature.statistic`, e.g. `labels.psi`.
    pub id: String,
    /// The feature compared.
    pub feature: Feature,
    /// The statistic.
    pub statistic: StatKind,
    /// The judged value.
    pub value: f64,
    /// Which way the value gets worse.
    pub direction: Direction,
    /// The thresholds it was judged against.
    pub threshold: Threshold,
    /// Its verdict.
    pub verdict: DriftVerdict,
    /// Companion numbers (the KS `D`, the raw Wasserstein distance, sample sizes).
    pub details: BTreeMap<String, f64>,
}

/// Sizes of one side of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSummary {
    /// Examples.
    pub examples: usize,
    /// Gold label occurrences (an unlabelled example counts once).
    pub label_occurrences: u64,
    /// Word occurrences.
    pub words: u64,
    /// Distinct words.
    pub vocabulary: usize,
    /// IOC occurrences.
    pub iocs: u64,
}

/// One category's share on both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// The category (label or IOC kind).
    pub category: String,
    /// Its share of the reference.
    pub reference: f64,
    /// Its share of the current data.
    pub current: f64,
}

/// A histogram of both sides over shared equal-width bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Bin edges, one more than the bins.
    pub edges: Vec<f64>,
    /// The reference's share in each bin.
    pub reference: Vec<f64>,
    /// The current data's share in each bin.
    pub current: Vec<f64>,
}

/// A drift report (`drift.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The worst verdict of any statistic.
    pub verdict: DriftVerdict,
    /// Sizes of the reference.
    pub reference: SampleSummary,
    /// Sizes of the current data.
    pub current: SampleSummary,
    /// Every statistic computed, in a fixed order.
    pub statistics: Vec<StatisticResult>,
    /// Statistics that could not be computed, and why (e.g. no IOCs on one side).
    pub skipped: Vec<String>,
    /// Gold label shares, most common first.
    pub labels: Vec<Share>,
    /// IOC-kind shares, most common first.
    pub ioc_kinds: Vec<Share>,
    /// Predicted label shares, most common first, when a model was given.
    pub predicted_labels: Option<Vec<Share>>,
    /// Text length histogram.
    pub text_chars: Histogram,
    /// Token count histogram, when both sides are tokenised.
    pub token_counts: Option<Histogram>,
    /// The configuration used.
    pub config: DriftConfig,
}

/// The files [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPaths {
    /// `DIR/drift.json`.
    pub json: PathBuf,
    /// `DIR/drift.html`.
    pub html: PathBuf,
}

/// Compares `current` with `reference` and judges every statistic.
///
/// # Errors
/// [`Error::Invalid`] when an input fails [`DriftInput::validate`], when predicted labels
/// are given for one side only, or when the configuration fails
/// [`DriftConfig::validate`].
pub fn drift_report(
    reference: &DriftInput,
    current: &DriftInput,
    config: &DriftConfig,
) -> Result<DriftReport> {
    config.validate("(in memory)")?;
    reference.validate("reference")?;
    current.validate("current")?;
    let mut b = Builder {
        config,
        statistics: Vec::new(),
        skipped: Vec::new(),
    };

    let labels = b.categorical(
        Feature::Labels,
        &reference.label_counts(),
        &current.label_counts(),
    );
    b.numeric(
        Feature::TextChars,
        &reference.text_chars,
        &current.text_chars,
    );
    let token_counts = match (&reference.token_counts, &current.token_counts) {
        (Some(r), Some(c)) => {
            b.numeric(Feature::TokenCounts, r, c);
            Some(histogram(r, c))
        }
        (None, None) => {
            b.skip(Feature::TokenCounts, "neither side has token counts");
            None
        }
        _ => {
            b.skip(Feature::TokenCounts, "only one side has token counts");
            None
        }
    };
    b.vocabulary(&reference.word_counts, &current.word_counts);
    let ioc_kinds = b.categorical(Feature::IocKinds, &reference.ioc_kinds, &current.ioc_kinds);
    let predicted_labels = match (
        reference.predicted_label_counts(),
        current.predicted_label_counts(),
    ) {
        (Some(r), Some(c)) => Some(b.categorical(Feature::PredictedLabels, &r, &c)),
        (None, None) => None,
        _ => {
            return Err(Error::invalid(
                "drift input predicted_labels",
                "given for one side only; predict on both the reference and the current data",
            ));
        }
    };

    let verdict = b
        .statistics
        .iter()
        .map(|s| s.verdict)
        .max()
        .unwrap_or(DriftVerdict::Pass);
    Ok(DriftReport {
        schema_version: SCHEMA_VERSION,
        verdict,
        reference: summary(reference),
        current: summary(current),
        statistics: b.statistics,
        skipped: b.skipped,
        labels,
        ioc_kinds,
        predicted_labels,
        text_chars: histogram(&reference.text_chars, &current.text_chars),
        token_counts,
        config: config.clone(),
    })
}

/// Judges `value` against `threshold`; NaN fails.
pub fn judge(value: f64, threshold: Threshold, direction: Direction) -> DriftVerdict {
    let (warn, fail) = match direction {
        Direction::HigherIsWorse => (value >= threshold.warn, value >= threshold.fail),
        Direction::LowerIsWorse => (value <= threshold.warn, value <= threshold.fail),
    };
    if fail || value.is_nan() {
        DriftVerdict::Fail
    } else if warn {
        DriftVerdict::Warn
    } else {
        DriftVerdict::Pass
    }
}

struct Builder<'a> {
    config: &'a DriftConfig,
    statistics: Vec<StatisticResult>,
    skipped: Vec<String>,
}

impl Builder<'_> {
    fn push(&mut self, feature: Feature, kind: StatKind, value: f64, details: &[(&str, f64)]) {
        let threshold = kind.threshold(self.config);
        self.statistics.push(StatisticResult {
            id: format!("{}.{}", feature.name(), kind.name()),
            feature,
            statistic: kind,
            value,
            direction: kind.direction(),
            threshold,
            verdict: judge(value, threshold, kind.direction()),
            details: details.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        });
    }

    fn skip(&mut self, feature: Feature, why: &str) {
        self.skipped.push(format!("{}: {why}", feature.name()));
    }

    /// PSI and JS distance over category counts; returns the shares for the charts.
    fn categorical(
        &mut self,
        feature: Feature,
        reference: &BTreeMap<String, u64>,
        current: &BTreeMap<String, u64>,
    ) -> Vec<Share> {
        let (names, r, c) = stats::aligned_shares(reference, current);
        let (rn, cn) = (
            reference.values().sum::<u64>(),
            current.values().sum::<u64>(),
        );
        if rn == 0 || cn == 0 {
            let side = if rn == 0 {
                "the reference"
            } else {
                "the current data"
            };
            self.skip(feature, &format!("no occurrences in {side}"));
        } else {
            let sizes = [("reference_count", rn as f64), ("current_count", cn as f64)];
            let psi = stats::psi(&r, &c, self.config.psi_epsilon);
            self.push(feature, StatKind::Psi, psi, &sizes);
            if let Some(js) = stats::js_distance(&r, &c) {
                self.push(feature, StatKind::JsDistance, js, &sizes);
            }
        }
        let mut shares: Vec<Share> = names
            .into_iter()
            .zip(r.into_iter().zip(c))
            .map(|(category, (reference, current))| Share {
                category,
                reference,
                current,
            })
            .collect();
        shares.sort_by(|a, b| {
            b.reference
                .max(b.current)
                .total_cmp(&a.reference.max(a.current))
                .then_with(|| a.category.cmp(&b.category))
        });
        shares
    }

    /// PSI on reference quantiles, KS and normalised Wasserstein of a numeric feature.
    fn numeric(&mut self, feature: Feature, reference: &[f64], current: &[f64]) {
        let sizes = [
            ("reference_count", reference.len() as f64),
            ("current_count", current.len() as f64),
        ];
        let c = self.config;
        if let Some(psi) = stats::psi_numeric(reference, current, c.numeric_bins, c.psi_epsilon) {
            self.push(feature, StatKind::Psi, psi, &sizes);
        }
        if let Some(t) = ks::ks_2samp(reference, current) {
            let details = [
                ("ks_statistic", t.statistic),
                ("effective_n", t.effective_n as f64),
                sizes[0],
                sizes[1],
            ];
            self.push(feature, StatKind::KsPvalue, t.pvalue, &details);
        }
        if let (Some(w), Some(norm)) = (
            stats::wasserstein(reference, current),
            stats::wasserstein_normalized(reference, current),
        ) {
            let sd = stats::population_std(reference);
            let details = [
                ("wasserstein", w),
                ("reference_std", sd),
                sizes[0],
                sizes[1],
            ];
            self.push(feature, StatKind::WassersteinNorm, norm, &details);
        }
    }

    fn vocabulary(&mut self, reference: &BTreeMap<String, u64>, current: &BTreeMap<String, u64>) {
        let sizes = [
            ("reference_vocabulary", reference.len() as f64),
            ("current_vocabulary", current.len() as f64),
        ];
        match stats::oov_rate(reference, current) {
            Some(v) => self.push(Feature::Vocabulary, StatKind::OovRate, v, &sizes),
            None => self.skip(Feature::Vocabulary, "the current data has no words"),
        }
        match stats::jaccard(reference, current) {
            Some(v) => self.push(Feature::Vocabulary, StatKind::VocabJaccard, v, &sizes),
            None => self.skip(Feature::Vocabulary, "neither side has words"),
        }
    }
}

fn summary(input: &DriftInput) -> SampleSummary {
    SampleSummary {
        examples: input.examples(),
        label_occurrences: input.label_counts().values().sum(),
        words: input.word_counts.values().sum(),
        vocabulary: input.word_counts.len(),
        iocs: input.ioc_kinds.values().sum(),
    }
}

/// Shares of both samples over [`HISTOGRAM_BINS`] equal-width bins spanning both (one
/// bin when every value is equal); the last bin includes its right edge.
fn histogram(reference: &[f64], current: &[f64]) -> Histogram {
    let all = reference.iter().chain(current);
    let lo = all.clone().copied().fold(f64::INFINITY, f64::min);
    let hi = all.copied().fold(f64::NEG_INFINITY, f64::max);
    let bins = if hi > lo { HISTOGRAM_BINS } else { 1 };
    let width = if hi > lo {
        (hi - lo) / bins as f64
    } else {
        1.0
    };
    let edges = (0..=bins).map(|i| lo + width * i as f64).collect();
    let shares = |x: &[f64]| {
        let mut counts = vec![0u64; bins];
        for &v in x {
            let i = (((v - lo) / width) as usize).min(bins - 1);
            counts[i] += 1;
        }
        let n = x.len().max(1) as f64;
        counts.into_iter().map(|k| k as f64 / n).collect()
    };
    Histogram {
        edges,
        reference: shares(reference),
        current: shares(current),
    }
}

impl DriftReport {
    /// The statistics that warned or failed, worst first.
    pub fn flagged(&self) -> Vec<&StatisticResult> {
        let mut v: Vec<_> = self
            .statistics
            .iter()
            .filter(|s| s.verdict != DriftVerdict::Pass)
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.verdict));
        v
    }

    /// The model-version tags summarising the report: `drift.verdict`, `drift.failed` and
    /// `drift.warned` (comma-separated statistic ids, `none` when empty) and
    /// `drift.<feature>.<statistic>` with each value to 6 significant digits.
    pub fn tags(&self) -> BTreeMap<String, String> {
        let ids = |v: DriftVerdict| {
            let ids: Vec<&str> = self
                .statistics
                .iter()
                .filter(|s| s.verdict == v)
                .map(|s| s.id.as_str())
                .collect();
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(",")
            }
        };
        let mut tags = BTreeMap::from([
            (TAG_VERDICT.to_string(), self.verdict.to_string()),
            ("drift.failed".to_string(), ids(DriftVerdict::Fail)),
            ("drift.warned".to_string(), ids(DriftVerdict::Warn)),
        ]);
        for s in &self.statistics {
            tags.insert(format!("drift.{}", s.id), format!("{:.6e}", s.value));
        }
        tags
    }
}

/// Writes `drift.json` and `drift.html` into `dir` (created if missing), each atomically.
///
/// # Errors
/// [`Error::Io`] naming the file or folder.
pub fn write_report(report: &DriftReport, dir: &Path) -> Result<ReportPaths> {
    let paths = ReportPaths {
        json: dir.join(JSON_FILE),
        html: dir.join(HTML_FILE),
    };
    let json = serde_json::to_vec_pretty(report)
        .map_err(|e| Error::invalid("drift report", format!("cannot serialise: {e}")))?;
    write_atomic(dir, &paths.json, &json)?;
    write_atomic(dir, &paths.html, html::render(report).as_bytes())?;
    tracing::info!(dir = %dir.display(), verdict = %report.verdict, "drift report written");
    Ok(paths)
}

fn write_atomic(dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut temp = fsutil::temp_in(dir)?;
    temp.write_all(bytes).map_err(|e| Error::io(dest, e))?;
    fsutil::persist(temp, dest)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn input(labels: &[&[&str]], texts: &[&str], iocs: &[(&str, u64)]) -> DriftInput {
        let mut i = DriftInput::default();
        for t in texts {
            i.add_text(t);
        }
        i.labels = labels
            .iter()
            .map(|l| l.iter().map(|s| s.to_string()).collect())
            .collect();
        i.ioc_kinds = iocs.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        i
    }

    #[test]
    fn identical_inputs_pass_everything() {
        let a = input(
            &[&["T1059"], &["T1566", "T1059"], &[]],
            &["powershell run", "phishing mail with powershell", "nothing"],
            &[("ipv4", 3), ("domain", 1)],
        );
        let r = drift_report(&a, &a, &DriftConfig::default()).unwrap();
        assert_eq!(r.verdict, DriftVerdict::Pass);
        let ids: Vec<&str> = r.statistics.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "labels.psi",
                "labels.js_distance",
                "text_chars.psi",
                "text_chars.ks_pvalue",
                "text_chars.wasserstein_norm",
                "vocabulary.oov_rate",
                "vocabulary.vocab_jaccard",
                "ioc_kinds.psi",
                "ioc_kinds.js_distance",
            ]
        );
        assert_eq!(r.skipped, ["token_counts: neither side has token counts"]);
        assert_eq!(r.labels[0].category, "T1059");
        assert_eq!(r.tags()["drift.verdict"], "pass");
        assert_eq!(r.tags()["drift.failed"], "none");
    }

    #[test]
    fn a_shifted_mix_fails_with_hand_computed_psi() {
        let a = input(&[&["A"], &["A"], &["B"], &["B"]], &["x"; 4], &[]);
        let b = input(&[&["A"], &["A"], &["A"], &["B"]], &["x"; 4], &[]);
        let r = drift_report(&a, &b, &DriftConfig::default()).unwrap();
        let psi = r.statistics.iter().find(|s| s.id == "labels.psi").unwrap();
        let want = 0.25 * (1.5f64).ln() + (-0.25) * (0.5f64).ln();
        assert!((psi.value - want).abs() < 1e-12);
        assert_eq!(psi.verdict, DriftVerdict::Fail); // 0.3747 > 0.25
        assert_eq!(r.verdict, DriftVerdict::Fail);
        assert!(r.tags()["drift.failed"].contains("labels.psi"));
        assert_eq!(r.flagged()[0].verdict, DriftVerdict::Fail);
        assert!(r.flagged().iter().all(|s| s.verdict != DriftVerdict::Pass));
        assert!(r.skipped.iter().any(|s| s.starts_with("ioc_kinds")));
    }

    #[test]
    fn verdicts_follow_direction() {
        let t = Threshold {
            warn: 0.1,
            fail: 0.25,
        };
        assert_eq!(judge(0.05, t, Direction::HigherIsWorse), DriftVerdict::Pass);
        assert_eq!(judge(0.1, t, Direction::HigherIsWorse), DriftVerdict::Warn);
        assert_eq!(judge(0.3, t, Direction::HigherIsWorse), DriftVerdict::Fail);
        let p = Threshold {
            warn: 0.05,
            fail: 0.01,
        };
        assert_eq!(judge(0.5, p, Direction::LowerIsWorse), DriftVerdict::Pass);
        assert_eq!(judge(0.02, p, Direction::LowerIsWorse), DriftVerdict::Warn);
        assert_eq!(judge(0.001, p, Direction::LowerIsWorse), DriftVerdict::Fail);
        assert_eq!(
            judge(f64::NAN, p, Direction::LowerIsWorse),
            DriftVerdict::Fail
        );
    }

    #[test]
    fn predictions_on_one_side_are_refused() {
        let a = input(&[&["A"]], &["x"], &[]);
        let mut b = a.clone();
        b.predicted_labels = Some(vec![vec!["A".into()]]);
        let err = drift_report(&a, &b, &DriftConfig::default()).unwrap_err();
        assert!(err.to_string().contains("predicted_labels"), "{err}");
        let r = drift_report(&b, &b, &DriftConfig::default()).unwrap();
        assert!(r.statistics.iter().any(|s| s.id == "predicted_labels.psi"));
    }

    #[test]
    fn files_are_written_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let a = input(&[&["A"], &["B"]], &["one two", "three"], &[("ipv4", 1)]);
        let r = drift_report(&a, &a, &DriftConfig::default()).unwrap();
        let paths = write_report(&r, &dir.path().join("out")).unwrap();
        let back: DriftReport =
            serde_json::from_slice(&std::fs::read(&paths.json).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(
            std::fs::read_to_string(&paths.html)
                .unwrap()
                .contains("drift report")
        );
        let leftovers = std::fs::read_dir(dir.path().join("out")).unwrap().count();
        assert_eq!(leftovers, 2);
    }
}
