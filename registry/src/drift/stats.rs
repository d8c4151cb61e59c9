//! The distribution-distance statistics of a drift report, as plain functions over counts
//! and samples. Each states its formula and the conventional threshold that
//! [`crate::drift::DriftConfig`] uses by default.
//!
//! - Population Stability Index, [`psi`] over shares and [`psi_numeric`] over a numeric
//!   sample binned on the reference's quantiles (Siddiqi, *Credit Risk Scorecards*, 2006).
//! - Jensen-Shannon distance [`js_distance`], log base 2, as
//!   [`scipy.spatial.distance.jensenshannon(p, q, base=2)`](https://docs.scipy.org/doc/scipy/reference/generated/scipy.spatial.distance.jensenshannon.html).
//! - The 1-D Wasserstein distance [`wasserstein`], as
//!   [`scipy.stats.wasserstein_distance(u, v)`](https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.wasserstein_distance.html).
//! - Vocabulary: [`oov_rate`] and [`jaccard`].
//!
//! The Kolmogorov-Smirnov test is in [`crate::drift::ks`].

use std::collections::{BTreeMap, BTreeSet};

/// The share given to a bin that is empty on one side before PSI takes its logarithm, so
/// an empty bin counts as a large but finite shift instead of an infinite one.
pub const PSI_EPSILON: f64 = 1e-4;

/// The number of bins [`psi_numeric`] cuts the reference into by default (deciles).
pub const DEFAULT_NUMERIC_BINS: usize = 10;

/// Turns category counts into shares over the union of both sides' categories; the two
/// returned vectors are aligned with the returned category names (sorted). A side with no
/// counts at all gets all-zero shares.
pub fn aligned_shares(
    reference: &BTreeMap<String, u64>,
    current: &BTreeMap<String, u64>,
) -> (Vec<String>, Vec<f64>, Vec<f64>) {
    let names: BTreeSet<&String> = reference.keys().chain(current.keys()).collect();
    let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>() as f64;
    let (rt, ct) = (total(reference), total(current));
    let share = |m: &BTreeMap<String, u64>, t: f64, k: &String| {
        if t > 0.0 {
            m.get(k).copied().unwrap_or(0) as f64 / t
        } else {
            0.0
        }
    };
    let r = names.iter().map(|k| share(reference, rt, k)).collect();
    let c = names.iter().map(|k| share(current, ct, k)).collect();
    (names.into_iter().cloned().collect(), r, c)
}

/// Population Stability Index between reference shares `r` and current shares `c` (aligned
/// bins, each summing to 1):
///
/// `PSI = Σ_i (c_i − r_i) · ln(c_i / r_i)`, where a share below `epsilon` is replaced by
/// `epsilon` (see [`PSI_EPSILON`]) on both sides of the product.
///
/// Convention: PSI < 0.1 no significant shift, 0.1–0.25 moderate shift, > 0.25 significant
/// shift. Symmetric in `r` and `c`, zero for identical shares.
pub fn psi(r: &[f64], c: &[f64], epsilon: f64) -> f64 {
    r.iter()
        .zip(c)
        .map(|(&r, &c)| {
            let (r, c) = (r.max(epsilon), c.max(epsilon));
            (c - r) * (c / r).ln()
        })
        .sum()
}

/// The cut points of [`psi_numeric`]: the reference's quantiles at `i / bins` for
/// `i = 1..bins` (linear interpolation between order statistics, numpy's default
/// `np.quantile(method="linear")`), with repeated cut points removed so a heavily tied
/// reference yields fewer, non-empty bins. `sorted` must be sorted ascending and non-empty.
pub fn quantile_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    let mut edges: Vec<f64> = (1..bins)
        .map(|i| quantile_sorted(sorted, i as f64 / bins as f64))
        .collect();
    edges.dedup();
    edges
}

/// The `q`-quantile of an ascending, non-empty sample by linear interpolation between
/// order statistics at position `q · (n − 1)`.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    match (sorted.get(lo), sorted.get(hi)) {
        (Some(&a), Some(&b)) => a + (b - a) * frac,
        (Some(&a), None) => a,
        _ => f64::NAN,
    }
}

/// Shares of `sample` falling in each bin delimited by `edges`: bin 0 is `(-∞, e_0]`, bin
/// `i` is `(e_{i-1}, e_i]`, the last is `(e_last, ∞)` (numpy
/// `searchsorted(edges, x, side="left")`). An empty sample gets all-zero shares.
pub fn bin_shares(sample: &[f64], edges: &[f64]) -> Vec<f64> {
    let mut counts = vec![0u64; edges.len() + 1];
    for &x in sample {
        counts[edges.partition_point(|&e| e < x)] += 1;
    }
    let n = sample.len().max(1) as f64;
    counts.into_iter().map(|k| k as f64 / n).collect()
}

/// PSI of a numeric feature: [`psi`] over [`bin_shares`] of both samples, the bins cut at
/// the reference's [`quantile_edges`] (`bins` of them, 10 by default, so each holds about
/// a tenth of the reference). `None` when either sample is empty.
pub fn psi_numeric(reference: &[f64], current: &[f64], bins: usize, epsilon: f64) -> Option<f64> {
    if reference.is_empty() || current.is_empty() {
        return None;
    }
    let sorted = sorted_copy(reference);
    let edges = quantile_edges(&sorted, bins.max(1));
    Some(psi(
        &bin_shares(reference, &edges),
        &bin_shares(current, &edges),
        epsilon,
    ))
}

/// Jensen-Shannon distance with log base 2, in `[0, 1]`:
///
/// `JSD(p, q) = sqrt( (KL(p ‖ m) + KL(q ‖ m)) / 2 )`, `m = (p + q) / 2`,
/// `KL(a ‖ b) = Σ a_i log2(a_i / b_i)` over `a_i > 0`, after `p` and `q` are each divided
/// by their sum. `None` when either side sums to zero.
///
/// No single convention exists for its threshold; 0.1 is the common default for a
/// categorical feature (e.g. Evidently's), and this crate fails past 0.2.
pub fn js_distance(p: &[f64], q: &[f64]) -> Option<f64> {
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    if sp <= 0.0 || sq <= 0.0 || !sp.is_finite() || !sq.is_finite() {
        return None;
    }
    let kl_half = |a: f64, b: f64| if a > 0.0 { a * (a / b).ln() } else { 0.0 };
    let total: f64 = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (a / sp, b / sq);
            let m = (a + b) / 2.0;
            kl_half(a, m) + kl_half(b, m)
        })
        .sum();
    Some((total / std::f64::consts::LN_2 / 2.0).max(0.0).sqrt())
}

/// The 1-D Wasserstein (earth mover's) distance between two empirical distributions:
///
/// `W1(u, v) = ∫ |F_u(x) − F_v(x)| dx`, the area between the empirical CDFs, computed
/// exactly over the merged sorted sample. In the units of the data; see
/// [`wasserstein_normalized`] for the judged, scale-free form. `None` when either sample
/// is empty.
pub fn wasserstein(u: &[f64], v: &[f64]) -> Option<f64> {
    if u.is_empty() || v.is_empty() {
        return None;
    }
    let (us, vs) = (sorted_copy(u), sorted_copy(v));
    let mut all: Vec<f64> = us.iter().chain(&vs).copied().collect();
    all.sort_by(f64::total_cmp);
    let (nu, nv) = (us.len() as f64, vs.len() as f64);
    let mut area = 0.0;
    for pair in all.windows(2) {
        let x = pair[0];
        let fu = us.partition_point(|&a| a <= x) as f64 / nu;
        let fv = vs.partition_point(|&a| a <= x) as f64 / nv;
        area += (fu - fv).abs() * (pair[1] - pair[0]);
    }
    Some(area)
}

/// [`wasserstein`] divided by the reference's population standard deviation, so a value
/// of 0.1 means the mass moved a tenth of a reference standard deviation on average. A
/// constant reference divides by 1 instead. Convention: 0.1 is the usual drift threshold
/// for this normed form (Evidently's default).
pub fn wasserstein_normalized(reference: &[f64], current: &[f64]) -> Option<f64> {
    let w = wasserstein(reference, current)?;
    let sd = population_std(reference);
    Some(if sd > 0.0 { w / sd } else { w })
}

/// Population standard deviation (divides by `n`); 0 for fewer than two values.
pub fn population_std(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// Out-of-vocabulary rate: the share of current token occurrences whose word never occurs
/// in the reference, `Σ_{w ∉ V_ref} count_cur(w) / Σ_w count_cur(w)`. `None` when the
/// current side has no tokens.
pub fn oov_rate(reference: &BTreeMap<String, u64>, current: &BTreeMap<String, u64>) -> Option<f64> {
    let total: u64 = current.values().sum();
    if total == 0 {
        return None;
    }
    let unseen: u64 = current
        .iter()
        .filter(|(w, _)| !reference.contains_key(*w))
        .map(|(_, &n)| n)
        .sum();
    Some(unseen as f64 / total as f64)
}

/// Jaccard overlap of the two vocabularies (distinct words), `|V_ref ∩ V_cur| / |V_ref ∪
/// V_cur|`, in `[0, 1]`. `None` when both are empty.
pub fn jaccard(reference: &BTreeMap<String, u64>, current: &BTreeMap<String, u64>) -> Option<f64> {
    let inter = current
        .keys()
        .filter(|w| reference.contains_key(*w))
        .count();
    let union = reference.len() + current.len() - inter;
    (union > 0).then(|| inter as f64 / union as f64)
}

/// A sorted copy (total order; callers reject NaN before).
pub fn sorted_copy(x: &[f64]) -> Vec<f64> {
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn psi_by_hand() {
        // (0.6-0.5)ln(0.6/0.5) + (0.4-0.5)ln(0.4/0.5)
        let want = 0.1 * (1.2f64).ln() + (-0.1) * (0.8f64).ln();
        close(psi(&[0.5, 0.5], &[0.6, 0.4], PSI_EPSILON), want);
        close(psi(&[0.3, 0.7], &[0.3, 0.7], PSI_EPSILON), 0.0);
        // An empty bin is floored at epsilon: (1e-4 - 0.5) ln(1e-4/0.5) + (1 - 0.5) ln(2).
        let want = (1e-4 - 0.5) * (1e-4f64 / 0.5).ln() + 0.5 * 2f64.ln();
        close(psi(&[0.5, 0.5], &[0.0, 1.0], PSI_EPSILON), want);
    }

    #[test]
    fn shares_align_over_the_union() {
        let (names, r, c) = aligned_shares(
            &counts(&[("a", 1), ("b", 3)]),
            &counts(&[("b", 1), ("c", 1)]),
        );
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(r, [0.25, 0.75, 0.0]);
        assert_eq!(c, [0.0, 0.5, 0.5]);
    }

    #[test]
    fn quantiles_and_bins() {
        let x: Vec<f64> = (1..=11).map(f64::from).collect();
        // positions 0.1*10 = 1 .. 9 → values 2..10
        assert_eq!(
            quantile_edges(&x, 10),
            (2..=10).map(f64::from).collect::<Vec<_>>()
        );
        close(quantile_sorted(&[1.0, 2.0], 0.25), 1.25);
        assert_eq!(quantile_edges(&[5.0; 20], 10), [5.0]);
        assert_eq!(
            bin_shares(&[1.0, 2.0, 3.0, 9.0], &[2.0, 5.0]),
            [0.5, 0.25, 0.25]
        );
        close(
            psi_numeric(&x, &x, 10, PSI_EPSILON).unwrap_or(f64::NAN),
            0.0,
        );
        assert!(psi_numeric(&x, &[], 10, PSI_EPSILON).is_none());
    }

    #[test]
    fn js_by_hand() {
        // Disjoint supports: distance 1 in base 2.
        close(
            js_distance(&[1.0, 0.0], &[0.0, 1.0]).unwrap_or(f64::NAN),
            1.0,
        );
        close(
            js_distance(&[2.0, 2.0], &[1.0, 1.0]).unwrap_or(f64::NAN),
            0.0,
        );
        // p=(1,0), q=(1/2,1/2): m=(3/4,1/4);
        // KL(p‖m)=log2(4/3), KL(q‖m)=1/2 log2(2/3)+1/2 log2(2).
        let kl = (4.0f64 / 3.0).log2() + 0.5 * (2.0f64 / 3.0).log2() + 0.5;
        close(
            js_distance(&[1.0, 0.0], &[0.5, 0.5]).unwrap_or(f64::NAN),
            (kl / 2.0).sqrt(),
        );
        assert!(js_distance(&[0.0], &[1.0]).is_none());
    }

    #[test]
    fn wasserstein_by_hand() {
        close(wasserstein(&[0.0], &[3.0]).unwrap_or(f64::NAN), 3.0);
        // u={0,2}, v={1}: on [0,1) |1/2 - 0| = 1/2, on [1,2) |1/2 - 1| = 1/2 → 1.
        close(wasserstein(&[0.0, 2.0], &[1.0]).unwrap_or(f64::NAN), 1.0);
        close(
            wasserstein(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap_or(f64::NAN),
            0.0,
        );
        // reference {0, 2}: sd 1; shifted by 1 everywhere → W = 1, normalised 1.
        close(
            wasserstein_normalized(&[0.0, 2.0], &[1.0, 3.0]).unwrap_or(f64::NAN),
            1.0,
        );
        assert!(wasserstein(&[], &[1.0]).is_none());
    }

    #[test]
    fn vocabulary_by_hand() {
        let r = counts(&[("apt", 3), ("c2", 1)]);
        let c = counts(&[("apt", 2), ("beacon", 2)]);
        close(oov_rate(&r, &c).unwrap_or(f64::NAN), 0.5);
        close(jaccard(&r, &c).unwrap_or(f64::NAN), 1.0 / 3.0);
        assert!(oov_rate(&r, &BTreeMap::new()).is_none());
        assert!(jaccard(&BTreeMap::new(), &BTreeMap::new()).is_none());
    }
}
