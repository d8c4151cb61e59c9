//! Paired bootstrap resampling for the difference of a metric between two systems scored
//! on the same samples (Koehn, "Statistical Significance Tests for Machine Translation
//! Evaluation", 2004, <https://aclanthology.org/W04-3250/>; Efron & Tibshirani 1993).
//!
//! Each resample draws `n` sample indices with replacement from a seeded ChaCha8 stream
//! and recomputes both systems' metric on the same indices, so corpus-level metrics (micro
//! F1, BLEU) are resampled correctly, not just averages. The interval is the percentile
//! interval of `candidate − baseline` (numpy's default linear interpolation), and the
//! p-value is one-sided: the share of resamples where the candidate is not better,
//! `(#{δ* ≤ 0} + 1) / (B + 1)`.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::Serialize;

use crate::{Error, Result};

/// Settings of a bootstrap run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BootstrapConfig {
    /// Number of resamples `B`.
    pub resamples: usize,
    /// Seed of the index stream; the same seed gives the same intervals.
    pub seed: u64,
    /// Two-sided confidence level of the interval, in (0, 1).
    pub confidence: f64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            resamples: 1000,
            seed: 12345,
            confidence: 0.95,
        }
    }
}

/// The outcome of [`paired_bootstrap`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedBootstrap {
    /// The baseline's metric on all samples.
    pub baseline: f64,
    /// The candidate's metric on all samples.
    pub candidate: f64,
    /// `candidate − baseline` on all samples.
    pub delta: f64,
    /// Mean of the resampled deltas.
    pub delta_mean: f64,
    /// Lower end of the percentile interval of the delta.
    pub low: f64,
    /// Upper end of the percentile interval of the delta.
    pub high: f64,
    /// One-sided p-value of "the candidate is not better".
    pub p_value: f64,
    /// The settings used.
    pub config: BootstrapConfig,
}

/// Runs a paired bootstrap over `n_samples` samples. `metric(indices)` returns
/// `(baseline, candidate)` computed on the samples at `indices` (repeats included).
///
/// # Errors
/// [`Error::Empty`] without samples; [`Error::InvalidValue`] for zero resamples or a
/// confidence outside (0, 1).
pub fn paired_bootstrap<F>(
    n_samples: usize,
    config: &BootstrapConfig,
    mut metric: F,
) -> Result<PairedBootstrap>
where
    F: FnMut(&[usize]) -> (f64, f64),
{
    if n_samples == 0 {
        return Err(Error::Empty {
            metric: "paired bootstrap",
        });
    }
    if config.resamples == 0 {
        return Err(Error::InvalidValue {
            what: "bootstrap resamples".into(),
            value: "0".into(),
            expected: "at least 1 resample",
        });
    }
    if !(config.confidence > 0.0 && config.confidence < 1.0) {
        return Err(Error::InvalidValue {
            what: "bootstrap confidence".into(),
            value: config.confidence.to_string(),
            expected: "a level strictly between 0 and 1, e.g. 0.95",
        });
    }
    let all: Vec<usize> = (0..n_samples).collect();
    let (baseline, candidate) = metric(&all);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut indices = vec![0usize; n_samples];
    let mut deltas = Vec::with_capacity(config.resamples);
    for _ in 0..config.resamples {
        for slot in indices.iter_mut() {
            *slot = uniform_below(&mut rng, n_samples as u64) as usize;
        }
        let (b, c) = metric(&indices);
        deltas.push(c - b);
    }
    let not_better = deltas.iter().filter(|d| **d <= 0.0).count();
    let delta_mean = deltas.iter().sum::<f64>() / deltas.len() as f64;
    deltas.sort_by(f64::total_cmp);
    let alpha = (1.0 - config.confidence) / 2.0;
    Ok(PairedBootstrap {
        baseline,
        candidate,
        delta: candidate - baseline,
        delta_mean,
        low: percentile(&deltas, alpha),
        high: percentile(&deltas, 1.0 - alpha),
        p_value: (not_better + 1) as f64 / (deltas.len() + 1) as f64,
        config: *config,
    })
}

/// An unbiased integer in `0..n` (Lemire's multiply-and-reject method), `n > 0`.
fn uniform_below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// numpy's `percentile(..., method='linear')` of sorted, non-empty `v` at `q` in [0, 1].
fn percentile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    v[lo] + (v[hi] - v[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accuracy(correct: &[bool], idx: &[usize]) -> f64 {
        idx.iter().filter(|&&i| correct[i]).count() as f64 / idx.len() as f64
    }

    #[test]
    fn clear_improvement_has_tight_positive_interval() {
        let n = 200;
        let a: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
        let b: Vec<bool> = (0..n).map(|i| i % 10 != 0).collect();
        let cfg = BootstrapConfig::default();
        let r = paired_bootstrap(n, &cfg, |idx| (accuracy(&a, idx), accuracy(&b, idx))).unwrap();
        assert_eq!(r.delta, 0.4);
        assert!(
            r.low > 0.3 && r.high < 0.5 && r.low < r.delta && r.delta < r.high,
            "{r:?}"
        );
        assert!(r.p_value < 0.01);
        // Seeded: the same seed gives the same interval, another seed another one.
        let again =
            paired_bootstrap(n, &cfg, |idx| (accuracy(&a, idx), accuracy(&b, idx))).unwrap();
        assert_eq!(r, again);
        let other = BootstrapConfig { seed: 7, ..cfg };
        let r7 = paired_bootstrap(n, &other, |idx| (accuracy(&a, idx), accuracy(&b, idx))).unwrap();
        assert_ne!(r.low, r7.low);
    }

    #[test]
    fn identical_systems_are_not_significant() {
        let a: Vec<bool> = (0..50).map(|i| i % 3 == 0).collect();
        let r = paired_bootstrap(50, &BootstrapConfig::default(), |idx| {
            (accuracy(&a, idx), accuracy(&a, idx))
        })
        .unwrap();
        assert_eq!((r.low, r.high, r.delta), (0.0, 0.0, 0.0));
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn percentile_and_uniform() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 1.0), 4.0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut hist = [0usize; 3];
        for _ in 0..30_000 {
            hist[uniform_below(&mut rng, 3) as usize] += 1;
        }
        assert!(
            hist.iter().all(|&h| (9_500..10_500).contains(&h)),
            "{hist:?}"
        );
        assert!(paired_bootstrap(0, &BootstrapConfig::default(), |_| (0.0, 0.0)).is_err());
    }
}
