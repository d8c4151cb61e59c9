//! Grouped-query self-attention (Ainslie et al., <https://arxiv.org/abs/2305.13245>) with
//! rotary positions and a key/value cache, as in Llama 2/3 and Mistral.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::lora::LoraLinear;
use crate::rope::Rope;

/// Multi-head attention whose keys and values have `n_kv_heads <= n_heads` heads.
#[derive(Module, Debug)]
pub struct Attention {
    /// `d_model -> n_heads * head_dim`.
    pub q_proj: LoraLinear,
    /// `d_model -> n_kv_heads * head_dim`.
    pub k_proj: LoraLinear,
    /// `d_model -> n_kv_heads * head_dim`.
    pub v_proj: LoraLinear,
    /// `n_heads * head_dim -> d_model`.
    pub o_proj: LoraLinear,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads.
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

/// Cached keys and values of one layer, after rotary embedding.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    keys: Option<Tensor<4>>,
    values: Option<Tensor<4>>,
}

impl LayerCache {
    /// Appends new keys and values and returns the full cached sequence.
    ///
    /// # Shapes
    /// - keys, values: `[batch, n_kv_heads, new, head_dim]`
    /// - output: `[batch, n_kv_heads, cached + new, head_dim]` each
    fn append(&mut self, keys: Tensor<4>, values: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let keys = match self.keys.take() {
            Some(old) => Tensor::cat(vec![old, keys], 2),
            None => keys,
        };
        let values = match self.values.take() {
            Some(old) => Tensor::cat(vec![old, values], 2),
            None => values,
        };
        self.keys = Some(keys.clone());
        self.values = Some(values.clone());
        (keys, values)
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Attention {
    /// Attends from the new positions of `x` to the cached and new keys.
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
        let [b, t, _] = x.dims();
        let (nh, nkv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);

        // Project and split heads.
        let q = self
            .q_proj
            .forward(x.clone())
            .reshape([b, t, nh, hd])
            .swap_dims(1, 2); // [b, nh, t, hd]
        let k = self
            .k_proj
            .forward(x.clone())
            .reshape([b, t, nkv, hd])
            .swap_dims(1, 2); // [b, nkv, t, hd]
        let v = self
            .v_proj
            .forward(x)
            .reshape([b, t, nkv, hd])
            .swap_dims(1, 2); // [b, nkv, t, hd]

        // Rotate queries and keys by their positions.
        let q = Rope::apply(q, cos, sin);
        let k = Rope::apply(k, cos, sin);

        // Extend the cache; attention then covers every cached key.
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let keys = k.dims()[2];
        let k = repeat_kv(k, nh / nkv); // [b, nh, keys, hd]
        let v = repeat_kv(v, nh / nkv); // [b, nh, keys, hd]

        // Scaled dot-product attention with the additive mask, softmax in f32.
        let scale = (hd as f64).powf(-0.5);
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale); // [b, nh, t, keys]
        let scores = scores + bias.clone().expand([b, nh, t, keys]);
        let probs = softmax(scores, 3);
        let out = probs.matmul(v); // [b, nh, t, hd]

        // Merge heads and project back.
        let out = out.swap_dims(1, 2).reshape([b, t, nh * hd]); // [b, t, nh * hd]
        self.o_proj.forward(out)
    }
}

/// Repeats each key/value head `times` times so grouped heads line up with query heads.
///
/// # Shapes
/// - x: `[batch, n_kv_heads, seq, head_dim]`
/// - output: `[batch, n_kv_heads * times, seq, head_dim]`
fn repeat_kv(x: Tensor<4>, times: usize) -> Tensor<4> {
    if times == 1 {
        return x;
    }
    let [b, nkv, t, hd] = x.dims();
    x.unsqueeze_dim::<5>(2) // [b, nkv, 1, t, hd]
        .expand([b, nkv, times, t, hd])
        .reshape([b, nkv * times, t, hd])
}
