//! Precision, recall and F1 from counts, with scikit-learn's `zero_division` convention
//! (<https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_recall_fscore_support.html>).

use serde::Serialize;

/// The value a ratio takes when its denominator is zero (scikit-learn's `zero_division`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum ZeroDivision {
    /// 0/0 counts as 0 (scikit-learn `zero_division=0`, and `"warn"`'s value).
    #[default]
    Zero,
    /// 0/0 counts as 1 (scikit-learn `zero_division=1`).
    One,
}

impl ZeroDivision {
    /// `numerator / denominator`, or this policy's value when the denominator is zero.
    pub fn divide(self, numerator: f64, denominator: f64) -> f64 {
        if denominator == 0.0 {
            match self {
                Self::Zero => 0.0,
                Self::One => 1.0,
            }
        } else {
            numerator / denominator
        }
    }
}

/// Precision, recall and F1 of one label, one type or one average.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Prf {
    /// True positives over predicted positives.
    pub precision: f64,
    /// True positives over reference positives.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

impl Prf {
    /// Scores from counts the way scikit-learn does: F1 is `2·tp / (2·tp + fp + fn)`
    /// computed directly from the counts (not from the rounded precision and recall).
    pub fn from_counts(tp: f64, predicted: f64, reference: f64, zd: ZeroDivision) -> Self {
        Self {
            precision: zd.divide(tp, predicted),
            recall: zd.divide(tp, reference),
            f1: zd.divide(2.0 * tp, reference + predicted),
        }
    }

    /// Scores from counts the way `seqeval` does: F1 is `2·p·r / (p + r)` from the
    /// precision and recall (0 when both are 0).
    pub fn from_counts_via_pr(tp: f64, predicted: f64, reference: f64, zd: ZeroDivision) -> Self {
        let precision = zd.divide(tp, predicted);
        let recall = zd.divide(tp, reference);
        Self {
            precision,
            recall,
            f1: harmonic(precision, recall),
        }
    }

    /// The unweighted mean of several scores (macro or sample averaging); NaN fields when
    /// `scores` is empty, as numpy's mean of an empty array.
    pub fn mean<'a>(scores: impl IntoIterator<Item = &'a Prf>) -> Self {
        let mut sum = Prf::default();
        let mut n = 0usize;
        for s in scores {
            sum.precision += s.precision;
            sum.recall += s.recall;
            sum.f1 += s.f1;
            n += 1;
        }
        let n = n as f64;
        Self {
            precision: sum.precision / n,
            recall: sum.recall / n,
            f1: sum.f1 / n,
        }
    }
}

/// `2·p·r / (p + r)`, or 0 when `p + r` is 0 (`rouge-score`'s and `seqeval`'s F-measure).
pub fn harmonic(precision: f64, recall: f64) -> f64 {
    let denom = precision + recall;
    if denom == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / denom
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_give_sklearn_style_scores() {
        let s = Prf::from_counts(2.0, 3.0, 4.0, ZeroDivision::Zero);
        assert_eq!(s.precision, 2.0 / 3.0);
        assert_eq!(s.recall, 0.5);
        assert_eq!(s.f1, 4.0 / 7.0);
        let empty = Prf::from_counts(0.0, 0.0, 0.0, ZeroDivision::One);
        assert_eq!((empty.precision, empty.recall, empty.f1), (1.0, 1.0, 1.0));
    }

    #[test]
    fn harmonic_of_zeroes_is_zero() {
        assert_eq!(harmonic(0.0, 0.0), 0.0);
        assert_eq!(harmonic(0.5, 1.0), 2.0 / 3.0);
        assert!(Prf::mean([]).f1.is_nan());
    }
}
