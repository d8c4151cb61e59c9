//! The per-task sections of `report.html`: technique classification (F1 per technique,
//! the most confused pairs), indicator and entity extraction (scores per type) and
//! summarization (the ROUGE-L distribution).
use ctiforge_data_prep::Task;
use serde_json::Value;

use super::charts::{bar_chart, heatmap, histogram};
use super::{escape, fmt_f, num, text};
use crate::report::EvalReport;
use crate::score::Outcome;

/// Technique labels in the F1 chart: the most frequent ones in the reference.
const TOP_LABELS: usize = 25;
/// Rows of the confusion table, and rows or columns of the confusion heatmap.
const TOP_CONFUSIONS: usize = 15;
const HEATMAP_SIDE: usize = 10;
/// Bins of the ROUGE-L histogram over [0, 1].
const ROUGE_BINS: usize = 10;

pub(super) fn technique_section(r: &EvalReport) -> String {
    let labels = &r.per_label.technique;
    let metrics = r.metrics.get("technique");
    if labels.is_empty() && metrics.is_none() {
        return String::new();
    }
    let mut s = "<section id=\"technique\">\n<h2>Technique classification</h2>\n".to_owned();
    if let Some(m) = metrics {
        s.push_str(&format!(
            "<p>Micro F1 <b>{}</b>, macro F1 {}, exact match {} over {} examples and {} \
             labels. IDs in the outputs: {} found, {} revoked, {} deprecated, {} unknown.</p>\n",
            fmt_f(num(m, "micro_f1")),
            fmt_f(num(m, "macro_f1")),
            fmt_f(num(m, "exact_match")),
            text(m, "examples"),
            text(m, "labels"),
            text(&m["ids"], "found"),
            text(&m["ids"], "revoked"),
            text(&m["ids"], "deprecated"),
            text(&m["ids"], "unknown"),
        ));
    }
    if !labels.is_empty() {
        let rows = by_support(labels, TOP_LABELS);
        let bars: Vec<(String, f64, String)> = rows
            .iter()
            .map(|l| {
                let note = format!(
                    "n={}, predicted {}",
                    text(l, "support"),
                    text(l, "predicted")
                );
                (text(l, "label"), num(l, "f1"), note)
            })
            .collect();
        s.push_str(&format!(
            "<h3>F1 per technique</h3>\n<p class=\"note\">The {} most frequent of {} labels \
             in the reference; n is the support. Bars run from red (0) to green (1).</p>\n",
            rows.len(),
            labels.len()
        ));
        s.push_str(&bar_chart(&bars, 1.0, "F1 per technique"));
    }
    s.push_str(&confusions_block(&r.per_label.confusions));
    s.push_str("</section>\n");
    s
}

fn confusions_block(list: &[Value]) -> String {
    let mut s = "<h3>Most confused techniques</h3>\n".to_owned();
    if list.is_empty() {
        s.push_str("<p>No confusions: no example missed one ID while predicting another.</p>\n");
        return s;
    }
    let pairs: Vec<(String, String, f64)> = list
        .iter()
        .map(|c| (text(c, "reference"), text(c, "predicted"), num(c, "count")))
        .collect();
    s.push_str(
        "<p class=\"note\">Each missed reference ID paired with each ID wrongly predicted for \
         the same example (<code>none</code>: nothing on that side).</p>\n<div class=\"tables\">\n\
         <table><tr><th>Reference (missed)</th><th>Predicted instead</th>\
         <th class=\"num\">Examples</th></tr>\n",
    );
    for (reference, predicted, n) in pairs.iter().take(TOP_CONFUSIONS) {
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{n}</td></tr>\n",
            escape(reference),
            escape(predicted)
        ));
    }
    s.push_str("</table>\n");
    s.push_str(&heatmap(&pairs, HEATMAP_SIDE));
    s.push_str("</div>\n");
    s
}

pub(super) fn extraction_section(r: &EvalReport, key: &str, title: &str, rows: &[Value]) -> String {
    let metrics = r.metrics.get(key);
    if rows.is_empty() && metrics.is_none() {
        return String::new();
    }
    let mut s = format!("<section id=\"{key}\">\n<h2>{title}</h2>\n");
    if let Some(m) = metrics {
        s.push_str(&format!(
            "<p>Strict F1 <b>{}</b> (precision {}, recall {}), lenient F1 {} over {} \
             examples; {} output lines were not <code>type: value</code>.</p>\n",
            fmt_f(num(m, "strict_f1")),
            fmt_f(num(m, "strict_precision")),
            fmt_f(num(m, "strict_recall")),
            fmt_f(num(m, "lenient_f1")),
            text(m, "examples"),
            text(m, "unparsed_lines"),
        ));
    }
    if rows.is_empty() {
        s.push_str("</section>\n");
        return s;
    }
    let rows = by_support(rows, TOP_LABELS);
    s.push_str(
        "<div class=\"tables\">\n<table><tr><th>Type</th><th class=\"num\">Precision</th>\
         <th class=\"num\">Recall</th><th class=\"num\">F1</th><th class=\"num\">Lenient F1</th>\
         <th class=\"num\">Support</th><th class=\"num\">Predicted</th></tr>\n",
    );
    for t in &rows {
        s.push_str(&format!("<tr><td>{}</td>", escape(&text(t, "label"))));
        for k in ["precision", "recall", "f1", "lenient_f1"] {
            s.push_str(&format!("<td class=\"num\">{}</td>", fmt_f(num(t, k))));
        }
        s.push_str(&format!(
            "<td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
            text(t, "support"),
            text(t, "predicted")
        ));
    }
    s.push_str("</table>\n");
    let bars: Vec<(String, f64, String)> = rows
        .iter()
        .map(|t| {
            (
                text(t, "label"),
                num(t, "f1"),
                format!("n={}", text(t, "support")),
            )
        })
        .collect();
    s.push_str(&bar_chart(
        &bars,
        1.0,
        &format!("{title}: strict F1 per type"),
    ));
    s.push_str("</div>\n</section>\n");
    s
}

pub(super) fn summarization_section(r: &EvalReport, outcomes: &[Outcome]) -> String {
    let metrics = r.metrics.get("summarization");
    let scores: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.task == Task::Summarization)
        .filter_map(|o| o.scores.get("rougeL").copied())
        .collect();
    if metrics.is_none() && scores.is_empty() {
        return String::new();
    }
    let mut s = "<section id=\"summarization\">\n<h2>Summarization</h2>\n".to_owned();
    if let Some(m) = metrics {
        s.push_str(&format!(
            "<p>ROUGE-1 {}, ROUGE-2 {}, ROUGE-L <b>{}</b>, ROUGE-Lsum {} (CTI tokenizer: \
             ROUGE-L {}); BLEU {} <code>{}</code> over {} summaries.</p>\n",
            fmt_f(num(m, "rouge1")),
            fmt_f(num(m, "rouge2")),
            fmt_f(num(m, "rougeL")),
            fmt_f(num(m, "rougeLsum")),
            fmt_f(num(&m["cti"], "rougeL")),
            fmt_f(num(m, "bleu")),
            escape(&text(m, "bleu_signature")),
            text(m, "examples"),
        ));
    }
    if !scores.is_empty() {
        s.push_str("<h3>ROUGE-L per summary</h3>\n");
        s.push_str(&histogram(&scores, ROUGE_BINS, "ROUGE-L F1", "summaries"));
    }
    s.push_str("</section>\n");
    s
}

/// The best items of a per-label list: by support, then label.
fn by_support(rows: &[Value], limit: usize) -> Vec<&Value> {
    let mut rows: Vec<&Value> = rows.iter().collect();
    rows.sort_by(|a, b| {
        let support = |v: &Value| v.get("support").and_then(Value::as_f64).unwrap_or(0.0);
        support(b)
            .total_cmp(&support(a))
            .then_with(|| text(a, "label").cmp(&text(b, "label")))
    });
    rows.truncate(limit);
    rows
}
