//! Logits and greedy-generation parity with an independent implementation: Hugging Face
//! `transformers` (PyTorch, f32, eager attention) run by `ci/reference_logits.py` on the same
//! folders. `#[ignore]`d for plain `cargo test`; `cargo xtask ci` installs the reference and
//! runs them with `CTIFORGE_REF_PYTHON` set.

mod common;

use std::path::Path;
use std::process::Command;

use ctiforge_model::{Architecture, Device, LoadedModel, SamplingConfig, generate};

/// The largest absolute logit difference the issue allows in f32.
const TOLERANCE: f32 = 1e-4;

fn reference(model: &Path, args: &[&str]) -> serde_json::Value {
    let python = std::env::var("CTIFORGE_REF_PYTHON").expect(
        "CTIFORGE_REF_PYTHON is not set: run these tests through `cargo xtask ci`, which \
         creates the reference environment (ci/setup-reference.sh)",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/reference_logits.py");
    let out = Command::new(python)
        .arg(script)
        .arg(model)
        .args(args)
        .output()
        .expect("run the reference script");
    assert!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reference JSON")
}

fn ids_arg(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Compares ours and the reference's logits at every position; returns the max difference.
fn assert_logits_match(model: &Path, tokens: &[u32]) -> f32 {
    let loaded = LoadedModel::load(model, &Device::flex()).expect("load");
    let ours = loaded.model.logits(tokens).expect("forward");
    let theirs = reference(model, &["--tokens", &ids_arg(tokens)]);
    let theirs = &theirs["logits"][0];
    let mut max_diff = 0.0f32;
    for (pos, row) in ours.iter().enumerate() {
        let reference_row = theirs[pos].as_array().expect("row");
        assert_eq!(
            reference_row.len(),
            row.len(),
            "vocab size at position {pos}"
        );
        for (a, b) in row.iter().zip(reference_row) {
            max_diff = max_diff.max((a - b.as_f64().expect("float") as f32).abs());
        }
    }
    assert!(
        max_diff <= TOLERANCE,
        "{}: max |logit diff| {max_diff:e} > {TOLERANCE:e}",
        model.display()
    );
    max_diff
}

fn assert_greedy_matches(model: &Path, prompt: &[u32], new_tokens: usize) {
    let loaded = LoadedModel::load(model, &Device::flex()).expect("load");
    let config = SamplingConfig {
        max_new_tokens: new_tokens,
        ..Default::default()
    };
    let ours = generate(&loaded.model, &[prompt.to_vec()], &config, None).expect("generate");
    let theirs = reference(
        model,
        &[
            "--tokens",
            &ids_arg(prompt),
            "--generate",
            &new_tokens.to_string(),
        ],
    );
    let theirs: Vec<u32> = theirs["generated"][0]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect();
    assert_eq!(
        ours[0].ids,
        theirs,
        "{}: greedy tokens differ",
        model.display()
    );
}

/// A fixed, varied token sequence longer than the sliding windows used below.
fn tokens(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 37 + 11) % 380).collect()
}

#[test]
#[ignore = "needs the transformers reference (cargo xtask ci)"]
fn llama_gqa_with_llama3_rope_scaling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scaling = concat!(
        r#"rope_scaling={"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"#,
        r#""high_freq_factor":4.0,"original_max_position_embeddings":32}"#
    );
    let model = common::tiny_model(
        dir.path(),
        "llama3",
        Architecture::Llama,
        11,
        &[
            scaling,
            "rope_theta=500000.0",
            "tie_word_embeddings=false",
            "num_hidden_layers=3",
        ],
    );
    let diff = assert_logits_match(&model, &tokens(48));
    eprintln!("llama3 rope scaling: max |diff| {diff:e}");
    assert_greedy_matches(&model, &tokens(7), 16);
}

#[test]
#[ignore = "needs the transformers reference (cargo xtask ci)"]
fn llama_tied_with_linear_scaling_and_biases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = common::tiny_model(
        dir.path(),
        "linear",
        Architecture::Llama,
        12,
        &[
            r#"rope_scaling={"rope_type":"linear","factor":4.0}"#,
            "attention_bias=true",
            "mlp_bias=true",
            "num_key_value_heads=1",
        ],
    );
    let diff = assert_logits_match(&model, &tokens(40));
    eprintln!("llama linear scaling + biases: max |diff| {diff:e}");
}

#[test]
#[ignore = "needs the transformers reference (cargo xtask ci)"]
fn mistral_sliding_window_shorter_than_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = common::tiny_model(
        dir.path(),
        "mistral",
        Architecture::Mistral,
        13,
        &["sliding_window=6"],
    );
    let diff = assert_logits_match(&model, &tokens(32));
    eprintln!("mistral sliding window 6 over 32 tokens: max |diff| {diff:e}");
    assert_greedy_matches(&model, &tokens(9), 16);
}

#[test]
#[ignore = "needs the transformers reference (cargo xtask ci)"]
fn bundled_aidreams_model() {
    let diff = assert_logits_match(&common::aidreams(), &tokens(30));
    eprintln!("aidreams260K: max |diff| {diff:e}");
}
