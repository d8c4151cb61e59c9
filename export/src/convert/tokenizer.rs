//! HF `tokenizer.json` + `tokenizer_config.json` → GGUF `tokenizer.*` metadata, following
//! llama.cpp's conventions (gguf-py `constants.py` `TokenType`; `convert_hf_to_gguf.py`).
//!
//! - A BPE model with `byte_fallback` (SentencePiece-style Llama/Mistral tokenizers) becomes
//!   `tokenizer.ggml.model = "llama"`: tokens by id, scores, token types. Scores are
//!   `-rank` of the merge that forms the token (0 for tokens no merge forms), so llama.cpp's
//!   score-driven merging reproduces the BPE merge order.
//! - A byte-level BPE model (Llama-3 style) becomes `"gpt2"`: tokens, token types, merges,
//!   and `tokenizer.ggml.pre` from [`super::ConvertOptions::pre_tokenizer`].

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::gguf::names::tokenizer as keys;
use crate::gguf::{Array, Value, ValueType};

/// llama.cpp token types (`llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum TokenType {
    /// An ordinary token.
    Normal = 1,
    /// The unknown token.
    Unknown = 2,
    /// A control token (BOS, EOS, chat markers).
    Control = 3,
    /// A user-added, non-special token.
    UserDefined = 4,
    /// A `<0xXX>` byte-fallback token.
    Byte = 6,
}

/// The tokenizer metadata to write, in order.
pub struct TokenizerMetadata {
    /// `(key, value)` pairs.
    pub entries: Vec<(String, Value)>,
    /// Number of tokens written.
    pub n_tokens: usize,
}

fn bad(what: &str) -> Error {
    Error::Invalid(format!("tokenizer.json: {what}"))
}

/// Token id of a special token given as a string or `{"content": ...}` object.
fn special_id(v: Option<&Json>, vocab: &HashMap<String, u32>) -> Option<u32> {
    let text = match v? {
        Json::String(s) => s.as_str(),
        Json::Object(o) => o.get("content")?.as_str()?,
        _ => return None,
    };
    vocab.get(text).copied()
}

fn config_id(v: Option<&Json>) -> Option<u32> {
    match v? {
        Json::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Json::Array(a) => a
            .first()
            .and_then(|n| n.as_u64())
            .and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
}

/// Builds the tokenizer metadata.
///
/// # Errors
/// [`Error::Invalid`] naming the field when `tokenizer.json` is not a BPE model or is
/// malformed.
pub fn build(
    tokenizer: &Json,
    tok_config: Option<&Json>,
    model_config: &super::hf::HfConfig,
    pre: &str,
) -> Result<TokenizerMetadata> {
    let model = tokenizer.get("model").ok_or_else(|| bad("no \"model\""))?;
    if model.get("type").and_then(Json::as_str) != Some("BPE") {
        return Err(bad(
            "model.type must be \"BPE\" (WordPiece/Unigram are not supported)",
        ));
    }
    let vocab_obj = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| bad("model.vocab"))?;
    let mut vocab: HashMap<String, u32> = HashMap::new();
    for (tok, id) in vocab_obj {
        let id = id
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| bad("model.vocab ids"))?;
        vocab.insert(tok.clone(), id);
    }
    let mut special = HashMap::new();
    for t in tokenizer
        .get("added_tokens")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(content)) = (
            t.get("id").and_then(Json::as_u64),
            t.get("content").and_then(Json::as_str),
        ) else {
            return Err(bad("added_tokens entries need id and content"));
        };
        let is_special = t.get("special").and_then(Json::as_bool).unwrap_or(false);
        vocab.insert(content.to_string(), id as u32);
        special.insert(id as u32, is_special);
    }
    let merges = parse_merges(model)?;
    let n_tokens = model_config
        .vocab_size
        .max(vocab.values().map(|&i| i as usize + 1).max().unwrap_or(0));
    let mut tokens: Vec<Option<String>> = vec![None; n_tokens];
    for (t, &id) in &vocab {
        tokens[id as usize] = Some(t.clone());
    }
    let unk_text = model.get("unk_token").and_then(Json::as_str);
    let byte_fallback = model
        .get("byte_fallback")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let cfg = tok_config;
    let get = |k: &str| cfg.and_then(|c| c.get(k));

    let mut entries: Vec<(String, Value)> = Vec::new();
    let token_strings: Vec<String> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| t.clone().unwrap_or_else(|| format!("[PAD{i}]")))
        .collect();
    let types: Vec<TokenType> = token_strings
        .iter()
        .enumerate()
        .map(|(i, t)| match special.get(&(i as u32)) {
            _ if Some(t.as_str()) == unk_text => TokenType::Unknown,
            Some(true) => TokenType::Control,
            Some(false) => TokenType::UserDefined,
            None if tokens[i].is_none() => TokenType::UserDefined,
            None if byte_fallback && is_byte_token(t) => TokenType::Byte,
            None => TokenType::Normal,
        })
        .collect();
    let strings = |v: Vec<String>| {
        Array::new(
            ValueType::String,
            v.into_iter().map(Value::String).collect(),
        )
    };
    if byte_fallback {
        entries.push((keys::MODEL.into(), Value::String("llama".into())));
        entries.push((
            keys::TOKENS.into(),
            Value::Array(strings(token_strings.clone())?),
        ));
        let rank: HashMap<String, usize> = merges
            .iter()
            .enumerate()
            .map(|(r, (a, b))| (format!("{a}{b}"), r))
            .collect();
        let scores = token_strings
            .iter()
            .map(|t| Value::F32(rank.get(t).map_or(0.0, |&r| -(r as f32) - 1.0)))
            .collect();
        entries.push((
            keys::SCORES.into(),
            Value::Array(Array::new(ValueType::F32, scores)?),
        ));
    } else {
        entries.push((keys::MODEL.into(), Value::String("gpt2".into())));
        entries.push((keys::PRE.into(), Value::String(pre.into())));
        entries.push((
            keys::TOKENS.into(),
            Value::Array(strings(token_strings.clone())?),
        ));
    }
    let tt = types.iter().map(|t| Value::I32(*t as i32)).collect();
    entries.push((
        keys::TOKEN_TYPE.into(),
        Value::Array(Array::new(ValueType::I32, tt)?),
    ));
    if !byte_fallback {
        let m = merges.iter().map(|(a, b)| format!("{a} {b}")).collect();
        entries.push((keys::MERGES.into(), Value::Array(strings(m)?)));
    }
    let ids = [
        (
            keys::BOS_ID,
            special_id(get("bos_token"), &vocab).or(config_id(model_config.bos_token_id.as_ref())),
        ),
        (
            keys::EOS_ID,
            special_id(get("eos_token"), &vocab).or(config_id(model_config.eos_token_id.as_ref())),
        ),
        (
            keys::UNK_ID,
            special_id(get("unk_token"), &vocab)
                .or_else(|| unk_text.and_then(|u| vocab.get(u).copied())),
        ),
        (keys::PAD_ID, special_id(get("pad_token"), &vocab)),
    ];
    for (key, id) in ids {
        if let Some(id) = id {
            entries.push((key.into(), Value::U32(id)));
        }
    }
    for (key, name) in [
        (keys::ADD_BOS, "add_bos_token"),
        (keys::ADD_EOS, "add_eos_token"),
    ] {
        if let Some(b) = get(name).and_then(Json::as_bool) {
            entries.push((key.into(), Value::Bool(b)));
        }
    }
    if let Some(t) = get("chat_template").and_then(Json::as_str) {
        entries.push((keys::CHAT_TEMPLATE.into(), Value::String(t.into())));
    }
    Ok(TokenizerMetadata { entries, n_tokens })
}

fn is_byte_token(t: &str) -> bool {
    t.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && u8::from_str_radix(&t[3..5], 16).is_ok()
}

/// Merges as pairs, from either `["a b", ...]` or `[["a", "b"], ...]`.
fn parse_merges(model: &Json) -> Result<Vec<(String, String)>> {
    let Some(list) = model.get("merges").and_then(Json::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .enumerate()
        .map(|(i, m)| match m {
            Json::String(s) => s
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| bad(&format!("model.merges[{i}] {s:?} is not \"a b\""))),
            Json::Array(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                (Some(a), Some(b)) => Ok((a.to_string(), b.to_string())),
                _ => Err(bad(&format!("model.merges[{i}] must hold two strings"))),
            },
            _ => Err(bad(&format!(
                "model.merges[{i}] must be a string or a pair"
            ))),
        })
        .collect()
}
