//! ctiforge's export stage: the GGUF v3 writer and reader and the ggml block quantizers
//! (bit-exact with llama.cpp's reference code) that turn a merged model into a file
//! llama.cpp and Ollama load. Spec: [GGUF].
//!
//! [GGUF]: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
//!
//! - [`gguf::Writer`] / [`gguf::Reader`]: the container, with [`gguf::names`] for keys and
//!   tensor names and [`gguf::inspect()`] for a printable summary.
//! - [`quant`]: [`GgmlType`], [`FileType`], [`quant::quantize`], [`quant::dequantize`] and
//!   [`quant::choose_type`] (llama.cpp's per-tensor mixture rules).
//! - [`convert::hf_to_gguf`]: an HF Llama/Mistral folder straight to GGUF.
//! - [`merge::merge_adapter`]: a PEFT LoRA adapter merged into its base, without Burn.
//! - [`quality::measure_quality`]: KL divergence, top-1 agreement and perplexity of an export
//!   against the unquantised model, with the `model` crate's forward.
//! - [`job::export_gguf`]: the export job (merge, convert, quality, `Modelfile`,
//!   `export.json`); [`lora_gguf::export_lora_gguf`]: an adapter as a llama.cpp `--lora`
//!   GGUF.

#![warn(missing_docs)]

pub mod convert;
pub mod error;
pub mod gguf;
pub mod job;
pub mod lora_gguf;
pub mod merge;
pub mod quality;
pub mod quant;
pub mod safetensors_out;

pub use error::{Error, Result};
pub use job::{ExportOptions, ExportReport, export_gguf};
pub use lora_gguf::{LoraExportOptions, LoraExportReport, export_lora_gguf};
pub use merge::{MergeOptions, MergeReport, merge_adapter};
pub use quality::{QualityOptions, QualityReport, measure_quality};
pub use quant::{FileType, GgmlType};
