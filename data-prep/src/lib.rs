//! ctiforge's data preparation stage: Polars pipelines that turn CTI sources (TRAM, MITRE
//! ATT&CK tables and STIX bundles, BIO entity corpora, IOC sentences, actor summaries, and
//! your own JSONL/CSV/Parquet) into the dataset artifact of `DESIGN.md`: train, validation
//! and test parquet, `rejects.jsonl` and `manifest.json`.
//!
//! The entry point is [`prepare`] with a [`PrepConfig`] recipe (`configs/prep/*.toml`).
//! `docs/prep.md` is the user guide.

#![warn(missing_docs)]

pub mod attack;
pub mod clean;
pub mod config;
pub mod dataset;
pub mod dedup;
pub mod error;
pub mod ioc;
pub mod labels;
pub mod manifest;
mod pipeline;
pub mod prompt;
pub mod schema;
pub mod sources;
pub mod split;
pub mod stix;
mod tokens;
mod write;

pub use config::PrepConfig;
pub use error::{Error, Result};
pub use manifest::Manifest;
pub use pipeline::{Options, prepare};
pub use schema::Task;
