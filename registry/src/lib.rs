//! ctiforge's registry: runs and versions in an embedded store or an MLflow server, drift
//! reports, gated promotion and verified pulls.
//!
//! Empty on purpose: issue #7 builds it. Nothing here pretends to work yet.

#![warn(missing_docs)]
