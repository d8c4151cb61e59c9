//! Tokenizers: loading a Hugging Face fast tokenizer (`tokenizer.json` plus the optional
//! `tokenizer_config.json`), streaming detokenization, and training a byte-level BPE tokenizer
//! for a new model.
//!
//! Formats: <https://huggingface.co/docs/tokenizers/api/tokenizer> for `tokenizer.json`, and
//! `transformers`' `PreTrainedTokenizerBase.save_pretrained` for `tokenizer_config.json`.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::processors::sequence::Sequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::chat::{LLAMA3_TEMPLATE, MISTRAL_TEMPLATE};
use crate::error::{Error, Result};

/// The tokenizer file of a model folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The optional tokenizer settings file of a model folder.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// Newer `transformers` versions save the chat template in this file instead.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// `model_max_length` written by [`train_bpe`]; overwrite it once the context length is known.
pub const TRAINED_MODEL_MAX_LENGTH: usize = 8192;

/// Tokens that end an assistant turn in common chat formats, used by
/// [`CtiTokenizer::stop_token_ids`] in addition to the EOS token.
const END_OF_TURN_TOKENS: [&str; 4] = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"];
/// BOS tokens tried, in order, when no `tokenizer_config.json` names one.
const FALLBACK_BOS: [&str; 3] = ["<|begin_of_text|>", "<s>", "<bos>"];
/// EOS tokens tried, in order, when no `tokenizer_config.json` names one.
const FALLBACK_EOS: [&str; 3] = ["<|end_of_text|>", "</s>", "<eos>"];

/// The fields of HF's `tokenizer_config.json` that matter here; unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenizerConfig {
    /// Beginning-of-sequence token (HF writes a string or an `AddedToken` object).
    #[serde(
        deserialize_with = "token_content",
        skip_serializing_if = "Option::is_none"
    )]
    pub bos_token: Option<String>,
    /// End-of-sequence token.
    #[serde(
        deserialize_with = "token_content",
        skip_serializing_if = "Option::is_none"
    )]
    pub eos_token: Option<String>,
    /// Padding token.
    #[serde(
        deserialize_with = "token_content",
        skip_serializing_if = "Option::is_none"
    )]
    pub pad_token: Option<String>,
    /// Unknown-token placeholder.
    #[serde(
        deserialize_with = "token_content",
        skip_serializing_if = "Option::is_none"
    )]
    pub unk_token: Option<String>,
    /// Whether encoding with special tokens prepends BOS; `None` leaves it to the
    /// `tokenizer.json` post-processor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_bos_token: Option<bool>,
    /// Whether encoding with special tokens appends EOS; `None` leaves it to the post-processor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_eos_token: Option<bool>,
    /// The Jinja chat template (the `default` one when HF lists several by name).
    #[serde(
        deserialize_with = "chat_template_source",
        skip_serializing_if = "Option::is_none"
    )]
    pub chat_template: Option<String>,
    /// Longest input the model accepts; `None` when absent or HF's "unlimited" 1e30 marker.
    #[serde(
        deserialize_with = "max_length",
        skip_serializing_if = "Option::is_none"
    )]
    pub model_max_length: Option<usize>,
    /// The `transformers` class that wrote the file, e.g. `LlamaTokenizerFast`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer_class: Option<String>,
    /// Whether `transformers` removes spaces before punctuation when decoding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clean_up_tokenization_spaces: Option<bool>,
}

impl TokenizerConfig {
    /// Reads a `tokenizer_config.json` file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be read, [`Error::Json`] when it does not parse or a
    /// known field has the wrong type.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|err| Error::io(path, err))?;
        serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.into(),
            source,
        })
    }
}

/// Accepts `null`, a string, or an `AddedToken` object `{"content": ..., ...}`.
fn token_content<'de, D: Deserializer<'de>>(
    de: D,
) -> std::result::Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Token {
        Text(String),
        Added { content: String },
    }
    Ok(Option::<Token>::deserialize(de)?.map(|token| match token {
        Token::Text(text) | Token::Added { content: text } => text,
    }))
}

/// Accepts a template string or a list of `{"name", "template"}` (keeps `default`, or the only
/// entry).
fn chat_template_source<'de, D: Deserializer<'de>>(
    de: D,
) -> std::result::Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct Named {
        name: String,
        template: String,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Source {
        One(String),
        Named(Vec<Named>),
    }
    Ok(match Option::<Source>::deserialize(de)? {
        None => None,
        Some(Source::One(template)) => Some(template),
        Some(Source::Named(mut list)) => match list.iter().position(|t| t.name == "default") {
            Some(index) => Some(list.swap_remove(index).template),
            None if list.len() == 1 => list.pop().map(|t| t.template),
            None => {
                let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
                tracing::warn!(
                    ?names,
                    "tokenizer config has named chat templates but no default"
                );
                None
            }
        },
    })
}

/// Accepts any JSON number; values that do not fit `usize` (HF writes `1e30` for "no limit")
/// become `None`.
fn max_length<'de, D: Deserializer<'de>>(de: D) -> std::result::Result<Option<usize>, D::Error> {
    let number = Option::<serde_json::Number>::deserialize(de)?;
    Ok(number.and_then(|n| match n.as_u64() {
        Some(value) => usize::try_from(value).ok(),
        None => n
            .as_f64()
            .filter(|value| value.is_finite() && *value >= 0.0 && *value < u64::MAX as f64)
            .and_then(|value| usize::try_from(value as u64).ok()),
    }))
}

/// A Hugging Face fast tokenizer with its settings and the folder it came from.
#[derive(Debug, Clone)]
pub struct CtiTokenizer {
    inner: Tokenizer,
    config: TokenizerConfig,
    dir: PathBuf,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    pad_id: Option<u32>,
}

impl CtiTokenizer {
    /// Loads `tokenizer.json` and, when present, `tokenizer_config.json` (or a separate
    /// `chat_template.jinja`) from a model folder.
    ///
    /// Special tokens come from the config; without one, the usual Llama 3, Llama 2/Mistral and
    /// Gemma spellings are looked up in the vocabulary.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] naming `tokenizer.json` when it is missing or malformed, or when the
    /// config names a BOS/EOS token that the vocabulary lacks; [`Error::Json`] or [`Error::Io`]
    /// for an unreadable config.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(TOKENIZER_FILE);
        if !path.is_file() {
            return Err(Error::tokenizer(
                &path,
                "file not found; a model folder needs a Hugging Face fast tokenizer \
                 (tokenizer.json)",
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|err| Error::io(&path, err))?;
        let inner = Tokenizer::from_str(&text)
            .map_err(|err| Error::tokenizer(&path, format!("malformed tokenizer file: {err}")))?;
        let config = load_config(dir)?;
        let tokenizer = Self::from_parts(inner, config, dir)?;
        tracing::debug!(
            path = %path.display(),
            vocab_size = tokenizer.vocab_size(),
            bos = ?tokenizer.bos_id,
            eos = ?tokenizer.eos_id,
            "loaded tokenizer"
        );
        Ok(tokenizer)
    }

    /// Wraps an in-memory tokenizer; `dir` is where it lives (used in messages).
    fn from_parts(inner: Tokenizer, config: TokenizerConfig, dir: &Path) -> Result<Self> {
        let path = dir.join(TOKENIZER_FILE);
        let lookup = |named: &Option<String>, fallbacks: &[&str], what: &str| match named {
            Some(token) => inner.token_to_id(token).map(Some).ok_or_else(|| {
                Error::tokenizer(
                    &path,
                    format!(
                        "{what} {token:?} named in {TOKENIZER_CONFIG_FILE} is not in the vocabulary"
                    ),
                )
            }),
            None => Ok(fallbacks.iter().find_map(|token| inner.token_to_id(token))),
        };
        let bos_id = lookup(&config.bos_token, &FALLBACK_BOS, "bos_token")?;
        let eos_id = lookup(&config.eos_token, &FALLBACK_EOS, "eos_token")?;
        let pad_id = config
            .pad_token
            .as_deref()
            .and_then(|token| inner.token_to_id(token));
        Ok(Self {
            inner,
            config,
            dir: dir.to_path_buf(),
            bos_id,
            eos_id,
            pad_id,
        })
    }

    /// Token ids of `text`; with `add_special_tokens` the post-processor adds BOS/EOS, and the
    /// config's `add_bos_token`/`add_eos_token`, when set, override it as in `transformers`.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] when the tokenizer fails on the input.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let mut ids = self.encode_raw(text, add_special_tokens)?;
        if !add_special_tokens {
            return Ok(ids);
        }
        if let (Some(add), Some(bos)) = (self.config.add_bos_token, self.bos_id) {
            let has_bos = ids.first() == Some(&bos);
            if add && !has_bos {
                ids.insert(0, bos);
            } else if !add && has_bos && self.encode_raw(text, false)?.first() != Some(&bos) {
                ids.remove(0);
            }
        }
        if let (Some(add), Some(eos)) = (self.config.add_eos_token, self.eos_id) {
            let has_eos = ids.last() == Some(&eos);
            if add && !has_eos {
                ids.push(eos);
            } else if !add && has_eos && self.encode_raw(text, false)?.last() != Some(&eos) {
                ids.pop();
            }
        }
        Ok(ids)
    }

    fn encode_raw(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, add_special_tokens).map_err(|err| {
            Error::tokenizer(self.tokenizer_path(), format!("cannot encode text: {err}"))
        })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, optionally without special tokens.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] when the tokenizer fails (e.g. an id outside the vocabulary).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|err| {
            Error::tokenizer(self.tokenizer_path(), format!("cannot decode ids: {err}"))
        })
    }

    /// Number of distinct tokens, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of a token (model vocabulary or added token).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Id of the beginning-of-sequence token.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Id of the end-of-sequence token.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Id of the padding token.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// Ids that should end generation: EOS plus any end-of-turn token of the common chat
    /// formats (`<|eot_id|>`, `<|im_end|>`, `<|end|>`, `<end_of_turn>`) that the vocabulary has.
    pub fn stop_token_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.eos_id.into_iter().collect();
        for id in END_OF_TURN_TOKENS
            .iter()
            .filter_map(|token| self.token_to_id(token))
        {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// The settings from `tokenizer_config.json` (defaults when the file is absent).
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// The folder the tokenizer was loaded from or written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the `tokenizer.json` file.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(TOKENIZER_FILE)
    }

    /// Checks that every token id fits the model's embedding table.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] naming the tokenizer file, the largest token id and
    /// `model_vocab_size` when some id is `>= model_vocab_size`.
    pub fn check_model_vocab(&self, model_vocab_size: usize) -> Result<()> {
        let largest = self
            .inner
            .get_vocab(true)
            .into_iter()
            .max_by_key(|(_, id)| *id);
        let Some((token, max_id)) = largest else {
            return Ok(());
        };
        if (max_id as usize) < model_vocab_size {
            return Ok(());
        }
        Err(Error::tokenizer(
            self.tokenizer_path(),
            format!(
                "largest token id {max_id} ({token:?}) does not fit the model's vocab_size \
                 {model_vocab_size}; use the tokenizer the model was trained with or resize the \
                 model's embeddings"
            ),
        ))
    }
}

/// Reads the optional config, taking the chat template from `chat_template.jinja` when the
/// config has none.
fn load_config(dir: &Path) -> Result<TokenizerConfig> {
    let config_path = dir.join(TOKENIZER_CONFIG_FILE);
    let mut config = if config_path.is_file() {
        TokenizerConfig::from_file(&config_path)?
    } else {
        tracing::debug!(dir = %dir.display(), "no {TOKENIZER_CONFIG_FILE}; using defaults");
        TokenizerConfig::default()
    };
    let template_path = dir.join(CHAT_TEMPLATE_FILE);
    if config.chat_template.is_none() && template_path.is_file() {
        let template = std::fs::read_to_string(&template_path)
            .map_err(|err| Error::io(&template_path, err))?;
        config.chat_template = Some(template);
    }
    Ok(config)
}

/// Incremental detokenizer for streaming generated text.
///
/// Decoding tokens one at a time is wrong for byte-level and SentencePiece tokenizers (a
/// character may span tokens; leading spaces depend on context), so each step decodes a short
/// window that ends at the newest token and emits only what it adds to the previous window.
/// Text ending in an incomplete UTF-8 sequence is held back until a later token completes it.
#[derive(Debug, Clone, Default)]
pub struct DecodeStream {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    skip_special_tokens: bool,
}

impl DecodeStream {
    /// An empty stream.
    pub fn new(skip_special_tokens: bool) -> Self {
        Self {
            skip_special_tokens,
            ..Self::default()
        }
    }

    /// All ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Adds `id` and returns the text it completes, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] when decoding fails.
    pub fn step(&mut self, tokenizer: &CtiTokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        self.emit(tokenizer, false)
    }

    /// Returns whatever text is still held back (e.g. an incomplete character at the end).
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] when decoding fails.
    pub fn finish(&mut self, tokenizer: &CtiTokenizer) -> Result<Option<String>> {
        self.emit(tokenizer, true)
    }

    fn emit(&mut self, tokenizer: &CtiTokenizer, flush: bool) -> Result<Option<String>> {
        let skip = self.skip_special_tokens;
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], skip)?;
        let text = tokenizer.decode(&self.ids[self.prefix_offset..], skip)?;
        let complete = flush || !text.ends_with('\u{FFFD}');
        if text.len() <= prefix.len() || !complete || !text.is_char_boundary(prefix.len()) {
            return Ok(None);
        }
        let new_text = text[prefix.len()..].to_owned();
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        Ok(Some(new_text))
    }
}

/// The special tokens of a tokenizer trained by [`train_bpe`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// Beginning-of-sequence token, prepended by the post-processor.
    pub bos: String,
    /// End-of-sequence token.
    pub eos: String,
    /// Padding token, if the family has one.
    pub pad: Option<String>,
    /// Further special tokens (chat markers, `<unk>`), in id order after BOS, EOS and PAD.
    pub extra: Vec<String>,
}

impl SpecialTokens {
    /// Llama 3's special tokens (`<|begin_of_text|>`, `<|end_of_text|>`, chat headers,
    /// `<|eot_id|>`).
    pub fn llama3() -> Self {
        Self {
            bos: "<|begin_of_text|>".into(),
            eos: "<|end_of_text|>".into(),
            pad: Some("<|finetune_right_pad_id|>".into()),
            extra: vec![
                "<|start_header_id|>".into(),
                "<|end_header_id|>".into(),
                "<|eot_id|>".into(),
            ],
        }
    }

    /// Mistral's special tokens (`<s>`, `</s>`, `<unk>`, `[INST]`, `[/INST]`).
    pub fn mistral() -> Self {
        Self {
            bos: "<s>".into(),
            eos: "</s>".into(),
            pad: None,
            extra: vec!["<unk>".into(), "[INST]".into(), "[/INST]".into()],
        }
    }

    /// All tokens in id order (BOS, EOS, PAD, extras), without duplicates.
    pub fn all(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        [Some(&self.bos), Some(&self.eos), self.pad.as_ref()]
            .into_iter()
            .flatten()
            .chain(&self.extra)
            .filter(|token| seen.insert(token.as_str()))
            .cloned()
            .collect()
    }

    /// The built-in chat template whose markers these tokens contain, if any.
    fn chat_template(&self) -> Option<&'static str> {
        let has = |token: &str| self.all().iter().any(|t| t == token);
        if has("<|start_header_id|>") && has("<|end_header_id|>") && has("<|eot_id|>") {
            Some(LLAMA3_TEMPLATE)
        } else if has("[INST]") && has("[/INST]") {
            Some(MISTRAL_TEMPLATE)
        } else {
            None
        }
    }
}

/// Trains a byte-level BPE tokenizer on `corpus` and writes `tokenizer.json` and
/// `tokenizer_config.json` to `out_dir`.
///
/// The corpus is a text file with one document per line, or a `.jsonl` file whose lines are
/// objects with a string field `text`. Special tokens get ids `0..n` in [`SpecialTokens::all`]
/// order; then come the 256 byte tokens and the merges. Encoding with special tokens prepends
/// BOS. Training is deterministic: the same corpus gives the same files. Files are written to
/// temporary names in `out_dir` and renamed, so readers never see half a file.
///
/// # Errors
///
/// [`Error::Invalid`] when `vocab_size` cannot hold the special and byte tokens;
/// [`Error::Tokenizer`] naming the corpus (and line) for unreadable or malformed input or a
/// training failure; [`Error::Io`] when `out_dir` cannot be written.
pub fn train_bpe(
    corpus: &Path,
    vocab_size: usize,
    special_tokens: &SpecialTokens,
    out_dir: &Path,
) -> Result<CtiTokenizer> {
    let specials = special_tokens.all();
    let minimum = specials.len() + ByteLevel::alphabet().len();
    if vocab_size < minimum {
        return Err(Error::Invalid(format!(
            "vocab_size {vocab_size} is too small for a byte-level BPE tokenizer: it needs at \
             least {minimum} ({} special tokens + 256 byte tokens)",
            specials.len()
        )));
    }
    let documents = read_corpus(corpus)?;
    let started = std::time::Instant::now();

    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::new(false, true, true)));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .special_tokens(
            specials
                .iter()
                .map(|t| AddedToken::from(t.clone(), true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tokenizer
        .train(&mut trainer, documents.iter())
        .map_err(|err| Error::tokenizer(corpus, format!("BPE training failed: {err}")))?;
    let post_processor = bos_post_processor(&tokenizer, &special_tokens.bos)?;
    tokenizer.with_post_processor(Some(post_processor));

    let config = TokenizerConfig {
        bos_token: Some(special_tokens.bos.clone()),
        eos_token: Some(special_tokens.eos.clone()),
        pad_token: special_tokens.pad.clone(),
        unk_token: specials.iter().find(|t| *t == "<unk>").cloned(),
        add_bos_token: Some(true),
        add_eos_token: Some(false),
        chat_template: special_tokens.chat_template().map(str::to_owned),
        model_max_length: Some(TRAINED_MODEL_MAX_LENGTH),
        tokenizer_class: Some("PreTrainedTokenizerFast".into()),
        clean_up_tokenization_spaces: Some(false),
    };
    write_outputs(&tokenizer, &config, out_dir)?;
    let trained = CtiTokenizer::from_parts(tokenizer, config, out_dir)?;
    tracing::info!(
        corpus = %corpus.display(),
        documents = documents.len(),
        vocab_size = trained.vocab_size(),
        out_dir = %out_dir.display(),
        secs = started.elapsed().as_secs_f64(),
        "trained byte-level BPE tokenizer"
    );
    Ok(trained)
}

/// Reads the documents of a training corpus, skipping blank lines.
fn read_corpus(corpus: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(corpus).map_err(|err| Error::io(corpus, err))?;
    let is_jsonl = corpus
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("jsonl"));
    let mut documents = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|err| Error::io(corpus, err))?;
        if line.trim().is_empty() {
            continue;
        }
        if !is_jsonl {
            documents.push(line);
            continue;
        }
        let bad_line =
            |message: String| Error::tokenizer(corpus, format!("line {}: {message}", index + 1));
        let value: serde_json::Value = serde_json::from_str(&line)
            .map_err(|err| bad_line(format!("not valid JSON: {err}")))?;
        match value.get("text").and_then(serde_json::Value::as_str) {
            Some(text) => documents.push(text.to_owned()),
            None => return Err(bad_line("no string field \"text\"".into())),
        }
    }
    if documents.is_empty() {
        return Err(Error::tokenizer(
            corpus,
            "the corpus has no text to train on",
        ));
    }
    Ok(documents)
}

/// Llama 3's post-processor: byte-level offsets, then BOS before each sequence.
fn bos_post_processor(tokenizer: &Tokenizer, bos: &str) -> Result<PostProcessorWrapper> {
    let template_error =
        |err: String| Error::Invalid(format!("cannot build a BOS template for {bos:?}: {err}"));
    let bos_id = tokenizer.token_to_id(bos).ok_or_else(|| {
        Error::Invalid(format!(
            "bos token {bos:?} is missing from the trained vocabulary"
        ))
    })?;
    let template = TemplateProcessing::builder()
        .try_single(vec![bos, "$A"])
        .map_err(template_error)?
        .try_pair(vec![bos, "$A", &format!("{bos}:1"), "$B:1"])
        .map_err(template_error)?
        .special_tokens(vec![(bos, bos_id)])
        .build()
        .map_err(|err| template_error(err.to_string()))?;
    Ok(Sequence::new(vec![
        ByteLevel::new(false, false, true).into(),
        template.into(),
    ])
    .into())
}

/// Writes `tokenizer.json` and `tokenizer_config.json` atomically into `out_dir`.
fn write_outputs(tokenizer: &Tokenizer, config: &TokenizerConfig, out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir).map_err(|err| Error::io(out_dir, err))?;
    let tokenizer_json = tokenizer.to_string(true).map_err(|err| {
        Error::tokenizer(
            out_dir.join(TOKENIZER_FILE),
            format!("cannot serialize: {err}"),
        )
    })?;
    let config_path = out_dir.join(TOKENIZER_CONFIG_FILE);
    let config_json = serde_json::to_string_pretty(config).map_err(|source| Error::Json {
        path: config_path.clone(),
        source,
    })?;
    write_atomically(&out_dir.join(TOKENIZER_FILE), tokenizer_json.as_bytes())?;
    write_atomically(&config_path, config_json.as_bytes())
}

/// Writes `bytes` to a temporary file next to `path`, then renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|err| Error::io(&tmp, err))?;
    std::fs::rename(&tmp, path).map_err(|err| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = "APT29 used PowerShell to download a second stage payload.\n\
        The actor used spearphishing attachments (T1566.001) to gain initial access.\n\
        PowerShell (T1059.001) executed an encoded command on the host.\n\
        Indicators: 203.0.113.7, evil.example.com, and a SHA-256 hash.\n\
        The payload established persistence with a scheduled task (T1053.005).\n\
        Naïve défense évasion — ünïcödé text also appears in reports.\n";

    fn train(dir: &Path, specials: &SpecialTokens) -> CtiTokenizer {
        let corpus = dir.join("corpus.txt");
        std::fs::write(&corpus, CORPUS.repeat(3)).unwrap();
        train_bpe(&corpus, 400, specials, &dir.join("tok")).unwrap()
    }

    #[test]
    fn trained_tokenizer_round_trips_and_prepends_bos() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = train(dir.path(), &SpecialTokens::llama3());
        assert_eq!(tokenizer.bos_token_id(), Some(0));
        assert_eq!(tokenizer.eos_token_id(), Some(1));
        assert_eq!(tokenizer.pad_token_id(), Some(2));
        assert_eq!(tokenizer.token_to_id("<|eot_id|>"), Some(5));
        assert_eq!(tokenizer.stop_token_ids(), vec![1, 5]);
        assert!(tokenizer.vocab_size() > 262 && tokenizer.vocab_size() <= 400);

        let text = "APT29 used PowerShell (T1059.001) — naïve évasion 漢字!";
        let ids = tokenizer.encode(text, true).unwrap();
        assert_eq!(ids[0], 0);
        assert_eq!(tokenizer.encode(text, false).unwrap(), ids[1..]);
        assert_eq!(tokenizer.decode(&ids, true).unwrap(), text);
        assert_eq!(
            tokenizer.decode(&ids, false).unwrap(),
            format!("<|begin_of_text|>{text}")
        );

        // The files on disk load to the same tokenizer.
        let loaded = CtiTokenizer::from_dir(&dir.path().join("tok")).unwrap();
        assert_eq!(loaded.encode(text, true).unwrap(), ids);
        assert_eq!(loaded.config().add_bos_token, Some(true));
        assert_eq!(
            loaded.config().chat_template.as_deref(),
            Some(LLAMA3_TEMPLATE)
        );
        assert_eq!(
            loaded.config().model_max_length,
            Some(TRAINED_MODEL_MAX_LENGTH)
        );
    }

    #[test]
    fn training_is_deterministic() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        train(first.path(), &SpecialTokens::mistral());
        train(second.path(), &SpecialTokens::mistral());
        for file in [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE] {
            let a = std::fs::read(first.path().join("tok").join(file)).unwrap();
            let b = std::fs::read(second.path().join("tok").join(file)).unwrap();
            assert!(a == b, "{file} differs between two trainings");
        }
        let loaded = CtiTokenizer::from_dir(&first.path().join("tok")).unwrap();
        assert_eq!(
            loaded.config().chat_template.as_deref(),
            Some(MISTRAL_TEMPLATE)
        );
        assert_eq!(loaded.config().unk_token.as_deref(), Some("<unk>"));
        assert_eq!(loaded.token_to_id("[INST]"), Some(3));
    }

    #[test]
    fn jsonl_corpus_and_its_errors() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus.jsonl");
        let lines: Vec<String> = CORPUS
            .lines()
            .map(|line| serde_json::json!({ "text": line, "id": 1 }).to_string())
            .collect();
        std::fs::write(&corpus, lines.join("\n")).unwrap();
        let tokenizer = train_bpe(
            &corpus,
            300,
            &SpecialTokens::llama3(),
            &dir.path().join("tok"),
        )
        .unwrap();
        assert_eq!(tokenizer.encode("PowerShell", true).unwrap()[0], 0);

        std::fs::write(&corpus, format!("{}\n{{\"body\": \"x\"}}\n", lines[0])).unwrap();
        let err = train_bpe(&corpus, 300, &SpecialTokens::llama3(), dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("corpus.jsonl") && message.contains("line 2"),
            "{message}"
        );
        assert!(message.contains("\"text\""), "{message}");

        std::fs::write(&corpus, "{\"text\": \"ok\"}\n\nnot json\n").unwrap();
        let err = train_bpe(&corpus, 300, &SpecialTokens::llama3(), dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("line 3") && message.contains("not valid JSON"),
            "{message}"
        );
    }

    #[test]
    fn too_small_vocab_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus.txt");
        std::fs::write(&corpus, CORPUS).unwrap();
        let err = train_bpe(&corpus, 100, &SpecialTokens::llama3(), dir.path()).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("262"), "{err}");
    }

    #[test]
    fn vocab_check_names_largest_id_and_model_size() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = train(dir.path(), &SpecialTokens::llama3());
        let size = tokenizer.vocab_size();
        tokenizer.check_model_vocab(size).unwrap();
        tokenizer.check_model_vocab(size + 64).unwrap();
        let err = tokenizer.check_model_vocab(size - 1).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::Tokenizer { .. }), "{err:?}");
        assert!(message.contains(TOKENIZER_FILE), "{message}");
        assert!(
            message.contains(&format!("largest token id {}", size - 1)),
            "{message}"
        );
        assert!(
            message.contains(&format!("vocab_size {}", size - 1)),
            "{message}"
        );
    }

    #[test]
    fn missing_or_malformed_tokenizer_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = CtiTokenizer::from_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains(TOKENIZER_FILE), "{err}");
        assert!(err.to_string().contains("not found"), "{err}");

        std::fs::write(dir.path().join(TOKENIZER_FILE), "{\"model\": 3").unwrap();
        let err = CtiTokenizer::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Tokenizer { .. }), "{err:?}");
        let expected = dir.path().join(TOKENIZER_FILE).display().to_string();
        assert!(err.to_string().contains(&expected), "{err}");
        assert!(err.to_string().contains("malformed"), "{err}");
    }

    #[test]
    fn config_accepts_hf_variants() {
        let config: TokenizerConfig = serde_json::from_str(
            r#"{
                "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
                "eos_token": "</s>",
                "pad_token": null,
                "add_bos_token": true,
                "model_max_length": 1000000000000000019884624838656,
                "chat_template": [
                    {"name": "tool_use", "template": "tools"},
                    {"name": "default", "template": "chat"}
                ],
                "added_tokens_decoder": {"0": {"content": "<unk>"}},
                "legacy": false
            }"#,
        )
        .unwrap();
        assert_eq!(config.bos_token.as_deref(), Some("<s>"));
        assert_eq!(config.eos_token.as_deref(), Some("</s>"));
        assert_eq!(config.pad_token, None);
        assert_eq!(config.add_bos_token, Some(true));
        assert_eq!(config.add_eos_token, None);
        assert_eq!(config.model_max_length, None);
        assert_eq!(config.chat_template.as_deref(), Some("chat"));

        let config: TokenizerConfig =
            serde_json::from_str(r#"{"model_max_length": 4096, "chat_template": "x"}"#).unwrap();
        assert_eq!(config.model_max_length, Some(4096));
        assert_eq!(config.chat_template.as_deref(), Some("x"));
    }

    #[test]
    fn config_overrides_post_processor_bos() {
        let dir = tempfile::tempdir().unwrap();
        let trained = train(dir.path(), &SpecialTokens::llama3());
        let tok_dir = trained.dir().to_path_buf();
        let config = TokenizerConfig {
            add_bos_token: Some(false),
            add_eos_token: Some(true),
            ..trained.config().clone()
        };
        std::fs::write(
            tok_dir.join(TOKENIZER_CONFIG_FILE),
            serde_json::to_string(&config).unwrap(),
        )
        .unwrap();
        let tokenizer = CtiTokenizer::from_dir(&tok_dir).unwrap();
        let plain = tokenizer.encode("PowerShell", false).unwrap();
        let ids = tokenizer.encode("PowerShell", true).unwrap();
        assert_eq!(ids[..plain.len()], plain[..]);
        assert_eq!(ids.last(), Some(&1));
        assert_eq!(ids.len(), plain.len() + 1);
    }

    #[test]
    fn decode_stream_matches_full_decode() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = train(dir.path(), &SpecialTokens::llama3());
        let text = "PowerShell ran — naïve 漢字 payload 🙂 done.";
        let ids = tokenizer.encode(text, true).unwrap();
        let mut stream = DecodeStream::new(true);
        let mut streamed = String::new();
        let mut pieces = 0;
        for &id in &ids {
            if let Some(piece) = stream.step(&tokenizer, id).unwrap() {
                assert!(!piece.contains('\u{FFFD}'), "{piece:?}");
                streamed.push_str(&piece);
                pieces += 1;
            }
        }
        if let Some(rest) = stream.finish(&tokenizer).unwrap() {
            streamed.push_str(&rest);
        }
        assert_eq!(streamed, text);
        assert!(pieces > 5);
        assert_eq!(stream.ids(), &ids[..]);
    }

    #[test]
    fn aidreams_tokenizer_prepends_bos() {
        let dir = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../datasets/models/aidreams260K"
        ));
        if !dir.join(TOKENIZER_FILE).is_file() {
            eprintln!("skipping: {} is absent", dir.display());
            return;
        }
        let tokenizer = CtiTokenizer::from_dir(dir).unwrap();
        let ids = tokenizer.encode("Once upon a time", true).unwrap();
        assert_eq!(ids[0], 1);
        assert_eq!(tokenizer.bos_token_id(), Some(1));
        assert_eq!(tokenizer.eos_token_id(), Some(2));
        assert_eq!(tokenizer.decode(&ids, true).unwrap(), "Once upon a time");
        tokenizer.check_model_vocab(512).unwrap();
        assert!(tokenizer.check_model_vocab(500).is_err());

        let mut stream = DecodeStream::new(true);
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&stream.step(&tokenizer, id).unwrap().unwrap_or_default());
        }
        assert_eq!(streamed, "Once upon a time");
    }
}
