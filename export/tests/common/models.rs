//! Seeded tiny model folders (through `ctiforge-model`'s `init`) and PEFT adapters made by
//! code, for the merge, export and llama.cpp parity tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ctiforge_model::Architecture;
use ctiforge_model::init::{InitSpec, Preset, init_model, parse_override};
use ctiforge_model::weights::{HostTensor, SaveDtype, write_safetensors};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The TRAM sentences the tiny tokenizers are trained on.
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/tram/tram_bootstrap_sentences.jsonl")
}

/// A tiny random model (2 layers, d_model 64, 4 query heads over 2 kv heads, vocab 384)
/// under `dir/name`, with `config.json` overrides like `"num_hidden_layers=3"`.
pub fn tiny_model(dir: &Path, name: &str, arch: Architecture, seed: u64, sets: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let spec = InitSpec {
        arch,
        preset: Preset::Tiny,
        vocab_size: 384,
        tokenizer_corpus: corpus(),
        seed,
        overrides: sets.iter().map(|s| parse_override(s).unwrap()).collect(),
        dtype: SaveDtype::F32,
        out: out.clone(),
        force: false,
    };
    init_model(&spec).unwrap();
    out
}

/// One adapted module: `(module, out_features, in_features, rank)`.
pub type ModuleSpec = (String, usize, usize, usize);

/// Writes a PEFT adapter folder with seeded random A and B (B not zero, so the merge
/// changes the model) and the given config fields merged into a default LoRA config.
pub fn make_adapter(
    dir: &Path,
    modules: &[ModuleSpec],
    config: serde_json::Value,
    seed: u64,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors = BTreeMap::new();
    for (module, out_f, in_f, r) in modules {
        let mut draw =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-0.05f32..0.05)).collect() };
        tensors.insert(
            format!("base_model.model.{module}.lora_A.weight"),
            HostTensor {
                data: draw(r * in_f),
                shape: vec![*r, *in_f],
            },
        );
        tensors.insert(
            format!("base_model.model.{module}.lora_B.weight"),
            HostTensor {
                data: draw(out_f * r),
                shape: vec![*out_f, *r],
            },
        );
    }
    write_safetensors(
        &dir.join("adapter_model.safetensors"),
        &tensors,
        SaveDtype::F32,
    )
    .unwrap();
    let mut cfg = serde_json::json!({
        "peft_type": "LORA",
        "r": 4,
        "lora_alpha": 8,
        "use_rslora": false,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
        "bias": "none",
        "fan_in_fan_out": false,
        "task_type": "CAUSAL_LM",
    });
    if let (Some(c), Some(extra)) = (cfg.as_object_mut(), config.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    std::fs::write(
        dir.join("adapter_config.json"),
        serde_json::to_string_pretty(&cfg).unwrap(),
    )
    .unwrap();
    dir.to_path_buf()
}

/// q, k, v, o and down projections of every layer of the tiny preset, rank `r`.
pub fn tiny_modules(n_layers: usize, r: usize) -> Vec<ModuleSpec> {
    let mut out = Vec::new();
    for i in 0..n_layers {
        let p = |m: &str| format!("model.layers.{i}.{m}");
        out.push((p("self_attn.q_proj"), 64, 64, r));
        out.push((p("self_attn.k_proj"), 32, 64, r));
        out.push((p("self_attn.v_proj"), 32, 64, r));
        out.push((p("self_attn.o_proj"), 64, 64, r));
        out.push((p("mlp.down_proj"), 64, 176, r));
    }
    out
}

/// Tensor `name` of the single-file checkpoint in `dir`, as `(shape, f32 values)`.
pub fn read_tensor(dir: &Path, file: &str, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(dir.join(file)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (t.shape().to_vec(), v)
}
