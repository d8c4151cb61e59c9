//! ctiforge's data preparation stage: Polars pipelines that turn CTI sources into the
//! dataset artifact of `DESIGN.md` (train/validation/test parquet, `rejects.jsonl`,
//! `manifest.json`).
//!
//! Empty on purpose: issue #3 builds it. Nothing here pretends to work yet.

#![warn(missing_docs)]
