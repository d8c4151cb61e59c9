//! Block quantizers bit-exact with ggml's reference code (`ggml-quants.c`) and gguf-py's
//! `gguf.quants`, plus llama.cpp's per-tensor type choice for mixtures like `Q4_K_M`.
//!
//! [`quantize_row`] and [`dequantize_row`] handle one row of f32 values; [`quantize`]
//! handles a whole tensor (rows in parallel with rayon). Blocks never span rows, and every
//! block is quantized on its own, so any split into rows gives the same bytes.

pub mod fp;
pub mod kquants;
pub mod legacy;
pub mod mixture;
pub mod types;

use rayon::prelude::*;

use crate::error::{Error, Result};
pub use mixture::{FileType, TensorSpec, choose_type};
pub use types::{GgmlType, QK_K};

/// Quantizes `src` (a row, or several whole rows) into `dst`, which must hold exactly
/// `ty.bytes_for(src.len())` bytes.
///
/// # Errors
/// [`Error::Shape`] when `src.len()` is not a multiple of the block size or `dst` has the
/// wrong length.
pub fn quantize_row_into(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    let need = ty.bytes_for(src.len())?;
    check_len(ty, "output buffer", dst.len(), need)?;
    let (bs, ts) = (ty.block_size(), ty.type_size());
    match ty {
        GgmlType::F32 => {
            for (o, v) in dst.chunks_exact_mut(4).zip(src) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (o, v) in dst.chunks_exact_mut(2).zip(src) {
                o.copy_from_slice(&fp::f32_to_f16(*v).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for (o, v) in dst.chunks_exact_mut(2).zip(src) {
                o.copy_from_slice(&fp::f32_to_bf16(*v).to_le_bytes());
            }
        }
        _ => {
            let Some(f) = block_quantizer(ty) else {
                return Ok(());
            };
            for (x, out) in src.chunks_exact(bs).zip(dst.chunks_exact_mut(ts)) {
                f(x, out);
            }
        }
    }
    Ok(())
}

/// Quantizes `src` into a new buffer (see [`quantize_row_into`]).
///
/// # Errors
/// [`Error::Shape`] when `src.len()` is not a multiple of the block size.
pub fn quantize_row(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; ty.bytes_for(src.len())?];
    quantize_row_into(ty, src, &mut out)?;
    Ok(out)
}

/// Quantizes a row-major tensor of rows of `n_per_row` values, rows in parallel.
///
/// # Errors
/// [`Error::Shape`] when `n_per_row` is zero, does not divide `src.len()`, or is not a
/// multiple of the block size.
pub fn quantize(ty: GgmlType, src: &[f32], n_per_row: usize) -> Result<Vec<u8>> {
    if n_per_row == 0 || !src.len().is_multiple_of(n_per_row) {
        return Err(Error::Shape {
            ty: ty.to_string(),
            message: format!("{} values do not split into rows of {n_per_row}", src.len()),
        });
    }
    let row_bytes = ty.bytes_for(n_per_row)?;
    let mut out = vec![0u8; row_bytes * (src.len() / n_per_row)];
    out.par_chunks_mut(row_bytes)
        .zip(src.par_chunks(n_per_row))
        .try_for_each(|(dst, row)| quantize_row_into(ty, row, dst))?;
    Ok(out)
}

/// Decodes `src` (whole blocks of `ty`) into `dst`, which must hold exactly the number of
/// elements those blocks encode.
///
/// # Errors
/// [`Error::Shape`] when the lengths do not match the block layout.
pub fn dequantize_row_into(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let need = ty.bytes_for(dst.len())?;
    check_len(ty, "input bytes", src.len(), need)?;
    match ty {
        GgmlType::F32 => {
            for (v, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (v, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *v = fp::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        GgmlType::BF16 => {
            for (v, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *v = fp::bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        _ => {
            let Some(f) = block_dequantizer(ty) else {
                return Ok(());
            };
            let (bs, ts) = (ty.block_size(), ty.type_size());
            for (b, y) in src.chunks_exact(ts).zip(dst.chunks_exact_mut(bs)) {
                f(b, y);
            }
        }
    }
    Ok(())
}

/// Decodes `n_elements` values of type `ty` from `src`.
///
/// # Errors
/// [`Error::Shape`] when `src` does not hold exactly `n_elements` values of `ty`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    let mut out = vec![0.0f32; n_elements];
    dequantize_row_into(ty, src, &mut out)?;
    Ok(out)
}

/// Decodes a whole tensor, blocks in parallel (see [`dequantize_row`]).
///
/// # Errors
/// [`Error::Shape`] when `src` does not hold exactly `n_elements` values of `ty`.
pub fn dequantize(ty: GgmlType, src: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    check_len(ty, "input bytes", src.len(), ty.bytes_for(n_elements)?)?;
    const CHUNK_BLOCKS: usize = 1024;
    let mut out = vec![0.0f32; n_elements];
    let (bs, ts) = (ty.block_size(), ty.type_size());
    out.par_chunks_mut(bs * CHUNK_BLOCKS)
        .zip(src.par_chunks(ts * CHUNK_BLOCKS))
        .try_for_each(|(y, b)| dequantize_row_into(ty, b, y))?;
    Ok(out)
}

type BlockQuantizer = fn(&[f32], &mut [u8]);
type BlockDequantizer = fn(&[u8], &mut [f32]);

/// The per-block quantizer of a block type; `None` for the float types, which the callers
/// convert element by element.
fn block_quantizer(ty: GgmlType) -> Option<BlockQuantizer> {
    Some(match ty {
        GgmlType::Q4_0 => legacy::quantize_q4_0,
        GgmlType::Q4_1 => legacy::quantize_q4_1,
        GgmlType::Q5_0 => legacy::quantize_q5_0,
        GgmlType::Q5_1 => legacy::quantize_q5_1,
        GgmlType::Q8_0 => legacy::quantize_q8_0,
        GgmlType::Q2_K => kquants::quantize_q2_k,
        GgmlType::Q4_K => kquants::quantize_q4_k,
        GgmlType::Q5_K => kquants::quantize_q5_k,
        GgmlType::Q6_K => kquants::quantize_q6_k,
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => return None,
    })
}

/// The per-block dequantizer of a block type; `None` for the float types.
fn block_dequantizer(ty: GgmlType) -> Option<BlockDequantizer> {
    Some(match ty {
        GgmlType::Q4_0 => legacy::dequantize_q4_0,
        GgmlType::Q4_1 => legacy::dequantize_q4_1,
        GgmlType::Q5_0 => legacy::dequantize_q5_0,
        GgmlType::Q5_1 => legacy::dequantize_q5_1,
        GgmlType::Q8_0 => legacy::dequantize_q8_0,
        GgmlType::Q2_K => kquants::dequantize_q2_k,
        GgmlType::Q4_K => kquants::dequantize_q4_k,
        GgmlType::Q5_K => kquants::dequantize_q5_k,
        GgmlType::Q6_K => kquants::dequantize_q6_k,
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => return None,
    })
}

fn check_len(ty: GgmlType, what: &str, got: usize, need: usize) -> Result<()> {
    if got == need {
        return Ok(());
    }
    Err(Error::Shape {
        ty: ty.to_string(),
        message: format!("{what} has {got} bytes, need {need}"),
    })
}
