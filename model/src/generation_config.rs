//! Generation defaults shipped with a Hugging Face checkpoint (`generation_config.json`).
//!
//! The file is optional and written by `transformers`' `GenerationConfig.save_pretrained`; see
//! <https://huggingface.co/docs/transformers/main_classes/text_generation>. Only the fields that
//! decoder-only sampling uses are kept; unknown fields are ignored so that files written by any
//! `transformers` version load.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// The file name looked up by [`GenerationConfig::from_dir`].
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// Sampling defaults and special token ids from `generation_config.json`.
///
/// Every field is optional: a missing field means "use the caller's or the model config's
/// default", exactly as in `transformers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    /// Token id that starts a sequence.
    pub bos_token_id: Option<u32>,
    /// Token ids that end generation; HF writes either one integer or a list.
    #[serde(deserialize_with = "one_or_many_ids")]
    pub eos_token_id: Vec<u32>,
    /// Token id used to pad batches.
    pub pad_token_id: Option<u32>,
    /// Maximum total length (prompt plus generated tokens).
    pub max_length: Option<usize>,
    /// Maximum number of generated tokens; takes precedence over `max_length`.
    pub max_new_tokens: Option<usize>,
    /// Whether to sample (`true`) or decode greedily (`false`).
    pub do_sample: Option<bool>,
    /// Softmax temperature used when sampling.
    pub temperature: Option<f64>,
    /// Keep only the `top_k` most likely tokens when sampling (0 disables).
    pub top_k: Option<usize>,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: Option<f64>,
    /// Penalty (> 1 discourages) applied to the logits of tokens already generated.
    pub repetition_penalty: Option<f64>,
}

impl GenerationConfig {
    /// Reads `generation_config.json` from a model folder.
    ///
    /// Returns `Ok(None)` when the file does not exist: it is optional in HF checkpoints.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file exists but cannot be read, [`Error::Json`] when it does not
    /// parse or a field has the wrong type (both name the file).
    pub fn from_dir(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(GENERATION_CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(Error::io(path, err)),
        };
        let config = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        tracing::debug!(path = %path.display(), "loaded generation config");
        Ok(Some(config))
    }
}

/// Accepts `null`, one integer or a list of integers.
fn one_or_many_ids<'de, D>(deserializer: D) -> std::result::Result<Vec<u32>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(u32),
        Many(Vec<u32>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(id)) => vec![id],
        Some(OneOrMany::Many(ids)) => ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) {
        std::fs::write(dir.join(GENERATION_CONFIG_FILE), text).unwrap();
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(GenerationConfig::from_dir(dir.path()).unwrap(), None);
    }

    #[test]
    fn parses_llama3_style_file_with_eos_list_and_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            r#"{
                "_from_model_config": true,
                "bos_token_id": 128000,
                "eos_token_id": [128001, 128008, 128009],
                "do_sample": true,
                "temperature": 0.6,
                "top_p": 0.9,
                "transformers_version": "4.45.0.dev0"
            }"#,
        );
        let config = GenerationConfig::from_dir(dir.path()).unwrap().unwrap();
        assert_eq!(config.bos_token_id, Some(128000));
        assert_eq!(config.eos_token_id, vec![128001, 128008, 128009]);
        assert_eq!(config.do_sample, Some(true));
        assert_eq!(config.temperature, Some(0.6));
        assert_eq!(config.top_p, Some(0.9));
        assert_eq!(config.top_k, None);
        assert_eq!(config.pad_token_id, None);
    }

    #[test]
    fn parses_single_eos_and_all_sampling_fields() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            r#"{"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": null, "max_length": 4096,
                "max_new_tokens": 256, "top_k": 50, "repetition_penalty": 1.1}"#,
        );
        let config = GenerationConfig::from_dir(dir.path()).unwrap().unwrap();
        assert_eq!(config.eos_token_id, vec![2]);
        assert_eq!(config.pad_token_id, None);
        assert_eq!(config.max_length, Some(4096));
        assert_eq!(config.max_new_tokens, Some(256));
        assert_eq!(config.top_k, Some(50));
        assert_eq!(config.repetition_penalty, Some(1.1));
    }

    #[test]
    fn null_eos_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), r#"{"eos_token_id": null}"#);
        let config = GenerationConfig::from_dir(dir.path()).unwrap().unwrap();
        assert!(config.eos_token_id.is_empty());
    }

    #[test]
    fn wrong_type_error_names_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), r#"{"top_k": "many"}"#);
        let err = GenerationConfig::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Json { .. }), "{err:?}");
        assert!(err.to_string().contains(GENERATION_CONFIG_FILE), "{err}");
    }
}
