//! Attention masks: causal, sliding-window and padding constraints combined into one
//! additive bias (0 where a query may look, the most negative f32 where it may not), the
//! way the reference eager implementation applies them.

use burn::tensor::{Device, Tensor, TensorData};

/// The segment id of padding in [`AttentionMask::packed`]: never attended to.
pub const PADDING_SEGMENT: u32 = 0;

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

    /// A block-diagonal causal mask for packed rows, from per-token segment ids
    /// (`[batch, seq]`, row-major, no cache): query `i` sees key `j` iff both carry the same
    /// segment id, `j <= i`, and `j` is inside the sliding window. Tokens of
    /// [`PADDING_SEGMENT`] are never attended to (a padding query sees nothing; its output
    /// is a finite average that carries no loss).
    ///
    /// Segments must be contiguous runs (one example each), so the window, measured in
    /// row indices, equals the window in each example's own positions.
    ///
    /// # Panics
    /// If `segments.len() != batch * seq`, as for [`AttentionMask::causal`].
    pub fn packed(batch: usize, seq: usize, segments: Vec<u32>, window: Option<usize>) -> Self {
        let valid = segments.iter().map(|&s| s != PADDING_SEGMENT).collect();
        Self::causal(batch, 0, seq, valid, window).with_segments(segments)
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
    fn packed_is_block_diagonal_and_never_sees_padding() {
        // Row 0: two examples then one padding slot; row 1: one example then padding.
        let segments = vec![1, 1, 2, 2, 2, 0, 1, 1, 0, 0, 0, 0];
        let m = AttentionMask::packed(2, 6, segments, None);
        assert_eq!(
            pattern(&m, 0),
            ["1.....", "11....", "..1...", "..11..", "..111.", "......"]
        );
        assert_eq!(
            pattern(&m, 1),
            ["1.....", "11....", "......", "......", "......", "......"]
        );
    }

    #[test]
    fn packed_applies_the_window_inside_each_segment() {
        let m = AttentionMask::packed(1, 6, vec![1, 1, 1, 2, 2, 2], Some(2));
        assert_eq!(
            pattern(&m, 0),
            ["1.....", "11....", ".11...", "...1..", "...11.", "....11"]
        );
    }

    #[test]
    fn a_fully_masked_padding_query_has_a_finite_softmax() {
        // The padding query's scores are all f32::MIN after the bias; softmax must stay
        // finite (uniform) so that gradients through the row stay finite.
        let device = Device::flex();
        let m = AttentionMask::packed(1, 3, vec![1, 1, 0], None);
        let scores = Tensor::<4>::from_data(
            TensorData::new(
                vec![0.5f32, -3.0, 7.0, 1.0, 2.0, 3.0, -9.0, 4.0, 0.1],
                [1, 1, 3, 3],
            ),
            &device,
        );
        let probs = burn::tensor::activation::softmax(scores + m.bias(&device), 3);
        let v: Vec<f32> = probs.into_data().try_to_vec().expect("f32");
        assert!(v.iter().all(|p| p.is_finite()), "{v:?}");
        assert_eq!(&v[..3], &[1.0, 0.0, 0.0]);
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
