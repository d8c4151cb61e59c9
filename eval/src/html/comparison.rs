//! The base-vs-tuned section of `report.html`: one sentence per headline metric saying
//! whether the candidate's interval clears zero, the `--require` verdicts, the main
//! metrics side by side and every delta with its interval and p-value.
use super::charts::paired_bar_chart;
use super::{HEADLINE, escape, fmt_f, signed};
use crate::compare::{Comparison, MetricDelta};

/// Metrics on a 0–1 scale drawn side by side in the comparison chart.
const PAIRED: [&str; 13] = [
    "technique.micro_f1",
    "technique.macro_f1",
    "technique.samples_f1",
    "technique.exact_match",
    "technique.parent.micro_f1",
    "ioc.strict_f1",
    "ioc.lenient_f1",
    "entity.strict_f1",
    "entity.lenient_f1",
    "summarization.rouge1",
    "summarization.rouge2",
    "summarization.rougeL",
    "summarization.rougeLsum",
];

/// Whether a delta's interval clears zero, and on which side.
#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Better,
    Worse,
    Unclear,
}

impl Direction {
    fn of(d: &MetricDelta) -> Direction {
        let (up, down) = (d.low > 0.0, d.high < 0.0);
        match (up, down, d.higher_is_better) {
            (true, _, true) | (_, true, false) => Direction::Better,
            (_, true, true) | (true, _, false) => Direction::Worse,
            _ => Direction::Unclear,
        }
    }

    fn class(self) -> &'static str {
        match self {
            Direction::Better => "good",
            Direction::Worse => "bad",
            Direction::Unclear => "",
        }
    }
}

pub(super) fn comparison_section(c: &Comparison) -> String {
    let mut s = format!(
        "<section id=\"comparison\">\n<h2>Base vs tuned</h2>\n<p>Candidate <code>{}</code> \
         against baseline <code>{}</code> on {} paired examples: {:.0}% paired-bootstrap \
         intervals of the delta from {} resamples; p is one-sided (the candidate is not \
         better).</p>\n",
        escape(&c.candidate),
        escape(&c.baseline),
        c.paired_examples,
        c.confidence * 100.0,
        c.resamples
    );
    let mut headline: Vec<&MetricDelta> = HEADLINE
        .iter()
        .filter_map(|k| c.deltas.iter().find(|d| d.metric == *k))
        .collect();
    if headline.is_empty() {
        headline.extend(c.deltas.first());
    }
    s.push_str("<ul class=\"verdicts\">\n");
    for d in headline {
        s.push_str(&format!(
            "<li class=\"{}\">{}</li>\n",
            Direction::of(d).class(),
            delta_sentence(d, c.confidence)
        ));
    }
    s.push_str("</ul>\n");
    s.push_str(&requirements_block(c));
    let paired: Vec<(String, f64, f64)> = PAIRED
        .iter()
        .filter_map(|k| c.deltas.iter().find(|d| d.metric == *k))
        .filter(|d| (0.0..=1.0).contains(&d.baseline) && (0.0..=1.0).contains(&d.candidate))
        .map(|d| (d.metric.clone(), d.baseline, d.candidate))
        .collect();
    if !paired.is_empty() {
        s.push_str("<h3>Main metrics</h3>\n");
        s.push_str(&paired_bar_chart(&paired, ("baseline", "candidate")));
    }
    s.push_str(&deltas_table(c));
    s.push_str("</section>\n");
    s
}

/// "The candidate scores higher on technique.micro_f1 (+0.120, 95% CI [+0.080, +0.160])."
fn delta_sentence(d: &MetricDelta, confidence: f64) -> String {
    let (good, bad) = if d.higher_is_better {
        ("higher", "lower")
    } else {
        ("lower", "higher")
    };
    let ci = format!(
        "{}, {:.0}% CI [{}, {}]",
        signed(d.delta),
        confidence * 100.0,
        signed(d.low),
        signed(d.high)
    );
    let m = escape(&d.metric);
    match Direction::of(d) {
        Direction::Better => format!("The candidate scores {good} on {m} ({ci}): better."),
        Direction::Worse => format!("The candidate scores {bad} on {m} ({ci}): worse."),
        Direction::Unclear => {
            format!("The candidate does not score {good} on {m} ({ci}): the interval includes 0.")
        }
    }
}

fn requirements_block(c: &Comparison) -> String {
    let mut s = "<h3>Requirements</h3>\n".to_owned();
    if c.requirements.is_empty() {
        s.push_str("<p class=\"note\">None were given (<code>--require</code>).</p>\n");
        return s;
    }
    let failed = c.requirements.iter().filter(|v| !v.passed).count();
    let (class, line) = match failed {
        0 => (
            "good",
            format!("All {} requirements hold.", c.requirements.len()),
        ),
        n => (
            "bad",
            format!("{n} of {} requirements fail.", c.requirements.len()),
        ),
    };
    s.push_str(&format!("<p class=\"verdict {class}\">{line}</p>\n"));
    s.push_str(
        "<table><tr><th>Requirement</th><th class=\"num\">Baseline</th>\
         <th class=\"num\">Candidate</th><th class=\"num\">Compared</th><th>Verdict</th></tr>\n",
    );
    for v in &c.requirements {
        let (class, word) = if v.passed {
            ("good", "PASS")
        } else {
            ("bad", "FAIL")
        };
        s.push_str(&format!(
            "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"{class}\">{word}</td></tr>\n",
            escape(&v.requirement),
            v.baseline.map_or("n/a".into(), fmt_f),
            fmt_f(v.candidate),
            fmt_f(v.compared)
        ));
    }
    s.push_str("</table>\n");
    s
}

fn deltas_table(c: &Comparison) -> String {
    let mut s = format!(
        "<h3>All metrics</h3>\n<table><tr><th>Metric</th><th>Better</th>\
         <th class=\"num\">Baseline</th><th class=\"num\">Candidate</th>\
         <th class=\"num\">Delta</th><th class=\"num\">{:.0}% CI</th>\
         <th class=\"num\">p</th></tr>\n",
        c.confidence * 100.0
    );
    for d in &c.deltas {
        let class = Direction::of(d).class();
        s.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num {class}\">{}</td>\
             <td class=\"num {class}\">[{}, {}]</td><td class=\"num\">{:.4}</td></tr>\n",
            escape(&d.metric),
            if d.higher_is_better {
                "higher"
            } else {
                "lower"
            },
            fmt_f(d.baseline),
            fmt_f(d.candidate),
            signed(d.delta),
            signed(d.low),
            signed(d.high),
            d.p_value
        ));
    }
    s.push_str("</table>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_follow_the_interval_and_the_metric_direction() {
        let d = |delta: f64, low: f64, high: f64, higher_is_better: bool| MetricDelta {
            metric: "m".into(),
            baseline: 0.5,
            candidate: 0.5 + delta,
            delta,
            low,
            high,
            p_value: 0.5,
            higher_is_better,
        };
        let up = delta_sentence(&d(0.12, 0.08, 0.16, true), 0.95);
        assert_eq!(
            up,
            "The candidate scores higher on m (+0.120, 95% CI [+0.080, +0.160]): better."
        );
        let flat = delta_sentence(&d(0.01, -0.02, 0.04, true), 0.95);
        assert!(
            flat.starts_with("The candidate does not score higher on m"),
            "{flat}"
        );
        let ppl = delta_sentence(&d(-1.0, -1.5, -0.5, false), 0.9);
        assert!(
            ppl.starts_with("The candidate scores lower on m (-1.000, 90% CI"),
            "{ppl}"
        );
        let worse = delta_sentence(&d(-0.2, -0.3, -0.1, true), 0.95);
        assert!(worse.ends_with("worse."), "{worse}");
    }
}
