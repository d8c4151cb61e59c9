//! `report.html`: the eval report as one self-contained page that reads on its own, offline
//! and archived beside `eval.json`. Styles are inline and charts are SVG drawn here; the
//! page has no scripts, fonts or links to fetch, and a Content-Security-Policy that would
//! refuse them. It carries no timestamp, so the same report always renders to the same
//! bytes. Everything taken from data (paths, labels, inputs, outputs) goes through
//! [`escape`].

use serde_json::Value;

use crate::report::EvalReport;
use crate::score::Outcome;

mod charts;
mod comparison;
mod samples;
mod tasks;

/// Tasks in page order; keys not listed here follow in the report's order.
const TASK_ORDER: [&str; 5] = ["technique", "ioc", "entity", "summarization", "lm"];
/// Headline metrics: the summary cards and the comparison's sentences.
const HEADLINE: [&str; 7] = [
    "technique.micro_f1",
    "technique.macro_f1",
    "ioc.strict_f1",
    "entity.strict_f1",
    "summarization.rougeL",
    "summarization.bleu",
    "lm.perplexity",
];

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";
const CSS: &str = "
body{margin:0;background:#f6f8fa;color:#1f2328;\
font:14px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}
main{max-width:1180px;margin:0 auto;padding:20px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:14px 20px;margin:14px 0}
h1{font-size:24px;margin:0 0 2px}
h2{font-size:18px;margin:0 0 10px;padding-bottom:6px;border-bottom:1px solid #d8dee4}
h3{font-size:15px;margin:16px 0 6px}
p{margin:6px 0}
.sub,.note{color:#59636e}
.note{font-size:12px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 18px;margin:10px 0 0}
dl.facts dt{color:#59636e}
dl.facts dd{margin:0}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
table{border-collapse:collapse;font-size:13px;margin:4px 0 12px}
caption{text-align:left;font-weight:600;padding:2px 0 4px}
th,td{border-bottom:1px solid #d8dee4;padding:3px 10px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.tables{display:flex;flex-wrap:wrap;gap:0 28px;align-items:flex-start}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:4px 0 12px}
.card{border:1px solid #d0d7de;border-radius:6px;padding:6px 14px;min-width:130px}
.card .v{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.card .k{color:#59636e;font-size:12px}
.good{color:#116329;background:#dafbe1}
.bad{color:#a40e26;background:#ffebe9}
ul.verdicts{list-style:none;padding:0;margin:6px 0 10px}
ul.verdicts li,.verdict{padding:5px 10px;border-radius:6px;margin:4px 0}
.verdict{font-weight:600}
table.samples td{max-width:330px;white-space:pre-wrap;overflow-wrap:anywhere}
svg{display:block;max-width:100%;height:auto;margin:6px 0 14px}
svg text{font:11px system-ui,sans-serif;fill:#1f2328}
svg .grid{stroke:#d8dee4}
svg .muted{fill:#59636e}
svg .base{fill:#8c959f}
svg .cand{fill:#0969da}
";

/// Renders the page for `report` and its `outcomes` (the lines of `predictions.jsonl`).
pub fn render(report: &EvalReport, outcomes: &[Outcome]) -> String {
    let body = [
        header(report),
        metrics_section(report),
        tasks::technique_section(report),
        tasks::extraction_section(report, "ioc", "Indicator extraction", &report.per_label.ioc),
        tasks::extraction_section(
            report,
            "entity",
            "Entity extraction",
            &report.per_label.entity,
        ),
        tasks::summarization_section(report, outcomes),
        report
            .comparison
            .as_ref()
            .map(comparison::comparison_section)
            .unwrap_or_default(),
        samples::predictions_section(outcomes),
    ]
    .concat();
    let title = format!("ctiforge eval: {}", subject(report));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}</main>\n\
         </body>\n</html>\n",
        escape(&title)
    )
}

/// Escapes text for HTML element content and quoted attribute values (`&`, `<`, `>`, `"`
/// and `'`), inside SVG too.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

// ---- header and metrics -------------------------------------------------------------

/// "model (+ adapter) on dataset/split".
fn subject(r: &EvalReport) -> String {
    let model = match &r.model.adapter {
        Some(a) => format!("{} + {}", r.model.model, last_component(a)),
        None => r.model.model.clone(),
    };
    let data = r.data.name.clone().unwrap_or_else(|| r.data.source.clone());
    match &r.data.split {
        Some(split) => format!("{model} on {data}/{split}"),
        None => format!("{model} on {data}"),
    }
}

fn header(r: &EvalReport) -> String {
    let (m, d, c) = (&r.model, &r.data, &r.counts);
    let mut facts = vec![("Model", code(&m.model))];
    if m.dir != m.model && !m.dir.is_empty() {
        facts.push(("Model folder", code(&m.dir)));
    }
    let adapter = m
        .adapter
        .as_deref()
        .map_or("none (base model)".into(), code);
    facts.push(("Adapter", adapter));
    if m.parameters > 0 {
        facts.push(("Parameters", human_count(m.parameters)));
    }
    if m.context > 0 {
        facts.push(("Context", format!("{} tokens", m.context)));
    }
    facts.push(("Dataset", escape(d.name.as_deref().unwrap_or("(no name)"))));
    facts.push(("Source", code(&d.source)));
    if let Some(split) = &d.split {
        facts.push(("Split", escape(split)));
    }
    if let Some(f) = &d.fingerprint {
        facts.push(("Fingerprint", code(f)));
    }
    let mut examples = format!("{} scored of {} available", c.examples, d.available);
    if let Some(limit) = r.settings.limit {
        examples.push_str(&format!(" (<code>--limit {limit}</code>)"));
    }
    facts.push(("Examples", examples));
    if !c.by_task.is_empty() {
        facts.push(("By task", counts_list(&c.by_task)));
    }
    if c.truncated_prompts > 0 {
        facts.push(("Prompts cut to fit", c.truncated_prompts.to_string()));
    }
    if !c.finish.is_empty() {
        facts.push(("Generation stopped by", counts_list(&c.finish)));
    }
    let s = &r.settings;
    let scorer = format!(
        "{}, batch size {}",
        escape(&s.scorer),
        s.generation.batch_size
    );
    facts.push(("Scorer", scorer));
    facts.push(("Device", escape(&s.device)));
    facts.push(("Duration", duration(r)));
    facts.push(("Written by", escape(&r.created_by)));
    let dl: String = facts
        .iter()
        .map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>\n"))
        .collect();
    format!(
        "<section id=\"header\">\n<h1>Evaluation report</h1>\n<p class=\"sub\">{}</p>\n\
         <dl class=\"facts\">\n{dl}</dl>\n</section>\n",
        escape(&subject(r))
    )
}

fn duration(r: &EvalReport) -> String {
    let mut s = secs(r.duration_secs);
    let t = &r.throughput;
    if t.secs > 0.0 {
        s.push_str(&format!(
            "; generation: {} examples, {} tokens in {} ({:.1} tokens/s)",
            t.examples,
            t.generated_tokens,
            secs(t.secs),
            t.generated_tokens as f64 / t.secs
        ));
    }
    s
}

fn counts_list(counts: &std::collections::BTreeMap<String, usize>) -> String {
    let items: Vec<String> = counts
        .iter()
        .map(|(k, n)| format!("{} {n}", escape(k)))
        .collect();
    items.join(", ")
}

fn metrics_section(r: &EvalReport) -> String {
    let tasks = ordered_tasks(&r.metrics);
    if tasks.is_empty() {
        return "<section id=\"metrics\"><h2>Metrics</h2><p>Nothing was scored.</p></section>\n"
            .into();
    }
    let flat = r.flat_metrics();
    let cards: String = HEADLINE
        .iter()
        .filter_map(|k| flat.get(*k).map(|x| (k, x)))
        .map(|(k, x)| {
            let hint = if k.ends_with("perplexity") {
                " (lower is better)"
            } else {
                ""
            };
            format!(
                "<div class=\"card\"><div class=\"v\">{}</div>\
                 <div class=\"k\">{}{hint}</div></div>\n",
                fmt_f(*x),
                escape(k)
            )
        })
        .collect();
    let mut tables = String::new();
    for (task, value) in tasks {
        let mut rows = Vec::new();
        leaves("", value, &mut rows);
        let body: String = rows
            .iter()
            .map(|(k, v)| {
                format!(
                    "<tr><td>{}</td><td class=\"num\">{v}</td></tr>\n",
                    escape(k)
                )
            })
            .collect();
        tables.push_str(&format!(
            "<table class=\"metrics\"><caption>{}</caption>\n{body}</table>\n",
            escape(task)
        ));
    }
    format!(
        "<section id=\"metrics\">\n<h2>Metrics</h2>\n<div class=\"cards\">\n{cards}</div>\n\
         <div class=\"tables\">\n{tables}</div>\n</section>\n"
    )
}

/// The report's task objects, known tasks first.
fn ordered_tasks(metrics: &Value) -> Vec<(&str, &Value)> {
    let Some(map) = metrics.as_object() else {
        return Vec::new();
    };
    let mut out: Vec<(&str, &Value)> = TASK_ORDER
        .iter()
        .filter_map(|k| map.get(*k).map(|v| (*k, v)))
        .collect();
    out.extend(
        map.iter()
            .filter(|(k, _)| !TASK_ORDER.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v)),
    );
    out
}

/// Every leaf of a task's metrics as `(dotted.key, escaped display value)`.
fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    let shown = match v {
        Value::Object(map) => {
            for (k, child) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&key, child, out);
            }
            return;
        }
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => fmt_f(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => format!("<code>{}</code>", escape(s)),
        Value::Null => "n/a".into(),
        other => escape(&other.to_string()),
    };
    out.push((prefix.to_owned(), shown));
}

// ---- small formatting helpers -------------------------------------------------------

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// A field as text: strings as they are, numbers as written, `n/a` when missing.
fn text(v: &Value, key: &str) -> String {
    v.get(key).map_or("n/a".into(), value_text)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn code(s: &str) -> String {
    format!("<code>{}</code>", escape(s))
}

fn fmt_f(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x.abs() >= 1000.0 {
        let decimals = if x.fract() == 0.0 { 0 } else { 1 };
        format!("{x:.decimals$}")
    } else {
        format!("{x:.4}")
    }
}

fn fmt_short(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "n/a".into()
    }
}

/// `+0.120` / `-0.050` (no `-0.000`).
fn signed(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let x = if x.abs() < 5e-4 { 0.0 } else { x };
    format!("{x:+.3}")
}

fn secs(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        let t = s.round() as u64;
        format!("{} min {:02} s", t / 60, t % 60)
    } else {
        let t = (s / 60.0).round() as u64;
        format!("{} h {:02} min", t / 60, t % 60)
    }
}

fn human_count(n: usize) -> String {
    let x = n as f64;
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1} K", x / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} M", x / 1e6),
        _ => format!("{:.2} B", x / 1e9),
    }
}

/// At most `max` characters, with `…` when cut.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn last_component(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|p| !p.is_empty())
        .unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ctiforge_data_prep::Task;

    use super::*;
    use crate::bootstrap::BootstrapConfig;
    use crate::compare::{Comparison, compare};
    use crate::example::{EvalExample, Reference};
    use crate::harness::{GenSettings, Throughput};
    use crate::report::{Counts, DataInfo, FORMAT, ModelInfo, Settings};
    use crate::score::{RawOutput, ScoreContext, aggregate, score_one};
    use crate::threshold::Requirement;

    fn outcome(i: usize, task: Task, reference: Reference, answer: &str) -> Outcome {
        let ex = EvalExample {
            id: format!("e{i:02}"),
            task,
            text: format!("report {i}: the actor ran a <b>loader</b> over HTTP"),
            prompt: "p".into(),
            completion: "c".into(),
            reference,
        };
        let lm = Some((if answer.contains("T1105") { 2.0 } else { 6.0 }, 4));
        let out = RawOutput {
            text: answer.into(),
            lm,
            ..RawOutput::default()
        };
        score_one(&ex, &out, &ScoreContext::default())
    }

    /// Technique, indicator and summary rows; `tuned` answers most technique rows right.
    pub(super) fn outcomes(tuned: bool) -> Vec<Outcome> {
        let mut out = Vec::new();
        for i in 0..16 {
            let gold = if i % 4 == 0 { "T1059.001" } else { "T1105" };
            let answer = if (tuned && i != 3) || i % 5 == 0 {
                gold
            } else {
                "T1566 <script>x()</script>"
            };
            let reference = Reference::Techniques(vec![gold.into()]);
            out.push(outcome(i, Task::TechniqueClassification, reference, answer));
        }
        let gold = vec![("ipv4".to_owned(), "10.0.0.1".to_owned())];
        let answer = "ipv4: 10.0.0.1\n<script>: alert(1)";
        out.push(outcome(
            20,
            Task::IocExtraction,
            Reference::Iocs(gold),
            answer,
        ));
        for (i, summary) in ["the loader beacons over http", "it steals keys"]
            .iter()
            .enumerate()
        {
            let reference = Reference::Summary("the loader beacons to its server over http".into());
            out.push(outcome(30 + i, Task::Summarization, reference, summary));
        }
        out
    }

    fn report(outcomes: &[Outcome], comparison: Option<Comparison>) -> EvalReport {
        let refs: Vec<&Outcome> = outcomes.iter().collect();
        let (metrics, per_label) = aggregate(&refs, 20).expect("aggregate");
        EvalReport {
            format: FORMAT.into(),
            created_by: "ctiforge-eval 0.1.0".into(),
            model: ModelInfo {
                model: "models/tiny".into(),
                dir: "/abs/models/tiny".into(),
                adapter: Some("runs/tram-lora".into()),
                run: None,
                parameters: 260_000,
                context: 512,
            },
            data: DataInfo {
                source: "data/tram".into(),
                split: Some("test".into()),
                name: Some("tram".into()),
                fingerprint: Some("sha256:0123abcd".into()),
                available: 40,
            },
            settings: Settings {
                scorer: "generate".into(),
                generation: GenSettings::default(),
                limit: Some(19),
                device: "cpu".into(),
            },
            counts: Counts {
                examples: outcomes.len(),
                by_task: BTreeMap::from([("technique_classification".into(), 16)]),
                truncated_prompts: 1,
                finish: BTreeMap::from([("stop_token".into(), 19)]),
            },
            metrics,
            per_label,
            comparison,
            throughput: Throughput {
                examples: outcomes.len(),
                generated_tokens: 900,
                secs: 3.0,
            },
            duration_secs: 75.2,
        }
    }

    fn comparison() -> Comparison {
        let cfg = BootstrapConfig {
            resamples: 200,
            ..BootstrapConfig::default()
        };
        let mut c =
            compare(&outcomes(false), &outcomes(true), ("base", "tuned"), &cfg).expect("compare");
        let reqs: Vec<Requirement> = ["technique.micro_f1 >= +0.05", "lm.perplexity <= 1.0"]
            .iter()
            .map(|r| r.parse().expect("requirement"))
            .collect();
        c.check(&reqs).expect("check");
        c
    }

    #[test]
    fn a_full_report_has_every_section_and_renders_the_same_twice() {
        let out = outcomes(true);
        let r = report(&out, Some(comparison()));
        let page = render(&r, &out);
        for needle in [
            "<h1>Evaluation report</h1>",
            "models/tiny + tram-lora on tram/test",
            "<code>sha256:0123abcd</code>",
            "19 scored of 40 available",
            "1 min 15 s",
            "<h2>Metrics</h2>",
            "<caption>technique</caption>",
            "<caption>lm</caption>",
            "<h2>Technique classification</h2>",
            "F1 per technique",
            "Most confused techniques",
            "<h2>Indicator extraction</h2>",
            "<h2>Summarization</h2>",
            "ROUGE-L per summary",
            "<h2>Base vs tuned</h2>",
            "The candidate scores higher on technique.micro_f1 (+",
            "The candidate scores lower on lm.perplexity",
            "1 of 2 requirements fail.",
            "<td class=\"bad\">FAIL</td>",
            "<h2>Wrong predictions</h2>",
        ] {
            assert!(page.contains(needle), "missing {needle:?}");
        }
        assert!(page.matches("<svg").count() >= 5, "charts");
        assert_eq!(page, render(&r, &out), "deterministic");
        for external in ["<script", "<link", "src=", "href=", "url("] {
            assert!(!page.contains(external), "{external:?}: not self-contained");
        }
        assert!(page.contains("&lt;script&gt;: alert(1)"), "escaped output");
        assert!(page.contains("&lt;b&gt;loader&lt;/b&gt;"), "escaped input");
    }

    #[test]
    fn a_label_with_markup_is_escaped_in_tables_and_charts() {
        let out = outcomes(false);
        let mut r = report(&out, None);
        r.per_label.ioc.push(serde_json::json!({
            "label": "<script>alert('x')</script>", "precision": 0.5, "recall": 0.5,
            "f1": 0.5, "lenient_f1": 0.5, "support": 9, "predicted": 9,
        }));
        let page = render(&r, &out);
        assert!(!page.contains("<script"));
        assert!(page.contains("<td>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</td>"));
        assert!(
            page.contains("<title>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;: 0.5000</title>")
        );
        assert!(!page.contains("Base vs tuned"));
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("T1059.001 ✓"), "T1059.001 ✓");
    }

    #[test]
    fn an_empty_report_says_nothing_was_scored() {
        let mut r = report(&outcomes(true), None);
        r.metrics = serde_json::json!({});
        r.per_label = Default::default();
        let page = render(&r, &[]);
        assert!(page.contains("Nothing was scored."));
        assert!(!page.contains("<svg"));
    }
}
