//! The K-quants Q2_K, Q4_K, Q5_K and Q6_K: 256-element super-blocks with quantized
//! sub-block scales, written to give the same bytes as ggml's reference quantizers
//! (`ggml-quants.c`: `quantize_row_q*_K_ref`, used by `ggml_quantize_chunk` when no
//! importance matrix is given). gguf-py can only dequantize these, so ggml itself is the
//! reference.
//!
//! Rounding notes: every product and sum is evaluated in f32 in the same order as the C
//! code (no fused multiply-add), integer codes come from [`nearest_int`] (ties to even),
//! and the super-block scales are rounded to f16 before the final codes are chosen.

use super::fp::{nearest_int, read_f16, write_f16};
use super::types::QK_K;

/// Below this, a group counts as all zeros (`GROUP_MAX_EPS`).
const GROUP_MAX_EPS: f32 = 1e-15;

/// Parameters of ggml's `make_qkx2_quants` search for an asymmetric (scale, min) fit.
struct Qkx2 {
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
}

/// Fits `x ≈ scale·L − min_out` with codes `L` in `0..=nmax`, weighting errors by `w`;
/// returns `(scale, min_out)` (ggml's `make_qkx2_quants`).
fn make_qkx2_quants(x: &[f32], w: &[f32], l_out: &mut [u8], p: &Qkx2) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = w[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let nmax_f = p.nmax as f32;
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let err = |d: f32| if p.use_mad { d.abs() } else { d * d };
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, p.nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += w[i] * err(diff);
    }
    if p.nstep < 1 {
        return (scale, -min);
    }
    let mut aux = [0u8; 32];
    for is in 0..=p.nstep {
        iscale = (p.rmin + p.rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, p.nmax);
            aux[i] = l as u8;
            let lf = l as f32;
            sum_l += w[i] * lf;
            sum_l2 += w[i] * lf * lf;
            sum_xl += w[i] * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(aux[i]) + this_min - x[i];
                cur_error += w[i] * err(diff);
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Symmetric fit `x ≈ scale·(L − nmax)` with codes in `0..2·nmax`, weighted by `x²`
/// (ggml's `make_qx_quants` with `rmse_type = 1` and no importance weights).
fn make_qx_quants(x: &[f32], nmax: i32, l_out: &mut [i8]) -> f32 {
    let n = x.len();
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let nmax_f = nmax as f32;
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let mut iscale = -nmax_f / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let l = code(iscale, x[i]);
        l_out[i] = (l + nmax) as i8;
        let w = x[i] * x[i];
        sumlx += w * x[i] * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax_f + 0.1 * is as f32) / max;
        (sumlx, suml2) = (0.0, 0.0);
        for &v in x {
            let l = code(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                l_out[i] = (code(iscale, x[i]) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q2_K: 16 groups of 16, 4-bit scale and min per group, 2-bit codes. 84 bytes:
/// `scales[16] qs[64] d dmin`.
pub fn quantize_q2_k(x: &[f32], out: &mut [u8]) {
    const Q4SCALE: f32 = 15.0;
    let params = Qkx2 {
        nmax: 3,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: true,
    };
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0.0f32; 16], [0.0f32; 16]);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..16 {
        let xs = &x[16 * j..16 * j + 16];
        let mut w = [0.0f32; 16];
        for (wi, v) in w.iter_mut().zip(xs) {
            *wi = v.abs();
        }
        (scales[j], mins[j]) = make_qkx2_quants(xs, &w, &mut l[16 * j..], &params);
        max_scale = max_scale.max_c(scales[j]);
        max_min = max_min.max_c(mins[j]);
    }
    let (sc, rest) = out.split_at_mut(16);
    if max_scale > 0.0 {
        let iscale = Q4SCALE / max_scale;
        for j in 0..16 {
            sc[j] = nearest_int(iscale * scales[j]) as u8;
        }
        write_f16(rest, 64, max_scale / Q4SCALE);
    } else {
        sc.fill(0);
        write_f16(rest, 64, 0.0);
    }
    if max_min > 0.0 {
        let iscale = Q4SCALE / max_min;
        for j in 0..16 {
            sc[j] = (i32::from(sc[j]) | (nearest_int(iscale * mins[j]) << 4)) as u8;
        }
        write_f16(rest, 66, max_min / Q4SCALE);
    } else {
        write_f16(rest, 66, 0.0);
    }
    let (d_all, dmin_all) = (read_f16(rest, 64), read_f16(rest, 66));
    for j in 0..16 {
        let d = d_all * f32::from(sc[j] & 0xF);
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * f32::from(sc[j] >> 4);
        for ii in 0..16 {
            l[16 * j + ii] = nearest_int((x[16 * j + ii] + dm) / d).clamp(0, 3) as u8;
        }
    }
    for half in 0..2 {
        let (lb, qs) = (&l[128 * half..], &mut rest[32 * half..]);
        for k in 0..32 {
            qs[k] = lb[k] | (lb[k + 32] << 2) | (lb[k + 64] << 4) | (lb[k + 96] << 6);
        }
    }
}

/// Shared body of Q4_K and Q5_K: 8 groups of 32 with 6-bit scales and mins; returns the
/// final codes in `0..=nmax`. Writes `d`, `dmin` and the 12 packed scale bytes of `out`.
fn quantize_k_scales(x: &[f32], out: &mut [u8], params: &Qkx2) -> [u8; QK_K] {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0.0f32; 8], [0.0f32; 8]);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let mut w = [0.0f32; 32];
        for (wi, v) in w.iter_mut().zip(xs) {
            *wi = av_x + v.abs();
        }
        (scales[j], mins[j]) = make_qkx2_quants(xs, &w, &mut l[32 * j..], params);
        max_scale = max_scale.max_c(scales[j]);
        max_min = max_min.max_c(mins[j]);
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let packed = &mut out[4..16];
    packed.fill(0);
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    write_f16(out, 0, max_scale / 63.0);
    write_f16(out, 2, max_min / 63.0);
    let (d_all, dmin_all) = (read_f16(out, 0), read_f16(out, 2));
    let nmax = params.nmax;
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &out[4..16]);
        let d = d_all * f32::from(sc);
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * f32::from(m);
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, nmax) as u8;
        }
    }
    l
}

/// Unpacks the 6-bit scale and min of group `j` (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K: 144 bytes, `d dmin scales[12] qs[128]`.
pub fn quantize_q4_k(x: &[f32], out: &mut [u8]) {
    let p = Qkx2 {
        nmax: 15,
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    let l = quantize_k_scales(x, out, &p);
    let qs = &mut out[16..144];
    for c in 0..4 {
        for k in 0..32 {
            qs[32 * c + k] = l[64 * c + k] | (l[64 * c + k + 32] << 4);
        }
    }
}

/// Q5_K: 176 bytes, `d dmin scales[12] qh[32] qs[128]`.
pub fn quantize_q5_k(x: &[f32], out: &mut [u8]) {
    let p = Qkx2 {
        nmax: 31,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    let l = quantize_k_scales(x, out, &p);
    let (qh, qs) = out[16..176].split_at_mut(32);
    qh.fill(0);
    for c in 0..4 {
        let (m1, m2) = (1u8 << (2 * c), 2u8 << (2 * c));
        for k in 0..32 {
            let (mut l1, mut l2) = (l[64 * c + k], l[64 * c + k + 32]);
            if l1 > 15 {
                l1 -= 16;
                qh[k] |= m1;
            }
            if l2 > 15 {
                l2 -= 16;
                qh[k] |= m2;
            }
            qs[32 * c + k] = l1 | (l2 << 4);
        }
    }
}

/// Q6_K: 210 bytes, `ql[128] qh[64] scales[16] d`.
pub fn quantize_q6_k(x: &[f32], out: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for ib in 0..16 {
        let scale = make_qx_quants(&x[16 * ib..16 * ib + 16], 32, &mut l[16 * ib..]);
        scales[ib] = scale;
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        out[..210].fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    write_f16(out, 208, 1.0 / iscale);
    let d_all = read_f16(out, 208);
    for ib in 0..16 {
        out[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
    }
    for j in 0..16 {
        let d = d_all * f32::from(out[192 + j] as i8);
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-32, 31) + 32) as i8;
        }
    }
    let (ql, qh) = out[..192].split_at_mut(128);
    for half in 0..2 {
        let lb = &l[128 * half..];
        let (ql, qh) = (&mut ql[64 * half..], &mut qh[32 * half..]);
        for k in 0..32 {
            let q = |o: usize| lb[k + o] as u8;
            ql[k] = (q(0) & 0xF) | ((q(64) & 0xF) << 4);
            ql[k + 32] = (q(32) & 0xF) | ((q(96) & 0xF) << 4);
            qh[k] = (q(0) >> 4) | ((q(32) >> 4) << 2) | ((q(64) >> 4) << 4) | ((q(96) >> 4) << 6);
        }
    }
}

/// Decodes one Q2_K block into 256 values.
pub fn dequantize_q2_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (read_f16(b, 80), read_f16(b, 82));
    let mut out = 0;
    for half in 0..2 {
        let q = &b[16 + 32 * half..16 + 32 * half + 32];
        for shift in [0, 2, 4, 6] {
            for part in 0..2 {
                let sc = b[8 * half + shift + part];
                let (dl, ml) = (d * f32::from(sc & 0xF), min * f32::from(sc >> 4));
                for k in 0..16 {
                    y[out] = dl * f32::from((q[16 * part + k] >> shift) & 3) - ml;
                    out += 1;
                }
            }
        }
    }
}

/// Q4_K/Q5_K group pairs: `(d1, m1, d2, m2)` for groups `2c` and `2c + 1`.
fn pair_scales(b: &[u8], c: usize) -> (f32, f32, f32, f32) {
    let (d, min) = (read_f16(b, 0), read_f16(b, 2));
    let (s1, m1) = scale_min_k4(2 * c, &b[4..16]);
    let (s2, m2) = scale_min_k4(2 * c + 1, &b[4..16]);
    (
        d * f32::from(s1),
        min * f32::from(m1),
        d * f32::from(s2),
        min * f32::from(m2),
    )
}

/// Decodes one Q4_K block into 256 values.
pub fn dequantize_q4_k(b: &[u8], y: &mut [f32]) {
    for c in 0..4 {
        let (d1, m1, d2, m2) = pair_scales(b, c);
        let q = &b[16 + 32 * c..16 + 32 * c + 32];
        for k in 0..32 {
            y[64 * c + k] = d1 * f32::from(q[k] & 0xF) - m1;
            y[64 * c + 32 + k] = d2 * f32::from(q[k] >> 4) - m2;
        }
    }
}

/// Decodes one Q5_K block into 256 values.
pub fn dequantize_q5_k(b: &[u8], y: &mut [f32]) {
    let qh = &b[16..48];
    for c in 0..4 {
        let (d1, m1, d2, m2) = pair_scales(b, c);
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        let ql = &b[48 + 32 * c..48 + 32 * c + 32];
        for k in 0..32 {
            let h1 = if qh[k] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[k] & u2 != 0 { 16 } else { 0 };
            y[64 * c + k] = d1 * f32::from((ql[k] & 0xF) + h1) - m1;
            y[64 * c + 32 + k] = d2 * f32::from((ql[k] >> 4) + h2) - m2;
        }
    }
}

/// Decodes one Q6_K block into 256 values.
pub fn dequantize_q6_k(b: &[u8], y: &mut [f32]) {
    let d = read_f16(b, 208);
    for half in 0..2 {
        let ql = &b[64 * half..];
        let qh = &b[128 + 32 * half..];
        let sc = &b[192 + 8 * half..];
        let yb = &mut y[128 * half..];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            let s = |k: usize| d * f32::from(sc[is + k] as i8);
            yb[l] = s(0) * f32::from(q1);
            yb[l + 32] = s(2) * f32::from(q2);
            yb[l + 64] = s(4) * f32::from(q3);
            yb[l + 96] = s(6) * f32::from(q4);
        }
    }
}

/// `if v > self { v } else { self }`, the comparison ggml uses for its running maxima
/// (unlike `f32::max` it keeps `self` when `v` is NaN).
trait MaxC {
    fn max_c(self, v: f32) -> f32;
}

impl MaxC for f32 {
    fn max_c(self, v: f32) -> f32 {
        if v > self { v } else { self }
    }
}
