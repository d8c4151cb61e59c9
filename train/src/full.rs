//! What the optimizer trains: the LoRA adapters of a frozen base, or every weight of the
//! model (full fine-tuning, and continued pre-training on raw CTI text). Both run through
//! the same loop in [`crate::trainer`]: parameters live on the host as [`ParamState`]s, are
//! written into the model before each step, and their gradients are read back after it.
//!
//! Full fine-tuning addresses weights by their module path (`layers.0.attn.q_proj.base.
//! weight`), visits them in Burn's deterministic order, and writes the finished model as a
//! Hugging Face folder (`config.json`, `model.safetensors`, the tokenizer files) that every
//! other stage, including a LoRA run on top, takes as a base model. Keeping the optimizer
//! state on the host suits the CPU backend (where host and device memory are the same) and
//! small or medium models; on a GPU, 7B+ models are tuned with LoRA.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Gradients, Tensor, TensorData};
use ctiforge_model::adapter;
use ctiforge_model::lora::{self, AdapterValues, LoraConfig};
use ctiforge_model::transformer::{CausalLm, to_host};
use ctiforge_model::weights::{Checkpoint, HostTensor, SaveDtype, write_safetensors};

use crate::error::{Error, Result};
use crate::optim::ParamState;

/// Weights file of a full-training checkpoint (module paths as names).
pub const WEIGHTS_FILE: &str = "weights.safetensors";

/// Model-folder files copied beside the trained weights.
const COPIED: [&str; 4] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
];

/// The trainable parameters of a run.
pub enum Trainable {
    /// LoRA adapters on a frozen base.
    Lora {
        /// The adapter configuration.
        config: LoraConfig,
        /// Adapter shapes and positions, in parameter order (A then B per adapter).
        layout: Vec<AdapterValues>,
    },
    /// Every weight, by module path, with its shape.
    Full {
        /// Module paths and shapes in visiting order.
        shapes: Vec<(String, Vec<usize>)>,
    },
}

/// Collects every float parameter's path, shape and value (or gradient).
struct Collect<'a> {
    grads: Option<&'a Gradients>,
    path: Vec<String>,
    out: Vec<(String, Vec<usize>, Option<Vec<f32>>)>,
    failed: Option<String>,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let name = self.path.join(".");
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        let values = match self.grads {
            None => Some(tensor),
            Some(g) => tensor.grad(g),
        };
        let host = match values.map(to_host).transpose() {
            Ok(v) => v,
            Err(e) => {
                self.failed.get_or_insert(format!("{name}: {e}"));
                None
            }
        };
        self.out.push((name, shape, host));
    }
}

/// Writes new values into every float parameter, by module path, keeping ids and making
/// them trainable.
struct Write<'a> {
    values: &'a BTreeMap<&'a str, &'a [f32]>,
    path: Vec<String>,
    missing: Vec<String>,
}

impl ModuleMapper for Write<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, _) = param.consume();
        let shape = tensor.dims();
        let device = tensor.device();
        let prefix = self.path.join(".");
        let n: usize = shape.iter().product();
        let found = self
            .values
            .get(prefix.as_str())
            .filter(|v| v.len() == n)
            .map(|v| v.to_vec());
        let tensor = match found {
            Some(v) => Tensor::<D>::from_data(TensorData::new(v, shape), &device),
            None => {
                self.missing.push(prefix);
                tensor
            }
        };
        Param::initialized(id, tensor.require_grad())
    }
}

impl Trainable {
    /// Every float weight of `model` (full training).
    ///
    /// # Errors
    /// A tensor that cannot be read back.
    pub fn full(model: &CausalLm) -> Result<(Trainable, Vec<ParamState>)> {
        let mut c = Collect {
            grads: None,
            path: Vec::new(),
            out: Vec::new(),
            failed: None,
        };
        model.visit(&mut c);
        if let Some(f) = c.failed {
            return Err(Error::Weights(f));
        }
        let mut shapes = Vec::with_capacity(c.out.len());
        let mut params = Vec::with_capacity(c.out.len());
        for (name, shape, values) in c.out {
            params.push(ParamState::new(name.clone(), values.unwrap_or_default()));
            shapes.push((name, shape));
        }
        Ok((Trainable::Full { shapes }, params))
    }

    /// The model with `params` in place, ready for a forward and backward pass.
    ///
    /// # Errors
    /// Adapters that do not fit; weights that could not be placed.
    pub fn model(&self, base: &CausalLm, params: &[ParamState]) -> Result<CausalLm> {
        match self {
            Trainable::Lora { config, layout } => Ok(lora::install_adapters(
                base.clone(),
                config,
                &adapter_values(layout, params),
            )?),
            Trainable::Full { .. } => {
                let values: BTreeMap<&str, &[f32]> = params
                    .iter()
                    .map(|p| (p.name.as_str(), p.value.as_slice()))
                    .collect();
                let mut w = Write {
                    values: &values,
                    path: Vec::new(),
                    missing: Vec::new(),
                };
                let model = base.clone().map(&mut w);
                if !w.missing.is_empty() {
                    return Err(Error::Weights(format!(
                        "no trained values for {}",
                        w.missing.join(", ")
                    )));
                }
                Ok(model)
            }
        }
    }

    /// Gradients of every parameter (zeros where the graph gave none), in `params` order.
    ///
    /// # Errors
    /// A gradient that cannot be read back.
    pub fn grads(&self, model: &CausalLm, g: &Gradients) -> Result<Vec<Vec<f32>>> {
        match self {
            Trainable::Lora { layout, .. } => {
                let mut out = Vec::with_capacity(layout.len() * 2);
                for ad in adapters_of(model) {
                    for t in [ad.lora_a.val(), ad.lora_b.val()] {
                        let n = t.dims().iter().product();
                        out.push(match t.grad(g) {
                            Some(gt) => to_host(gt)?,
                            None => vec![0.0; n],
                        });
                    }
                }
                Ok(out)
            }
            Trainable::Full { shapes } => {
                let mut c = Collect {
                    grads: Some(g),
                    path: Vec::new(),
                    out: Vec::new(),
                    failed: None,
                };
                model.visit(&mut c);
                if let Some(f) = c.failed {
                    return Err(Error::Weights(f));
                }
                Ok(c.out
                    .into_iter()
                    .zip(shapes)
                    .map(|((_, shape, grad), _)| {
                        grad.unwrap_or_else(|| vec![0.0; shape.iter().product()])
                    })
                    .collect())
            }
        }
    }

    /// Writes the trained parameters into `dir`: a PEFT adapter, or the weights by module
    /// path (checkpoints) .
    ///
    /// # Errors
    /// I/O failures.
    pub fn save_checkpoint(&self, dir: &Path, params: &[ParamState], base: &str) -> Result<()> {
        match self {
            Trainable::Lora { config, layout } => {
                adapter::save_adapter(dir, config, &adapter_values(layout, params), base)?;
            }
            Trainable::Full { shapes } => {
                let tensors: BTreeMap<String, HostTensor> = params
                    .iter()
                    .zip(shapes)
                    .map(|(p, (_, shape))| {
                        (
                            p.name.clone(),
                            HostTensor {
                                data: p.value.clone(),
                                shape: shape.clone(),
                            },
                        )
                    })
                    .collect();
                write_safetensors(&dir.join(WEIGHTS_FILE), &tensors, SaveDtype::F32)?;
            }
        }
        Ok(())
    }

    /// The weights file of a checkpoint folder.
    pub fn checkpoint_weights(&self, dir: &Path) -> std::path::PathBuf {
        match self {
            Trainable::Lora { .. } => dir.join(adapter::ADAPTER_WEIGHTS_FILE),
            Trainable::Full { .. } => dir.join(WEIGHTS_FILE),
        }
    }

    /// Reads parameter values back from a checkpoint folder, in training order.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named.
    pub fn load_checkpoint(&self, dir: &Path) -> Result<Vec<(String, Vec<f32>)>> {
        let ckpt = Checkpoint::open_files(&[self.checkpoint_weights(dir)])?;
        let mut out = Vec::new();
        match self {
            Trainable::Lora { layout, .. } => {
                for a in layout {
                    for (m, shape) in [
                        (adapter::LoraMatrix::A, [a.dims.0, a.dims.1]),
                        (adapter::LoraMatrix::B, [a.dims.2, a.dims.0]),
                    ] {
                        let name = adapter::peft_name(a.layer, a.target, m);
                        let v = ckpt.read_f32(&name, &shape)?;
                        out.push((name, v));
                    }
                }
            }
            Trainable::Full { shapes } => {
                for (name, shape) in shapes {
                    out.push((name.clone(), ckpt.read_f32(name, shape)?));
                }
            }
        }
        Ok(out)
    }

    /// Writes the run's final output into `out`: the PEFT adapter, or a complete Hugging
    /// Face model folder (weights under their HF names, `config.json` and the base's
    /// tokenizer files).
    ///
    /// # Errors
    /// I/O failures; weights that cannot be placed or read back.
    pub fn save_final(
        &self,
        out: &Path,
        base: &CausalLm,
        base_dir: &Path,
        base_name: &str,
        params: &[ParamState],
    ) -> Result<()> {
        match self {
            Trainable::Lora { .. } => self.save_checkpoint(out, params, base_name),
            Trainable::Full { .. } => {
                let model = self.model(base, params)?;
                let tensors = adapter::hf_tensors(&model)?;
                write_safetensors(
                    &out.join(ctiforge_model::weights::SINGLE_FILE),
                    &tensors,
                    SaveDtype::F32,
                )?;
                let config = serde_json::to_string_pretty(&model.config.to_hf_json())
                    .map_err(|e| Error::Weights(e.to_string()))?;
                let config_path = out.join("config.json");
                std::fs::write(&config_path, config).map_err(|e| Error::io(&config_path, e))?;
                for f in COPIED {
                    let src = base_dir.join(f);
                    if src.is_file() {
                        std::fs::copy(&src, out.join(f)).map_err(|e| Error::io(out.join(f), e))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// LoRA parameters as adapter values (A then B per adapter, in layout order).
pub fn adapter_values(layout: &[AdapterValues], params: &[ParamState]) -> Vec<AdapterValues> {
    layout
        .iter()
        .zip(params.chunks(2))
        .map(|(l, p)| AdapterValues {
            lora_a: p[0].value.clone(),
            lora_b: p[1].value.clone(),
            ..l.clone()
        })
        .collect()
}

fn adapters_of(model: &CausalLm) -> Vec<&lora::LowRank> {
    let mut out = Vec::new();
    for layer in &model.layers {
        for t in lora::LoraTarget::ALL {
            if let Some(l) = lora::projection(layer, t).lora.as_ref() {
                out.push(l);
            }
        }
    }
    out
}
