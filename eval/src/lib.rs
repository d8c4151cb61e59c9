//! ctiforge's evaluation stage: CTI metrics (technique F1, IOC entity F1, ROUGE, BLEU,
//! perplexity), the generation harness and the eval report.
//!
//! Empty on purpose: issue #5 builds it. Nothing here pretends to work yet.

#![warn(missing_docs)]
