//! Shared helpers of the model crate's integration tests: seeded random model folders.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ctiforge_model::Architecture;
use ctiforge_model::init::{InitSpec, Preset, init_model, parse_override};
use ctiforge_model::weights::SaveDtype;

/// The TRAM sentences the test tokenizers are trained on.
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/tram/tram_bootstrap_sentences.jsonl")
}

/// The bundled llama2.c model.
pub fn aidreams() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/models/aidreams260K")
}

/// Creates a tiny model under `dir/name` with `config.json` overrides like `"num_hidden_layers=3"`.
pub fn tiny_model(dir: &Path, name: &str, arch: Architecture, seed: u64, sets: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let spec = InitSpec {
        arch,
        preset: Preset::Tiny,
        vocab_size: 384,
        tokenizer_corpus: corpus(),
        seed,
        overrides: sets
            .iter()
            .map(|s| parse_override(s).expect("override"))
            .collect(),
        dtype: SaveDtype::F32,
        out: out.clone(),
        force: false,
    };
    init_model(&spec).expect("init model");
    out
}
