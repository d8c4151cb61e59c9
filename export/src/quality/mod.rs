//! The quality cost of an export, measured with ctiforge's own forward: the GGUF is
//! dequantized back to an F32 HF folder ([`dequant::gguf_to_hf`]), both it and the
//! unquantised model are loaded with the `model` crate, and their next-token distributions
//! are compared on held-out text: KL(base ‖ export) per position (mean and max), top-1
//! agreement, and perplexity of both (as in llama.cpp's `llama-perplexity --kl-divergence`).

pub mod dequant;
pub mod sample;

use std::path::Path;

use ctiforge_model::{LoadedModel, parse_device};

use crate::error::{Error, Result};

/// What text to score and where to run.
#[derive(Debug, Clone)]
pub struct QualityOptions {
    /// Held-out texts, each scored as its own sequence (BOS + tokens).
    pub texts: Vec<String>,
    /// Tokens per text at most (also capped by the model's context length).
    pub max_tokens_per_text: usize,
    /// The `model` crate device (`cpu`, `cuda:0`, ...).
    pub device: String,
}

impl Default for QualityOptions {
    /// The built-in CTI sample ([`sample::BUILTIN_SAMPLE`]), 256 tokens a text, on the CPU.
    fn default() -> Self {
        Self {
            texts: sample::BUILTIN_SAMPLE
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_tokens_per_text: 256,
            device: "cpu".into(),
        }
    }
}

impl QualityOptions {
    /// Texts from a file: one per non-blank line, or for `.jsonl` the `text` field of each
    /// line; at most `max_texts`.
    ///
    /// # Errors
    /// [`Error::Io`], or [`Error::Invalid`] naming the file and line for a JSONL line
    /// without a string `text`, or a file with no text.
    pub fn from_file(path: &Path, max_texts: usize) -> Result<Self> {
        let body = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let jsonl = path.extension().is_some_and(|e| e == "jsonl");
        let mut texts = Vec::new();
        for (i, line) in body.lines().enumerate() {
            if texts.len() >= max_texts || line.trim().is_empty() {
                continue;
            }
            if jsonl {
                let v: serde_json::Value = serde_json::from_str(line)
                    .map_err(|e| Error::Invalid(format!("{}:{}: {e}", path.display(), i + 1)))?;
                let text = v.get("text").and_then(|t| t.as_str()).ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}:{}: expected an object with a string field \"text\"",
                        path.display(),
                        i + 1
                    ))
                })?;
                texts.push(text.to_string());
            } else {
                texts.push(line.to_string());
            }
        }
        if texts.is_empty() {
            return Err(Error::Invalid(format!("{}: no text", path.display())));
        }
        Ok(Self {
            texts,
            ..Self::default()
        })
    }
}

/// The quality numbers of one export.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QualityReport {
    /// Texts scored.
    pub n_texts: usize,
    /// Positions compared (every position of every text).
    pub n_positions: usize,
    /// Mean KL(base ‖ export) of the next-token distributions, in nats.
    pub mean_kl: f64,
    /// Largest KL at any position.
    pub max_kl: f64,
    /// Fraction of positions where both models rank the same token first.
    pub top1_agreement: f64,
    /// Perplexity of the unquantised model on the text.
    pub ppl_base: f64,
    /// Perplexity of the export on the text.
    pub ppl_export: f64,
    /// `(ppl_export / ppl_base − 1) · 100`.
    pub ppl_change_pct: f64,
}

/// Measures `gguf` (exported from the HF folder `base_dir`) against `base_dir`.
///
/// # Errors
/// [`Error::Model`] when a model or its tokenizer cannot be loaded or run (the base folder
/// needs `tokenizer.json`); the errors of [`dequant::gguf_to_hf`]; [`Error::Invalid`] when
/// the texts give no positions to score.
pub fn measure_quality(
    base_dir: &Path,
    gguf: &Path,
    opts: &QualityOptions,
) -> Result<QualityReport> {
    let device = parse_device(&opts.device)?;
    let base = LoadedModel::load(base_dir, &device)?;
    let tokenizer = base.tokenizer()?;
    let cap = opts
        .max_tokens_per_text
        .min(base.model.config.max_seq_len)
        .max(2);
    let mut sequences = Vec::new();
    for text in &opts.texts {
        let mut ids = tokenizer.encode(text, true)?;
        ids.truncate(cap);
        if ids.len() >= 2 {
            sequences.push(ids);
        }
    }
    if sequences.is_empty() {
        return Err(Error::Invalid(
            "quality sample: no text is at least two tokens long".into(),
        ));
    }
    let base_logits: Vec<Vec<Vec<f32>>> = sequences
        .iter()
        .map(|ids| base.model.logits(ids))
        .collect::<std::result::Result<_, _>>()?;
    drop(base);

    let tmp = tempfile::Builder::new()
        .prefix(".ctiforge-quality-")
        .tempdir_in(
            gguf.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
        .map_err(|e| Error::io(gguf, e))?;
    dequant::gguf_to_hf(gguf, base_dir, tmp.path())?;
    let export = LoadedModel::load(tmp.path(), &device)?;
    let mut acc = Accumulator::default();
    for (ids, base_rows) in sequences.iter().zip(&base_logits) {
        let rows = export.model.logits(ids)?;
        for (t, (p, q)) in base_rows.iter().zip(&rows).enumerate() {
            acc.add(p, q, ids.get(t + 1).copied());
        }
    }
    let report = acc.finish(sequences.len());
    tracing::info!(gguf = %gguf.display(), mean_kl = report.mean_kl, max_kl = report.max_kl,
        top1 = report.top1_agreement, ppl_base = report.ppl_base,
        ppl_export = report.ppl_export, "measured export quality");
    Ok(report)
}

/// Running sums over positions.
#[derive(Default)]
struct Accumulator {
    positions: usize,
    kl_sum: f64,
    kl_max: f64,
    agree: usize,
    nll_base: f64,
    nll_export: f64,
    predicted: usize,
}

impl Accumulator {
    /// Adds one position: base logits `p`, export logits `q`, and the next token if any.
    fn add(&mut self, p: &[f32], q: &[f32], next: Option<u32>) {
        let (lp, lq) = (log_softmax(p), log_softmax(q));
        let kl: f64 = lp
            .iter()
            .zip(&lq)
            .map(|(&a, &b)| a.exp() * (a - b))
            .sum::<f64>()
            .max(0.0);
        self.kl_sum += kl;
        self.kl_max = self.kl_max.max(kl);
        self.positions += 1;
        if argmax(p) == argmax(q) {
            self.agree += 1;
        }
        if let Some(next) = next {
            let i = next as usize;
            if i < lp.len() {
                self.nll_base -= lp[i];
                self.nll_export -= lq[i];
                self.predicted += 1;
            }
        }
    }

    fn finish(self, n_texts: usize) -> QualityReport {
        let n = self.positions.max(1) as f64;
        let m = self.predicted.max(1) as f64;
        let (ppl_base, ppl_export) = ((self.nll_base / m).exp(), (self.nll_export / m).exp());
        QualityReport {
            n_texts,
            n_positions: self.positions,
            mean_kl: self.kl_sum / n,
            max_kl: self.kl_max,
            top1_agreement: self.agree as f64 / n,
            ppl_base,
            ppl_export,
            ppl_change_pct: (ppl_export / ppl_base - 1.0) * 100.0,
        }
    }
}

/// `log softmax` in f64.
pub fn log_softmax(x: &[f32]) -> Vec<f64> {
    let max = x
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let lse = x
        .iter()
        .map(|&v| (f64::from(v) - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    x.iter().map(|&v| f64::from(v) - lse).collect()
}

fn argmax(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_logits_have_zero_kl_and_equal_perplexity() {
        let mut acc = Accumulator::default();
        let p = [1.0f32, 2.0, 0.5, -1.0];
        acc.add(&p, &p, Some(1));
        let r = acc.finish(1);
        assert!(r.mean_kl.abs() < 1e-12);
        assert_eq!(r.top1_agreement, 1.0);
        assert!((r.ppl_base - r.ppl_export).abs() < 1e-12);
    }

    #[test]
    fn kl_matches_a_hand_computed_value() {
        // p = softmax([0, ln 3]) = [0.25, 0.75]; q = uniform.
        let mut acc = Accumulator::default();
        acc.add(&[0.0, 3f32.ln()], &[0.0, 0.0], Some(0));
        let r = acc.finish(1);
        let want = 0.25 * (0.25f64 / 0.5).ln() + 0.75 * (0.75f64 / 0.5).ln();
        assert!((r.mean_kl - want).abs() < 1e-7, "{} vs {want}", r.mean_kl);
        assert!((r.ppl_base - 4.0).abs() < 1e-6);
        assert!((r.ppl_export - 2.0).abs() < 1e-6);
        assert!((r.ppl_change_pct + 50.0).abs() < 1e-4);
    }
}
