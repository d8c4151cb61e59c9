//! Exports checked in llama.cpp itself (through llama-cpp-python in the reference env,
//! `ci/setup-gguf.sh`, interpreter in `CTIFORGE_GGUF_PYTHON`; helper
//! `ci/gguf_llama_check.py`): F32 exports of a random tiny Llama and Mistral give llama.cpp
//! logits within 1e-4 of the `model` crate's; Q8_0 and Q4_K_M exports load and generate,
//! with their KL reported; the GGUF tokenizer splits CTI text into the ids `tokenizer.json`
//! gives; a base GGUF with the LoRA GGUF adapter gives the merged model's logits.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::models::{make_adapter, tiny_model, tiny_modules};
use ctiforge_export::quality::QualityOptions;
use ctiforge_export::{
    ExportOptions, FileType, GgmlType, LoraExportOptions, MergeOptions, export_gguf,
    export_lora_gguf, merge_adapter,
};
use ctiforge_model::{Architecture, LoadedModel, parse_device};

const ENV: &str = "CTIFORGE_GGUF_PYTHON";

fn python() -> PathBuf {
    match std::env::var_os(ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "{ENV} is not set: run `ci/setup-gguf.sh` and export {ENV}=<the path it prints> \
             to run the llama.cpp parity tests"
        ),
    }
}

/// Runs `gguf_llama_check.py` and returns its JSON.
fn llama_cpp(gguf: &Path, extra: &[String]) -> serde_json::Value {
    let json = gguf.with_extension("llama.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/gguf_llama_check.py");
    let out = Command::new(python())
        .arg(script)
        .arg(gguf)
        .arg(&json)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gguf_llama_check.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

fn export(model: &Path, quant: FileType, out: PathBuf, quality: bool) -> PathBuf {
    let opts = ExportOptions {
        model_dir: model.to_path_buf(),
        adapter_dir: None,
        quant,
        out: out.clone(),
        force: false,
        name: None,
        pre_tokenizer: "gpt-2".into(),
        quality: quality.then(|| QualityOptions {
            max_tokens_per_text: 64,
            ..QualityOptions::default()
        }),
    };
    let report = export_gguf(&opts).unwrap();
    if let Some(q) = &report.manifest.quality {
        eprintln!("{quant}: {}", serde_json::to_string(q).unwrap());
    }
    out
}

const CTI: &str = "APT29 used spearphishing links to deliver a PowerShell loader that \
    contacted 185.220.101.4 over HTTPS and dumped LSASS credentials.";

/// `(model crate logits, ids)` of `text` with BOS.
fn ours(model: &Path, text: &str) -> (Vec<Vec<f32>>, Vec<u32>) {
    let loaded = LoadedModel::load(model, &parse_device("cpu").unwrap()).unwrap();
    let ids = loaded.tokenizer().unwrap().encode(text, true).unwrap();
    (loaded.model.logits(&ids).unwrap(), ids)
}

fn ids_arg(ids: &[u32]) -> Vec<String> {
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    vec!["--ids".into(), list.join(",")]
}

fn max_logit_diff(ours: &[Vec<f32>], theirs: &serde_json::Value) -> f64 {
    let rows = theirs["logits"].as_array().unwrap();
    assert_eq!(rows.len(), ours.len());
    let mut max = 0.0f64;
    for (a, b) in ours.iter().zip(rows) {
        let b = b.as_array().unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            max = max.max((f64::from(*x) - y.as_f64().unwrap()).abs());
        }
    }
    max
}

#[test]
#[ignore = "needs the gguf reference env (CTIFORGE_GGUF_PYTHON)"]
fn f32_exports_of_llama_and_mistral_match_llama_cpp_logits() {
    let _ = python();
    let dir = tempfile::tempdir().unwrap();
    for (arch, name) in [
        (Architecture::Llama, "llama"),
        (Architecture::Mistral, "mistral"),
    ] {
        let model = tiny_model(dir.path(), name, arch, 21, &[]);
        let gguf = export(
            &model,
            FileType::F32,
            dir.path().join(format!("{name}-gguf")).join("m.gguf"),
            false,
        );
        let (logits, ids) = ours(&model, CTI);
        let theirs = llama_cpp(&gguf, &ids_arg(&ids));
        let diff = max_logit_diff(&logits, &theirs);
        eprintln!(
            "{name}: {} positions, max |logit diff| {diff:.3e}",
            ids.len()
        );
        assert!(diff < 1e-4, "{name}: llama.cpp logits differ by {diff}");
    }
}

#[test]
#[ignore = "needs the gguf reference env (CTIFORGE_GGUF_PYTHON)"]
fn q8_0_and_q4_k_m_exports_load_and_generate_in_llama_cpp() {
    let _ = python();
    let dir = tempfile::tempdir().unwrap();
    // Rows of 256 so Q4_K_M really uses K-quants.
    let model = tiny_model(
        dir.path(),
        "m",
        Architecture::Llama,
        22,
        &["hidden_size=256", "head_dim=64", "intermediate_size=512"],
    );
    for quant in [FileType::Q8_0, FileType::Q4_K_M] {
        let gguf = export(
            &model,
            quant,
            dir.path().join(quant.name()).join("m.gguf"),
            true,
        );
        let got = llama_cpp(&gguf, &["--steps".into(), "16".into()]);
        assert_eq!(
            got["generated_ids"].as_array().unwrap().len(),
            16,
            "{quant}"
        );
        assert_eq!(got["n_vocab"], 384);
        let m: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(gguf.with_file_name("export.json")).unwrap(),
        )
        .unwrap();
        let kl = m["quality"]["mean_kl"].as_f64().unwrap();
        assert!(kl.is_finite() && kl > 0.0, "{quant}: KL {kl}");
        if quant == FileType::Q4_K_M {
            assert!(
                m["tensor_types"].get("Q4_K").is_some(),
                "{}",
                m["tensor_types"]
            );
        }
    }
}

#[test]
#[ignore = "needs the gguf reference env (CTIFORGE_GGUF_PYTHON)"]
fn gguf_tokenizer_matches_tokenizer_json_on_cti_text() {
    let _ = python();
    let dir = tempfile::tempdir().unwrap();
    let tram = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/tram/tram_negative_sentences.jsonl");
    let mut texts: Vec<String> = std::fs::read_to_string(tram)
        .unwrap()
        .lines()
        .take(40)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    texts.push(CTI.into());
    texts.push(
        "hxxps://evil[.]example/payload.exe  SHA256: 9f86d081884c7d65 — C2 at 10.0.0.1:443".into(),
    );
    let texts_file = dir.path().join("texts.json");
    std::fs::write(&texts_file, serde_json::to_string(&texts).unwrap()).unwrap();
    for (arch, name) in [
        (Architecture::Llama, "llama"),
        (Architecture::Mistral, "mistral"),
    ] {
        let model = tiny_model(dir.path(), name, arch, 23, &[]);
        let gguf = export(
            &model,
            FileType::F16,
            dir.path().join(format!("{name}-gguf")).join("m.gguf"),
            false,
        );
        let got = llama_cpp(
            &gguf,
            &[
                "--steps".into(),
                "1".into(),
                "--texts-file".into(),
                texts_file.to_str().unwrap().into(),
            ],
        );
        let tok = LoadedModel::load(&model, &parse_device("cpu").unwrap()).unwrap();
        let tok = tok.tokenizer().unwrap();
        for (text, theirs) in texts.iter().zip(got["texts_ids"].as_array().unwrap()) {
            let want = tok.encode(text, false).unwrap();
            let theirs: Vec<u32> = theirs
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(theirs, want, "{name}: {text:?}");
        }
    }
}

#[test]
#[ignore = "needs the gguf reference env (CTIFORGE_GGUF_PYTHON)"]
fn lora_gguf_on_the_base_gives_the_merged_models_logits() {
    let _ = python();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "base", Architecture::Llama, 24, &[]);
    let cfg = serde_json::json!({"use_rslora": true, "lora_alpha": 16,
        "alpha_pattern": {"o_proj": 2}});
    let adapter = make_adapter(&dir.path().join("ad"), &tiny_modules(2, 4), cfg, 6);
    let base_gguf = export(&model, FileType::F32, dir.path().join("base.gguf"), false);
    let lora = dir.path().join("lora.gguf");
    export_lora_gguf(&LoraExportOptions {
        model_dir: model.clone(),
        adapter_dir: adapter.clone(),
        out: lora.clone(),
        force: false,
        name: None,
        ty: GgmlType::F32,
    })
    .unwrap();
    let merged = dir.path().join("merged");
    merge_adapter(&model, &adapter, &merged, &MergeOptions::default()).unwrap();
    let (logits, ids) = ours(&merged, CTI);
    let mut args = ids_arg(&ids);
    args.extend(["--lora".to_string(), lora.to_str().unwrap().to_string()]);
    let theirs = llama_cpp(&base_gguf, &args);
    let diff = max_logit_diff(&logits, &theirs);
    eprintln!("base + LoRA GGUF vs merged: max |logit diff| {diff:.3e}");
    assert!(
        diff < 1e-4,
        "llama.cpp with --lora differs from the merged model by {diff}"
    );
    // And the adapter matters: the base alone differs.
    let base_only = llama_cpp(&base_gguf, &ids_arg(&ids));
    assert!(max_logit_diff(&logits, &base_only) > 1e-3);
}
