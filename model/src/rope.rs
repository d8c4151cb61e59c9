//! Rotary position embeddings (RoFormer, <https://arxiv.org/abs/2104.09864>) in the
//! "rotate half" layout used by Hugging Face Llama and Mistral checkpoints, with linear and
//! Llama 3.1 frequency scaling.
//!
//! Inverse frequencies are computed once in f32, as the reference implementation does; the
//! cosine and sine rows are computed on the host for the positions of each forward pass, so
//! a model with a 128k context never materialises a 128k-row table.

use burn::tensor::{Device, Tensor, TensorData};

use crate::config::{ModelConfig, RopeScaling};

/// The inverse frequencies of one head and the tables they produce.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    head_dim: usize,
}

impl Rope {
    /// Builds the inverse frequencies for `config`'s head width, theta and scaling.
    pub fn new(config: &ModelConfig) -> Self {
        let head_dim = config.head_dim;
        let base: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1.0 / config.rope_theta.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let inv_freq = match &config.rope_scaling {
            None => base,
            Some(RopeScaling::Linear { factor }) => base.iter().map(|f| f / factor).collect(),
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => llama3_scale(
                &base,
                *factor,
                *low_freq_factor,
                *high_freq_factor,
                *original_max_position_embeddings as f32,
            ),
        };
        Rope { inv_freq, head_dim }
    }

    /// The (scaled) inverse frequencies, one per rotated pair.
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// Cosine and sine tables for a `[batch, seq]` grid of positions, shaped
    /// `[batch, 1, seq, head_dim]` so they broadcast over heads.
    pub fn tables(
        &self,
        positions: &[u32],
        batch: usize,
        seq: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<4>) {
        let half = self.head_dim / 2;
        let mut cos = Vec::with_capacity(positions.len() * self.head_dim);
        let mut sin = Vec::with_capacity(positions.len() * self.head_dim);
        for &p in positions {
            // Angles are computed in f32 like the reference (position * inv_freq), then
            // repeated for both halves of the head.
            let start = cos.len();
            for &f in &self.inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
            cos.extend_from_within(start..start + half);
            sin.extend_from_within(start..start + half);
        }
        let shape = [batch, 1, seq, self.head_dim];
        (
            Tensor::from_data(TensorData::new(cos, shape), device),
            Tensor::from_data(TensorData::new(sin, shape), device),
        )
    }

    /// Rotates `x` by the angles of `cos`/`sin`.
    ///
    /// # Shapes
    /// - x: `[batch, heads, seq, head_dim]`
    /// - cos, sin: `[batch, 1, seq, head_dim]`
    /// - output: `[batch, heads, seq, head_dim]`
    pub fn apply(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        let [b, h, t, d] = x.dims();
        let half = d / 2;
        let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..half]);
        let x2 = x.clone().slice([0..b, 0..h, 0..t, half..d]);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3); // [b, h, t, d]
        x * cos.clone() + rotated * sin.clone()
    }
}

/// Llama 3.1 scaling: long wavelengths are divided by `factor`, short ones kept, and the band
/// between them interpolated smoothly.
fn llama3_scale(base: &[f32], factor: f32, low: f32, high: f32, original_ctx: f32) -> Vec<f32> {
    let low_freq_wavelen = original_ctx / low;
    let high_freq_wavelen = original_ctx / high;
    base.iter()
        .map(|&f| {
            let wavelen = 2.0 * std::f32::consts::PI / f;
            if wavelen < high_freq_wavelen {
                f
            } else if wavelen > low_freq_wavelen {
                f / factor
            } else {
                let smooth = (original_ctx / wavelen - low) / (high - low);
                (1.0 - smooth) * f / factor + smooth * f
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Architecture;

    fn config(head_dim: usize, scaling: Option<RopeScaling>) -> ModelConfig {
        ModelConfig {
            architecture: Architecture::Llama,
            vocab_size: 10,
            d_model: head_dim,
            d_ff: 4,
            n_layers: 1,
            n_heads: 1,
            n_kv_heads: 1,
            head_dim,
            max_seq_len: 64,
            norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: scaling,
            tie_embeddings: false,
            sliding_window: None,
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: None,
            eos_token_ids: vec![],
            pad_token_id: None,
            torch_dtype: None,
        }
    }

    #[test]
    fn inverse_frequencies_follow_theta() {
        let rope = Rope::new(&config(8, None));
        let expected = [1.0, 0.1, 0.01, 0.001];
        for (got, want) in rope.inv_freq().iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn linear_scaling_divides_every_frequency() {
        let plain = Rope::new(&config(8, None));
        let scaled = Rope::new(&config(8, Some(RopeScaling::Linear { factor: 4.0 })));
        for (a, b) in plain.inv_freq().iter().zip(scaled.inv_freq()) {
            assert!((a / 4.0 - b).abs() < 1e-9);
        }
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let scaling = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        };
        let plain = Rope::new(&config(16, None));
        let scaled = Rope::new(&config(16, Some(scaling)));
        // Wavelength 2*pi < 64/4: unchanged. Longest wavelength > 64: divided by 8.
        assert_eq!(plain.inv_freq()[0], scaled.inv_freq()[0]);
        let last = plain.inv_freq().len() - 1;
        assert!((plain.inv_freq()[last] / 8.0 - scaled.inv_freq()[last]).abs() < 1e-12);
        // The medium band lies strictly between.
        for (p, s) in plain.inv_freq().iter().zip(scaled.inv_freq()) {
            assert!(*s <= *p && *s >= p / 8.0 - 1e-12);
        }
    }

    #[test]
    fn rotation_preserves_norm_and_matches_pairs() {
        let device = Device::flex();
        let rope = Rope::new(&config(4, None));
        let (cos, sin) = rope.tables(&[0, 3], 1, 2, &device);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                vec![1.0f32, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0],
                [1, 1, 2, 4],
            ),
            &device,
        );
        let y: Vec<f32> = Rope::apply(x, &cos, &sin)
            .into_data()
            .try_to_vec()
            .expect("f32");
        // Position 0 is the identity.
        assert_eq!(&y[..4], &[1.0, 2.0, 3.0, 4.0]);
        // Position 3: pair (x0, x2) rotates by 3 rad, pair (x1, x3) by 3 * 0.01 rad.
        let (c, s) = (3.0f32.cos(), 3.0f32.sin());
        assert!((y[4] - (1.0 * c - 3.0 * s)).abs() < 1e-6);
        assert!((y[6] - (3.0 * c + 1.0 * s)).abs() < 1e-6);
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((norm(&y[4..]) - 30.0).abs() < 1e-4);
    }
}
