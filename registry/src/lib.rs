//! ctiforge's registry: the system of record for runs, model versions, aliases and
//! artifacts, in an embedded local store or on an MLflow tracking server, with gated
//! promotion and checksum-verified pulls.
//!
//! - [`Registry`] is the one interface; [`EmbeddedStore`] (a local folder, the default)
//!   and [`MlflowRegistry`] (the
//!   [MLflow REST API](https://mlflow.org/docs/latest/api_reference/rest-api.html))
//!   implement it with the same observable behaviour.
//! - [`open()`] picks the backend from a URI: a folder path or `file:` URI is an embedded
//!   store, `http(s)://host:port` is MLflow; with no URI, `MLFLOW_TRACKING_URI`, then the
//!   embedded store in `./.ctiforge-registry`.
//! - [`pull()`] resolves `NAME@alias` or `NAME/VERSION`, downloads and verifies the SHA-256
//!   recorded at registration before it hands over a file.
//! - [`promote()`] moves the `champion` alias when a [`Gate`] of metric rules and a drift
//!   requirement passes, keeping the old champion as `previous`.

#![warn(missing_docs)]

pub mod drift;
pub mod embedded;
pub mod error;
mod fsutil;
pub mod gate;
pub mod mlflow;
pub mod names;
mod open;
pub mod promote;
pub mod pull;
pub mod register;
mod registry;
pub mod types;
pub mod validate;

pub use embedded::EmbeddedStore;
pub use error::{Error, Result};
pub use gate::Gate;
pub use mlflow::{MlflowConfig, MlflowRegistry};
pub use open::{Backend, open, parse_uri};
pub use promote::{Decision, promote};
pub use pull::{ModelRef, pull};
pub use register::{RegisterRequest, Registered, register};
pub use registry::{AliasSwap, Registry};
pub use types::{
    ArtifactRecord, Metric, ModelVersion, Page, PageRequest, Run, RunId, RunStatus, Tags,
};
