//! Shared helpers of the export crate's integration tests: seeded inputs, including awkward
//! rows, and raw f32 file I/O.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used, dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Rows of `n` values: seeded normal-ish data at several scales plus awkward rows (all
/// zeros, constant, one spike, huge and tiny magnitudes, mixed signs with exact ties).
pub fn awkward_rows(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut gauss = || {
        // Sum of uniforms: cheap, bell-shaped, seeded.
        (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>()
    };
    let mut rows: Vec<Vec<f32>> = Vec::new();
    for scale in [1.0f32, 0.02, 300.0] {
        rows.push((0..n).map(|_| gauss() * scale).collect());
    }
    rows.push(vec![0.0; n]);
    rows.push(vec![0.75; n]);
    rows.push(vec![-3.0; n]);
    let mut spike = vec![0.0f32; n];
    spike[n / 3] = 5.0;
    rows.push(spike);
    rows.push((0..n).map(|_| gauss() * 1.0e4).collect());
    rows.push((0..n).map(|_| gauss() * 1.0e-6).collect());
    rows.push((0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.5).collect());
    rows.push((0..n).map(|_| gauss().abs() + 0.5).collect());
    rows.concat()
}

/// Writes little-endian f32 values.
pub fn write_f32(path: &std::path::Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

/// Reads little-endian f32 values.
pub fn read_f32(path: &std::path::Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub mod models;
