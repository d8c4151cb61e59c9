//! Multi-label classification metrics (ATT&CK technique prediction), computed exactly as
//! scikit-learn does on `MultiLabelBinarizer` output over the union of predicted and
//! reference labels:
//! [`precision_recall_fscore_support`](https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_recall_fscore_support.html)
//! with `average` in `micro` / `macro` / `samples` / `None`, `accuracy_score` (subset
//! accuracy) and `hamming_loss`.
//!
//! Conventions (those of scikit-learn with an explicit `zero_division`):
//! - each sample's labels are a set: duplicates within a sample count once;
//! - the label space is the union of every label seen in a reference or a prediction, so a
//!   label that is only ever predicted contributes a 0 to the macro average;
//! - macro = unweighted mean over those labels of per-label P, R and F1; F1 per label is
//!   `2·tp / (2·tp + fp + fn)`;
//! - samples = unweighted mean over samples of per-sample P, R and F1; a sample whose
//!   reference and prediction are both empty scores the `zero_division` value.
//!
//! Label roll-up (e.g. sub-technique `T1059.001` to its parent `T1059`) is the caller's
//! closure, passed to [`multi_label_mapped`].

use std::collections::BTreeMap;
use std::fmt::Display;

use serde::Serialize;

use super::prf::{Prf, ZeroDivision};
use crate::{Error, Result};

/// Scores of one label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScores<L> {
    /// The label.
    pub label: L,
    /// Precision, recall and F1 of this label.
    #[serde(flatten)]
    pub scores: Prf,
    /// Samples whose reference has this label.
    pub support: usize,
    /// Samples whose prediction has this label.
    pub predicted: usize,
    /// Samples where both have it.
    pub true_positives: usize,
}

/// Every multi-label metric of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultiLabelReport<L> {
    /// Number of samples.
    pub n_samples: usize,
    /// Number of distinct labels (union of references and predictions).
    pub n_labels: usize,
    /// Micro-averaged scores (from summed counts).
    pub micro: Prf,
    /// Macro-averaged scores (mean over labels); NaN when there are no labels.
    pub macro_avg: Prf,
    /// Sample-averaged scores (mean over samples).
    pub samples: Prf,
    /// Fraction of samples whose predicted set equals the reference set.
    pub exact_match: f64,
    /// Fraction of wrong (sample, label) cells, as `sklearn.metrics.hamming_loss`.
    pub hamming_loss: f64,
    /// Summed true positives.
    pub true_positives: usize,
    /// Summed false positives.
    pub false_positives: usize,
    /// Summed false negatives.
    pub false_negatives: usize,
    /// Per-label scores, sorted by label.
    pub per_label: Vec<LabelScores<L>>,
}

/// Options of [`multi_label`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MultiLabelOptions {
    /// The value of 0/0 ratios (scikit-learn `zero_division`).
    pub zero_division: ZeroDivision,
}

/// Scores predicted label sets against reference label sets, sample by sample.
///
/// # Errors
/// [`Error::LengthMismatch`] when the slices differ in length, [`Error::Empty`] when they
/// are empty.
pub fn multi_label<L, P, R>(
    predicted: &[P],
    reference: &[R],
    options: MultiLabelOptions,
) -> Result<MultiLabelReport<L>>
where
    L: Ord + Clone + Display,
    P: AsRef<[L]>,
    R: AsRef<[L]>,
{
    multi_label_mapped(predicted, reference, options, |l: &L| l.clone())
}

/// As [`multi_label`], after mapping every label through `map` (for a roll-up such as
/// sub-technique to parent technique; labels that map to the same value merge).
///
/// # Errors
/// As [`multi_label`].
pub fn multi_label_mapped<L, M, P, R, F>(
    predicted: &[P],
    reference: &[R],
    options: MultiLabelOptions,
    map: F,
) -> Result<MultiLabelReport<M>>
where
    M: Ord + Clone + Display,
    P: AsRef<[L]>,
    R: AsRef<[L]>,
    F: Fn(&L) -> M,
{
    if predicted.len() != reference.len() {
        return Err(Error::LengthMismatch {
            what: "multi-label samples".into(),
            left: predicted.len(),
            right: reference.len(),
        });
    }
    if predicted.is_empty() {
        return Err(Error::Empty {
            metric: "multi-label classification",
        });
    }
    let to_set = |labels: &[L]| {
        let mut v: Vec<M> = labels.iter().map(&map).collect();
        v.sort();
        v.dedup();
        v
    };
    let pairs: Vec<(Vec<M>, Vec<M>)> = predicted
        .iter()
        .zip(reference)
        .map(|(p, r)| (to_set(p.as_ref()), to_set(r.as_ref())))
        .collect();
    Ok(score_sets(&pairs, options.zero_division))
}

/// Per-label counts: (true positives, predicted, reference).
type Counts = (usize, usize, usize);

fn score_sets<M: Ord + Clone>(pairs: &[(Vec<M>, Vec<M>)], zd: ZeroDivision) -> MultiLabelReport<M> {
    let mut per_label: BTreeMap<M, Counts> = BTreeMap::new();
    let mut sample_scores = Vec::with_capacity(pairs.len());
    let mut exact = 0usize;
    for (pred, gold) in pairs {
        let tp = count_common(pred, gold);
        for l in pred {
            let c = per_label.entry(l.clone()).or_default();
            c.1 += 1;
            if gold.binary_search(l).is_ok() {
                c.0 += 1;
            }
        }
        for l in gold {
            per_label.entry(l.clone()).or_default().2 += 1;
        }
        if pred == gold {
            exact += 1;
        }
        sample_scores.push(Prf::from_counts(
            tp as f64,
            pred.len() as f64,
            gold.len() as f64,
            zd,
        ));
    }
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    let labels: Vec<LabelScores<M>> = per_label
        .into_iter()
        .map(|(label, (t, p, r))| {
            tp += t;
            fp += p - t;
            fn_ += r - t;
            LabelScores {
                label,
                scores: Prf::from_counts(t as f64, p as f64, r as f64, zd),
                support: r,
                predicted: p,
                true_positives: t,
            }
        })
        .collect();
    let n = pairs.len();
    let cells = n * labels.len();
    MultiLabelReport {
        n_samples: n,
        n_labels: labels.len(),
        micro: Prf::from_counts(tp as f64, (tp + fp) as f64, (tp + fn_) as f64, zd),
        macro_avg: Prf::mean(labels.iter().map(|l| &l.scores)),
        samples: Prf::mean(&sample_scores),
        exact_match: exact as f64 / n as f64,
        hamming_loss: if cells == 0 {
            0.0
        } else {
            (fp + fn_) as f64 / cells as f64
        },
        true_positives: tp,
        false_positives: fp,
        false_negatives: fn_,
        per_label: labels,
    }
}

/// Size of the intersection of two sorted, de-duplicated slices.
fn count_common<M: Ord>(a: &[M], b: &[M]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// Worked by hand and checked against scikit-learn 1.9:
    /// y_true = [{a,b}, {c}, {a}], y_pred = [{a}, {c,b}, {}].
    #[test]
    fn hand_computed_example() {
        let gold = [s(&["a", "b"]), s(&["c"]), s(&["a"])];
        let pred = [s(&["a"]), s(&["c", "b"]), s(&[])];
        let r = multi_label(&pred, &gold, MultiLabelOptions::default()).unwrap();
        // tp = 2 (a in sample 0, c in sample 1), predicted 3, reference 4.
        assert_eq!(
            (r.true_positives, r.false_positives, r.false_negatives),
            (2, 1, 2)
        );
        assert_eq!(r.micro.precision, 2.0 / 3.0);
        assert_eq!(r.micro.recall, 0.5);
        assert_eq!(r.micro.f1, 4.0 / 7.0);
        // a: p 1, r 1/2, f 2/3; b: 0,0,0; c: 1,1,1.
        assert!((r.macro_avg.f1 - (2.0 / 3.0 + 1.0) / 3.0).abs() < 1e-15);
        assert!((r.macro_avg.recall - 0.5).abs() < 1e-15);
        // samples: f = 2/3, 2/3, 0.
        assert!((r.samples.f1 - 4.0 / 9.0).abs() < 1e-15);
        assert_eq!(r.exact_match, 0.0);
        assert_eq!(r.hamming_loss, 3.0 / 9.0);
        assert_eq!(r.per_label[1].label, "b");
        assert_eq!(r.per_label[1].support, 1);
    }

    #[test]
    fn mapping_rolls_up_and_duplicates_count_once() {
        let gold = [s(&["T1059.001"])];
        let pred = [s(&["T1059.003", "T1059"])];
        let parent = |l: &String| l.split('.').next().unwrap_or(l).to_string();
        let r = multi_label_mapped(&pred, &gold, MultiLabelOptions::default(), parent).unwrap();
        assert_eq!(r.micro.f1, 1.0);
        assert_eq!(r.exact_match, 1.0);
        let raw = multi_label(&pred, &gold, MultiLabelOptions::default()).unwrap();
        assert_eq!(raw.micro.f1, 0.0);
        assert_eq!(raw.n_labels, 3);
    }

    #[test]
    fn empty_samples_follow_zero_division() {
        let gold = [s(&[]), s(&["x"])];
        let pred = [s(&[]), s(&["x"])];
        let zero = multi_label(&pred, &gold, MultiLabelOptions::default()).unwrap();
        assert_eq!(zero.samples.f1, 0.5);
        let one = MultiLabelOptions {
            zero_division: ZeroDivision::One,
        };
        assert_eq!(multi_label(&pred, &gold, one).unwrap().samples.f1, 1.0);
        assert_eq!(zero.exact_match, 1.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        let one = [s(&["a"])];
        let none: [Vec<String>; 0] = [];
        assert!(matches!(
            multi_label(&one, &none, MultiLabelOptions::default()),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(matches!(
            multi_label(&none, &none, MultiLabelOptions::default()),
            Err(Error::Empty { .. })
        ));
    }
}
