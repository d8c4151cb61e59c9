//! Checks shared by both backends so that they accept and refuse the same inputs: names,
//! keys, value lengths (MLflow's limits, see
//! [the REST API](https://mlflow.org/docs/latest/api_reference/rest-api.html)) and artifact
//! paths that must never escape the folder they are written under.

use crate::error::{Error, Result};
use crate::types::Metric;

/// The longest parameter, metric or tag key MLflow accepts.
pub const MAX_KEY_LEN: usize = 250;
/// The longest parameter value MLflow accepts.
pub const MAX_PARAM_VALUE_LEN: usize = 6000;
/// The longest tag value accepted (MLflow's limit on model-version tags, the tighter one).
pub const MAX_TAG_VALUE_LEN: usize = 5000;
/// The longest model name accepted.
pub const MAX_NAME_LEN: usize = 250;

/// Checks a param, metric or tag key: 1..=250 characters out of letters, digits, `_`, `.`,
/// `-`, ` `, `/` and `:`, not starting with `/` and without a `..` component.
///
/// # Errors
/// [`Error::Invalid`] naming `what` and the key.
pub fn key(what: &str, key: &str) -> Result<()> {
    let field = || format!("{what} key {key:?}");
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::invalid(
            field(),
            format!("must be 1 to {MAX_KEY_LEN} characters"),
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.- /:".contains(c);
    if !key.chars().all(allowed) {
        return Err(Error::invalid(
            field(),
            "may contain only letters, digits, '_', '.', '-', ' ', '/' and ':'",
        ));
    }
    if key.starts_with('/') || key.split('/').any(|part| part == "..") {
        return Err(Error::invalid(
            field(),
            "must not start with '/' or contain '..'",
        ));
    }
    Ok(())
}

/// Checks a parameter value's length.
///
/// # Errors
/// [`Error::Invalid`] when it is longer than [`MAX_PARAM_VALUE_LEN`].
pub fn param_value(key: &str, value: &str) -> Result<()> {
    if value.len() > MAX_PARAM_VALUE_LEN {
        return Err(Error::invalid(
            format!("param {key:?}"),
            format!(
                "value is {} characters, MLflow accepts at most {MAX_PARAM_VALUE_LEN}",
                value.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a tag key and value.
///
/// # Errors
/// [`Error::Invalid`] for a bad key or a value over [`MAX_TAG_VALUE_LEN`].
pub fn tag(key_text: &str, value: &str) -> Result<()> {
    key("tag", key_text)?;
    if value.len() > MAX_TAG_VALUE_LEN {
        return Err(Error::invalid(
            format!("tag {key_text:?}"),
            format!(
                "value is {} characters, at most {MAX_TAG_VALUE_LEN} allowed",
                value.len()
            ),
        ));
    }
    if crate::names::is_reserved_tag(key_text) {
        return Err(Error::invalid(
            format!("tag {key_text:?}"),
            "keys starting with `mlflow.` or `ctiforge.registry.` are reserved",
        ));
    }
    Ok(())
}

/// Checks a metric: a valid key and a finite value.
///
/// # Errors
/// [`Error::Invalid`] naming the metric and step.
pub fn metric(metric: &Metric) -> Result<()> {
    key("metric", &metric.key)?;
    if !metric.value.is_finite() {
        return Err(Error::invalid(
            format!("metric {:?} at step {}", metric.key, metric.step),
            format!("value {} is not finite", metric.value),
        ));
    }
    Ok(())
}

/// Checks an experiment or registered-model name: 1..=250 characters out of letters,
/// digits, `_`, `.` and `-` (no `/` or `@`, which `NAME/VERSION` and `NAME@alias` use).
///
/// # Errors
/// [`Error::Invalid`] naming `what` and the name.
pub fn name(what: &str, name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars {
        return Err(Error::invalid(
            format!("{what} {name:?}"),
            format!(
                "must be 1 to {MAX_NAME_LEN} characters out of letters, digits, '_', '.' and '-'"
            ),
        ));
    }
    Ok(())
}

/// Checks an alias the way MLflow does: letters, digits, `_` and `-`, at most 255
/// characters, and not `latest` or `v<digits>` (those name versions).
///
/// # Errors
/// [`Error::Invalid`] naming the alias.
pub fn alias(alias: &str) -> Result<()> {
    let field = || format!("alias {alias:?}");
    let ok_chars = alias
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if alias.is_empty() || alias.len() > 255 || !ok_chars {
        return Err(Error::invalid(
            field(),
            "must be 1 to 255 characters out of letters, digits, '_' and '-'",
        ));
    }
    let lower = alias.to_ascii_lowercase();
    let version_like =
        lower.len() > 1 && lower.starts_with('v') && lower[1..].chars().all(|c| c.is_ascii_digit());
    if lower == "latest" || version_like {
        return Err(Error::invalid(
            field(),
            "`latest` and `v<number>` are reserved",
        ));
    }
    Ok(())
}

/// Checks a version string: a positive decimal integer.
///
/// # Errors
/// [`Error::Invalid`] naming the version.
pub fn version(version: &str) -> Result<u64> {
    match version.parse::<u64>() {
        Ok(n) if n > 0 && !version.starts_with('0') => Ok(n),
        _ => Err(Error::invalid(
            format!("version {version:?}"),
            "must be a positive whole number such as 3",
        )),
    }
}

/// Checks an artifact path: relative, `/`-separated, with no empty, `.` or `..`
/// component, no backslash and no NUL, so that joining it under a folder stays inside.
///
/// # Errors
/// [`Error::Invalid`] naming the path and why it is refused.
pub fn artifact_path(path: &str) -> Result<()> {
    let refuse = |why: &str| Err(Error::invalid(format!("artifact path {path:?}"), why));
    if path.is_empty() {
        return refuse("is empty");
    }
    if path.starts_with('/') || path.contains(':') {
        return refuse("is absolute or has a ':'; paths are relative to the run root");
    }
    if path.contains('\\') || path.contains('\0') {
        return refuse("contains '\\' or NUL; use '/' between folders");
    }
    for part in path.split('/') {
        match part {
            "" => return refuse("has an empty component ('//' or a trailing '/')"),
            "." | ".." => return refuse("has a '.' or '..' component, which could escape"),
            _ => {}
        }
    }
    Ok(())
}

/// The checks `register_version` makes in both backends before touching anything.
///
/// # Errors
/// [`Error::Invalid`] for a bad key, tag or artifact list.
pub fn registration(
    artifacts: &[crate::types::ArtifactRecord],
    tags: &crate::types::Tags,
    idempotency_key: &str,
) -> Result<()> {
    key("idempotency", idempotency_key)?;
    for (key, value) in tags {
        tag(key, value)?;
    }
    if artifacts.is_empty() {
        return Err(Error::invalid(
            "artifacts",
            "a version needs at least one artifact",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for artifact in artifacts {
        artifact_path(&artifact.path)?;
        let hex = artifact.sha256.len() == 64
            && artifact
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(Error::invalid(
                format!("artifact {:?}", artifact.path),
                format!(
                    "sha256 {:?} is not 64 lowercase hex digits",
                    artifact.sha256
                ),
            ));
        }
        if !seen.insert(artifact.path.as_str()) {
            return Err(Error::invalid(
                "artifacts",
                format!("{:?} is listed twice", artifact.path),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_paths_that_escape_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/",
            "./a",
            "C:/x",
            "a\\b",
        ] {
            assert!(artifact_path(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["model.gguf", "gguf/model.q4.gguf", "a/b/c.json", "..hidden"] {
            artifact_path(good).unwrap();
        }
    }

    #[test]
    fn aliases_follow_mlflow_rules() {
        alias("champion").unwrap();
        alias("previous_1").unwrap();
        for bad in ["", "latest", "v3", "V12", "a b", "a@b"] {
            assert!(alias(bad).is_err(), "{bad:?} was accepted");
        }
        alias("v").unwrap();
        alias("vx1").unwrap();
    }

    #[test]
    fn keys_names_and_versions() {
        key("param", "train.lora.rank").unwrap();
        assert!(key("param", "").is_err());
        assert!(key("param", &"k".repeat(251)).is_err());
        assert!(key("param", "a/../b").is_err());
        assert!(key("param", "a\"b").is_err());
        assert!(name("model", "cti-llama_3.1").is_ok());
        assert!(name("model", "a/b").is_err());
        assert!(name("model", "a@b").is_err());
        assert_eq!(version("12").unwrap(), 12);
        for bad in ["0", "01", "-1", "x", ""] {
            assert!(version(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(param_value("p", &"v".repeat(6000)).is_ok());
        assert!(param_value("p", &"v".repeat(6001)).is_err());
        assert!(tag("mlflow.user", "x").is_err());
        assert!(metric(&Metric::now("loss", f64::NAN, 1)).is_err());
    }
}
