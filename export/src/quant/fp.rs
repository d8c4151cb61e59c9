//! Scalar conversions whose rounding decides bit-exactness with ggml
//! (`ggml-impl.h`: `ggml_compute_fp32_to_fp16`, `ggml_compute_fp32_to_bf16`;
//! `ggml-quants.c`: `nearest_int`).

/// f32 → IEEE half bits, rounding to nearest even like ggml; any NaN becomes the quiet NaN
/// `0x7E00` with the input's sign, as ggml's conversion does.
pub fn f32_to_f16(x: f32) -> u16 {
    if x.is_nan() {
        let sign = ((x.to_bits() >> 16) & 0x8000) as u16;
        return sign | 0x7E00;
    }
    half::f16::from_f32(x).to_bits()
}

/// IEEE half bits → f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// f32 → bfloat16 bits: round to nearest even, NaNs made quiet (ggml's
/// `ggml_compute_fp32_to_bf16`).
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// bfloat16 bits → f32 (exact).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// ggml's `nearest_int`: round to nearest, ties to even, by adding 1.5·2^23 and reading
/// the mantissa. Exact for |x| ≤ 4194303; beyond that it returns the same wrapped value
/// ggml does, which keeps degenerate inputs bit-identical too.
#[inline]
pub fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// Reads the little-endian f16 at `bytes[at..at + 2]` as f32.
#[inline]
pub fn read_f16(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// Writes `x` as a little-endian f16 (ggml rounding) at `out[at..at + 2]`.
#[inline]
pub fn write_f16(out: &mut [u8], at: usize, x: f32) {
    out[at..at + 2].copy_from_slice(&f32_to_f16(x).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_ties_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-2.6), -3);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
    }

    #[test]
    fn half_conversions_round_to_even_and_quiet_nans() {
        assert_eq!(f32_to_f16(1.0), 0x3C00);
        assert_eq!(f32_to_f16(65520.0), 0x7C00);
        assert_eq!(f32_to_f16(-f32::NAN), 0xFE00);
        // 1 + 2^-11 is halfway between 1 and the next half: ties go to the even 1.0.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3C00);
        assert_eq!(f32_to_bf16(1.0 + 2f32.powi(-8)), 0x3F80);
        assert_eq!(f32_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3F82);
        assert_eq!(bf16_to_f32(f32_to_bf16(-3.5)), -3.5);
    }
}
