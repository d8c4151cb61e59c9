//! Attention masks: causal, sliding-window and padding constraints combined into one
//! additive bias (0 where a query may look, the most negative f32 where it may not), the
//! way the reference eager implementation applies them.

use burn::tensor::{Device, Tensor, TensorData};

/// Which keys each query of a forward pass may attend to.
///
/// Keys are indexed over the whole cached sequence (`past_len` cached keys followed by the
/// `query_len` new ones); queries are the new tokens.
#[derive(Debug, Clone)]
pub struct AttentionMask {
    batch: usize,
    past_len: usize,
    query_len: usize,
    /// `[batch, past_len + query_len]`: false for padding keys.
    key_valid: Vec<bool>,
    /// Mistral's window: a query sees keys at most `window - 1` steps back.
    window: Option<usize>,
    /// Optional `[batch, past_len + query_len]` segment ids: a query sees only keys of its own
    /// segment (packed training rows).
    segments: Option<Vec<u32>>,
}

impl AttentionMask {
    /// A causal mask over `key_valid` (`[batch, past_len + query_len]`, row-major).
    ///
    /// # Panics
    /// If `key_valid.len() != batch * (past_len + query_len)`: callers build both from the
    /// same batch, so a mismatch is a bug in the caller.
    pub fn causal(
        batch: usize,
        past_len: usize,
        query_len: usize,
        key_valid: Vec<bool>,
        window: Option<usize>,
    ) -> Self {
        assert_eq!(
            key_valid.len(),
            batch * (past_len + query_len),
            "key_valid shape"
        );
        AttentionMask {
            batch,
            past_len,
            query_len,
            key_valid,
            window,
            segments: None,
        }
    }

    /// A causal mask with every key valid.
    pub fn dense(batch: usize, past_len: usize, query_len: usize, window: Option<usize>) -> Self {
        Self::causal(
            batch,
            past_len,
            query_len,
            vec![true; batch * (past_len + query_len)],
            window,
        )
    }

    /// Restricts attention to keys with the same segment id (for packed sequences).
    ///
    /// # Panics
    /// If `segments` does not have one id per key.
    pub fn with_segments(mut self, segments: Vec<u32>) -> Self {
        assert_eq!(segments.len(), self.key_valid.len(), "segments shape");
        self.segments = Some(segments);
        self
    }

    /// Number of keys (cached plus new).
    pub fn key_len(&self) -> usize {
        self.past_len + self.query_len
    }

    /// Whether query `i` (0-based among the new tokens) of row `b` may see key `j`.
    pub fn allows(&self, b: usize, i: usize, j: usize) -> bool {
        let keys = self.key_len();
        let q = self.past_len + i;
        if j > q {
            return false;
        }
        let in_window = self.window.is_none_or(|w| q - j < w);
        let same_segment = self
            .segments
            .as_ref()
            .is_none_or(|s| s[b * keys + j] == s[b * keys + q]);
        in_window && same_segment && self.key_valid[b * keys + j]
    }

    /// The additive bias, shaped `[batch, 1, query_len, key_len]`.
    pub fn bias(&self, device: &Device) -> Tensor<4> {
        let keys = self.key_len();
        let mut data = Vec::with_capacity(self.batch * self.query_len * keys);
        for b in 0..self.batch {
            for i in 0..self.query_len {
                data.extend((0..keys).map(|j| if self.allows(b, i, j) { 0.0 } else { f32::MIN }));
            }
        }
        Tensor::from_data(
            TensorData::new(data, [self.batch, 1, self.query_len, keys]),
            device,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(mask: &AttentionMask, b: usize) -> Vec<String> {
        (0..mask.query_len)
            .map(|i| {
                (0..mask.key_len())
                    .map(|j| if mask.allows(b, i, j) { '1' } else { '.' })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn causal_is_lower_triangular() {
        let m = AttentionMask::dense(1, 0, 3, None);
        assert_eq!(pattern(&m, 0), ["1..", "11.", "111"]);
    }

    #[test]
    fn sliding_window_limits_lookback() {
        let m = AttentionMask::dense(1, 0, 4, Some(2));
        assert_eq!(pattern(&m, 0), ["1...", "11..", ".11.", "..11"]);
    }

    #[test]
    fn cached_keys_and_padding_are_respected() {
        // Row 1 is left-padded by one token.
        let valid = vec![true, true, true, false, true, true];
        let m = AttentionMask::causal(2, 2, 1, valid, None);
        assert_eq!(pattern(&m, 0), ["111"]);
        assert_eq!(pattern(&m, 1), [".11"]);
    }

    #[test]
    fn segments_block_cross_example_attention() {
        let m = AttentionMask::dense(1, 0, 4, None).with_segments(vec![0, 0, 1, 1]);
        assert_eq!(pattern(&m, 0), ["1...", "11..", "..1.", "..11"]);
    }

    #[test]
    fn bias_has_zero_and_min() {
        let m = AttentionMask::dense(1, 0, 2, None);
        let v: Vec<f32> = m
            .bias(&Device::flex())
            .into_data()
            .try_to_vec()
            .expect("f32");
        assert_eq!(v, vec![0.0, f32::MIN, 0.0, 0.0]);
    }
}
