//! The decoder-only transformer shared by Llama and Mistral: token embedding, a stack of
//! pre-norm decoder layers (RMSNorm → grouped-query attention → residual, RMSNorm → SwiGLU
//! → residual), a final RMSNorm and the output projection (tied to the embedding or not).
//!
//! Llama: Touvron et al., <https://arxiv.org/abs/2302.13971>; Mistral: Jiang et al.,
//! <https://arxiv.org/abs/2310.06825>. One definition serves every Burn backend: tensors
//! carry their device.

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::attention::{Attention, LayerCache};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::mask::AttentionMask;
use crate::mlp::FeedForward;
use crate::rope::Rope;

/// One pre-norm decoder block.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// RMS norm before attention (`input_layernorm`).
    pub attn_norm: RmsNorm,
    /// Grouped-query self-attention.
    pub attn: Attention,
    /// RMS norm before the feed-forward block (`post_attention_layernorm`).
    pub mlp_norm: RmsNorm,
    /// SwiGLU feed-forward block.
    pub mlp: FeedForward,
}

impl DecoderLayer {
    /// Applies the block.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - cos, sin: `[batch, 1, seq, head_dim]`
    /// - bias: `[batch, 1, seq, cached + seq]`
    /// - output: `[batch, seq, d_model]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        bias: &Tensor<4>,
        cache: Option<&mut LayerCache>,
    ) -> Tensor<3> {
        let h = self
            .attn
            .forward(self.attn_norm.forward(x.clone()), cos, sin, bias, cache);
        let x = x + h; // [b, t, d_model]
        let h = self.mlp.forward(self.mlp_norm.forward(x.clone()));
        x + h // [b, t, d_model]
    }
}

/// Keys and values of every layer for the positions processed so far.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<LayerCache>,
}

impl KvCache {
    /// An empty cache for a model with `n_layers` layers.
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: vec![LayerCache::default(); n_layers],
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A causal language model: Llama or Mistral, with its configuration.
#[derive(Module, Debug)]
pub struct CausalLm {
    /// Token embedding, `[vocab_size, d_model]`.
    pub embed_tokens: Embedding,
    /// The decoder layers.
    pub layers: Vec<DecoderLayer>,
    /// Final RMS norm.
    pub norm: RmsNorm,
    /// Output projection; `None` when tied to `embed_tokens`.
    pub lm_head: Option<Linear>,
    /// Hyper-parameters.
    #[module(skip)]
    pub config: ModelConfig,
    /// Rotary frequencies.
    #[module(skip)]
    pub rope: Rope,
}

/// One batch of token ids with the positions and mask they are processed under.
#[derive(Debug, Clone)]
pub struct ForwardBatch {
    /// Token ids, `[batch, seq]` row-major.
    pub tokens: Vec<u32>,
    /// Rotary position of each token, `[batch, seq]` row-major.
    pub positions: Vec<u32>,
    /// Rows in the batch.
    pub batch: usize,
    /// Tokens per row.
    pub seq: usize,
    /// Which keys each query may see (cached keys included).
    pub mask: AttentionMask,
}

impl ForwardBatch {
    /// One unpadded sequence starting at position 0, with no cache.
    pub fn single(tokens: &[u32], window: Option<usize>) -> Self {
        let seq = tokens.len();
        ForwardBatch {
            tokens: tokens.to_vec(),
            positions: (0..seq as u32).collect(),
            batch: 1,
            seq,
            mask: AttentionMask::dense(1, 0, seq, window),
        }
    }
}

impl CausalLm {
    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.norm.gamma.val().device()
    }

    /// Checks that every token id fits the embedding table.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first id that is out of range.
    pub fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        match tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            Some(bad) => Err(Error::Invalid(format!(
                "token id {bad} is outside the model's vocabulary (vocab_size {})",
                self.config.vocab_size
            ))),
            None => Ok(()),
        }
    }

    /// Final hidden states (after the last norm) of a batch.
    ///
    /// # Shapes
    /// - output: `[batch, seq, d_model]`
    ///
    /// # Errors
    /// [`Error::Invalid`] when a token id is out of range or the batch shapes disagree.
    pub fn hidden_states(
        &self,
        batch: &ForwardBatch,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor<3>> {
        let (b, t) = (batch.batch, batch.seq);
        if b == 0 || t == 0 || batch.tokens.len() != b * t || batch.positions.len() != b * t {
            return Err(Error::Invalid(format!(
                "forward batch of {b}x{t} has {} tokens and {} positions",
                batch.tokens.len(),
                batch.positions.len()
            )));
        }
        self.check_tokens(&batch.tokens)?;
        let past = cache.as_ref().map_or(0, |c| c.len());
        if batch.mask.key_len() != past + t {
            return Err(Error::Invalid(format!(
                "attention mask covers {} keys but the cache holds {past} and the batch adds {t}",
                batch.mask.key_len()
            )));
        }
        let device = self.device();
        let ids: Vec<i64> = batch.tokens.iter().map(|&t| i64::from(t)).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
        let (cos, sin) = self.rope.tables(&batch.positions, b, t, &device);
        let bias = batch.mask.bias(&device); // [b, 1, t, past + t]

        let mut x = self.embed_tokens.forward(ids); // [b, t, d_model]
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = layer.forward(x, &cos, &sin, &bias, layer_cache);
        }
        Ok(self.norm.forward(x))
    }

    /// Projects hidden states to vocabulary logits.
    ///
    /// # Shapes
    /// - hidden: `[batch, seq, d_model]`
    /// - output: `[batch, seq, vocab_size]`
    pub fn project(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = hidden.dims();
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let w = self.embed_tokens.weight.val(); // [vocab, d_model]
                let vocab = w.dims()[0];
                hidden
                    .reshape([b * t, d])
                    .matmul(w.transpose()) // [b * t, vocab]
                    .reshape([b, t, vocab])
            }
        }
    }

    /// Logits at every position of a batch.
    ///
    /// # Shapes
    /// - output: `[batch, seq, vocab_size]`
    ///
    /// # Errors
    /// As [`CausalLm::hidden_states`].
    pub fn forward(&self, batch: &ForwardBatch, cache: Option<&mut KvCache>) -> Result<Tensor<3>> {
        Ok(self.project(self.hidden_states(batch, cache)?))
    }

    /// Logits at the last position of each row only: what generation needs, without the
    /// cost of projecting every prompt position onto the vocabulary.
    ///
    /// # Shapes
    /// - output: `[batch, vocab_size]`
    ///
    /// # Errors
    /// As [`CausalLm::hidden_states`].
    pub fn forward_last(
        &self,
        batch: &ForwardBatch,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor<2>> {
        let hidden = self.hidden_states(batch, cache)?;
        let [b, t, d] = hidden.dims();
        let last = hidden.slice([0..b, t - 1..t, 0..d]); // [b, 1, d_model]
        Ok(self.project(last).reshape([b, self.config.vocab_size]))
    }

    /// Logits of one unpadded sequence as host rows, one `Vec` of `vocab_size` per position.
    ///
    /// # Errors
    /// As [`CausalLm::hidden_states`]; also an empty `tokens`.
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        if tokens.is_empty() {
            return Err(Error::Invalid("no tokens given".to_owned()));
        }
        let batch = ForwardBatch::single(tokens, self.config.sliding_window);
        let logits = self.forward(&batch, None)?;
        let flat = to_host(logits.reshape([tokens.len() * self.config.vocab_size]))?;
        Ok(flat
            .chunks(self.config.vocab_size)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

/// Copies a tensor's values to the host as f32.
///
/// # Errors
/// [`Error::Invalid`] when the backend cannot read the tensor back.
pub fn to_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Invalid(format!("cannot read tensor back from the device: {e:?}")))
}

/// Host-side weights for one model, named as in the checkpoint, turned into Burn modules.
pub(crate) struct Builder<'a> {
    pub device: &'a Device,
}

impl Builder<'_> {
    /// A `[rows, cols]` tensor from row-major data.
    pub fn tensor2(&self, data: Vec<f32>, rows: usize, cols: usize) -> Tensor<2> {
        Tensor::from_data(TensorData::new(data, [rows, cols]), self.device)
    }

    /// A Burn linear layer from its weight already in Burn's `[in, out]` layout (the
    /// transpose of an HF `[out, in]` weight) and an optional `[out]` bias.
    pub fn linear_transposed(
        &self,
        weight: Vec<f32>,
        d_in: usize,
        d_out: usize,
        bias: Option<Vec<f32>>,
    ) -> Linear {
        Linear {
            weight: Param::from_tensor(self.tensor2(weight, d_in, d_out)),
            bias: bias.map(|b| {
                Param::from_tensor(Tensor::from_data(TensorData::new(b, [d_out]), self.device))
            }),
        }
    }

    /// An RMS norm from its `[d]` weight.
    pub fn rms_norm(&self, gamma: Vec<f32>, epsilon: f64) -> RmsNorm {
        let d = gamma.len();
        RmsNorm {
            gamma: Param::from_tensor(Tensor::from_data(TensorData::new(gamma, [d]), self.device)),
            epsilon,
        }
    }

    /// An embedding from its `[vocab, d]` weight.
    pub fn embedding(&self, weight: Vec<f32>, vocab: usize, d: usize) -> Embedding {
        Embedding {
            weight: Param::from_tensor(self.tensor2(weight, vocab, d)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_matches_the_reference_formula() {
        // HF Llama: x * rsqrt(mean(x^2) + eps) * weight, per row.
        let device = Device::flex();
        let b = Builder { device: &device };
        let gamma = vec![1.0, 0.5, 2.0, -1.0];
        let x = [3.0f32, -1.0, 2.0, 0.5, 0.0, 0.0, 0.0, 1e-3];
        let norm = b.rms_norm(gamma.clone(), 1e-5);
        let input = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [2, 4]), &device);
        let got = to_host(norm.forward(input)).expect("host");
        for (row, chunk) in x.chunks(4).enumerate() {
            let ms = chunk.iter().map(|v| v * v).sum::<f32>() / 4.0;
            let inv = 1.0 / (ms + 1e-5).sqrt();
            for (i, v) in chunk.iter().enumerate() {
                let want = v * inv * gamma[i];
                let have = got[row * 4 + i];
                assert!(
                    (want - have).abs() < 1e-5,
                    "row {row} col {i}: {have} vs {want}"
                );
            }
        }
    }
}
