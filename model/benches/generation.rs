//! Criterion benchmarks of the model layer on the CPU backend: prompt processing (one
//! forward pass over 64 tokens) and KV-cached greedy generation (32 new tokens) for the
//! bundled aidreams260K Llama and a seeded random `tiny` preset Llama.
//!
//! `cargo bench -p ctiforge-model`; the side-by-side comparison with `transformers` is
//! `cargo xtask bench` (see docs/benchmarks.md).

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ctiforge_model::init::{InitSpec, Preset, init_model};
use ctiforge_model::transformer::ForwardBatch;
use ctiforge_model::weights::SaveDtype;
use ctiforge_model::{Architecture, Device, LoadedModel, SamplingConfig, generate};

const PROMPT: usize = 64;
const NEW: usize = 32;

fn bench_model(c: &mut Criterion, name: &str, dir: &Path) {
    let loaded = LoadedModel::load(dir, &Device::flex()).expect("load model");
    let vocab = loaded.model.config.vocab_size as u32;
    let prompt: Vec<u32> = (0..PROMPT as u32)
        .map(|i| 3 + (i * 37) % (vocab - 3))
        .collect();
    let mut group = c.benchmark_group(name);
    group.sample_size(10);

    group.throughput(Throughput::Elements(PROMPT as u64));
    group.bench_function("prefill_64", |b| {
        let batch = ForwardBatch::single(&prompt, loaded.model.config.sliding_window);
        b.iter(|| {
            loaded
                .model
                .forward_last(&batch, None)
                .expect("forward")
                .into_data()
        });
    });

    group.throughput(Throughput::Elements(NEW as u64));
    let config = SamplingConfig {
        max_new_tokens: NEW,
        ..Default::default()
    };
    group.bench_function("generate_32", |b| {
        b.iter(|| generate(&loaded.model, &[prompt[..8].to_vec()], &config, None).expect("gen"));
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    bench_model(
        c,
        "aidreams260K",
        &root.join("datasets/models/aidreams260K"),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let spec = InitSpec {
        arch: Architecture::Llama,
        preset: Preset::Tiny,
        vocab_size: 512,
        tokenizer_corpus: root.join("datasets/tram/tram_bootstrap_sentences.jsonl"),
        seed: 1,
        overrides: Vec::new(),
        dtype: SaveDtype::F32,
        out: dir.path().join("tiny"),
        force: false,
    };
    init_model(&spec).expect("init tiny model");
    bench_model(c, "tiny-llama", &spec.out);
}

criterion_group!(generation, benches);
criterion_main!(generation);
