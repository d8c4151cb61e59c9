//! The SwiGLU feed-forward block of Llama and Mistral (Shazeer, "GLU Variants Improve
//! Transformer", <https://arxiv.org/abs/2002.05202>): `down(silu(gate(x)) * up(x))`.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;

use crate::lora::LoraLinear;

/// Gated feed-forward block.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// `d_model -> d_ff`, passed through SiLU.
    pub gate_proj: LoraLinear,
    /// `d_model -> d_ff`, the linear branch.
    pub up_proj: LoraLinear,
    /// `d_ff -> d_model`.
    pub down_proj: LoraLinear,
}

impl FeedForward {
    /// Applies the block.
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = silu(self.gate_proj.forward(x.clone())); // [b, t, d_ff]
        let up = self.up_proj.forward(x); // [b, t, d_ff]
        self.down_proj.forward(gate * up) // [b, t, d_model]
    }
}
