//! Autoregressive generation: batched prompts of different lengths (left-padded, with
//! attention masks and per-row positions), a key/value cache, and the usual decoding
//! controls (greedy, temperature, top-k, top-p, repetition penalty, seeded sampling, stop
//! tokens, stop strings, a token budget).
//!
//! The logit processors follow the order and semantics of `transformers`' `generate`
//! (<https://huggingface.co/docs/transformers/main_classes/text_generation>): repetition
//! penalty, then temperature, then top-k, then top-p.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::mask::AttentionMask;
use crate::tokenizer::CtiTokenizer;
use crate::transformer::{CausalLm, ForwardBatch, KvCache, to_host};

/// Decoding settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// Most tokens to generate per prompt.
    pub max_new_tokens: usize,
    /// Softmax temperature; `0.0` means greedy (argmax) decoding.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (`None` or 0: all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (`None`: all).
    pub top_p: Option<f32>,
    /// Penalty (> 1 discourages) on tokens already in the prompt or the output.
    pub repetition_penalty: f32,
    /// Seed of the sampler; the same seed and inputs give the same tokens.
    pub seed: u64,
    /// Token ids that end a sequence (the stop token is kept out of the text).
    pub stop_token_ids: Vec<u32>,
    /// Strings that end a sequence when they appear in the decoded output (cut from it).
    pub stop_strings: Vec<String>,
    /// Whether to reuse keys and values between steps (off only for testing).
    pub use_cache: bool,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            max_new_tokens: 64,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            seed: 0,
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
            use_cache: true,
        }
    }
}

impl SamplingConfig {
    /// Checks value ranges.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first out-of-range setting.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::Invalid(format!(
                "temperature must be a finite number >= 0 (0 = greedy), got {}",
                self.temperature
            )));
        }
        if let Some(p) = self.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return Err(Error::Invalid(format!("top_p must be in (0, 1], got {p}")));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(Error::Invalid(format!(
                "repetition_penalty must be a positive number, got {}",
                self.repetition_penalty
            )));
        }
        Ok(())
    }
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token (EOS, end of turn) was produced.
    StopToken,
    /// A stop string appeared in the output.
    StopString,
    /// `max_new_tokens` were generated.
    Length,
    /// The model's context (`max_position_embeddings`) is full.
    ContextFull,
}

/// The output for one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The new token ids (the stop token, if any, is included as the last id).
    pub ids: Vec<u32>,
    /// The decoded new text (without special tokens, cut at a stop string); empty when no
    /// tokenizer was given.
    pub text: String,
    /// Why generation ended.
    pub finish: FinishReason,
}

/// Per-row decoding state.
struct Row {
    /// Prompt and generated ids so far (unpadded).
    ids: Vec<u32>,
    prompt_len: usize,
    done: Option<FinishReason>,
    text_len: Option<usize>,
}

/// Generates continuations of `prompts` (token ids, e.g. from [`CtiTokenizer::encode`]).
///
/// Prompts are left-padded to one length; each row gets its own positions, so a batched
/// prompt produces the same tokens as the same prompt alone. A `tokenizer` is needed for
/// stop strings and for the decoded text.
///
/// # Errors
/// [`Error::Invalid`] for an empty batch, an empty prompt, a token id outside the vocabulary,
/// a prompt longer than the model's context, or bad settings; tokenizer errors when decoding.
pub fn generate(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    config: &SamplingConfig,
    tokenizer: Option<&CtiTokenizer>,
) -> Result<Vec<Generated>> {
    config.validate()?;
    if prompts.is_empty() {
        return Err(Error::Invalid("generate: no prompts given".to_owned()));
    }
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(Error::Invalid(format!(
            "generate: prompt {i} is empty; start it with the BOS token"
        )));
    }
    if !config.stop_strings.is_empty() && tokenizer.is_none() {
        return Err(Error::Invalid(
            "generate: stop strings need a tokenizer".to_owned(),
        ));
    }
    let max_ctx = model.config.max_seq_len;
    for (i, p) in prompts.iter().enumerate() {
        model.check_tokens(p)?;
        if p.len() > max_ctx {
            return Err(Error::Invalid(format!(
                "prompt {i} has {} tokens but the model's context is {max_ctx}",
                p.len()
            )));
        }
    }

    let mut rows: Vec<Row> = prompts
        .iter()
        .map(|p| Row {
            ids: p.clone(),
            prompt_len: p.len(),
            done: None,
            text_len: None,
        })
        .collect();
    let width = rows.iter().map(|r| r.prompt_len).max().unwrap_or(0);
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut cache = config
        .use_cache
        .then(|| KvCache::new(model.config.n_layers));
    let mut steps = 0;

    while steps < config.max_new_tokens && rows.iter().any(|r| r.done.is_none()) {
        if width + steps >= max_ctx {
            for row in rows.iter_mut().filter(|r| r.done.is_none()) {
                row.done = Some(FinishReason::ContextFull);
            }
            break;
        }
        let batch = step_batch(
            &rows,
            width,
            steps,
            cache.as_ref().map_or(0, KvCache::len),
            model,
        );
        let logits = to_host(model.forward_last(&batch, cache.as_mut())?)?;
        let vocab = model.config.vocab_size;
        for (row, logits) in rows.iter_mut().zip(logits.chunks(vocab)) {
            if row.done.is_some() {
                continue;
            }
            let next = choose(logits, &row.ids, config, &mut rng);
            row.ids.push(next);
            update_stop(row, next, config, tokenizer)?;
        }
        steps += 1;
    }

    rows.into_iter()
        .map(|row| {
            let new = row.ids[row.prompt_len..].to_vec();
            let text = match tokenizer {
                None => String::new(),
                Some(tok) => {
                    let content = match new.last() {
                        Some(last) if config.stop_token_ids.contains(last) => &new[..new.len() - 1],
                        _ => &new[..],
                    };
                    let mut text = tok.decode(content, true)?;
                    if let Some(cut) = row.text_len {
                        text.truncate(cut);
                    }
                    text
                }
            };
            Ok(Generated {
                ids: new,
                text,
                finish: row.done.unwrap_or(FinishReason::Length),
            })
        })
        .collect()
}

/// The forward batch of one decoding step: the whole (padded) prompt on the first step or
/// without a cache, else one new token per row.
fn step_batch(
    rows: &[Row],
    width: usize,
    steps: usize,
    cached: usize,
    model: &CausalLm,
) -> ForwardBatch {
    let total = width + steps; // padded length of every row so far
    let start = cached; // first position this step feeds
    let seq = total - start;
    let b = rows.len();
    let mut tokens = Vec::with_capacity(b * seq);
    let mut positions = Vec::with_capacity(b * seq);
    let mut valid = Vec::with_capacity(b * total);
    for row in rows {
        let pad = width - row.prompt_len;
        // A finished row keeps being fed its last id; its output is ignored.
        let id_at = |j: usize| -> u32 {
            if j < pad {
                row.ids[0]
            } else {
                row.ids
                    .get(j - pad)
                    .copied()
                    .unwrap_or(row.ids[row.ids.len() - 1])
            }
        };
        for j in start..total {
            tokens.push(id_at(j));
            positions.push(j.saturating_sub(pad) as u32);
        }
        valid.extend((0..total).map(|j| j >= pad));
    }
    let mask = AttentionMask::causal(b, start, seq, valid, model.config.sliding_window);
    ForwardBatch {
        tokens,
        positions,
        batch: b,
        seq,
        mask,
    }
}

/// Marks a row finished when `next` is a stop token or a stop string appeared.
fn update_stop(
    row: &mut Row,
    next: u32,
    config: &SamplingConfig,
    tokenizer: Option<&CtiTokenizer>,
) -> Result<()> {
    if config.stop_token_ids.contains(&next) {
        row.done = Some(FinishReason::StopToken);
        return Ok(());
    }
    if let (false, Some(tok)) = (config.stop_strings.is_empty(), tokenizer) {
        let text = tok.decode(&row.ids[row.prompt_len..], true)?;
        let cut = config
            .stop_strings
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min();
        if let Some(cut) = cut {
            row.done = Some(FinishReason::StopString);
            row.text_len = Some(cut);
        }
    }
    Ok(())
}

/// Picks the next token from one row of logits.
fn choose(logits: &[f32], history: &[u32], config: &SamplingConfig, rng: &mut StdRng) -> u32 {
    let mut scores = logits.to_vec();
    if config.repetition_penalty != 1.0 {
        apply_repetition_penalty(&mut scores, history, config.repetition_penalty);
    }
    if config.temperature == 0.0 {
        return argmax(&scores);
    }
    for s in &mut scores {
        *s /= config.temperature;
    }
    let mut candidates: Vec<(u32, f32)> = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| (i as u32, s))
        .collect();
    // Stable sort, descending: ties keep the lower id first, so results are reproducible.
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    if let Some(k) = config.top_k.filter(|&k| k > 0) {
        candidates.truncate(k);
    }
    let probs = softmax(candidates.iter().map(|c| c.1));
    let keep = match config.top_p {
        Some(p) if p < 1.0 => nucleus_len(&probs, p),
        _ => probs.len(),
    };
    let total: f32 = probs[..keep].iter().sum();
    let mut target = rng.random::<f32>() * total;
    for (i, p) in probs[..keep].iter().enumerate() {
        target -= p;
        if target <= 0.0 {
            return candidates[i].0;
        }
    }
    candidates[keep - 1].0
}

/// HF's `RepetitionPenaltyLogitsProcessor`: a seen token's positive logit is divided by the
/// penalty, a negative one multiplied.
fn apply_repetition_penalty(scores: &mut [f32], history: &[u32], penalty: f32) {
    let mut seen = vec![false; scores.len()];
    for &id in history {
        if let Some(s) = seen.get_mut(id as usize) {
            *s = true;
        }
    }
    for (score, _) in scores.iter_mut().zip(&seen).filter(|(_, seen)| **seen) {
        *score = if *score < 0.0 {
            *score * penalty
        } else {
            *score / penalty
        };
    }
}

/// Index of the largest value; the first one on ties (as `torch.argmax`).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Probabilities of descending-sorted scores.
fn softmax(scores: impl Iterator<Item = f32> + Clone) -> Vec<f32> {
    let max = scores.clone().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = scores.map(|s| (s - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// How many of the descending `probs` the nucleus keeps: the smallest prefix whose mass
/// reaches `p` (at least one).
fn nucleus_len(probs: &[f32], p: f32) -> usize {
    let mut mass = 0.0;
    for (i, q) in probs.iter().enumerate() {
        mass += q;
        if mass >= p {
            return i + 1;
        }
    }
    probs.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn repetition_penalty_follows_sign() {
        let mut s = vec![2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut s, &[0, 1, 0], 2.0);
        assert_eq!(s, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn nucleus_keeps_smallest_prefix() {
        assert_eq!(nucleus_len(&[0.5, 0.3, 0.2], 0.75), 2);
        assert_eq!(nucleus_len(&[0.5, 0.3, 0.2], 0.5), 1);
        assert_eq!(nucleus_len(&[0.5, 0.3, 0.2], 1.0), 3);
    }

    #[test]
    fn sampling_is_seeded_and_respects_top_k() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let config = SamplingConfig {
            temperature: 1.0,
            top_k: Some(3),
            seed: 7,
            ..Default::default()
        };
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..40)
                .map(|_| choose(&logits, &[], &config, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        // The three largest logits are ids 6, 13, 20 (value 1.8): top-k keeps only those.
        assert!(draw(7).iter().all(|id| [6, 13, 20].contains(id)));
    }

    #[test]
    fn top_p_one_token_is_greedy() {
        let logits = vec![0.0, 5.0, 1.0];
        let config = SamplingConfig {
            temperature: 1.0,
            top_p: Some(0.01),
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        assert!((0..20).all(|_| choose(&logits, &[], &config, &mut rng) == 1));
    }

    #[test]
    fn bad_settings_are_rejected() {
        let bad = SamplingConfig {
            temperature: -1.0,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .expect_err("negative")
                .to_string()
                .contains("temperature")
        );
        let bad = SamplingConfig {
            top_p: Some(1.5),
            ..Default::default()
        };
        assert!(
            bad.validate()
                .expect_err("top_p")
                .to_string()
                .contains("top_p")
        );
    }
}
