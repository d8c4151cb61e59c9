//! The 32-element "legacy" block quantizers Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0, written to
//! give the same bytes as ggml's reference code (`ggml-quants.c`, `quantize_row_*_ref`,
//! the code `ggml_quantize_chunk` runs without an importance matrix) and as gguf-py's
//! `gguf.quants`. Each function handles one block: `x` has 32 values, `out` the block's
//! bytes.
//!
//! Rounding notes: scales are computed in f32 and only the stored copy is rounded to f16;
//! the 4/5-bit codes truncate `v + 8.5` (or `+ 0.5` after subtracting the minimum) toward
//! zero, and Q8_0 uses `round` (half away from zero), exactly as the C code does.

use super::fp::{read_f16, write_f16};

/// Elements per legacy block.
pub const QK: usize = 32;

/// The value with the largest magnitude (the first one on ties), as ggml picks it.
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

/// Q4_0: `d = max / -8`, codes `min(15, trunc(x/d + 8.5))`. 18 bytes.
pub fn quantize_q4_0(x: &[f32], out: &mut [u8]) {
    let d = signed_absmax(x) / -8.0;
    let id = inverse(d);
    write_f16(out, 0, d);
    for j in 0..QK / 2 {
        let lo = ((x[j] * id + 8.5) as i8).min(15) as u8;
        let hi = ((x[j + QK / 2] * id + 8.5) as i8).min(15) as u8;
        out[2 + j] = lo | (hi << 4);
    }
}

/// Q4_1: `d = (max - min) / 15`, `m = min`, codes `min(15, trunc((x - m)/d + 0.5))`.
/// 20 bytes.
pub fn quantize_q4_1(x: &[f32], out: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    write_f16(out, 0, d);
    write_f16(out, 2, min);
    for j in 0..QK / 2 {
        let lo = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
        let hi = (((x[j + QK / 2] - min) * id + 0.5) as i8).min(15) as u8;
        out[4 + j] = lo | (hi << 4);
    }
}

/// Q5_0: `d = max / -16`, codes `min(31, trunc(x/d + 16.5))`, fifth bits in `qh`. 22 bytes.
pub fn quantize_q5_0(x: &[f32], out: &mut [u8]) {
    let d = signed_absmax(x) / -16.0;
    let id = inverse(d);
    write_f16(out, 0, d);
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let lo = ((x[j] * id + 16.5) as i8).min(31) as u8;
        let hi = ((x[j + QK / 2] * id + 16.5) as i8).min(31) as u8;
        out[6 + j] = (lo & 0x0F) | ((hi & 0x0F) << 4);
        qh |= u32::from((lo & 0x10) >> 4) << j;
        qh |= u32::from((hi & 0x10) >> 4) << (j + QK / 2);
    }
    out[2..6].copy_from_slice(&qh.to_le_bytes());
}

/// Q5_1: `d = (max - min) / 31`, `m = min`, codes `trunc((x - m)/d + 0.5)`. 24 bytes.
pub fn quantize_q5_1(x: &[f32], out: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = inverse(d);
    write_f16(out, 0, d);
    write_f16(out, 2, min);
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let lo = ((x[j] - min) * id + 0.5) as u8;
        let hi = ((x[j + QK / 2] - min) * id + 0.5) as u8;
        out[8 + j] = (lo & 0x0F) | ((hi & 0x0F) << 4);
        qh |= u32::from((lo & 0x10) >> 4) << j;
        qh |= u32::from((hi & 0x10) >> 4) << (j + QK / 2);
    }
    out[4..8].copy_from_slice(&qh.to_le_bytes());
}

/// Q8_0: `d = amax / 127`, codes `round(x/d)`. 34 bytes.
pub fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    write_f16(out, 0, d);
    for j in 0..QK {
        out[2 + j] = ((x[j] * id).round() as i8) as u8;
    }
}

/// Decodes one Q4_0 block into 32 values.
pub fn dequantize_q4_0(b: &[u8], y: &mut [f32]) {
    let d = read_f16(b, 0);
    for j in 0..QK / 2 {
        y[j] = (i32::from(b[2 + j] & 0x0F) - 8) as f32 * d;
        y[j + QK / 2] = (i32::from(b[2 + j] >> 4) - 8) as f32 * d;
    }
}

/// Decodes one Q4_1 block into 32 values.
pub fn dequantize_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (read_f16(b, 0), read_f16(b, 2));
    for j in 0..QK / 2 {
        y[j] = f32::from(b[4 + j] & 0x0F) * d + m;
        y[j + QK / 2] = f32::from(b[4 + j] >> 4) * d + m;
    }
}

fn fifth_bits(b: &[u8], at: usize, j: usize) -> (u8, u8) {
    let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let lo = (((qh >> j) << 4) & 0x10) as u8;
    let hi = ((qh >> (j + 12)) & 0x10) as u8;
    (lo, hi)
}

/// Decodes one Q5_0 block into 32 values.
pub fn dequantize_q5_0(b: &[u8], y: &mut [f32]) {
    let d = read_f16(b, 0);
    for j in 0..QK / 2 {
        let (h0, h1) = fifth_bits(b, 2, j);
        y[j] = (i32::from((b[6 + j] & 0x0F) | h0) - 16) as f32 * d;
        y[j + QK / 2] = (i32::from((b[6 + j] >> 4) | h1) - 16) as f32 * d;
    }
}

/// Decodes one Q5_1 block into 32 values.
pub fn dequantize_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (read_f16(b, 0), read_f16(b, 2));
    for j in 0..QK / 2 {
        let (h0, h1) = fifth_bits(b, 4, j);
        y[j] = f32::from((b[8 + j] & 0x0F) | h0) * d + m;
        y[j + QK / 2] = f32::from((b[8 + j] >> 4) | h1) * d + m;
    }
}

/// Decodes one Q8_0 block into 32 values.
pub fn dequantize_q8_0(b: &[u8], y: &mut [f32]) {
    let d = read_f16(b, 0);
    for j in 0..QK {
        y[j] = f32::from(b[2 + j] as i8) * d;
    }
}
