//! Language-modelling loss and perplexity aggregated over batches and samples, weighted by
//! token count: the corpus perplexity `exp(Σ token NLL / Σ tokens)` (Jelinek et al., 1977;
//! <https://huggingface.co/docs/transformers/perplexity>), not the mean of per-batch
//! perplexities, which over-weights short batches.
//!
//! Sums are kept with Neumaier's compensated summation, so the result does not depend on
//! how the corpus was split into batches beyond the last bits.

use serde::Serialize;

use crate::{Error, Result};

/// Accumulates summed token negative log-likelihoods (natural log) and token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LossAccumulator {
    sum: f64,
    compensation: f64,
    tokens: u64,
}

impl LossAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch given as the **sum** of its token losses over `tokens` tokens.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] for a non-finite or negative loss.
    pub fn add_sum(&mut self, loss_sum: f64, tokens: u64) -> Result<()> {
        if !loss_sum.is_finite() || loss_sum < 0.0 {
            return Err(Error::InvalidValue {
                what: "summed token loss".into(),
                value: loss_sum.to_string(),
                expected: "a finite, non-negative negative log-likelihood",
            });
        }
        self.add_raw(loss_sum);
        self.tokens += tokens;
        Ok(())
    }

    /// Adds a batch given as the **mean** loss per token over `tokens` tokens (what a
    /// training step usually reports).
    ///
    /// # Errors
    /// As [`Self::add_sum`].
    pub fn add_mean(&mut self, mean_loss: f64, tokens: u64) -> Result<()> {
        if !mean_loss.is_finite() || mean_loss < 0.0 {
            return Err(Error::InvalidValue {
                what: "mean token loss".into(),
                value: mean_loss.to_string(),
                expected: "a finite, non-negative negative log-likelihood",
            });
        }
        self.add_sum(mean_loss * tokens as f64, tokens)
    }

    /// Adds everything another accumulator holds (e.g. from another worker).
    pub fn merge(&mut self, other: &Self) {
        self.add_raw(other.sum);
        self.add_raw(other.compensation);
        self.tokens += other.tokens;
    }

    fn add_raw(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    /// Tokens seen.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Summed loss.
    pub fn total_loss(&self) -> f64 {
        self.sum + self.compensation
    }

    /// Token-weighted mean loss.
    ///
    /// # Errors
    /// [`Error::Empty`] when no token was added.
    pub fn mean_loss(&self) -> Result<f64> {
        if self.tokens == 0 {
            return Err(Error::Empty {
                metric: "language-model loss",
            });
        }
        Ok(self.total_loss() / self.tokens as f64)
    }

    /// `exp(mean loss)`.
    ///
    /// # Errors
    /// As [`Self::mean_loss`].
    pub fn perplexity(&self) -> Result<f64> {
        Ok(self.mean_loss()?.exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_weighted_not_batch_weighted() {
        let mut acc = LossAccumulator::new();
        acc.add_mean(1.0, 3).unwrap();
        acc.add_mean(4.0, 1).unwrap();
        assert_eq!(acc.mean_loss().unwrap(), 7.0 / 4.0);
        assert_eq!(acc.perplexity().unwrap(), (7.0f64 / 4.0).exp());
        let mut other = LossAccumulator::new();
        other.add_sum(1.0, 4).unwrap();
        acc.merge(&other);
        assert_eq!(acc.tokens(), 8);
        assert_eq!(acc.mean_loss().unwrap(), 1.0);
    }

    #[test]
    fn compensated_sum_is_split_independent() {
        let mut one = LossAccumulator::new();
        let mut many = LossAccumulator::new();
        let mut total = 0u64;
        for i in 0..10_000u64 {
            many.add_sum(0.1, 1).unwrap();
            total += 1;
            if i == 9_999 {
                one.add_sum(0.1 * 10_000.0, total).unwrap();
            }
        }
        assert!((many.mean_loss().unwrap() - 0.1).abs() < 1e-15);
        assert!((one.mean_loss().unwrap() - many.mean_loss().unwrap()).abs() < 1e-15);
    }

    #[test]
    fn bad_values_and_empty_are_errors() {
        let mut acc = LossAccumulator::new();
        assert!(acc.add_mean(f64::NAN, 1).is_err());
        assert!(acc.add_sum(-1.0, 1).is_err());
        assert!(matches!(acc.perplexity(), Err(Error::Empty { .. })));
    }
}
