//! Training examples from a `ctiforge prep` dataset: each row's `prompt` and `completion`
//! tokenised with the model's tokenizer (BOS + prompt, completion + EOS), truncated to the
//! maximum length, with the positions that carry loss; then padded micro-batches.

use std::path::Path;

use ctiforge_data_prep::dataset::read_split;
use ctiforge_model::CtiTokenizer;
use ctiforge_model::mask::AttentionMask;
use ctiforge_model::transformer::ForwardBatch;

use crate::error::{Error, Result};

/// One tokenised row.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Prompt then completion token ids.
    pub tokens: Vec<u32>,
    /// Index of the first token that carries loss (the first completion token, or 1 when
    /// the whole sequence is trained).
    pub loss_from: usize,
}

impl Example {
    /// Number of predicted tokens that carry loss.
    pub fn loss_tokens(&self) -> usize {
        self.tokens.len().saturating_sub(self.loss_from.max(1))
    }
}

/// Reads and tokenises `split` of the dataset folder `dir`.
///
/// Rows whose completion would be cut away entirely by `max_seq_len` are dropped (and
/// counted in the log); an empty result is an error.
///
/// # Errors
/// [`Error::Data`] for an unreadable or empty split, or when no row fits; tokenizer errors.
pub fn load_split(
    dir: &Path,
    split: &str,
    tokenizer: &CtiTokenizer,
    max_seq_len: usize,
    completion_only: bool,
) -> Result<Vec<Example>> {
    let records = read_split(dir, split)?;
    if records.is_empty() {
        return Err(Error::Data {
            path: dir.join(format!("{split}.parquet")),
            message: "the split has no rows".to_owned(),
        });
    }
    let eos = tokenizer.eos_token_id();
    let mut out = Vec::with_capacity(records.len());
    let mut dropped = 0usize;
    for r in &records {
        let mut tokens = tokenizer.encode(&r.prompt, true)?;
        let prompt_len = tokens.len();
        tokens.extend(tokenizer.encode(&r.completion, false)?);
        if let Some(eos) = eos {
            tokens.push(eos);
        }
        let loss_from = if completion_only {
            prompt_len.max(1)
        } else {
            1
        };
        tokens.truncate(max_seq_len);
        if tokens.len() <= loss_from {
            dropped += 1;
            continue;
        }
        out.push(Example { tokens, loss_from });
    }
    if dropped > 0 {
        tracing::warn!(
            split,
            dropped,
            kept = out.len(),
            max_seq_len,
            "rows dropped: their completion does not fit batch.max_seq_len"
        );
    }
    if out.is_empty() {
        return Err(Error::Data {
            path: dir.join(format!("{split}.parquet")),
            message: format!(
                "none of the {} rows fits batch.max_seq_len = {max_seq_len} with its completion",
                records.len()
            ),
        });
    }
    Ok(out)
}

/// A right-padded micro-batch with next-token targets and loss weights.
#[derive(Debug, Clone)]
pub struct MicroBatch {
    /// Inputs and mask for the model.
    pub forward: ForwardBatch,
    /// Next-token target of each position (`[batch, seq]`, 0 where unused).
    pub targets: Vec<i64>,
    /// 1 where the position's prediction carries loss, else 0 (`[batch, seq]`).
    pub weights: Vec<f32>,
    /// Number of positions with weight 1.
    pub loss_tokens: usize,
    /// Real (non-padding) input tokens.
    pub input_tokens: usize,
}

/// Pads `examples` into one batch; position `i` predicts token `i + 1`.
pub fn collate(examples: &[&Example], pad_id: u32, window: Option<usize>) -> MicroBatch {
    let seq = examples
        .iter()
        .map(|e| e.tokens.len() - 1)
        .max()
        .unwrap_or(1)
        .max(1);
    let b = examples.len();
    let mut tokens = vec![pad_id; b * seq];
    let mut valid = vec![false; b * seq];
    let mut targets = vec![0i64; b * seq];
    let mut weights = vec![0f32; b * seq];
    let (mut loss_tokens, mut input_tokens) = (0, 0);
    for (row, e) in examples.iter().enumerate() {
        let n = e.tokens.len() - 1;
        input_tokens += n;
        for i in 0..n {
            let k = row * seq + i;
            tokens[k] = e.tokens[i];
            valid[k] = true;
            targets[k] = i64::from(e.tokens[i + 1]);
            if i + 1 >= e.loss_from.max(1) {
                weights[k] = 1.0;
                loss_tokens += 1;
            }
        }
    }
    let positions = (0..b).flat_map(|_| 0..seq as u32).collect();
    MicroBatch {
        forward: ForwardBatch {
            tokens,
            positions,
            batch: b,
            seq,
            mask: AttentionMask::causal(b, 0, seq, valid, window),
        },
        targets,
        weights,
        loss_tokens,
        input_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collate_masks_prompt_and_padding() {
        let a = Example {
            tokens: vec![1, 10, 11, 12, 2],
            loss_from: 3,
        };
        let b = Example {
            tokens: vec![1, 20, 2],
            loss_from: 1,
        };
        let mb = collate(&[&a, &b], 0, None);
        assert_eq!(mb.forward.seq, 4);
        assert_eq!(mb.forward.tokens, vec![1, 10, 11, 12, 1, 20, 0, 0]);
        assert_eq!(mb.targets, vec![10, 11, 12, 2, 20, 2, 0, 0]);
        // a: positions 2 and 3 predict tokens 3 and 4 (the completion); b: all real ones.
        assert_eq!(mb.weights, vec![0., 0., 1., 1., 1., 1., 0., 0.]);
        assert_eq!(mb.loss_tokens, a.loss_tokens() + b.loss_tokens());
        assert_eq!(mb.input_tokens, 6);
    }
}
