//! Resolving a model spec to a folder: a local path, or `org/name[@revision]` looked up in
//! the Hugging Face hub cache (the layout `huggingface_hub` writes:
//! `models--org--name/{refs,snapshots,blobs}`), downloading missing files through `hf-hub`
//! unless `HF_HUB_OFFLINE=1`.
//!
//! Cache location, as in `huggingface_hub`: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, Result};
use crate::loader::CONFIG_FILE;
use crate::tokenizer::{TOKENIZER_CONFIG_FILE, TOKENIZER_FILE};
use crate::weights::{INDEX_FILE, SINGLE_FILE};

/// Files fetched when present but not required.
const OPTIONAL_FILES: [&str; 2] = [TOKENIZER_CONFIG_FILE, "generation_config.json"];

/// The hub cache folder this process uses.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("huggingface").join("hub")
}

/// Whether downloads are switched off (`HF_HUB_OFFLINE` set to `1`, `true` or `yes`).
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// A parsed `org/name[@revision]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `org/name`.
    pub repo: String,
    /// Branch, tag or commit; `main` by default.
    pub revision: String,
}

impl HubId {
    /// Parses `org/name` or `org/name@revision`; `None` for anything else.
    pub fn parse(spec: &str) -> Option<Self> {
        let (repo, revision) = match spec.split_once('@') {
            Some((r, rev)) if !rev.is_empty() => (r, rev),
            Some(_) => return None,
            None => (spec, "main"),
        };
        let mut parts = repo.split('/');
        let (org, name) = (parts.next()?, parts.next()?);
        let ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        (parts.next().is_none() && ok(org) && ok(name)).then(|| HubId {
            repo: repo.to_owned(),
            revision: revision.to_owned(),
        })
    }
}

/// Resolves a model spec to a folder holding `config.json`.
///
/// An existing path wins; otherwise `org/name[@rev]` is looked up in the hub cache.
///
/// # Errors
/// [`Error::Hub`] naming the cache folder and the missing files when the model is not cached
/// and cannot be downloaded; [`Error::Config`] for a path that does not exist and is not a hub
/// id.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let Some(id) = HubId::parse(spec) else {
        return Err(Error::config(
            path,
            "no such model folder (and not a Hugging Face id of the form org/name[@revision])",
        ));
    };
    resolve_in(&id, &cache_dir(), !offline())
}

/// Resolves `id` in the cache at `cache`, downloading missing files when `download` is true.
///
/// # Errors
/// As [`resolve`].
pub fn resolve_in(id: &HubId, cache: &Path, download: bool) -> Result<PathBuf> {
    let repo = Repo::with_revision(id.repo.clone(), RepoType::Model, id.revision.clone());
    let cached = Cache::new(cache.to_path_buf()).repo(repo.clone());
    let fetch = |file: &str| -> std::result::Result<PathBuf, String> {
        if let Some(p) = cached.get(file) {
            return Ok(p);
        }
        if !download {
            return Err("not cached (HF_HUB_OFFLINE is set)".to_owned());
        }
        let api = hf_hub::api::sync::ApiBuilder::from_cache(Cache::new(cache.to_path_buf()))
            .with_progress(false)
            .build()
            .map_err(|e| e.to_string())?;
        api.repo(repo.clone()).get(file).map_err(|e| e.to_string())
    };

    let mut missing = Vec::new();
    let mut first_reason = None;
    let mut note = |file: &str, reason: String| {
        missing.push(file.to_owned());
        first_reason.get_or_insert(reason);
    };
    let config = fetch(CONFIG_FILE).map_err(|r| note(CONFIG_FILE, r)).ok();
    let _ = fetch(TOKENIZER_FILE).map_err(|r| note(TOKENIZER_FILE, r));
    let weights_ok = match fetch(INDEX_FILE) {
        Ok(index) => {
            for shard in shard_files(&index)? {
                let _ = fetch(&shard).map_err(|r| note(&shard, r));
            }
            true
        }
        Err(_) => fetch(SINGLE_FILE).map_err(|r| note(SINGLE_FILE, r)).is_ok(),
    };
    for file in OPTIONAL_FILES {
        let _ = fetch(file);
    }
    match config {
        Some(config) if missing.is_empty() && weights_ok => {
            let dir = config
                .parent()
                .map_or_else(|| cache.to_path_buf(), Path::to_path_buf);
            tracing::debug!(repo = %id.repo, dir = %dir.display(), "resolved hub model");
            Ok(dir)
        }
        _ => Err(Error::Hub {
            message: format!(
                "model {}@{} is not complete in the Hugging Face cache {} (missing: {}): {}; \
                 download it where the hub is reachable (`huggingface-cli download {}`), copy \
                 the cache here, or set HF_HUB_CACHE",
                id.repo,
                id.revision,
                cache.display(),
                missing.join(", "),
                first_reason.unwrap_or_default(),
                id.repo
            ),
        }),
    }
}

/// The distinct shard file names of a `model.safetensors.index.json`.
fn shard_files(index: &Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let parsed: Index = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: index.to_path_buf(),
        source,
    })?;
    let mut files: Vec<String> = parsed.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays out `files` the way `huggingface_hub` does: blobs, a snapshot of symlinks, a ref.
    pub(crate) fn fake_cache(cache: &Path, repo: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let folder = cache.join(format!("models--{}", repo.replace('/', "--")));
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let snapshot = folder.join("snapshots").join(commit);
        std::fs::create_dir_all(&snapshot).expect("mkdir");
        std::fs::create_dir_all(folder.join("blobs")).expect("mkdir");
        std::fs::create_dir_all(folder.join("refs")).expect("mkdir");
        std::fs::write(folder.join("refs").join("main"), commit).expect("ref");
        for (i, (name, bytes)) in files.iter().enumerate() {
            let blob = folder.join("blobs").join(format!("blob{i}"));
            std::fs::write(&blob, bytes).expect("blob");
            std::os::unix::fs::symlink(&blob, snapshot.join(name)).expect("symlink");
        }
        snapshot
    }

    #[test]
    fn parses_hub_ids() {
        let id = HubId::parse("meta-llama/Llama-3.1-8B").expect("id");
        assert_eq!(id.revision, "main");
        assert_eq!(HubId::parse("org/name@v1.0").expect("rev").revision, "v1.0");
        assert!(HubId::parse("./models/x").is_none());
        assert!(HubId::parse("/abs/path").is_none());
        assert!(HubId::parse("a/b/c").is_none());
        assert!(HubId::parse("single").is_none());
    }

    #[test]
    fn finds_a_complete_snapshot() {
        let cache = tempfile::tempdir().expect("tempdir");
        let snapshot = fake_cache(
            cache.path(),
            "org/tiny",
            &[
                ("config.json", b"{}"),
                ("tokenizer.json", b"{}"),
                ("model.safetensors", b"x"),
            ],
        );
        let id = HubId::parse("org/tiny").expect("id");
        assert_eq!(
            resolve_in(&id, cache.path(), false).expect("resolved"),
            snapshot
        );
    }

    #[test]
    fn missing_files_are_named_with_the_cache() {
        let cache = tempfile::tempdir().expect("tempdir");
        fake_cache(cache.path(), "org/tiny", &[("config.json", b"{}")]);
        let id = HubId::parse("org/tiny").expect("id");
        let msg = resolve_in(&id, cache.path(), false)
            .expect_err("incomplete")
            .to_string();
        assert!(
            msg.contains("tokenizer.json") && msg.contains("model.safetensors"),
            "{msg}"
        );
        assert!(msg.contains(&cache.path().display().to_string()), "{msg}");

        let msg = resolve_in(
            &HubId::parse("org/absent").expect("id"),
            cache.path(),
            false,
        )
        .expect_err("absent")
        .to_string();
        assert!(
            msg.contains("config.json") && msg.contains("org/absent"),
            "{msg}"
        );
    }
}
