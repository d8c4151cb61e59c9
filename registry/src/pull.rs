//! Pull: resolve `NAME@alias` or `NAME/VERSION`, download one artifact to a temporary file
//! next to its destination, verify the SHA-256 recorded at registration, and only then
//! rename it into place. A mismatch is refused and leaves nothing behind; artifact paths
//! that would escape the output folder (`..`, absolute paths) are refused.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::registry::Registry;
use crate::types::{ArtifactRecord, ModelVersion};
use crate::validate;

/// Which version to use: by alias or by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `NAME@alias`.
    Alias(String),
    /// `NAME/VERSION`.
    Version(String),
}

/// A reference to a model version, `NAME@alias` or `NAME/VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// The registered model's name.
    pub model: String,
    /// The alias or version.
    pub selector: Selector,
}

impl FromStr for ModelRef {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let invalid = |why: &str| {
            Error::invalid(
                format!("model reference {text:?}"),
                format!("{why}; expected NAME@alias or NAME/VERSION"),
            )
        };
        let (model, selector) = if let Some((model, alias)) = text.split_once('@') {
            validate::alias(alias).map_err(|e| invalid(&e.to_string()))?;
            (model, Selector::Alias(alias.to_string()))
        } else if let Some((model, version)) = text.split_once('/') {
            validate::version(version).map_err(|e| invalid(&e.to_string()))?;
            (model, Selector::Version(version.to_string()))
        } else {
            return Err(invalid("no '@' or '/'"));
        };
        validate::name("model", model).map_err(|e| invalid(&e.to_string()))?;
        Ok(Self {
            model: model.to_string(),
            selector,
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.selector {
            Selector::Alias(alias) => write!(f, "{}@{alias}", self.model),
            Selector::Version(version) => write!(f, "{}/{version}", self.model),
        }
    }
}

impl ModelRef {
    /// The version this reference points at now.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unset alias or unknown version.
    pub fn resolve(&self, registry: &dyn Registry) -> Result<ModelVersion> {
        match &self.selector {
            Selector::Version(version) => registry.get_version(&self.model, version),
            Selector::Alias(alias) => {
                registry
                    .get_alias(&self.model, alias)?
                    .ok_or_else(|| Error::NotFound {
                        what: format!("alias {self}"),
                        hint: format!("set it first, or pull a version ({}/N)", self.model),
                    })
            }
        }
    }
}

/// A verified, downloaded artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    /// Where it was written (`out_dir/<artifact path>`).
    pub path: PathBuf,
    /// The version it came from.
    pub version: ModelVersion,
    /// Its record (path, SHA-256, size), verified.
    pub record: ArtifactRecord,
}

/// Downloads `artifact` of the version `reference` (`NAME@alias` or `NAME/VERSION`) into
/// `out_dir`, keeping its relative path, and verifies it against the SHA-256 and size
/// recorded at registration before renaming it into place.
///
/// # Errors
/// A bad reference or artifact path (absolute, `..`); an unset alias or unknown version;
/// an artifact the version does not have; [`Error::ChecksumMismatch`] (nothing is left
/// behind); I/O or transfer failures.
pub fn pull(
    registry: &dyn Registry,
    reference: &str,
    artifact: &str,
    out_dir: &Path,
) -> Result<Pulled> {
    validate::artifact_path(artifact)?;
    let reference: ModelRef = reference.parse()?;
    let version = reference.resolve(registry)?;
    let record = version.artifact(artifact)?.clone();
    // The temporary file sits directly in out_dir (so the final rename stays on one file
    // system) and is deleted on any early return.
    let temp = fsutil::temp_in(out_dir)?;
    let got = registry.download_artifact(&version, artifact, temp.path())?;
    if got.sha256 != record.sha256 || got.size_bytes != record.size_bytes {
        return Err(Error::ChecksumMismatch {
            model: version.model.clone(),
            version: version.version.clone(),
            artifact: artifact.to_string(),
            expected: format!("{} ({} bytes)", record.sha256, record.size_bytes),
            actual: format!("{} ({} bytes)", got.sha256, got.size_bytes),
        });
    }
    let dest = artifact
        .split('/')
        .fold(out_dir.to_path_buf(), |path, part| path.join(part));
    if let Some(parent) = dest.parent() {
        fsutil::create_dir_all(parent)?;
    }
    fsutil::persist(temp, &dest)?;
    let size_bytes = record.size_bytes;
    let version_number = &version.version;
    tracing::info!(%reference, %version_number, artifact, size_bytes, "pulled, verified");
    Ok(Pulled {
        path: dest,
        version,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let r: ModelRef = "cti-llama@champion".parse().unwrap();
        assert_eq!(r.selector, Selector::Alias("champion".into()));
        assert_eq!(r.to_string(), "cti-llama@champion");
        let r: ModelRef = "cti-llama/12".parse().unwrap();
        assert_eq!(r.selector, Selector::Version("12".into()));
        for bad in [
            "cti",
            "cti@",
            "cti/0",
            "cti/x",
            "@champion",
            "a/b/1",
            "cti@latest",
        ] {
            assert!(bad.parse::<ModelRef>().is_err(), "{bad:?} was accepted");
        }
    }
}
