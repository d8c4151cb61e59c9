//! The metrics, one per file. Each matches a published reference implementation (named in
//! its file header); `ci/reference_metrics.py` runs those references for the parity tests.

pub mod bio;
pub mod bleu;
pub mod classification;
pub mod entity;
pub mod lm;
pub mod porter;
pub mod prf;
pub mod pyspace;
pub mod rouge;
pub mod tokenize;

pub use prf::{Prf, ZeroDivision};
