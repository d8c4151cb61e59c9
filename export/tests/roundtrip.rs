//! GGUF writer → reader round trips, writer phase errors, corrupt-file errors, and
//! quantize → dequantize error bounds. No reference environment needed.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use ctiforge_export::Error;
use ctiforge_export::gguf::{Array, Reader, Value, ValueType, WriteOptions, Writer, inspect};
use ctiforge_export::quant::{self, GgmlType};

fn sample_metadata() -> Vec<(&'static str, Value)> {
    let nested = Array::new(
        ValueType::Array,
        vec![
            Value::Array(Array::new(ValueType::U8, vec![Value::U8(1), Value::U8(2)]).unwrap()),
            Value::Array(Array::new(ValueType::U8, vec![]).unwrap()),
        ],
    )
    .unwrap();
    vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.alignment", Value::U32(64)),
        ("t.u8", Value::U8(255)),
        ("t.i8", Value::I8(-128)),
        ("t.u16", Value::U16(65535)),
        ("t.i16", Value::I16(-32768)),
        ("t.u32", Value::U32(u32::MAX)),
        ("t.i32", Value::I32(i32::MIN)),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f32", Value::F32(-0.125)),
        ("t.f64", Value::F64(1e300)),
        ("t.bool", Value::Bool(true)),
        ("t.str", Value::String("tokens ✓ ünïcode".into())),
        (
            "t.strings",
            Value::Array(
                Array::new(
                    ValueType::String,
                    vec![Value::String("a".into()), Value::String("".into())],
                )
                .unwrap(),
            ),
        ),
        ("t.nested", Value::Array(nested)),
    ]
}

#[test]
fn writer_and_reader_round_trip_every_value_type_and_tensor_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let mut w = Writer::create(&path, &WriteOptions::default()).unwrap();
    for (k, v) in sample_metadata() {
        w.add(k, v).unwrap();
    }
    let data = common::awkward_rows(1, 256);
    let rows = data.len() / 256;
    for ty in GgmlType::ALL {
        w.add_tensor_info(&format!("t_{ty}"), &[256, rows as u64], ty)
            .unwrap();
    }
    w.add_tensor_info("norm", &[7], GgmlType::F32).unwrap();
    w.begin_data().unwrap();
    for ty in GgmlType::ALL {
        w.write_tensor_f32(&format!("t_{ty}"), &data).unwrap();
    }
    w.write_tensor_f32("norm", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
        .unwrap();
    let report = w.finish().unwrap();
    assert_eq!(report.n_tensors, GgmlType::ALL.len() + 1);

    let r = Reader::open(&path).unwrap();
    assert_eq!(r.alignment(), 64);
    assert_eq!(r.data_offset() % 64, 0);
    let got: Vec<_> = r
        .metadata()
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    assert_eq!(got, sample_metadata());
    for ty in GgmlType::ALL {
        let name = format!("t_{ty}");
        let info = r.tensor(&name).unwrap();
        assert_eq!(
            (info.ty, info.dims.as_slice()),
            (ty, [256, rows as u64].as_slice())
        );
        assert_eq!(info.offset % 64, 0);
        let expected = quant::quantize(ty, &data, 256).unwrap();
        assert_eq!(r.tensor_bytes(&name).unwrap(), expected.as_slice(), "{ty}");
        let back = r.tensor_f32(&name).unwrap();
        assert_eq!(back, quant::dequantize(ty, &expected, data.len()).unwrap());
    }
    assert_eq!(
        r.tensor_f32("norm").unwrap(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    );
    assert_eq!(r.file_bytes(), report.file_bytes);

    let summary = inspect(&path).unwrap();
    assert_eq!(summary.tensors.len(), GgmlType::ALL.len() + 1);
    assert_eq!(summary.metadata[0].value, "\"llama\"");
}

#[test]
fn writer_rejects_out_of_order_calls_and_bad_plans() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let mut w = Writer::create(&path, &WriteOptions::default()).unwrap();
    assert!(matches!(
        w.write_tensor_f32("a", &[0.0]),
        Err(Error::WriterPhase { .. })
    ));
    w.add_u32("k", 1).unwrap();
    assert!(matches!(w.add_u32("k", 2), Err(Error::Invalid(_))));
    assert!(matches!(
        w.add_u8("general.alignment", 8),
        Err(Error::Invalid(_))
    ));
    assert!(w.add_tensor_info("q", &[100, 2], GgmlType::Q4_K).is_err());
    assert!(w.add_tensor_info("z", &[0, 2], GgmlType::F32).is_err());
    assert!(
        w.add_tensor_info("five", &[1, 1, 1, 1, 1], GgmlType::F32)
            .is_err()
    );
    w.add_tensor_info("a", &[32, 2], GgmlType::Q8_0).unwrap();
    w.add_tensor_info("b", &[3], GgmlType::F16).unwrap();
    assert!(w.add_tensor_info("a", &[32], GgmlType::F32).is_err());
    assert!(matches!(
        w.add_u32("late", 1),
        Err(Error::WriterPhase { .. })
    ));
    w.begin_data().unwrap();
    assert!(matches!(w.begin_data(), Err(Error::WriterPhase { .. })));
    assert!(matches!(
        w.add_tensor_info("c", &[1], GgmlType::F32),
        Err(Error::WriterPhase { .. })
    ));
    assert!(
        w.write_tensor_f32("b", &[1.0, 2.0, 3.0]).is_err(),
        "b before a"
    );
    assert!(w.write_tensor_f32("a", &[0.0; 63]).is_err(), "wrong length");
    w.write_tensor_f32("a", &[0.5; 64]).unwrap();
    // Unfinished: nothing at the target, and the temporary file is removed on drop.
    drop(w);
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn writer_refuses_existing_target_unless_overwriting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, b"old").unwrap();
    assert!(matches!(
        Writer::create(&path, &WriteOptions::default()),
        Err(Error::Exists(_))
    ));
    let mut w = Writer::create(&path, &WriteOptions { overwrite: true }).unwrap();
    w.begin_data().unwrap();
    w.finish().unwrap();
    let r = Reader::open(&path).unwrap();
    assert_eq!((r.metadata().len(), r.tensors().len()), (0, 0));
}

fn small_file(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join("s.gguf");
    let mut w = Writer::create(&path, &WriteOptions::default()).unwrap();
    w.add_string_array("tokenizer.ggml.tokens", &["<s>", "hi"])
        .unwrap();
    w.add_tensor_info("x", &[32], GgmlType::Q8_0).unwrap();
    w.begin_data().unwrap();
    w.write_tensor_f32("x", &[1.0; 32]).unwrap();
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

fn corrupt_message(path: &std::path::Path, bytes: &[u8]) -> String {
    std::fs::write(path, bytes).unwrap();
    match Reader::open(path) {
        Err(e @ Error::Corrupt { .. }) => e.to_string(),
        Err(other) => panic!("expected a Corrupt error, got {other}"),
        Ok(_) => panic!("corrupt file {} parsed", path.display()),
    }
}

#[test]
fn reader_names_offset_and_field_of_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (path, good) = small_file(dir.path());
    let bad = dir.path().join("bad.gguf");

    let mut b = good.clone();
    b[0] = b'X';
    assert!(corrupt_message(&bad, &b).contains("magic"));
    let mut b = good.clone();
    b[4] = 2;
    assert!(corrupt_message(&bad, &b).contains("version"));
    let msg = corrupt_message(&bad, &good[..30]);
    assert!(msg.contains("kv[0]") && msg.contains("truncated"), "{msg}");
    // Cut inside the tensor data (34 bytes, padded to 64 at the end of the file).
    let msg = corrupt_message(&bad, &good[..good.len() - 31]);
    assert!(
        msg.contains("tensor_info[0].offset (x)") && msg.contains("end of the"),
        "{msg}"
    );
    // The array's element count (after key and type) made absurdly large.
    let mut b = good.clone();
    let at = 24 + 8 + "tokenizer.ggml.tokens".len() + 4 + 4;
    b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(corrupt_message(&bad, &b).contains("array of"));
    // An unknown ggml type id in the tensor info.
    let mut b = good.clone();
    let info_type = find_tensor_type_offset(&good);
    b[info_type..info_type + 4].copy_from_slice(&99u32.to_le_bytes());
    assert!(corrupt_message(&bad, &b).contains("ggml type id"));
    std::fs::write(&bad, b"").unwrap();
    assert!(Reader::open(&bad).is_err());
    assert!(Reader::open(&path).is_ok());
}

/// Offset of tensor 0's type field in `small_file`'s layout.
fn find_tensor_type_offset(bytes: &[u8]) -> usize {
    let name = b"\x01\x00\x00\x00\x00\x00\x00\x00x";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap();
    at + name.len() + 4 + 8
}

#[test]
fn quantization_error_stays_within_type_bounds() {
    let data = common::awkward_rows(5, 512);
    for ty in GgmlType::ALL {
        let q = quant::quantize(ty, &data, 512).unwrap();
        assert_eq!(q.len(), ty.bytes_for(data.len()).unwrap());
        let back = quant::dequantize(ty, &q, data.len()).unwrap();
        // Per row: max error relative to the row's max magnitude.
        let bound = match ty {
            GgmlType::F32 => 0.0,
            GgmlType::F16 | GgmlType::BF16 => 0.004,
            GgmlType::Q8_0 => 0.01,
            GgmlType::Q6_K => 0.04,
            GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5_K => 0.07,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4_K => 0.15,
            GgmlType::Q2_K => 0.6,
        };
        for (row, (x, y)) in data.chunks(512).zip(back.chunks(512)).enumerate() {
            let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let err = x
                .iter()
                .zip(y)
                .fold(0.0f32, |a, (p, q)| a.max((p - q).abs()));
            // The absolute slack covers the 1e-6 row, whose f16 scales are subnormal.
            assert!(
                err <= bound * amax + 1e-5,
                "{ty} row {row}: error {err} vs max {amax}"
            );
        }
    }
}

#[test]
fn rows_that_do_not_fit_blocks_are_rejected() {
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        let err = quant::quantize_row(ty, &[0.0; 100]).unwrap_err();
        assert!(err.to_string().contains("block size"), "{err}");
        assert!(quant::dequantize_row(ty, &[0u8; 7], 32).is_err());
    }
    assert!(quant::quantize(GgmlType::Q8_0, &[0.0; 96], 48).is_err());
    assert!(quant::quantize(GgmlType::F16, &[0.0; 10], 3).is_err());
}
