//! The Ollama `Modelfile` written beside an exported GGUF
//! ([Modelfile reference](https://github.com/ollama/ollama/blob/main/docs/modelfile.md)).
//!
//! The `TEMPLATE` is chosen from the model's chat template (`tokenizer_config.json`
//! `chat_template`, or `chat_template.jinja`), by the markers it contains:
//!
//! | chat template contains | family | Ollama template |
//! | --- | --- | --- |
//! | `<\|start_header_id\|>` | Llama 3 | `<\|start_header_id\|>{role}<\|end_header_id\|>` |
//! | | | `\n\n{text}<\|eot_id\|>` |
//! | `[INST]` and `<<SYS>>` | Llama 2 | `[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{prompt} [/INST]` |
//! | `[INST]` | Mistral | `[INST] {system}\n\n{prompt} [/INST]` |
//! | none / anything else | completion | `{{ .Prompt }}` (plain text continuation) |
//!
//! BOS is not in the templates: llama.cpp adds it (`tokenizer.ggml.add_bos_token`). Stop
//! tokens are the tokenizer's EOS and end-of-turn tokens; parameters come from
//! `generation_config.json` when it sets them.

use std::path::Path;

use ctiforge_model::CtiTokenizer;

use crate::convert::hf::read_json_opt;
use crate::error::Result;

/// The prompt format family of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateFamily {
    /// Llama 3 header/eot turns.
    Llama3,
    /// Llama 2 `[INST] <<SYS>>` turns.
    Llama2,
    /// Mistral `[INST]` turns.
    Mistral,
    /// No chat template: plain completion.
    Completion,
}

impl TemplateFamily {
    /// Picks the family from a Jinja chat template (see the module table).
    pub fn detect(chat_template: Option<&str>) -> Self {
        match chat_template {
            Some(t) if t.contains("<|start_header_id|>") => Self::Llama3,
            Some(t) if t.contains("[INST]") && t.contains("<<SYS>>") => Self::Llama2,
            Some(t) if t.contains("[INST]") => Self::Mistral,
            _ => Self::Completion,
        }
    }

    /// The Ollama (Go text/template) `TEMPLATE` of the family.
    pub fn ollama_template(self) -> &'static str {
        match self {
            Self::Llama3 => {
                "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}\
                 <|eot_id|>{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\
                 \n\n{{ .Prompt }}<|eot_id|>{{ end }}<|start_header_id|>assistant\
                 <|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
            }
            Self::Llama2 => {
                "[INST] {{ if .System }}<<SYS>>\n{{ .System }}\n<</SYS>>\n\n{{ end }}\
                 {{ .Prompt }} [/INST]{{ .Response }}"
            }
            Self::Mistral => {
                "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }} [/INST]\
                 {{ .Response }}"
            }
            Self::Completion => "{{ .Prompt }}{{ .Response }}",
        }
    }
}

/// A rendered Modelfile and what went into it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Modelfile {
    /// The file's text.
    pub text: String,
    /// The template family chosen.
    pub family: TemplateFamily,
    /// Stop strings.
    pub stop: Vec<String>,
}

/// Builds the Modelfile for `gguf_file_name` (written beside it, referenced as
/// `./name.gguf`) from the model folder `model_dir` (tokenizer and generation config).
///
/// # Errors
/// [`crate::Error::Model`] for an unreadable tokenizer; [`crate::Error::Invalid`] for a
/// malformed `generation_config.json`.
pub fn build_modelfile(gguf_file_name: &str, model_dir: &Path) -> Result<Modelfile> {
    let tokenizer = CtiTokenizer::from_dir(model_dir)?;
    let family = TemplateFamily::detect(tokenizer.config().chat_template.as_deref());
    let mut stop: Vec<String> = Vec::new();
    let generation = read_json_opt(model_dir, "generation_config.json")?;
    let mut ids = tokenizer.stop_token_ids();
    if let Some(eos) = generation.as_ref().and_then(|g| g.get("eos_token_id")) {
        let extra: Vec<u32> = match eos {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as u32)
                .collect(),
            v => v.as_u64().map(|v| v as u32).into_iter().collect(),
        };
        ids.extend(extra);
    }
    for id in ids {
        if let Some(tok) = tokenizer.inner().id_to_token(id)
            && !stop.contains(&tok)
        {
            stop.push(tok);
        }
    }
    let mut text = format!("FROM ./{gguf_file_name}\n\n");
    text.push_str(&format!(
        "TEMPLATE \"\"\"{}\"\"\"\n\n",
        family.ollama_template()
    ));
    for s in &stop {
        text.push_str(&format!("PARAMETER stop {}\n", quote(s)));
    }
    let num = |k: &str| {
        generation
            .as_ref()
            .and_then(|g| g.get(k))
            .and_then(serde_json::Value::as_f64)
    };
    let sampling = generation
        .as_ref()
        .and_then(|g| g.get("do_sample"))
        .and_then(serde_json::Value::as_bool);
    match (sampling, num("temperature")) {
        (Some(false), _) => text.push_str("PARAMETER temperature 0\n"),
        (_, Some(t)) => text.push_str(&format!("PARAMETER temperature {t}\n")),
        _ => {}
    }
    if let Some(p) = num("top_p") {
        text.push_str(&format!("PARAMETER top_p {p}\n"));
    }
    if let Some(k) = num("top_k") {
        text.push_str(&format!("PARAMETER top_k {k}\n"));
    }
    if let Some(r) = num("repetition_penalty") {
        text.push_str(&format!("PARAMETER repeat_penalty {r}\n"));
    }
    Ok(Modelfile { text, family, stop })
}

/// A Modelfile string literal.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_the_chat_template_markers() {
        let d = |t: &str| TemplateFamily::detect(Some(t));
        assert_eq!(d("{{ '<|start_header_id|>' }}"), TemplateFamily::Llama3);
        assert_eq!(d("[INST] <<SYS>> x"), TemplateFamily::Llama2);
        assert_eq!(d("{{ '[INST] ' }}"), TemplateFamily::Mistral);
        assert_eq!(d("{{ messages }}"), TemplateFamily::Completion);
        assert_eq!(TemplateFamily::detect(None), TemplateFamily::Completion);
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }
}
