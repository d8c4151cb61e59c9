//! HF → GGUF conversion of the tiny Llama fixture (`datasets/models/aidreams260K`):
//! metadata, tensor names, shapes, types and values read back with this crate's reader and,
//! with the reference env, loaded by llama.cpp, whose greedy generation must equal the
//! recorded reference (`reference_greedy.json`).

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ctiforge_export::convert::{ConvertOptions, hf_to_gguf};
use ctiforge_export::gguf::{Reader, Value};
use ctiforge_export::quant::{FileType, GgmlType};
use safetensors::SafeTensors;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/models/aidreams260K")
}

fn convert(ft: FileType, dir: &Path) -> PathBuf {
    let out = dir.join(format!("tiny-{ft}.gguf"));
    let opts = ConvertOptions {
        file_type: ft,
        ..ConvertOptions::default()
    };
    hf_to_gguf(&fixture(), &out, &opts).unwrap();
    out
}

/// The fixture's tensor `name` read independently with the safetensors crate (all F32).
fn hf_tensor(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (t.shape().to_vec(), v)
}

#[test]
fn f32_conversion_has_llama_metadata_names_and_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reader::open(convert(FileType::F32, dir.path())).unwrap();
    let u32_of = |k: &str| {
        r.get(k)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{k}"))
    };
    assert_eq!(
        r.get("general.architecture").and_then(Value::as_str),
        Some("llama")
    );
    assert_eq!(u32_of("llama.block_count"), 4);
    assert_eq!(u32_of("llama.embedding_length"), 64);
    assert_eq!(u32_of("llama.feed_forward_length"), 172);
    assert_eq!(u32_of("llama.attention.head_count"), 4);
    assert_eq!(u32_of("llama.attention.head_count_kv"), 4);
    assert_eq!(u32_of("llama.context_length"), 128);
    assert_eq!(u32_of("llama.rope.dimension_count"), 16);
    assert_eq!(u32_of("llama.vocab_size"), 512);
    assert_eq!(u32_of("general.file_type"), 0);
    assert_eq!(u32_of("tokenizer.ggml.bos_token_id"), 1);
    assert_eq!(u32_of("tokenizer.ggml.eos_token_id"), 2);
    assert_eq!(u32_of("tokenizer.ggml.unknown_token_id"), 0);
    assert_eq!(
        r.get("tokenizer.ggml.add_bos_token"),
        Some(&Value::Bool(true))
    );
    assert_eq!(
        r.get("tokenizer.ggml.model").and_then(Value::as_str),
        Some("llama")
    );
    let Some(Value::Array(tokens)) = r.get("tokenizer.ggml.tokens") else {
        panic!("tokens")
    };
    assert_eq!(tokens.items().len(), 512);
    assert_eq!(tokens.items()[3], Value::String("<0x00>".into()));
    let Some(Value::Array(types)) = r.get("tokenizer.ggml.token_type") else {
        panic!("types")
    };
    assert_eq!(
        types.items()[..4],
        [Value::I32(2), Value::I32(3), Value::I32(3), Value::I32(6)]
    );

    // Tied embeddings: no output tensor; 4 blocks of 9 tensors, embeddings, final norm.
    assert_eq!(r.tensors().len(), 1 + 4 * 9 + 1);
    assert!(r.tensor("output.weight").is_err());
    assert_eq!(r.tensors()[0].name, "token_embd.weight");
    assert_eq!(r.tensor("token_embd.weight").unwrap().dims, vec![64, 512]);
    assert_eq!(
        r.tensor("blk.3.ffn_down.weight").unwrap().dims,
        vec![172, 64]
    );
    assert!(r.tensors().iter().all(|t| t.ty == GgmlType::F32));

    let (_, embd) = hf_tensor("model.embed_tokens.weight");
    assert_eq!(r.tensor_f32("token_embd.weight").unwrap(), embd);
    let (_, v) = hf_tensor("model.layers.2.self_attn.v_proj.weight");
    assert_eq!(r.tensor_f32("blk.2.attn_v.weight").unwrap(), v);
    // Q rows: within each 16-row head, HF row s*8 + j becomes row 2j + s.
    let (shape, q) = hf_tensor("model.layers.1.self_attn.q_proj.weight");
    let got = r.tensor_f32("blk.1.attn_q.weight").unwrap();
    let cols = shape[1];
    for (h, j, s) in (0..4).flat_map(|h| (0..8).flat_map(move |j| (0..2).map(move |s| (h, j, s)))) {
        let (src, dst) = (h * 16 + s * 8 + j, h * 16 + 2 * j + s);
        assert_eq!(
            got[dst * cols..(dst + 1) * cols],
            q[src * cols..(src + 1) * cols]
        );
    }
}

#[test]
fn q4_k_m_conversion_applies_mixture_and_fallbacks() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reader::open(convert(FileType::Q4_K_M, dir.path())).unwrap();
    let ty = |n: &str| r.tensor(n).unwrap().ty;
    assert_eq!(r.get("general.file_type"), Some(&Value::U32(15)));
    // 64-wide rows do not divide into 256-blocks: Q4_K → Q5_0, Q6_K → Q8_0.
    assert_eq!(ty("blk.1.attn_q.weight"), GgmlType::Q5_0);
    // 4 layers: use_more_bits picks only the last (i >= 7n/8 = 3).
    assert_eq!(
        ty("blk.3.attn_v.weight"),
        GgmlType::Q8_0,
        "use_more_bits layer"
    );
    assert_eq!(ty("blk.0.attn_v.weight"), GgmlType::Q5_0);
    assert_eq!(
        ty("token_embd.weight"),
        GgmlType::Q8_0,
        "tied embeddings act as output"
    );
    // 172-wide rows do not divide into 32-blocks either: F16.
    assert_eq!(ty("blk.0.ffn_down.weight"), GgmlType::F16);
    assert_eq!(ty("blk.0.attn_norm.weight"), GgmlType::F32);
    let (_, embd) = hf_tensor("model.embed_tokens.weight");
    let got = r.tensor_f32("token_embd.weight").unwrap();
    let max_err = embd
        .iter()
        .zip(&got)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(max_err < 0.02, "Q8_0 embedding error {max_err}");
    // Refuses to overwrite without the option.
    let again = hf_to_gguf(&fixture(), r.path(), &ConvertOptions::default());
    assert!(matches!(again, Err(ctiforge_export::Error::Exists(_))));
}

#[test]
#[ignore = "needs the gguf reference env (CTIFORGE_GGUF_PYTHON)"]
fn llama_cpp_generates_the_reference_tokens_from_the_f32_conversion() {
    let python = std::env::var_os("CTIFORGE_GGUF_PYTHON")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "CTIFORGE_GGUF_PYTHON is not set: run `ci/setup-gguf.sh` and export \
             CTIFORGE_GGUF_PYTHON=<the path it prints>"
            )
        });
    let dir = tempfile::tempdir().unwrap();
    let gguf = convert(FileType::F32, dir.path());
    let json = dir.path().join("llama.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/gguf_llama_check.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&gguf)
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "llama.cpp check failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture().join("reference_greedy.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(got["bos"], 1);
    assert_eq!(got["n_vocab"], 512);
    assert_eq!(got["generated_ids"], reference["generated_ids"]);
}
