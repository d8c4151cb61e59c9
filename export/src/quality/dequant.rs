//! GGUF → HF folder: every tensor of an exported GGUF dequantized to f32, renamed back to
//! its HF name and, for Q and K, its rows returned from llama.cpp's interleaved RoPE layout
//! to HF's, so the `model` crate can run exactly the weights llama.cpp would
//! ([GGUF spec](https://github.com/ggml-org/ggml/blob/master/docs/gguf.md)).

use std::path::Path;

use safetensors::Dtype;

use crate::convert::hf::HfConfig;
use crate::convert::names::{hf_name, parse_gguf_name};
use crate::convert::unpermute_rope_rows;
use crate::error::{Error, Result};
use crate::gguf::{Reader, TensorName};
use crate::merge::{MERGED_WEIGHTS, copy_side_files};
use crate::safetensors_out::{PlannedTensor, SafetensorsWriter};

/// Writes the weights of `gguf` as an F32 HF folder in the existing, empty folder `out_dir`,
/// with the config and tokenizer files of `source_dir` (the folder it was exported from).
///
/// # Errors
/// [`Error::Io`] / [`Error::Corrupt`] for unreadable files; [`Error::Invalid`] naming the
/// tensor when the GGUF holds a tensor with no HF counterpart.
pub fn gguf_to_hf(gguf: &Path, source_dir: &Path, out_dir: &Path) -> Result<()> {
    let cfg = HfConfig::read(source_dir)?;
    let reader = Reader::open(gguf)?;
    let mut plan = Vec::new();
    let mut sources = Vec::new();
    for info in reader.tensors() {
        let t = parse_gguf_name(&info.name).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: tensor {} has no HF counterpart",
                gguf.display(),
                info.name
            ))
        })?;
        let Some(name) = hf_name(t) else {
            continue; // rope_freqs: recomputed from config.json
        };
        let shape: Vec<usize> = info.dims.iter().rev().map(|&d| d as usize).collect();
        plan.push(PlannedTensor {
            name,
            dtype: Dtype::F32,
            shape,
        });
        sources.push((info.name.clone(), t));
    }
    copy_side_files(source_dir, out_dir)?;
    let mut w = SafetensorsWriter::create(&out_dir.join(MERGED_WEIGHTS), plan.clone())?;
    for (p, (gguf_name, t)) in plan.iter().zip(sources) {
        let mut data = reader.tensor_f32(&gguf_name)?;
        let heads = match t {
            TensorName::AttnQ(_) => Some(cfg.num_attention_heads),
            TensorName::AttnK(_) => Some(cfg.n_kv_heads()),
            _ => None,
        };
        if let (Some(heads), Some(&cols)) = (heads, p.shape.last()) {
            data = unpermute_rope_rows(&data, heads, cols);
        }
        w.write_f32(&p.name, &data)?;
    }
    w.finish()?;
    Ok(())
}
