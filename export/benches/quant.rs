//! Quantization throughput per ggml type on a 4096×4096 f32 tensor, in MB/s of f32 input
//! (criterion reports bytes/s from `Throughput::Bytes`). `ci/reference_quant_bench.py`
//! times gguf-py and ggml on the same shape for comparison.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ctiforge_export::quant::{self, GgmlType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ROWS: usize = 4096;
const COLS: usize = 4096;

fn bench_quantize(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let data: Vec<f32> = (0..ROWS * COLS)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let mut group = c.benchmark_group("quantize_4096x4096");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((data.len() * 4) as u64));
    for ty in GgmlType::ALL {
        group.bench_function(ty.to_string(), |b| {
            b.iter(|| {
                quant::quantize(ty, &data, COLS)
                    .map(|v| v.len())
                    .unwrap_or(0)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_quantize);
criterion_main!(benches);
