//! The export job on tiny random models: quality numbers from the dequantized forward (an
//! F32 export is lossless, Q8_0 loses less than Q4_0), `export.json` and `Modelfile`
//! contents, the LoRA GGUF adapter layout, and the named errors for bad input.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::models::{make_adapter, read_tensor, tiny_model, tiny_modules};
use ctiforge_export::convert::permute_rope_rows;
use ctiforge_export::gguf::{Reader, Value};
use ctiforge_export::job::{ExportManifest, TemplateFamily};
use ctiforge_export::quality::QualityOptions;
use ctiforge_export::{
    Error, ExportOptions, FileType, GgmlType, LoraExportOptions, export_gguf, export_lora_gguf,
};
use ctiforge_model::Architecture;

fn options(model: &Path, quant: FileType, out: PathBuf) -> ExportOptions {
    ExportOptions {
        model_dir: model.to_path_buf(),
        adapter_dir: None,
        quant,
        out,
        force: false,
        name: None,
        pre_tokenizer: "gpt-2".into(),
        quality: Some(QualityOptions {
            max_tokens_per_text: 48,
            ..QualityOptions::default()
        }),
    }
}

#[test]
fn quality_export_json_and_modelfile() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "base", Architecture::Llama, 11, &[]);
    let mut kls = Vec::new();
    for quant in [FileType::F32, FileType::Q8_0, FileType::Q4_0] {
        let out_dir = dir.path().join(quant.name());
        let report = export_gguf(&options(&model, quant, out_dir.join("m.gguf"))).unwrap();
        let q = report.manifest.quality.clone().unwrap();
        assert_eq!(q.n_texts, 6);
        assert!(q.n_positions > 100, "{q:?}");
        if quant == FileType::F32 {
            // Same weights, same forward: nothing lost (this also proves the Q/K rows were
            // permuted back).
            assert!(q.mean_kl < 1e-9 && q.max_kl < 1e-8, "{q:?}");
            assert_eq!(q.top1_agreement, 1.0);
            assert!((q.ppl_base - q.ppl_export).abs() < 1e-6 * q.ppl_base);
        } else {
            assert!(q.mean_kl > 0.0 && q.mean_kl.is_finite(), "{q:?}");
        }
        kls.push(q.mean_kl);

        // export.json on disk equals the report and describes the file.
        let text = std::fs::read_to_string(out_dir.join("export.json")).unwrap();
        let m: ExportManifest = serde_json::from_str(&text).unwrap();
        assert_eq!(m.quant, quant.name());
        assert_eq!(m.gguf, "m.gguf");
        let bytes = std::fs::read(out_dir.join("m.gguf")).unwrap();
        assert_eq!(m.file_bytes, bytes.len() as u64);
        assert_eq!(
            m.sha256,
            ctiforge_export::job::hash::sha256_file(&out_dir.join("m.gguf")).unwrap()
        );
        assert_eq!(m.tensor_types.values().sum::<usize>(), m.tensors.len());
        let r = Reader::open(out_dir.join("m.gguf")).unwrap();
        assert_eq!(m.tensors.len(), r.tensors().len());
        for (e, t) in m.tensors.iter().zip(r.tensors()) {
            assert_eq!(
                (e.name.as_str(), e.ty.as_str()),
                (t.name.as_str(), t.ty.name())
            );
        }
        assert_eq!(m.source.model_sha256.len(), 64);
        assert_eq!(m.template_family, TemplateFamily::Llama3);
        assert!(m.adapter.is_none());

        let mf = std::fs::read_to_string(out_dir.join("Modelfile")).unwrap();
        assert!(mf.starts_with("FROM ./m.gguf\n"), "{mf}");
        assert!(
            mf.contains("TEMPLATE \"\"\"{{ if .System }}<|start_header_id|>system"),
            "{mf}"
        );
        assert!(mf.contains("PARAMETER stop \"<|end_of_text|>\""), "{mf}");
        assert!(mf.contains("PARAMETER stop \"<|eot_id|>\""), "{mf}");
        assert!(mf.contains("PARAMETER temperature 0"), "{mf}");
    }
    assert!(
        kls[1] < kls[2],
        "Q8_0 KL {} should be below Q4_0 KL {}",
        kls[1],
        kls[2]
    );

    // The target exists: refused, then replaced with force.
    let out = dir.path().join("F32").join("m.gguf");
    let mut opts = options(&model, FileType::F32, out);
    opts.quality = None;
    assert!(matches!(export_gguf(&opts), Err(Error::Exists(_))));
    opts.force = true;
    let r = export_gguf(&opts).unwrap();
    assert!(r.manifest.quality.is_none());
}

#[test]
fn mistral_export_with_adapter_merges_and_uses_the_mistral_template() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "base", Architecture::Mistral, 12, &[]);
    let adapter = make_adapter(
        &dir.path().join("ad"),
        &tiny_modules(2, 4),
        serde_json::json!({}),
        3,
    );
    let mut opts = options(&model, FileType::F16, dir.path().join("out").join("x.gguf"));
    opts.adapter_dir = Some(adapter.clone());
    let report = export_gguf(&opts).unwrap();
    let a = report.manifest.adapter.as_ref().unwrap();
    assert_eq!((a.merged_modules, a.rank), (10, 4));
    assert_eq!(report.manifest.template_family, TemplateFamily::Mistral);
    assert!(report.manifest.stop.contains(&"</s>".to_string()));
    let q = report.manifest.quality.unwrap();
    assert!(q.mean_kl < 1e-3 && q.top1_agreement > 0.9, "{q:?}");
    // The GGUF holds the merged weights, not the base ones.
    let r = Reader::open(&report.gguf).unwrap();
    let v = r.tensor_f32("blk.0.attn_v.weight").unwrap();
    let (_, base_v) = read_tensor(
        &model,
        "model.safetensors",
        "model.layers.0.self_attn.v_proj.weight",
    );
    let diff = v
        .iter()
        .zip(&base_v)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff > 1e-3, "adapter not merged (max diff {diff})");
    assert_eq!(r.get("general.name").and_then(Value::as_str), Some("base"));
}

#[test]
fn bad_inputs_get_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "base", Architecture::Llama, 13, &[]);
    let err = "q9_9".parse::<FileType>().unwrap_err().to_string();
    assert!(err.contains("q9_9") && err.contains("Q4_K_M"), "{err}");

    // An architecture llama.cpp cannot load as llama.
    let gpt = dir.path().join("gpt");
    std::fs::create_dir_all(&gpt).unwrap();
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(model.join(f), gpt.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    cfg["architectures"] = serde_json::json!(["GPT2LMHeadModel"]);
    cfg["model_type"] = "gpt2".into();
    std::fs::write(gpt.join("config.json"), cfg.to_string()).unwrap();
    let out = dir.path().join("o").join("g.gguf");
    match export_gguf(&options(&gpt, FileType::F16, out.clone())) {
        Err(Error::Architecture { found, .. }) => assert!(found.contains("GPT2LMHeadModel")),
        other => panic!("expected Architecture, got {other:?}"),
    }
    // An adapter for a different base (a wider model).
    let wide = vec![("model.layers.1.mlp.down_proj".to_string(), 128, 176, 4)];
    let ad = make_adapter(&dir.path().join("wide"), &wide, serde_json::json!({}), 4);
    let mut opts = options(&model, FileType::F16, out.clone());
    opts.adapter_dir = Some(ad);
    match export_gguf(&opts) {
        Err(Error::AdapterShape {
            tensor,
            expected,
            got,
            ..
        }) => {
            assert!(tensor.ends_with("mlp.down_proj.lora_B.weight"), "{tensor}");
            assert_eq!((expected, got), (vec![64, 4], vec![128, 4]));
        }
        other => panic!("expected AdapterShape, got {other:?}"),
    }
    // Nothing was left behind by the failed exports.
    let left: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn lora_gguf_has_llama_cpp_layout_scaling_and_permuted_b() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "base", Architecture::Llama, 14, &[]);
    let modules = tiny_modules(2, 4);
    let cfg = serde_json::json!({"use_rslora": true, "lora_alpha": 16,
        "alpha_pattern": {"o_proj": 2}});
    let adapter = make_adapter(&dir.path().join("ad"), &modules, cfg, 5);
    let out = dir.path().join("lora.gguf");
    let opts = LoraExportOptions {
        model_dir: model.clone(),
        adapter_dir: adapter.clone(),
        out: out.clone(),
        force: false,
        name: None,
        ty: GgmlType::F32,
    };
    let report = export_lora_gguf(&opts).unwrap();
    assert_eq!(report.n_modules, 10);
    let r = Reader::open(&out).unwrap();
    assert_eq!(
        r.get("general.type").and_then(Value::as_str),
        Some("adapter")
    );
    assert_eq!(r.get("adapter.type").and_then(Value::as_str), Some("lora"));
    assert_eq!(
        r.get("general.architecture").and_then(Value::as_str),
        Some("llama")
    );
    // rsLoRA: llama.cpp divides by r, so alpha is written as 16·sqrt(4) = 32.
    assert_eq!(r.get("adapter.lora.alpha"), Some(&Value::F32(32.0)));
    assert_eq!(r.tensors().len(), 20);
    assert_eq!(
        r.tensor("blk.0.attn_k.weight.lora_a").unwrap().dims,
        vec![64, 4]
    );
    assert_eq!(
        r.tensor("blk.0.attn_k.weight.lora_b").unwrap().dims,
        vec![4, 32]
    );
    assert_eq!(
        r.tensor("blk.1.ffn_down.weight.lora_a").unwrap().dims,
        vec![176, 4]
    );

    let ad = |m: &str, f: &str| {
        read_tensor(
            &adapter,
            "adapter_model.safetensors",
            &format!("base_model.model.{m}.lora_{f}.weight"),
        )
        .1
    };
    let k = "model.layers.0.self_attn.k_proj";
    assert_eq!(
        r.tensor_f32("blk.0.attn_k.weight.lora_a").unwrap(),
        ad(k, "A")
    );
    // K has 2 kv heads: B's rows are permuted like the base weight's.
    assert_eq!(
        r.tensor_f32("blk.0.attn_k.weight.lora_b").unwrap(),
        permute_rope_rows(&ad(k, "B"), 2, 4)
    );
    let v = "model.layers.0.self_attn.v_proj";
    assert_eq!(
        r.tensor_f32("blk.0.attn_v.weight.lora_b").unwrap(),
        ad(v, "B")
    );
    // o_proj's own scaling is 2/sqrt(4) = 1 while llama.cpp applies 32/4 = 8: B · 1/8.
    let o = "model.layers.1.self_attn.o_proj";
    let got = r.tensor_f32("blk.1.attn_output.weight.lora_b").unwrap();
    for (g, b) in got.iter().zip(ad(o, "B")) {
        assert!((g - b / 8.0).abs() < 1e-8);
    }
    assert!(matches!(export_lora_gguf(&opts), Err(Error::Exists(_))));
}
