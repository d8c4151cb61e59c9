//! Throughput measurement (`ctiforge model bench`): prompt processing and KV-cached greedy
//! decoding in tokens per second, measured the way `ci/reference_bench.py` measures
//! `transformers`, so the two can be compared on the same weights.
//!
//! Method: a fixed pseudo-random prompt; one untimed warm-up run; then `repeats` timed
//! runs, each one forward pass over the prompt (filling the cache) followed by `new_tokens`
//! single-token forward passes with argmax; the median of each phase is reported.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::generate::argmax;
use crate::mask::AttentionMask;
use crate::transformer::{CausalLm, ForwardBatch, KvCache, to_host};

/// Result of [`measure`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Throughput {
    /// Prompt length.
    pub prompt_tokens: usize,
    /// Tokens decoded after the prompt.
    pub new_tokens: usize,
    /// Timed runs.
    pub repeats: usize,
    /// Prompt tokens per second of the prefill pass (median).
    pub prompt_tokens_per_sec: f64,
    /// New tokens per second of the decode loop (median).
    pub generation_tokens_per_sec: f64,
}

/// Measures `model`.
///
/// # Errors
/// [`Error::Invalid`] when the prompt plus new tokens exceed the context or `repeats` is 0.
pub fn measure(
    model: &CausalLm,
    prompt_tokens: usize,
    new_tokens: usize,
    repeats: usize,
) -> Result<Throughput> {
    let ctx = model.config.max_seq_len;
    if prompt_tokens == 0 || repeats == 0 || prompt_tokens + new_tokens > ctx {
        return Err(Error::Invalid(format!(
            "bench: need prompt_tokens > 0, repeats > 0 and prompt + new tokens <= context \
             {ctx}; got {prompt_tokens} + {new_tokens}, {repeats} repeats"
        )));
    }
    let mut rng = StdRng::seed_from_u64(20250607);
    let low = 3.min(model.config.vocab_size - 1) as u32;
    let prompt: Vec<u32> = (0..prompt_tokens)
        .map(|_| rng.random_range(low..model.config.vocab_size as u32))
        .collect();
    run_once(model, &prompt, new_tokens)?; // warm-up
    let mut prefill = Vec::with_capacity(repeats);
    let mut decode = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let (p, d) = run_once(model, &prompt, new_tokens)?;
        prefill.push(p);
        decode.push(d);
    }
    Ok(Throughput {
        prompt_tokens,
        new_tokens,
        repeats,
        prompt_tokens_per_sec: prompt_tokens as f64 / median(&mut prefill),
        generation_tokens_per_sec: new_tokens as f64 / median(&mut decode).max(1e-12),
    })
}

/// (prefill seconds, decode seconds) of one run.
fn run_once(model: &CausalLm, prompt: &[u32], new_tokens: usize) -> Result<(f64, f64)> {
    let window = model.config.sliding_window;
    let mut cache = KvCache::new(model.config.n_layers);
    let start = Instant::now();
    let logits =
        to_host(model.forward_last(&ForwardBatch::single(prompt, window), Some(&mut cache))?)?;
    let prefill = start.elapsed().as_secs_f64();
    let mut next = argmax(&logits);
    let start = Instant::now();
    for step in 0..new_tokens {
        let past = prompt.len() + step;
        let batch = ForwardBatch {
            tokens: vec![next],
            positions: vec![past as u32],
            batch: 1,
            seq: 1,
            mask: AttentionMask::dense(1, past, 1, window),
        };
        next = argmax(&to_host(model.forward_last(&batch, Some(&mut cache))?)?);
    }
    Ok((prefill, start.elapsed().as_secs_f64()))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
