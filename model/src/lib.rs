//! Llama and Mistral decoder-only transformers in Burn, with everything needed to use a
//! Hugging Face checkpoint: `config.json` translation, memory-mapped safetensors loading
//! (single file or sharded), `tokenizer.json` through the `tokenizers` crate, chat templates,
//! the hub cache, and KV-cached batched generation.
//!
//! The entry point is [`LoadedModel::load`] (or [`LoadedModel::resolve`] for `org/name`
//! specs); [`init::init_model`] writes a new seeded random model folder.

#![warn(missing_docs)]

pub mod adapter;
pub mod attention;
pub mod chat;
pub mod config;
pub mod device;
pub mod error;
pub mod fsutil;
pub mod generate;
pub mod generation_config;
pub mod hub;
pub mod init;
pub mod loader;
pub mod lora;
pub mod mask;
pub mod mlp;
pub mod names;
pub mod rope;
pub mod throughput;
pub mod tokenizer;
pub mod transformer;
pub mod weights;

pub use config::{Architecture, ModelConfig, RopeScaling};
pub use device::parse_device;
pub use error::{Error, Result};
pub use generate::{FinishReason, Generated, SamplingConfig, generate};
pub use loader::LoadedModel;
pub use tokenizer::CtiTokenizer;
pub use transformer::{CausalLm, KvCache};

pub use burn::tensor::Device;
