//! AdamW (Loshchilov & Hutter, <https://arxiv.org/abs/1711.05101>) exactly as
//! `torch.optim.AdamW` computes it, global-norm clipping as `clip_grad_norm_`, and the
//! warm-up + cosine/linear schedules of `transformers.get_*_schedule_with_warmup`.
//!
//! The trainable parameters (adapters) are small, so their optimizer state lives on the
//! host in f32, which also makes it trivially checkpointable.

use crate::config::{Decay, OptimConfig, ScheduleConfig};

/// One trainable tensor with its AdamW moments.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamState {
    /// Stable name (PEFT tensor name).
    pub name: String,
    /// Current values.
    pub value: Vec<f32>,
    /// First moment (`exp_avg`).
    pub exp_avg: Vec<f32>,
    /// Second moment (`exp_avg_sq`).
    pub exp_avg_sq: Vec<f32>,
    /// Whether weight decay applies (not for norms and biases).
    pub decay: bool,
}

impl ParamState {
    /// A parameter with zero moments; decay unless the name is a bias or a norm weight.
    pub fn new(name: String, value: Vec<f32>) -> Self {
        let decay = !(name.ends_with("bias") || name.contains("norm"));
        let n = value.len();
        ParamState {
            name,
            value,
            exp_avg: vec![0.0; n],
            exp_avg_sq: vec![0.0; n],
            decay,
        }
    }
}

/// The L2 norm over all gradients together.
pub fn global_norm(grads: &[Vec<f32>]) -> f64 {
    grads
        .iter()
        .flatten()
        .map(|&g| f64::from(g) * f64::from(g))
        .sum::<f64>()
        .sqrt()
}

/// Scales gradients so their global norm is at most `max_norm` (PyTorch's rule:
/// factor `max_norm / (norm + 1e-6)`, applied only when below 1). Returns the norm before.
pub fn clip(grads: &mut [Vec<f32>], max_norm: f64) -> f64 {
    let norm = global_norm(grads);
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        for g in grads.iter_mut().flatten() {
            *g = (f64::from(*g) * factor) as f32;
        }
    }
    norm
}

/// One AdamW update of every parameter at learning rate `lr`; `step` is the 1-based count
/// of updates including this one.
pub fn adamw_step(
    params: &mut [ParamState],
    grads: &[Vec<f32>],
    cfg: &OptimConfig,
    lr: f64,
    step: u64,
) {
    let (b1, b2) = (cfg.betas[0], cfg.betas[1]);
    let bc1 = 1.0 - b1.powi(step as i32);
    let bc2_sqrt = (1.0 - b2.powi(step as i32)).sqrt();
    let step_size = (lr / bc1) as f32;
    let (b1f, b2f, eps) = (b1 as f32, b2 as f32, cfg.eps as f32);
    let bc2_sqrt = bc2_sqrt as f32;
    for (p, g) in params.iter_mut().zip(grads) {
        let shrink = if p.decay {
            (1.0 - lr * cfg.weight_decay) as f32
        } else {
            1.0
        };
        let moments = p.exp_avg.iter_mut().zip(p.exp_avg_sq.iter_mut());
        for ((v, (m, s)), &gi) in p.value.iter_mut().zip(moments).zip(g) {
            *v *= shrink;
            *m = *m * b1f + (1.0 - b1f) * gi;
            *s = *s * b2f + (1.0 - b2f) * gi * gi;
            let denom = s.sqrt() / bc2_sqrt + eps;
            *v -= step_size * *m / denom;
        }
    }
}

/// The learning rate of the optimizer step with 0-based index `step` out of `total`
/// (`transformers`' schedules: the first step of a warm-up runs at lr 0).
pub fn learning_rate(cfg: &ScheduleConfig, peak: f64, step: u64, total: u64) -> f64 {
    let (s, w, t) = (step as f64, cfg.warmup_steps as f64, total as f64);
    if step < cfg.warmup_steps {
        return peak * s / w.max(1.0);
    }
    let progress = if t > w { (s - w) / (t - w) } else { 0.0 };
    let mult = match cfg.decay {
        Decay::Constant => 1.0,
        Decay::Linear => ((t - s) / (t - w).max(1.0)).max(0.0),
        Decay::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
    };
    peak * mult
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_matches_a_hand_computed_torch_step() {
        // torch.optim.AdamW([p], lr=0.1, weight_decay=0.5) on p = [1.0, -2.0], grad [0.5, 0.1]:
        // p *= 1 - 0.05; m = 0.1 g; v = 0.001 g^2; step 1 bias corrections make
        // m_hat / sqrt(v_hat) = sign(g), so p -= 0.1 * g / (|g| + eps / ...).
        let mut p = vec![ParamState::new("w".into(), vec![1.0, -2.0])];
        let cfg = OptimConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..OptimConfig::default()
        };
        adamw_step(&mut p, &[vec![0.5, 0.1]], &cfg, 0.1, 1);
        let want = [1.0 * 0.95 - 0.1, -2.0 * 0.95 - 0.1];
        for (g, w) in p[0].value.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        // No decay on biases and norms.
        assert!(!ParamState::new("x.bias".into(), vec![]).decay);
        assert!(!ParamState::new("model.norm.weight".into(), vec![]).decay);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut g = vec![vec![3.0, 0.0], vec![4.0]];
        let norm = clip(&mut g, 1.0);
        assert!((norm - 5.0).abs() < 1e-9);
        assert!((global_norm(&g) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn schedules_follow_transformers() {
        let cfg = ScheduleConfig {
            warmup_steps: 2,
            decay: Decay::Cosine,
        };
        assert_eq!(learning_rate(&cfg, 1.0, 0, 10), 0.0);
        assert_eq!(learning_rate(&cfg, 1.0, 1, 10), 0.5);
        assert_eq!(learning_rate(&cfg, 1.0, 2, 10), 1.0);
        assert!((learning_rate(&cfg, 1.0, 6, 10) - 0.5).abs() < 1e-12);
        let lin = ScheduleConfig {
            warmup_steps: 0,
            decay: Decay::Linear,
        };
        assert!((learning_rate(&lin, 2.0, 5, 10) - 1.0).abs() < 1e-12);
    }
}
