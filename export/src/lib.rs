//! ctiforge's export stage: LoRA merge, quantizers and the GGUF writer and reader for
//! llama.cpp and Ollama.
//!
//! Empty on purpose: issue #6 builds it. Nothing here pretends to work yet.

#![warn(missing_docs)]
