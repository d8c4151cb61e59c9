//! Training examples from a `ctiforge prep` dataset: each row's `prompt` and `completion`
//! tokenised with the model's tokenizer (BOS + prompt, completion + EOS), truncated to the
//! maximum length, with the positions that carry loss; then padded micro-batches, one
//! example per row or several packed into each row (`batch.packing`).

use std::path::Path;

use ctiforge_data_prep::dataset::read_split;
use ctiforge_model::CtiTokenizer;
use ctiforge_model::mask::{AttentionMask, PADDING_SEGMENT};
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

impl MicroBatch {
    /// Padding slots in the batch (`batch * seq` minus the real input tokens).
    pub fn padded_tokens(&self) -> usize {
        (self.forward.batch * self.forward.seq).saturating_sub(self.input_tokens)
    }
}

/// Input length of an example in the batch: every token but the last, which is only a
/// target.
fn input_len(e: &Example) -> usize {
    e.tokens.len().saturating_sub(1)
}

/// Pads `examples` into one batch, one example per row; position `i` predicts token
/// `i + 1`.
pub fn collate(examples: &[&Example], pad_id: u32, window: Option<usize>) -> MicroBatch {
    let rows: Vec<Vec<usize>> = (0..examples.len()).map(|i| vec![i]).collect();
    collate_rows(examples, &rows, pad_id, window, false)
}

/// Greedy first-fit-decreasing packing: indices into `examples`, grouped into rows whose
/// input lengths (tokens minus the last) sum to at most `max_seq_len`.
///
/// Examples are taken longest first (ties in input order) and each goes into the first
/// row with room, or opens a new one; rows keep the order they were opened in and their
/// examples the order they were placed. The result depends only on the lengths. An example
/// longer than `max_seq_len` (none is, after [`load_split`]) gets a row of its own.
pub fn pack(examples: &[&Example], max_seq_len: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(input_len(examples[i])));
    let mut rows: Vec<(usize, Vec<usize>)> = Vec::new();
    for i in order {
        let n = input_len(examples[i]);
        match rows.iter_mut().find(|(used, _)| used + n <= max_seq_len) {
            Some((used, row)) => {
                *used += n;
                row.push(i);
            }
            None => rows.push((n, vec![i])),
        }
    }
    rows.into_iter().map(|(_, row)| row).collect()
}

/// Packs `examples` ([`pack`]) into rows of at most `max_seq_len` tokens, padded to the
/// longest row.
///
/// Each example keeps what it has in [`collate`]: positions restart at 0, its tokens attend
/// only to its own earlier tokens ([`AttentionMask::packed`]), its last input predicts its
/// own last token (never the next example's first), and its loss weights are the same, so
/// the weighted loss equals the unpacked one up to float rounding.
pub fn collate_packed(
    examples: &[&Example],
    max_seq_len: usize,
    pad_id: u32,
    window: Option<usize>,
) -> MicroBatch {
    collate_rows(examples, &pack(examples, max_seq_len), pad_id, window, true)
}

/// Lays `rows` of `examples` out right-padded; `packed` selects the block-diagonal mask
/// (padding is never attended) over the plain causal one (padding keys are hidden).
fn collate_rows(
    examples: &[&Example],
    rows: &[Vec<usize>],
    pad_id: u32,
    window: Option<usize>,
    packed: bool,
) -> MicroBatch {
    let seq = rows
        .iter()
        .map(|row| row.iter().map(|&e| input_len(examples[e])).sum::<usize>())
        .max()
        .unwrap_or(1)
        .max(1);
    let b = rows.len();
    let mut tokens = vec![pad_id; b * seq];
    // Padding slots keep their row index as position; they carry no loss either way.
    let mut positions: Vec<u32> = (0..b).flat_map(|_| 0..seq as u32).collect();
    let mut segments = vec![PADDING_SEGMENT; b * seq];
    let mut targets = vec![0i64; b * seq];
    let mut weights = vec![0f32; b * seq];
    let (mut loss_tokens, mut input_tokens) = (0, 0);
    for (r, row) in rows.iter().enumerate() {
        let mut start = r * seq;
        for (s, &idx) in row.iter().enumerate() {
            let e = examples[idx];
            let n = input_len(e);
            input_tokens += n;
            for i in 0..n {
                let k = start + i;
                tokens[k] = e.tokens[i];
                positions[k] = i as u32;
                segments[k] = s as u32 + 1;
                targets[k] = i64::from(e.tokens[i + 1]);
                if i + 1 >= e.loss_from.max(1) {
                    weights[k] = 1.0;
                    loss_tokens += 1;
                }
            }
            start += n;
        }
    }
    let mask = if packed {
        AttentionMask::packed(b, seq, segments, window)
    } else {
        let valid = segments.iter().map(|&s| s != PADDING_SEGMENT).collect();
        AttentionMask::causal(b, 0, seq, valid, window)
    };
    MicroBatch {
        forward: ForwardBatch {
            tokens,
            positions,
            batch: b,
            seq,
            mask,
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
        assert_eq!(mb.padded_tokens(), 2);
    }

    fn example(len: usize, loss_from: usize, base: u32) -> Example {
        Example {
            tokens: (0..len as u32).map(|t| base + t).collect(),
            loss_from,
        }
    }

    #[test]
    fn pack_is_first_fit_decreasing() {
        // Input lengths (tokens - 1): 3, 6, 2, 5, 4, 9.
        let ex: Vec<Example> = [4, 7, 3, 6, 5, 10]
            .iter()
            .map(|&n| example(n, 1, 0))
            .collect();
        let refs: Vec<&Example> = ex.iter().collect();
        // Longest first: 9 alone; 6 then 5 each open a row; 4 joins the 6; 3 and 2 join
        // the 5 (the first rows with room).
        let rows = pack(&refs, 10);
        assert_eq!(rows, vec![vec![5], vec![1, 4], vec![3, 0, 2]]);
        assert_eq!(pack(&refs, 10), rows, "deterministic");
        let mut all: Vec<usize> = rows.concat();
        all.sort_unstable();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
        // Too long for any row: a row of its own.
        assert_eq!(pack(&refs[5..], 4), vec![vec![0]]);
    }

    #[test]
    fn packed_rows_restart_positions_and_keep_targets_inside_examples() {
        let a = example(5, 3, 10); // inputs 10..=13, targets 11..=14, loss from token 3
        let b = example(3, 1, 20); // inputs 20 21, targets 21 22
        let c = example(4, 2, 30); // inputs 30 31 32, targets 31 32 33
        let refs = [&a, &b, &c];
        let mb = collate_packed(&refs, 7, 0, None);
        // Rows: a (4) + c (3) = 7; b (2) alone, padded to 7.
        assert_eq!((mb.forward.batch, mb.forward.seq), (2, 7));
        assert_eq!(
            mb.forward.tokens,
            [10, 11, 12, 13, 30, 31, 32, 20, 21, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            mb.forward.positions,
            [0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4, 5, 6]
        );
        // a's last input predicts a's last token (14), not c's first.
        assert_eq!(
            mb.targets,
            [11, 12, 13, 14, 31, 32, 33, 21, 22, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            mb.weights,
            [0., 0., 1., 1., 0., 1., 1., 1., 1., 0., 0., 0., 0., 0.]
        );
        let plain = collate(&refs, 0, None);
        assert_eq!(mb.loss_tokens, plain.loss_tokens);
        assert_eq!(mb.input_tokens, plain.input_tokens);
        assert_eq!((mb.padded_tokens(), plain.padded_tokens()), (5, 3));
        // c (row 0, slot 4) sees itself only; a's tokens are another segment.
        let m = &mb.forward.mask;
        assert!(m.allows(0, 4, 4) && !m.allows(0, 4, 3) && m.allows(0, 6, 4));
        assert!(m.allows(0, 3, 0) && !m.allows(1, 2, 2) && !m.allows(1, 3, 1));
    }
}
