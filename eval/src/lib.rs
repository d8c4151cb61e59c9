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
//!
//! On top of them, the evaluation itself:
//!
//! - [`example`]: examples from a `ctiforge prep` split or a labelled JSONL file.
//! - [`harness`]: batched, KV-cached greedy generation with per-task stops, the reference
//!   completion's loss, and resumable partial predictions.
//! - [`parse`] and [`score`]: outputs read back into predictions, scored per example and
//!   aggregated into `eval.json`'s metrics.
//! - [`baseline`]: scorers that need no sampling (regex indicators, technique ranking by
//!   likelihood).
//! - [`compare`]: base against tuned with bootstrap intervals and `--require` checks.
//! - [`report`] and [`html`]: `eval.json`, `predictions.jsonl`, `report.html`.
//! - [`run`]: the whole `ctiforge eval` job.

#![warn(missing_docs)]

pub mod baseline;
pub mod bootstrap;
pub mod compare;
pub mod error;
pub mod example;
pub mod harness;
pub mod html;
pub mod metrics;
pub mod parse;
pub mod report;
pub mod run;
pub mod score;
pub mod threshold;

pub use error::{Error, Result};
pub use report::EvalReport;
pub use run::{DataSource, EvalOptions, Scorer, evaluate};
