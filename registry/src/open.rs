//! Choosing a backend from a URI: a folder path or `file:` URI is an embedded store,
//! `http(s)://host:port` is an MLflow tracking server. With no URI, `MLFLOW_TRACKING_URI`
//! is used when set, else the embedded store in `./.ctiforge-registry`.

use std::path::PathBuf;

use crate::embedded::EmbeddedStore;
use crate::error::{Error, Result};
use crate::mlflow::{MlflowConfig, MlflowRegistry};
use crate::names;
use crate::registry::Registry;

/// Where a registry lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// An embedded store in this folder.
    Embedded(PathBuf),
    /// An MLflow tracking server at this `http(s)` URL.
    Mlflow(String),
}

/// Decides the backend for `uri` (see the module docs for the rules when it is `None`).
///
/// # Errors
/// [`Error::Uri`] for an empty URI, an unsupported scheme, a `file:` URI naming a remote
/// host, or a `MLFLOW_TRACKING_URI` that is not `http(s)`.
pub fn parse_uri(uri: Option<&str>) -> Result<Backend> {
    let Some(uri) = uri else {
        return match std::env::var(names::ENV_TRACKING_URI) {
            Ok(env) if !env.trim().is_empty() => {
                let env = env.trim();
                if env.starts_with("http://") || env.starts_with("https://") {
                    Ok(Backend::Mlflow(env.to_string()))
                } else {
                    Err(Error::Uri {
                        uri: env.to_string(),
                        message: format!(
                            "{} is set but is not an http(s) server; pass --registry explicitly \
                             or unset it",
                            names::ENV_TRACKING_URI
                        ),
                    })
                }
            }
            _ => Ok(Backend::Embedded(PathBuf::from(
                names::DEFAULT_EMBEDDED_DIR,
            ))),
        };
    };
    let uri_error = |message: &str| Error::Uri {
        uri: uri.to_string(),
        message: message.into(),
    };
    if uri.trim().is_empty() {
        return Err(uri_error("is empty"));
    }
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return Ok(Backend::Mlflow(uri.to_string()));
    }
    if let Some(rest) = uri.strip_prefix("file:") {
        let path = match rest.strip_prefix("//") {
            None => rest,
            Some(after) if after.starts_with('/') => after,
            Some(after) => match after.strip_prefix("localhost") {
                Some(path) if path.starts_with('/') => path,
                _ => {
                    return Err(uri_error(
                        "a file: URI must name a local path (file:///path)",
                    ));
                }
            },
        };
        if path.is_empty() {
            return Err(uri_error("the file: URI has no path"));
        }
        return Ok(Backend::Embedded(PathBuf::from(path)));
    }
    if let Some((scheme, _)) = uri.split_once("://") {
        return Err(uri_error(&format!("scheme {scheme:?} is not supported")));
    }
    Ok(Backend::Embedded(PathBuf::from(uri)))
}

/// Opens the registry named by `uri` (see [`parse_uri`]). MLflow credentials come from
/// the environment ([`MlflowConfig::from_env`]); no request is made until first use.
///
/// # Errors
/// As [`parse_uri`]; [`EmbeddedStore::open`] failures.
pub fn open(uri: Option<&str>) -> Result<Box<dyn Registry>> {
    let registry: Box<dyn Registry> = match parse_uri(uri)? {
        Backend::Embedded(dir) => Box::new(EmbeddedStore::open(&dir)?),
        Backend::Mlflow(url) => Box::new(MlflowRegistry::new(MlflowConfig::from_env(&url)?)?),
    };
    tracing::debug!(registry = %registry.describe(), "opened registry");
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_pick_backends() {
        let embedded = |p: &str| Backend::Embedded(PathBuf::from(p));
        assert_eq!(parse_uri(Some("/srv/reg")).unwrap(), embedded("/srv/reg"));
        assert_eq!(parse_uri(Some("reg")).unwrap(), embedded("reg"));
        assert_eq!(
            parse_uri(Some("file:///srv/reg")).unwrap(),
            embedded("/srv/reg")
        );
        assert_eq!(
            parse_uri(Some("file://localhost/srv/reg")).unwrap(),
            embedded("/srv/reg")
        );
        assert_eq!(parse_uri(Some("file:reg")).unwrap(), embedded("reg"));
        assert_eq!(
            parse_uri(Some("http://127.0.0.1:5000")).unwrap(),
            Backend::Mlflow("http://127.0.0.1:5000".into())
        );
        for bad in ["", "s3://bucket/x", "file://host/x", "file:"] {
            assert!(parse_uri(Some(bad)).is_err(), "{bad:?} was accepted");
        }
    }
}
