//! Packed rows (issue #4): sequences packed into one row under a block-diagonal mask, with
//! positions restarting at 0 per sequence, give each sequence exactly the logits it gets
//! alone, on the bundled aidreams260K Llama and on a tiny Mistral whose sliding window is
//! shorter than the sequences.

mod common;

use ctiforge_model::mask::{AttentionMask, PADDING_SEGMENT};
use ctiforge_model::transformer::{ForwardBatch, to_host};
use ctiforge_model::{Architecture, CausalLm, Device, LoadedModel};

/// Packs `rows` (each a list of sequences) into one right-padded batch.
fn packed_batch(rows: &[Vec<Vec<u32>>], window: Option<usize>) -> ForwardBatch {
    let len = |r: &Vec<Vec<u32>>| r.iter().map(Vec::len).sum::<usize>();
    let seq = rows.iter().map(len).max().expect("rows") + 1; // one padding slot at least
    let (mut tokens, mut positions, mut segments) = (Vec::new(), Vec::new(), Vec::new());
    for row in rows {
        for (s, seqn) in row.iter().enumerate() {
            tokens.extend(seqn);
            positions.extend(0..seqn.len() as u32);
            segments.extend(std::iter::repeat_n(s as u32 + 1, seqn.len()));
        }
        let pad = seq - len(row);
        tokens.extend(std::iter::repeat_n(0, pad));
        positions.extend(std::iter::repeat_n(0, pad));
        segments.extend(std::iter::repeat_n(PADDING_SEGMENT, pad));
    }
    let batch = rows.len();
    ForwardBatch {
        tokens,
        positions,
        batch,
        seq,
        mask: AttentionMask::packed(batch, seq, segments, window),
    }
}

/// Checks every packed sequence's logits against the sequence run alone.
fn assert_packed_equals_alone(model: &CausalLm, rows: &[Vec<Vec<u32>>]) {
    let vocab = model.config.vocab_size;
    let batch = packed_batch(rows, model.config.sliding_window);
    let seq = batch.seq;
    let logits = to_host(model.forward(&batch, None).expect("packed forward")).expect("host");
    assert!(logits.iter().all(|v| v.is_finite()), "padding made NaNs");
    for (r, row) in rows.iter().enumerate() {
        let mut offset = 0;
        for (s, seqn) in row.iter().enumerate() {
            let alone = model.logits(seqn).expect("alone");
            for (i, want) in alone.iter().enumerate() {
                let at = (r * seq + offset + i) * vocab;
                let got = &logits[at..at + vocab];
                let diff = got
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    diff < 1e-5,
                    "row {r} sequence {s} token {i}: max diff {diff}"
                );
            }
            offset += seqn.len();
        }
    }
}

#[test]
fn packed_rows_give_each_sequence_its_own_logits() {
    let loaded = LoadedModel::load(&common::aidreams(), &Device::flex()).expect("load");
    let tok = loaded.tokenizer().expect("tokenizer");
    let a = tok
        .encode("Once upon a time, a little robot", true)
        .expect("a");
    let b = tok.encode("The cat sat on the mat and", true).expect("b");
    let c = tok.encode("Lily", true).expect("c");
    assert_packed_equals_alone(&loaded.model, &[vec![a, b.clone()], vec![c, b]]);
}

#[test]
fn packing_respects_a_sliding_window_inside_each_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::tiny_model(
        dir.path(),
        "m",
        Architecture::Mistral,
        3,
        &["sliding_window=3"],
    );
    let loaded = LoadedModel::load(&path, &Device::flex()).expect("load");
    assert_eq!(loaded.model.config.sliding_window, Some(3));
    let a: Vec<u32> = (10..19).collect();
    let b: Vec<u32> = (40..47).rev().collect();
    assert_packed_equals_alone(&loaded.model, &[vec![a.clone(), b.clone(), a], vec![b]]);
}
