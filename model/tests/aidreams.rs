//! The bundled aidreams260K model (a trained llama2.c model converted to the HF layout)
//! must reproduce llama2.c's own greedy output token for token.

mod common;

use ctiforge_model::{Device, LoadedModel, SamplingConfig, generate};

fn reference() -> (Vec<u32>, String, usize) {
    let path = common::aidreams().join("reference_greedy.json");
    let text = std::fs::read_to_string(&path).expect("reference file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let ids = v["generated_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|i| i.as_u64().expect("id") as u32)
        .collect();
    (
        ids,
        v["text"].as_str().expect("text").to_owned(),
        v["steps"].as_u64().expect("steps") as usize,
    )
}

fn greedy(steps: usize, use_cache: bool) -> SamplingConfig {
    SamplingConfig {
        max_new_tokens: steps,
        use_cache,
        ..Default::default()
    }
}

#[test]
fn greedy_from_bos_matches_llama2c() {
    let loaded = LoadedModel::load(&common::aidreams(), &Device::flex()).expect("load");
    let tokenizer = loaded.tokenizer().expect("tokenizer.json loads");
    assert_eq!(tokenizer.bos_token_id(), Some(1));
    let (expected, text, steps) = reference();
    let bos = loaded.bos_token_id().expect("bos");
    let out = generate(
        &loaded.model,
        &[vec![bos]],
        &greedy(steps, true),
        Some(tokenizer),
    )
    .expect("generate");
    assert_eq!(out[0].ids, expected);
    assert_eq!(
        tokenizer.decode(&out[0].ids, true).expect("decode").trim(),
        text.trim()
    );
}

#[test]
fn cache_and_batching_do_not_change_tokens() {
    let loaded = LoadedModel::load(&common::aidreams(), &Device::flex()).expect("load");
    let tok = loaded.tokenizer().expect("tokenizer");
    let long = tok
        .encode("Once upon a time, a little robot", true)
        .expect("encode");
    let short = vec![1];
    let cached = generate(
        &loaded.model,
        std::slice::from_ref(&long),
        &greedy(12, true),
        None,
    )
    .expect("gen");
    let uncached = generate(
        &loaded.model,
        std::slice::from_ref(&long),
        &greedy(12, false),
        None,
    )
    .expect("gen");
    assert_eq!(cached[0].ids, uncached[0].ids);

    // A batch of different lengths (the short prompt is left-padded) gives each row the
    // tokens it gets alone.
    let alone = generate(
        &loaded.model,
        std::slice::from_ref(&short),
        &greedy(12, true),
        None,
    )
    .expect("gen");
    let batch = generate(&loaded.model, &[long, short], &greedy(12, true), None).expect("gen");
    assert_eq!(batch[0].ids, cached[0].ids);
    assert_eq!(batch[1].ids, alone[0].ids);
}

#[test]
fn sampling_is_reproducible_with_a_seed() {
    let loaded = LoadedModel::load(&common::aidreams(), &Device::flex()).expect("load");
    let config = |seed| SamplingConfig {
        max_new_tokens: 20,
        temperature: 1.0,
        top_k: Some(40),
        top_p: Some(0.95),
        repetition_penalty: 1.1,
        seed,
        ..Default::default()
    };
    let run = |seed| {
        generate(&loaded.model, &[vec![1]], &config(seed), None).expect("gen")[0]
            .ids
            .clone()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn stop_tokens_and_strings_end_generation() {
    let loaded = LoadedModel::load(&common::aidreams(), &Device::flex()).expect("load");
    let tok = loaded.tokenizer().expect("tokenizer");
    let (expected, _, _) = reference();
    let stop = SamplingConfig {
        stop_token_ids: vec![expected[3]],
        ..greedy(40, true)
    };
    let out = generate(&loaded.model, &[vec![1]], &stop, Some(tok)).expect("gen");
    assert_eq!(out[0].ids, expected[..4]);
    assert_eq!(out[0].finish, ctiforge_model::FinishReason::StopToken);

    let stop = SamplingConfig {
        stop_strings: vec!["gentle".to_owned()],
        ..greedy(40, true)
    };
    let out = generate(&loaded.model, &[vec![1]], &stop, Some(tok)).expect("gen");
    assert_eq!(out[0].finish, ctiforge_model::FinishReason::StopString);
    assert!(
        !out[0].text.contains("gentle") && out[0].text.contains("vectors"),
        "{}",
        out[0].text
    );
}
