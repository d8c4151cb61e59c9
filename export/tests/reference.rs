//! Parity with the reference implementations in the `gguf` environment
//! (`ci/setup-gguf.sh`, interpreter in `CTIFORGE_GGUF_PYTHON`): bytes from ggml's
//! `ggml_quantize_chunk` and gguf-py's `gguf.quants.quantize`, values from their
//! dequantizers, and GGUF files crossing between gguf-py and this crate. The helper
//! script is `ci/gguf_reference.py`.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ctiforge_export::gguf::{Array, Reader, Value, ValueType, WriteOptions, Writer};
use ctiforge_export::quant::{self, GgmlType};

const ENV: &str = "CTIFORGE_GGUF_PYTHON";

fn python() -> PathBuf {
    match std::env::var_os(ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "{ENV} is not set: run `ci/setup-gguf.sh` and export {ENV}=<the path it prints> \
             to run the gguf reference tests"
        ),
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/gguf_reference.py")
}

fn run(args: &[&str]) {
    let out = Command::new(python())
        .arg(script())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gguf_reference.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Quantizes `data` with the reference `backend` and returns its bytes.
fn reference_quantize(backend: &str, ty: GgmlType, data: &[f32], n: usize, dir: &Path) -> Vec<u8> {
    let (input, output) = (dir.join("in.f32"), dir.join("out.bin"));
    common::write_f32(&input, data);
    let n = n.to_string();
    run(&[
        "quantize",
        "--backend",
        backend,
        ty.name(),
        &n,
        s(&input),
        s(&output),
    ]);
    std::fs::read(&output).unwrap()
}

fn reference_dequantize(backend: &str, ty: GgmlType, bytes: &[u8], dir: &Path) -> Vec<f32> {
    let (input, output) = (dir.join("in.bin"), dir.join("out.f32"));
    std::fs::write(&input, bytes).unwrap();
    run(&[
        "dequantize",
        "--backend",
        backend,
        ty.name(),
        s(&input),
        s(&output),
    ]);
    common::read_f32(&output)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Index of the first differing block, for a readable failure.
fn first_diff_block(a: &[u8], b: &[u8], ty: GgmlType) -> Option<usize> {
    a.chunks(ty.type_size())
        .zip(b.chunks(ty.type_size()))
        .position(|(x, y)| x != y)
}

fn assert_same_bytes(ours: &[u8], theirs: &[u8], ty: GgmlType, what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{ty} vs {what}: length");
    if let Some(block) = first_diff_block(ours, theirs, ty) {
        let ts = ty.type_size();
        panic!(
            "{ty} differs from {what} at block {block} (element {}):\n ours   {:?}\n theirs {:?}",
            block * ty.block_size(),
            &ours[block * ts..(block + 1) * ts],
            &theirs[block * ts..(block + 1) * ts]
        );
    }
}

fn inputs() -> Vec<(u64, usize, Vec<f32>)> {
    let mut all: Vec<_> = [(11u64, 256usize), (12, 512), (13, 1024), (14, 768)]
        .into_iter()
        .map(|(seed, n)| (seed, n, common::awkward_rows(seed, n)))
        .collect();
    // 440 more rows of 256 (many seeds) to make rare rounding ties likely to show up.
    let many: Vec<f32> = (100..140)
        .flat_map(|seed| common::awkward_rows(seed, 256))
        .collect();
    all.push((100, 256, many));
    all
}

#[test]
#[ignore = "needs the gguf reference env (CTIFORGE_GGUF_PYTHON)"]
fn quantize_matches_ggml_quantize_chunk_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, n, data) in inputs() {
        for ty in GgmlType::ALL.into_iter().filter(|t| *t != GgmlType::F32) {
            let ours = quant::quantize(ty, &data, n).unwrap();
            let theirs = reference_quantize("ggml", ty, &data, n, dir.path());
            assert_same_bytes(&ours, &theirs, ty, &format!("ggml (seed {seed}, row {n})"));
        }
    }
}

#[test]
#[ignore = "needs the gguf reference env (CTIFORGE_GGUF_PYTHON)"]
fn quantize_matches_gguf_py_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let types = [
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
    ];
    for (seed, n, data) in inputs() {
        for ty in types {
            let ours = quant::quantize(ty, &data, n).unwrap();
            let theirs = reference_quantize("gguf", ty, &data, n, dir.path());
            assert_same_bytes(
                &ours,
                &theirs,
                ty,
                &format!("gguf-py (seed {seed}, row {n})"),
            );
        }
    }
}

#[test]
#[ignore = "needs the gguf reference env (CTIFORGE_GGUF_PYTHON)"]
fn dequantize_matches_ggml_and_gguf_py() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::awkward_rows(21, 512);
    for ty in GgmlType::ALL {
        let q = quant::quantize(ty, &data, 512).unwrap();
        let ours = quant::dequantize(ty, &q, data.len()).unwrap();
        for backend in ["ggml", "gguf"] {
            let theirs = reference_dequantize(backend, ty, &q, dir.path());
            let same = ours
                .iter()
                .zip(&theirs)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same && ours.len() == theirs.len(),
                "{ty}: dequantize differs from {backend}"
            );
        }
    }
}

#[test]
#[ignore = "needs the gguf reference env (CTIFORGE_GGUF_PYTHON)"]
fn reader_parses_a_file_written_by_gguf_py() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("py.gguf");
    run(&["write", s(&path)]);
    let r = Reader::open(&path).unwrap();
    assert_eq!(
        r.get("general.architecture").and_then(Value::as_str),
        Some("llama")
    );
    assert_eq!(r.get("t.u8"), Some(&Value::U8(200)));
    assert_eq!(r.get("t.i8"), Some(&Value::I8(-100)));
    assert_eq!(r.get("t.u16"), Some(&Value::U16(60000)));
    assert_eq!(r.get("t.i16"), Some(&Value::I16(-30000)));
    assert_eq!(r.get("t.u32"), Some(&Value::U32(4_000_000_000)));
    assert_eq!(r.get("t.i32"), Some(&Value::I32(-2_000_000_000)));
    assert_eq!(r.get("t.f32"), Some(&Value::F32(1.5)));
    assert_eq!(r.get("t.u64"), Some(&Value::U64((1 << 63) + 5)));
    assert_eq!(r.get("t.i64"), Some(&Value::I64(-(1 << 62))));
    assert_eq!(r.get("t.f64"), Some(&Value::F64(2.25)));
    assert_eq!(r.get("t.bool"), Some(&Value::Bool(true)));
    assert_eq!(r.get("t.str").and_then(Value::as_str), Some("héllo ✓"));
    let strs = ["a", "bc", ""].map(|x| Value::String(x.into())).to_vec();
    assert_eq!(
        r.get("t.arr_str"),
        Some(&Value::Array(Array::new(ValueType::String, strs).unwrap()))
    );
    let Some(Value::Array(nested)) = r.get("t.arr_nested") else {
        panic!("t.arr_nested")
    };
    assert_eq!(nested.elem_type(), ValueType::Array);
    assert_eq!(nested.items().len(), 2);
    let expected = common::read_f32(&dir.path().join("py.gguf.f32"));
    let a = r.tensor_f32("a.weight").unwrap();
    assert_eq!(r.tensor("a.weight").unwrap().dims, vec![64, 4]);
    assert_eq!(a, expected[..256].to_vec());
    let b = r.tensor_f32("b.weight").unwrap();
    assert_eq!(r.tensor("b.weight").unwrap().ty, GgmlType::Q8_0);
    let max_err = b
        .iter()
        .zip(&expected[256..])
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(max_err < 0.05, "Q8_0 tensor error {max_err}");
}

#[test]
#[ignore = "needs the gguf reference env (CTIFORGE_GGUF_PYTHON)"]
fn gguf_py_reads_a_file_written_by_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.gguf");
    let mut w = Writer::create(&path, &WriteOptions::default()).unwrap();
    w.add_string("general.architecture", "llama").unwrap();
    w.add_u32("general.alignment", 64).unwrap();
    w.add_u32("llama.block_count", 2).unwrap();
    w.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        .unwrap();
    w.add_i64("t.i64", -7).unwrap();
    w.add_f64("t.f64", 0.5).unwrap();
    w.add_bool("t.bool", false).unwrap();
    w.add_string_array("tokenizer.ggml.tokens", &["<s>", "</s>", "hé"])
        .unwrap();
    let ints = Array::new(ValueType::I32, vec![Value::I32(1), Value::I32(-1)]).unwrap();
    w.add_array("tokenizer.ggml.token_type", ints).unwrap();
    let data = common::awkward_rows(31, 256);
    let rows = (data.len() / 256) as u64;
    let types = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ];
    for ty in types {
        w.add_tensor_info(&format!("blk.0.{ty}.weight"), &[256, rows], ty)
            .unwrap();
    }
    w.begin_data().unwrap();
    for ty in types {
        w.write_tensor_f32(&format!("blk.0.{ty}.weight"), &data)
            .unwrap();
    }
    w.finish().unwrap();

    let json_path = dir.path().join("dump.json");
    run(&["read", s(&path), s(&json_path)]);
    let dump: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let md = &dump["metadata"];
    assert_eq!(md["general.architecture"]["value"], "llama");
    assert_eq!(md["general.alignment"]["value"], 64);
    assert_eq!(md["general.alignment"]["types"][0], "UINT32");
    assert_eq!(md["t.i64"]["value"], -7);
    assert_eq!(md["t.f64"]["value"], 0.5);
    assert_eq!(md["t.bool"]["value"], false);
    assert_eq!(
        md["tokenizer.ggml.tokens"]["value"],
        serde_json::json!(["<s>", "</s>", "hé"])
    );
    assert_eq!(
        md["tokenizer.ggml.token_type"]["types"],
        serde_json::json!(["ARRAY", "INT32"])
    );
    let ours = Reader::open(&path).unwrap();
    let tensors = dump["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), types.len());
    for (t, ty) in tensors.iter().zip(types) {
        let name = format!("blk.0.{ty}.weight");
        assert_eq!(t["name"], name.as_str());
        assert_eq!(t["type"], ty.name());
        assert_eq!(
            t["dims"],
            serde_json::json!([256, rows]),
            "ggml order, row length first"
        );
        let info = ours.tensor(&name).unwrap();
        assert_eq!(
            t["offset"].as_u64().unwrap(),
            ours.data_offset() + info.offset
        );
        let values: Vec<f32> = t["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(
            values,
            ours.tensor_f32(&name).unwrap(),
            "{name} decoded by gguf-py"
        );
    }
}
