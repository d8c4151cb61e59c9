//! Low-rank adaptation (LoRA, Hu et al., <https://arxiv.org/abs/2106.09685>; rank-stabilised
//! scaling from rsLoRA, Kalajdzievski, <https://arxiv.org/abs/2312.03732>) of the decoder's
//! linear projections.
//!
//! Every projection of a decoder layer is a [`LoraLinear`]: the frozen base [`Linear`] plus
//! an optional low-rank path `scaling * B(A(dropout(x)))`, with `lora_a` `[rank, in]` and
//! `lora_b` `[out, rank]` stored in PEFT's orientation. The path is computed as two thin
//! matmuls rather than by composing a dense `W + scaling * A^T B^T` (what Burn's
//! `Module::apply_lora` reparameterisation does): that keeps the backward pass from forming a
//! weight-sized gradient for every adapted matrix, and lets dropout act on the adapter's input
//! as PEFT's does. Dropout masks come from a seeded host RNG keyed by the trainer, so a
//! resumed run draws exactly the masks of an uninterrupted one.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::LayerTensor;
use crate::transformer::{CausalLm, to_host};

/// A projection LoRA can adapt; the string form is the Hugging Face module name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LoraTarget {
    /// `self_attn.q_proj`.
    #[serde(rename = "q_proj")]
    Q,
    /// `self_attn.k_proj`.
    #[serde(rename = "k_proj")]
    K,
    /// `self_attn.v_proj`.
    #[serde(rename = "v_proj")]
    V,
    /// `self_attn.o_proj`.
    #[serde(rename = "o_proj")]
    O,
    /// `mlp.gate_proj`.
    #[serde(rename = "gate_proj")]
    Gate,
    /// `mlp.up_proj`.
    #[serde(rename = "up_proj")]
    Up,
    /// `mlp.down_proj`.
    #[serde(rename = "down_proj")]
    Down,
}

impl LoraTarget {
    /// Every target, in checkpoint order (PEFT's `all-linear` minus the output head).
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    /// The HF module name (`q_proj`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            LoraTarget::Q => "q_proj",
            LoraTarget::K => "k_proj",
            LoraTarget::V => "v_proj",
            LoraTarget::O => "o_proj",
            LoraTarget::Gate => "gate_proj",
            LoraTarget::Up => "up_proj",
            LoraTarget::Down => "down_proj",
        }
    }

    /// The checkpoint tensor this target adapts.
    pub fn layer_tensor(self) -> LayerTensor {
        match self {
            LoraTarget::Q => LayerTensor::Q,
            LoraTarget::K => LayerTensor::K,
            LoraTarget::V => LayerTensor::V,
            LoraTarget::O => LayerTensor::O,
            LoraTarget::Gate => LayerTensor::Gate,
            LoraTarget::Up => LayerTensor::Up,
            LoraTarget::Down => LayerTensor::Down,
        }
    }
}

impl std::fmt::Display for LoraTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LoraTarget {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        LoraTarget::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown LoRA target {s:?}: expected one of q_proj, k_proj, v_proj, o_proj, \
                     gate_proj, up_proj, down_proj"
                ))
            })
    }
}

fn default_targets() -> Vec<LoraTarget> {
    vec![LoraTarget::Q, LoraTarget::V]
}

/// Which projections of which layers get adapters, and how they are scaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank `r` of the update.
    pub rank: usize,
    /// Scaling numerator `alpha`.
    pub alpha: f64,
    /// Dropout probability on the adapter's input (training only).
    #[serde(default)]
    pub dropout: f64,
    /// The adapted projections.
    #[serde(default = "default_targets")]
    pub targets: Vec<LoraTarget>,
    /// Scale by `alpha / sqrt(r)` (rsLoRA) instead of `alpha / r`.
    #[serde(default)]
    pub use_rslora: bool,
    /// Layer indices to adapt; `None` adapts every layer.
    #[serde(default)]
    pub layers: Option<Vec<usize>>,
}

impl Default for LoraConfig {
    /// PEFT's `LoraConfig()` defaults: r 8, alpha 8, no dropout, the query and value
    /// projections of every layer.
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 8.0,
            dropout: 0.0,
            targets: default_targets(),
            use_rslora: false,
            layers: None,
        }
    }
}

impl LoraConfig {
    /// The factor applied to `B A x`: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// Checks the values against a model with `n_layers` layers, listing every problem.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming each bad field and what was expected.
    pub fn validate(&self, n_layers: usize) -> Result<()> {
        let mut problems = Vec::new();
        if self.rank == 0 {
            problems.push("lora.rank must be at least 1".to_owned());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            problems.push(format!("lora.alpha must be > 0, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            problems.push(format!(
                "lora.dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        if self.targets.is_empty() {
            problems.push("lora.targets is empty: name at least one projection".to_owned());
        }
        if let Some(layers) = &self.layers
            && let Some(bad) = layers.iter().find(|&&l| l >= n_layers)
        {
            problems.push(format!(
                "lora.layers names layer {bad} but the model has {n_layers} (0..{n_layers})"
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "invalid LoRA config: {}",
                problems.join("; ")
            )))
        }
    }

    /// Whether layer `index` is adapted.
    pub fn adapts_layer(&self, index: usize) -> bool {
        self.layers.as_ref().is_none_or(|l| l.contains(&index))
    }
}

/// The trainable low-rank path of one projection.
#[derive(Module, Debug)]
pub struct LowRank {
    /// Down projection `A`, `[rank, in]` (PEFT's `lora_A.weight`).
    pub lora_a: Param<Tensor<2>>,
    /// Up projection `B`, `[out, rank]` (PEFT's `lora_B.weight`).
    pub lora_b: Param<Tensor<2>>,
    /// `alpha / r` or `alpha / sqrt(r)`.
    #[module(skip)]
    pub scaling: f64,
    /// Dropout probability on the input of `A`.
    #[module(skip)]
    pub dropout: f64,
    /// Seed of the next forward's dropout mask; `None` disables dropout (evaluation).
    #[module(skip)]
    pub dropout_seed: Option<u64>,
}

impl LowRank {
    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.lora_a.val().dims()[0]
    }

    /// `scaling * B A`, the update in HF's `[out, in]` orientation.
    pub fn delta(&self) -> Tensor<2> {
        self.lora_b
            .val()
            .matmul(self.lora_a.val())
            .mul_scalar(self.scaling)
    }

    /// Applies dropout with a mask drawn from `dropout_seed` (inverted scaling, as
    /// `torch.nn.Dropout`).
    fn drop(&self, x: Tensor<2>) -> Tensor<2> {
        let Some(seed) = self.dropout_seed.filter(|_| self.dropout > 0.0) else {
            return x;
        };
        let [rows, cols] = x.dims();
        let keep = 1.0 - self.dropout;
        let mut rng = StdRng::seed_from_u64(seed);
        let mask: Vec<f32> = (0..rows * cols)
            .map(|_| {
                if rng.random::<f64>() < keep {
                    (1.0 / keep) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, cols]), &x.device());
        x * mask
    }
}

/// A linear projection with an optional LoRA path.
#[derive(Module, Debug)]
pub struct LoraLinear {
    /// The (frozen, when adapted) base projection, weight `[in, out]` in Burn's layout.
    pub base: Linear,
    /// The adapter, when this projection is adapted.
    pub lora: Option<LowRank>,
}

impl LoraLinear {
    /// A projection without an adapter.
    pub fn plain(base: Linear) -> Self {
        LoraLinear { base, lora: None }
    }

    /// `[in, out]` of the base weight.
    pub fn dims(&self) -> [usize; 2] {
        self.base.weight.val().dims()
    }

    /// Applies the projection.
    ///
    /// # Shapes
    /// - x: `[batch, seq, in]`
    /// - output: `[batch, seq, out]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let Some(lora) = &self.lora else {
            return self.base.forward(x);
        };
        let y = self.base.forward(x.clone()); // [b, t, out]
        let [b, t, d_in] = x.dims();
        let out = y.dims()[2];
        let x = lora.drop(x.reshape([b * t, d_in])); // [b * t, in]
        let h = x
            .matmul(lora.lora_a.val().transpose()) // [b * t, rank]
            .matmul(lora.lora_b.val().transpose()) // [b * t, out]
            .mul_scalar(lora.scaling)
            .reshape([b, t, out]);
        y + h
    }

    /// Folds the adapter into the base weight (`W += scaling * B A`) and drops it.
    pub fn merge(self) -> Self {
        let Some(lora) = self.lora else {
            return self;
        };
        let delta = lora.delta().transpose(); // [in, out], Burn's layout
        let weight = self.base.weight.val() + delta;
        LoraLinear::plain(Linear {
            weight: Param::from_tensor(weight),
            bias: self.base.bias,
        })
    }
}

/// Host values of one adapter, in PEFT's orientation.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterValues {
    /// Layer index.
    pub layer: usize,
    /// Which projection.
    pub target: LoraTarget,
    /// `lora_a`, `[rank, in]` row-major.
    pub lora_a: Vec<f32>,
    /// `lora_b`, `[out, rank]` row-major.
    pub lora_b: Vec<f32>,
    /// `(rank, in, out)`.
    pub dims: (usize, usize, usize),
}

/// The projection of `layer` that `target` names.
pub fn projection(layer: &crate::transformer::DecoderLayer, target: LoraTarget) -> &LoraLinear {
    match target {
        LoraTarget::Q => &layer.attn.q_proj,
        LoraTarget::K => &layer.attn.k_proj,
        LoraTarget::V => &layer.attn.v_proj,
        LoraTarget::O => &layer.attn.o_proj,
        LoraTarget::Gate => &layer.mlp.gate_proj,
        LoraTarget::Up => &layer.mlp.up_proj,
        LoraTarget::Down => &layer.mlp.down_proj,
    }
}

/// The projection of `layer` that `target` names, mutably.
pub fn projection_mut(
    layer: &mut crate::transformer::DecoderLayer,
    target: LoraTarget,
) -> &mut LoraLinear {
    match target {
        LoraTarget::Q => &mut layer.attn.q_proj,
        LoraTarget::K => &mut layer.attn.k_proj,
        LoraTarget::V => &mut layer.attn.v_proj,
        LoraTarget::O => &mut layer.attn.o_proj,
        LoraTarget::Gate => &mut layer.mlp.gate_proj,
        LoraTarget::Up => &mut layer.mlp.up_proj,
        LoraTarget::Down => &mut layer.mlp.down_proj,
    }
}

/// Draws fresh adapter values as PEFT initialises them: `A` Kaiming-uniform with
/// `a = sqrt(5)` (PyTorch's `nn.Linear` default, i.e. `U(-1/sqrt(in), 1/sqrt(in))`), `B`
/// zero, so the adapted model starts equal to the base. Ordered by layer, then target in
/// [`LoraTarget::ALL`] order; the same seed gives the same values.
///
/// # Errors
/// [`Error::Invalid`] when the config does not validate against the model.
pub fn init_adapters(
    model: &CausalLm,
    config: &LoraConfig,
    seed: u64,
) -> Result<Vec<AdapterValues>> {
    config.validate(model.layers.len())?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        if !config.adapts_layer(i) {
            continue;
        }
        for target in LoraTarget::ALL {
            if !config.targets.contains(&target) {
                continue;
            }
            let [d_in, d_out] = projection(layer, target).dims();
            let bound = 1.0 / (d_in as f64).sqrt();
            let lora_a = (0..config.rank * d_in)
                .map(|_| rng.random_range(-bound..bound) as f32)
                .collect();
            out.push(AdapterValues {
                layer: i,
                target,
                lora_a,
                lora_b: vec![0.0; d_out * config.rank],
                dims: (config.rank, d_in, d_out),
            });
        }
    }
    Ok(out)
}

/// Installs adapters into `model` (replacing any it has) as trainable parameters on the
/// model's device; the base weights are frozen (no gradients).
///
/// # Errors
/// [`Error::Invalid`] when an adapter names a missing layer or its shapes do not match the
/// projection.
pub fn install_adapters(
    model: CausalLm,
    config: &LoraConfig,
    adapters: &[AdapterValues],
) -> Result<CausalLm> {
    let mut model = model.no_grad();
    let device = model.device();
    let n_layers = model.layers.len();
    for ad in adapters {
        let layer = model.layers.get_mut(ad.layer).ok_or_else(|| {
            Error::Invalid(format!(
                "adapter for layer {} but the model has {n_layers} layers",
                ad.layer
            ))
        })?;
        let proj = projection_mut(layer, ad.target);
        let [d_in, d_out] = proj.dims();
        let (rank, a_in, b_out) = ad.dims;
        if a_in != d_in
            || b_out != d_out
            || ad.lora_a.len() != rank * d_in
            || ad.lora_b.len() != d_out * rank
        {
            return Err(Error::Invalid(format!(
                "adapter layers.{}.{}: lora_a [{rank}, {a_in}] / lora_b [{b_out}, {rank}] do not \
                 fit the projection [out {d_out}, in {d_in}]",
                ad.layer, ad.target
            )));
        }
        proj.lora = Some(LowRank {
            lora_a: trainable(ad.lora_a.clone(), [rank, d_in], &device),
            lora_b: trainable(ad.lora_b.clone(), [d_out, rank], &device),
            scaling: config.scaling(),
            dropout: config.dropout,
            dropout_seed: None,
        });
    }
    Ok(model)
}

fn trainable(data: Vec<f32>, shape: [usize; 2], device: &Device) -> Param<Tensor<2>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(data, shape), device))
}

/// Reads every adapter of `model` back to the host, in layer then target order.
///
/// # Errors
/// [`Error::Invalid`] when the backend cannot read a tensor back.
pub fn read_adapters(model: &CausalLm) -> Result<Vec<AdapterValues>> {
    let mut out = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        for target in LoraTarget::ALL {
            let proj = projection(layer, target);
            if let Some(lora) = &proj.lora {
                let [d_in, d_out] = proj.dims();
                out.push(AdapterValues {
                    layer: i,
                    target,
                    lora_a: to_host(lora.lora_a.val())?,
                    lora_b: to_host(lora.lora_b.val())?,
                    dims: (lora.rank(), d_in, d_out),
                });
            }
        }
    }
    Ok(out)
}

/// Sets the dropout seed of every adapter: `Some(seed)` gives each adapter its own mask
/// stream derived from `seed` and its position; `None` turns dropout off.
pub fn set_dropout_seed(model: &mut CausalLm, seed: Option<u64>) {
    let mut k = 0u64;
    for layer in &mut model.layers {
        for target in LoraTarget::ALL {
            if let Some(lora) = projection_mut(layer, target).lora.as_mut() {
                lora.dropout_seed = seed.map(|s| splitmix(s ^ splitmix(k)));
                k += 1;
            }
        }
    }
}

/// SplitMix64: a cheap, well-mixed derivation of one seed from another.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Folds every adapter into its base weight; the result is a plain model.
pub fn merge_adapters(mut model: CausalLm) -> CausalLm {
    let layers = std::mem::take(&mut model.layers);
    model.layers = layers
        .into_iter()
        .map(|mut layer| {
            layer.attn.q_proj = layer.attn.q_proj.merge();
            layer.attn.k_proj = layer.attn.k_proj.merge();
            layer.attn.v_proj = layer.attn.v_proj.merge();
            layer.attn.o_proj = layer.attn.o_proj.merge();
            layer.mlp.gate_proj = layer.mlp.gate_proj.merge();
            layer.mlp.up_proj = layer.mlp.up_proj.merge();
            layer.mlp.down_proj = layer.mlp.down_proj.merge();
            layer
        })
        .collect();
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rank: usize, alpha: f64, rs: bool) -> LoraConfig {
        LoraConfig {
            rank,
            alpha,
            dropout: 0.0,
            targets: vec![LoraTarget::Q],
            use_rslora: rs,
            layers: None,
        }
    }

    #[test]
    fn scaling_follows_lora_and_rslora() {
        assert_eq!(config(8, 16.0, false).scaling(), 2.0);
        assert_eq!(config(16, 16.0, true).scaling(), 4.0);
    }

    #[test]
    fn targets_round_trip_their_hf_names() {
        for t in LoraTarget::ALL {
            assert_eq!(t.as_str().parse::<LoraTarget>().expect("parse"), t);
            let json = serde_json::to_string(&t).expect("json");
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert!("lm_head".parse::<LoraTarget>().is_err());
    }

    #[test]
    fn validation_lists_every_problem() {
        let mut c = config(0, -1.0, false);
        c.dropout = 1.5;
        c.layers = Some(vec![7]);
        let msg = c.validate(2).expect_err("invalid").to_string();
        for part in ["rank", "alpha", "dropout", "layer 7"] {
            assert!(msg.contains(part), "{msg}");
        }
    }

    #[test]
    fn merged_projection_equals_the_adapted_one() {
        let device = Device::flex();
        let base = Linear {
            weight: Param::from_tensor(Tensor::<2>::from_data(
                TensorData::new((0..12).map(|v| v as f32 * 0.1).collect::<Vec<_>>(), [3, 4]),
                &device,
            )),
            bias: None,
        };
        let lora = LowRank {
            lora_a: trainable(vec![0.5, -1.0, 2.0, 0.25, 0.0, 1.0], [2, 3], &device),
            lora_b: trainable(
                vec![1.0, 0.0, -0.5, 2.0, 0.3, 0.3, 1.5, -1.0],
                [4, 2],
                &device,
            ),
            scaling: 0.5,
            dropout: 0.0,
            dropout_seed: None,
        };
        let adapted = LoraLinear {
            base,
            lora: Some(lora),
        };
        let x = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, -2.0, 0.5, 0.0, 3.0, 1.0], [1, 2, 3]),
            &device,
        );
        let want = to_host(adapted.forward(x.clone())).expect("host");
        let merged = adapted.merge();
        assert!(merged.lora.is_none());
        let got = to_host(merged.forward(x)).expect("host");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }
}
