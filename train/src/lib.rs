//! ctiforge's training stage: LoRA (and full) fine-tuning of the `model` crate's Llama and
//! Mistral on `data-prep` datasets, with checkpoints, resume and step metrics.
//!
//! Empty on purpose: issue #4 builds it. Nothing here pretends to work yet.

#![warn(missing_docs)]
