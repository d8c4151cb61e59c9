//! `drift.html`: a self-contained page (inline CSS and SVG, no scripts, nothing fetched)
//! with the verdict, the statistics table coloured by verdict, bar charts of the label,
//! IOC-kind and predicted-label mixes (reference vs current) and histograms of text
//! length and token count.

use super::kinds::Direction;
use super::report::{DriftReport, Histogram, Share};

/// How many categories a bar chart shows (the most common on either side).
const MAX_BARS: usize = 30;
const REFERENCE_COLOUR: &str = "#4e79a7";
const CURRENT_COLOUR: &str = "#f28e2b";

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}.pass{background:#d4edda}\
.warn{background:#fff3cd}.fail{background:#f8d7da}.legend span{display:inline-block;\
width:12px;height:12px;margin:0 4px 0 12px}svg text{font-size:11px}";

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page.
pub fn render(report: &DriftReport) -> String {
    let mut html = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n");
    html.push_str("<meta charset=\"utf-8\">\n<title>ctiforge drift report</title>\n");
    html.push_str(&format!("<style>{STYLE}</style>\n</head>\n<body>\n"));
    html.push_str(&format!(
        "<h1>ctiforge drift report: <span class=\"{v}\">{v}</span></h1>\n",
        v = report.verdict
    ));
    html.push_str(&sizes(report));
    html.push_str(&statistics(report));
    html.push_str(&legend());
    html.push_str(&bars("Label mix", &report.labels));
    html.push_str(&bars("IOC-kind mix", &report.ioc_kinds));
    if let Some(p) = &report.predicted_labels {
        html.push_str(&bars("Predicted label mix", p));
    }
    html.push_str(&histogram("Text length (characters)", &report.text_chars));
    if let Some(h) = &report.token_counts {
        html.push_str(&histogram("Token count", h));
    }
    html.push_str("</body>\n</html>\n");
    html
}

fn sizes(report: &DriftReport) -> String {
    let (r, c) = (&report.reference, &report.current);
    let row = |name: &str, a: String, b: String| {
        format!("<tr><td>{name}</td><td>{a}</td><td>{b}</td></tr>\n")
    };
    let mut s = String::from("<h2>Samples</h2>\n<table>\n");
    s.push_str("<tr><th></th><th>reference</th><th>current</th></tr>\n");
    s.push_str(&row(
        "examples",
        r.examples.to_string(),
        c.examples.to_string(),
    ));
    s.push_str(&row(
        "label occurrences",
        r.label_occurrences.to_string(),
        c.label_occurrences.to_string(),
    ));
    s.push_str(&row("words", r.words.to_string(), c.words.to_string()));
    s.push_str(&row(
        "vocabulary",
        r.vocabulary.to_string(),
        c.vocabulary.to_string(),
    ));
    s.push_str(&row("IOCs", r.iocs.to_string(), c.iocs.to_string()));
    s.push_str("</table>\n");
    s
}

fn statistics(report: &DriftReport) -> String {
    let mut s = String::from("<h2>Statistics</h2>\n<table>\n<tr><th>statistic</th>");
    s.push_str(
        "<th>value</th><th>warn at</th><th>fail at</th><th>details</th><th>verdict</th></tr>\n",
    );
    for st in &report.statistics {
        let cmp = match st.direction {
            Direction::HigherIsWorse => "&ge;",
            Direction::LowerIsWorse => "&le;",
        };
        let details: Vec<String> = st
            .details
            .iter()
            .map(|(k, v)| format!("{}={}", escape(k), number(*v)))
            .collect();
        s.push_str(&format!(
            "<tr class=\"{v}\"><td>{id}</td><td>{value}</td><td>{cmp} {w}</td><td>{cmp} {f}</td>\
             <td>{d}</td><td>{v}</td></tr>\n",
            v = st.verdict,
            id = escape(&st.id),
            value = number(st.value),
            w = number(st.threshold.warn),
            f = number(st.threshold.fail),
            d = details.join(" "),
        ));
    }
    s.push_str("</table>\n");
    if !report.skipped.is_empty() {
        s.push_str("<p>Not computed:</p>\n<ul>\n");
        for why in &report.skipped {
            s.push_str(&format!("<li>{}</li>\n", escape(why)));
        }
        s.push_str("</ul>\n");
    }
    s
}

fn number(v: f64) -> String {
    if v == 0.0 || (1e-3..1e6).contains(&v.abs()) {
        format!("{}", (v * 1e4).round() / 1e4)
    } else {
        format!("{v:.3e}")
    }
}

fn legend() -> String {
    format!(
        "<p class=\"legend\"><span style=\"background:{REFERENCE_COLOUR}\"></span>reference\
         <span style=\"background:{CURRENT_COLOUR}\"></span>current</p>\n"
    )
}

/// Horizontal grouped bars, one pair per category, scaled to the largest share.
fn bars(title: &str, shares: &[Share]) -> String {
    let mut s = format!("<h2>{}</h2>\n", escape(title));
    if shares.is_empty() {
        s.push_str("<p>No data.</p>\n");
        return s;
    }
    let shown = &shares[..shares.len().min(MAX_BARS)];
    let (label_w, bar_w, row_h) = (180.0, 420.0, 22.0);
    let top = shown
        .iter()
        .map(|x| x.reference.max(x.current))
        .fold(0.0f64, f64::max)
        .max(1e-12);
    let height = row_h * shown.len() as f64 + 10.0;
    s.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" \
         role=\"img\">\n",
        w = label_w + bar_w + 60.0
    ));
    for (i, x) in shown.iter().enumerate() {
        let y = row_h * i as f64 + 5.0;
        let name = escape(&x.category);
        s.push_str(&format!(
            "<text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{name}</text>\n",
            tx = label_w - 6.0,
            ty = y + 14.0
        ));
        for (j, (v, colour)) in [(x.reference, REFERENCE_COLOUR), (x.current, CURRENT_COLOUR)]
            .into_iter()
            .enumerate()
        {
            s.push_str(&format!(
                "<rect x=\"{label_w}\" y=\"{ry}\" width=\"{rw:.2}\" height=\"9\" fill=\"{colour}\">\
                 <title>{name}: {pct:.2}%</title></rect>\n",
                ry = y + 1.0 + 9.0 * j as f64,
                rw = bar_w * v / top,
                pct = v * 100.0
            ));
        }
    }
    s.push_str("</svg>\n");
    if shares.len() > shown.len() {
        s.push_str(&format!(
            "<p>{} more categories in drift.json.</p>\n",
            shares.len() - shown.len()
        ));
    }
    s
}

/// Vertical bars per bin, reference and current side by side.
fn histogram(title: &str, h: &Histogram) -> String {
    let mut s = format!("<h2>{}</h2>\n", escape(title));
    let bins = h.reference.len();
    let (left, plot_w, plot_h) = (40.0, 600.0, 200.0);
    let slot = plot_w / bins.max(1) as f64;
    let top = h
        .reference
        .iter()
        .chain(&h.current)
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-12);
    s.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{ht}\" role=\"img\">\n",
        w = left + plot_w + 20.0,
        ht = plot_h + 40.0
    ));
    for i in 0..bins {
        let (lo, hi) = (h.edges.get(i).copied(), h.edges.get(i + 1).copied());
        let range = format!(
            "{}–{}",
            number(lo.unwrap_or(0.0)),
            number(hi.unwrap_or(0.0))
        );
        for (j, (v, colour)) in [
            (h.reference[i], REFERENCE_COLOUR),
            (h.current.get(i).copied().unwrap_or(0.0), CURRENT_COLOUR),
        ]
        .into_iter()
        .enumerate()
        {
            let bh = plot_h * v / top;
            s.push_str(&format!(
                "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{bw:.2}\" height=\"{bh:.2}\" \
                 fill=\"{colour}\"><title>{range}: {pct:.2}%</title></rect>\n",
                x = left + slot * i as f64 + slot / 2.0 * j as f64,
                y = 10.0 + plot_h - bh,
                bw = slot / 2.0 - 1.0,
                pct = v * 100.0
            ));
        }
    }
    let axis_y = 10.0 + plot_h;
    s.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{axis_y}\" x2=\"{x2}\" y2=\"{axis_y}\" stroke=\"#333\"/>\n",
        x2 = left + plot_w
    ));
    if let (Some(first), Some(last)) = (h.edges.first(), h.edges.last()) {
        s.push_str(&format!(
            "<text x=\"{left}\" y=\"{ty}\">{}</text>\n<text x=\"{x2}\" y=\"{ty}\" \
             text-anchor=\"end\">{}</text>\n",
            number(*first),
            number(*last),
            ty = axis_y + 16.0,
            x2 = left + plot_w
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::drift::{DriftConfig, DriftInput, drift_report};

    const VOID: [&str; 3] = ["meta", "br", "hr"];

    /// Checks that every start tag is closed in order (void and self-closing tags aside)
    /// and returns the tag names seen.
    fn check_balanced(html: &str) -> Vec<String> {
        let mut stack: Vec<String> = Vec::new();
        let mut seen = Vec::new();
        let mut rest = html;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').unwrap() + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().unwrap_or_else(|| panic!("stray </{name}>"));
                assert_eq!(open, name, "</{name}> closes <{open}>");
                continue;
            }
            let name = tag
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_string();
            seen.push(name.clone());
            if !tag.ends_with('/') && !VOID.contains(&name.as_str()) {
                stack.push(name);
            }
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        seen
    }

    #[test]
    fn page_is_balanced_self_contained_and_complete() {
        let mut a = DriftInput::default();
        let mut b = DriftInput::default();
        for i in 0..40 {
            a.add_text(&"word ".repeat(i % 7 + 1));
            b.add_text(&"other <b>&amp; ".repeat(i % 3 + 1));
            a.labels.push(vec![format!("T10{}", i % 4)]);
            b.labels.push(vec![format!("<T10{}>", i % 2)]);
        }
        a.token_counts = Some((0..40).map(f64::from).collect());
        b.token_counts = Some((0..40).map(|i| f64::from(i) * 2.0).collect());
        a.ioc_kinds.insert("ipv4".into(), 4);
        b.ioc_kinds.insert("domain".into(), 2);
        let report = drift_report(&a, &b, &DriftConfig::default()).unwrap();
        let html = render(&report);
        let tags = check_balanced(&html);
        assert!(tags.iter().filter(|t| *t == "svg").count() >= 4);
        for st in &report.statistics {
            assert!(
                html.contains(&format!("<td>{}</td>", st.id)),
                "{} missing",
                st.id
            );
        }
        assert!(html.contains("&lt;T100&gt;"));
        for banned in ["<script", "http://", "https://", "src="] {
            let hits = html.matches(banned).count();
            let svg_ns = html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count();
            let allowed = if banned == "http://" { svg_ns } else { 0 };
            assert_eq!(hits, allowed, "{banned} found");
        }
    }
}
