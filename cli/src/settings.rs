//! Configuration files (`configs/**/*.toml`) and `--set key=value` overrides.
//!
//! A file is read as TOML, overrides are applied to the parsed document (dotted keys, values
//! parsed as TOML, else taken as strings), and the result is deserialized into a struct that
//! rejects unknown keys. Every problem is reported at once, naming the file and key.
//! Precedence: command-line flags, then `--set`, then the file, then the defaults in code.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// `configs/generate/*.toml`: defaults for `ctiforge generate` and `ctiforge demo`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateFile {
    /// The `[generate]` table.
    #[serde(default)]
    pub generate: GenerateSettings,
}

/// The `[generate]` table; every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateSettings {
    /// Model folder or `org/name[@revision]`.
    pub model: Option<String>,
    /// `cpu`, `cuda:N`, `rocm:N`, `wgpu`.
    pub device: Option<String>,
    /// Most new tokens per prompt.
    pub max_new_tokens: Option<usize>,
    /// 0 is greedy.
    pub temperature: Option<f32>,
    /// Top-k sampling.
    pub top_k: Option<usize>,
    /// Nucleus sampling mass.
    pub top_p: Option<f32>,
    /// Penalty on repeated tokens.
    pub repetition_penalty: Option<f32>,
    /// Sampling seed.
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Option<Vec<String>>,
    /// Render prompts through the chat template.
    pub chat: Option<bool>,
    /// System message for chat prompts.
    pub system: Option<String>,
}

/// Reads `path` (or an empty document when `None`), applies `overrides`, and deserializes.
///
/// # Errors
/// The file is unreadable or not TOML, an override is malformed, or a key is unknown or has
/// the wrong type (all named, with the file).
pub fn load<T: DeserializeOwned>(path: Option<&Path>, overrides: &[String]) -> Result<T> {
    let origin = path.map_or_else(|| "--set overrides".to_owned(), |p| p.display().to_string());
    let mut doc: toml::Table = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config file {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("{origin}: not valid TOML"))?
        }
        None => toml::Table::new(),
    };
    let mut problems = Vec::new();
    for o in overrides {
        if let Err(e) = apply_override(&mut doc, o) {
            problems.push(format!("--set {o}: {e}"));
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} bad override(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    T::deserialize(doc).with_context(|| format!("{origin}: invalid configuration"))
}

/// Sets the dotted `key=value` in `doc`, creating tables on the way.
fn apply_override(doc: &mut toml::Table, text: &str) -> Result<()> {
    let Some((key, raw)) = text.split_once('=') else {
        bail!("expected key=value")
    };
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("the key {key:?} has an empty part");
    }
    let value = parse_value(raw.trim());
    let (last, tables) = parts.split_last().context("empty key")?;
    let mut table = doc;
    for part in tables {
        let entry = table
            .entry((*part).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .with_context(|| format!("{part:?} is not a table"))?;
    }
    table.insert((*last).to_owned(), value);
    Ok(())
}

/// A TOML value when `raw` parses as one (`3`, `0.7`, `true`, `["a"]`), else a string.
fn parse_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_the_file_and_are_typed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.toml");
        std::fs::write(&path, "[generate]\ntemperature = 0.7\nmodel = \"a\"\n").expect("write");
        let sets = [
            "generate.temperature=0.2".to_owned(),
            "generate.stop=[\"\\n\"]".to_owned(),
        ];
        let f: GenerateFile = load(Some(&path), &sets).expect("load");
        assert_eq!(f.generate.temperature, Some(0.2));
        assert_eq!(f.generate.model.as_deref(), Some("a"));
        assert_eq!(f.generate.stop, Some(vec!["\n".to_owned()]));
        let f: GenerateFile = load(None, &["generate.model=org/name".to_owned()]).expect("load");
        assert_eq!(f.generate.model.as_deref(), Some("org/name"));
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[generate]\ntemprature = 0.7\n").expect("write");
        let err = format!(
            "{:#}",
            load::<GenerateFile>(Some(&path), &[]).expect_err("unknown")
        );
        assert!(
            err.contains("bad.toml") && err.contains("temprature"),
            "{err}"
        );
        let err =
            load::<GenerateFile>(None, &["generate.top_k=many".to_owned()]).expect_err("type");
        assert!(format!("{err:#}").contains("top_k"), "{err:#}");
        let err = load::<GenerateFile>(None, &["novalue".to_owned(), "a..b=1".to_owned()])
            .expect_err("malformed");
        assert!(format!("{err:#}").contains("2 bad override"), "{err:#}");
    }

    #[test]
    fn every_shipped_config_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(root.join("generate")).expect("configs/generate") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let f: GenerateFile = load(Some(&path), &[]).expect("shipped config parses");
                assert!(
                    f.generate.device.is_some(),
                    "{} sets a device",
                    path.display()
                );
                seen += 1;
            }
        }
        assert!(seen >= 2, "configs/generate has its shipped files");
    }
}
