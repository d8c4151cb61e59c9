//! LoRA merge: seeded PEFT adapters made by code on a tiny random Llama; merged weights
//! checked against an independent `W + s·B·A` in f64, untouched tensors byte-equal, rsLoRA
//! and per-module patterns, and the named errors for adapters that do not fit.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::models::{make_adapter, read_tensor, tiny_model, tiny_modules};
use ctiforge_export::Error;
use ctiforge_export::merge::{MergeOptions, merge_adapter};
use ctiforge_model::{Architecture, LoadedModel, parse_device};

const ST: &str = "model.safetensors";
const AD: &str = "adapter_model.safetensors";

/// `W + s·B·A` computed in f64 from the files.
fn expected_merge(base: &Path, adapter: &Path, module: &str, s: f64) -> Vec<f32> {
    let (shape, w) = read_tensor(base, ST, &format!("{module}.weight"));
    let (ash, a) = read_tensor(
        adapter,
        AD,
        &format!("base_model.model.{module}.lora_A.weight"),
    );
    let (_, b) = read_tensor(
        adapter,
        AD,
        &format!("base_model.model.{module}.lora_B.weight"),
    );
    let (out, inp, r) = (shape[0], shape[1], ash[0]);
    (0..out * inp)
        .map(|idx| {
            let (o, j) = (idx / inp, idx % inp);
            let d: f64 = (0..r)
                .map(|k| f64::from(b[o * r + k]) * f64::from(a[k * inp + j]))
                .sum();
            (f64::from(w[idx]) + s * d) as f32
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn merge_adds_scaled_b_times_a_and_copies_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_model(dir.path(), "base", Architecture::Llama, 7, &[]);
    let adapter = make_adapter(
        &dir.path().join("ad"),
        &tiny_modules(2, 4),
        serde_json::json!({}),
        1,
    );
    let out = dir.path().join("merged");
    let report = merge_adapter(&base, &adapter, &out, &MergeOptions::default()).unwrap();
    assert_eq!(report.merged_modules, 10);
    assert!(report.max_abs_delta > 1e-4);
    for module in [
        "model.layers.0.self_attn.q_proj",
        "model.layers.1.mlp.down_proj",
    ] {
        let want = expected_merge(&base, &adapter, module, 8.0 / 4.0);
        let (_, got) = read_tensor(&out, ST, &format!("{module}.weight"));
        assert!(max_diff(&got, &want) < 1e-6, "{module}");
    }
    // Unadapted tensors are copied bit for bit.
    for name in [
        "model.layers.0.mlp.up_proj.weight",
        "model.embed_tokens.weight",
    ] {
        assert_eq!(read_tensor(&out, ST, name), read_tensor(&base, ST, name));
    }
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(base.join(f)).unwrap()
        );
    }
    // The merged folder loads with the model crate, and its logits moved.
    let device = parse_device("cpu").unwrap();
    let ids = [0u32, 40, 41, 42, 100];
    let a = LoadedModel::load(&base, &device)
        .unwrap()
        .model
        .logits(&ids)
        .unwrap();
    let b = LoadedModel::load(&out, &device)
        .unwrap()
        .model
        .logits(&ids)
        .unwrap();
    assert!(max_diff(&a[4], &b[4]) > 1e-5);
    // No staging folders left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
    // Refuses to replace the output unless forced.
    let again = merge_adapter(&base, &adapter, &out, &MergeOptions::default());
    assert!(matches!(again, Err(Error::Exists(_))), "{again:?}");
    let forced = MergeOptions {
        force: true,
        ..MergeOptions::default()
    };
    merge_adapter(&base, &adapter, &out, &forced).unwrap();
}

#[test]
fn rslora_patterns_and_layer_subsets_scale_per_module() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_model(dir.path(), "base", Architecture::Mistral, 8, &[]);
    let modules = vec![
        ("model.layers.1.self_attn.q_proj".to_string(), 64, 64, 4),
        ("model.layers.1.self_attn.v_proj".to_string(), 32, 64, 2),
    ];
    let cfg = serde_json::json!({"use_rslora": true, "lora_alpha": 16, "layers_to_transform": [1],
        "rank_pattern": {"v_proj": 2}, "alpha_pattern": {"v_proj": 4}});
    let adapter = make_adapter(&dir.path().join("ad"), &modules, cfg, 2);
    let out = dir.path().join("merged");
    merge_adapter(&base, &adapter, &out, &MergeOptions::default()).unwrap();
    let q = "model.layers.1.self_attn.q_proj";
    let want = expected_merge(&base, &adapter, q, 16.0 / 2.0);
    assert!(max_diff(&read_tensor(&out, ST, &format!("{q}.weight")).1, &want) < 1e-6);
    let v = "model.layers.1.self_attn.v_proj";
    let want = expected_merge(&base, &adapter, v, 4.0 / 2f64.sqrt());
    assert!(max_diff(&read_tensor(&out, ST, &format!("{v}.weight")).1, &want) < 1e-6);

    // A factor for a layer that layers_to_transform excludes is refused.
    let cfg = serde_json::json!({"layers_to_transform": [0]});
    let bad = make_adapter(&dir.path().join("bad"), &tiny_modules(2, 4), cfg, 3);
    let err = merge_adapter(
        &base,
        &bad,
        &dir.path().join("m2"),
        &MergeOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("layers_to_transform"), "{err}");
}

#[test]
fn adapters_that_do_not_fit_the_base_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_model(dir.path(), "base", Architecture::Llama, 9, &[]);
    let out = dir.path().join("merged");
    // Trained on a wider model: A has 128 input features where the base has 64.
    let wide = vec![("model.layers.0.self_attn.q_proj".to_string(), 64, 128, 4)];
    let ad = make_adapter(&dir.path().join("wide"), &wide, serde_json::json!({}), 4);
    match merge_adapter(&base, &ad, &out, &MergeOptions::default()) {
        Err(Error::AdapterShape {
            tensor,
            expected,
            got,
            ..
        }) => {
            assert_eq!(
                tensor,
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
            );
            assert_eq!(expected, vec![4, 64]);
            assert_eq!(got, vec![4, 128]);
        }
        other => panic!("expected AdapterShape, got {other:?}"),
    }
    // A module the base does not have (layer 5 of a 2-layer model).
    let deep = vec![("model.layers.5.self_attn.q_proj".to_string(), 64, 64, 4)];
    let ad = make_adapter(&dir.path().join("deep"), &deep, serde_json::json!({}), 5);
    let err = merge_adapter(&base, &ad, &out, &MergeOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("does not exist in the base model"),
        "{err}"
    );
    // A module target_modules does not name.
    let up = vec![("model.layers.0.mlp.up_proj".to_string(), 176, 64, 4)];
    let ad = make_adapter(&dir.path().join("up"), &up, serde_json::json!({}), 6);
    let err = merge_adapter(&base, &ad, &out, &MergeOptions::default()).unwrap_err();
    assert!(err.to_string().contains("target_modules"), "{err}");
    // A missing config field.
    let ad = make_adapter(&dir.path().join("nor"), &wide, serde_json::json!({}), 4);
    std::fs::write(ad.join("adapter_config.json"), r#"{"lora_alpha": 8}"#).unwrap();
    let err = merge_adapter(&base, &ad, &out, &MergeOptions::default()).unwrap_err();
    assert!(err.to_string().contains("adapter_config.json"), "{err}");
    assert!(!out.exists());
}
