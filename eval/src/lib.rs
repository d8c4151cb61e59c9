//! ctiforge's evaluation stage. This crate holds the metrics layer: every metric matches a
//! published reference implementation number for number (scikit-learn, `seqeval`, Google's
//! `rouge-score`, `sacrebleu`), so reports can be trusted and CI can gate on them.
//!
//! - [`metrics::classification`]: multi-label technique classification (micro, macro and
//!   sample-averaged P/R/F1, per-label scores, exact match), as scikit-learn computes them.
//! - [`metrics::entity`]: IOC / entity extraction F1 over (type, value) multisets, strict and
//!   lenient.
//! - [`metrics::bio`]: BIO span F1 compatible with `seqeval`'s classification report.
//! - [`metrics::rouge`]: ROUGE-N, ROUGE-L and ROUGE-Lsum identical to `rouge-score`, with
//!   its tokenizer and Porter stemmer ([`metrics::porter`]) and a CTI-aware tokenizer
//!   ([`metrics::tokenize`]).
//! - [`metrics::bleu`]: corpus BLEU identical to `sacrebleu`, signature included.
//! - [`metrics::lm`]: token-weighted loss and perplexity.
//! - [`bootstrap`]: paired bootstrap confidence intervals for `eval compare`.
//! - [`threshold`]: `--require 'technique.micro_f1 >= +0.05'` gate expressions.
//!
//! The generation harness, dataset reading and the HTML report build on these (issue #5).

#![warn(missing_docs)]

pub mod bootstrap;
pub mod error;
pub mod metrics;
pub mod threshold;

pub use error::{Error, Result};
