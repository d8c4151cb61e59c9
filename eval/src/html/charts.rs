//! The SVG charts of `report.html`, drawn as markup: horizontal bars, paired bars, a
//! histogram and a heatmap. Sizes are in CSS pixels; the page's stylesheet supplies fonts
//! and the `grid`, `muted`, `base` and `cand` classes. Every label goes through
//! [`escape`].

use super::{cut, escape, fmt_f, fmt_short};

/// Horizontal bars, one per `(label, value, note)`, scaled to `max`; the value and note
/// are printed after the bar. Values in [0, 1] are coloured from red to green.
pub(super) fn bar_chart(rows: &[(String, f64, String)], max: f64, title: &str) -> String {
    const LABEL_W: f64 = 150.0;
    const BAR_W: f64 = 380.0;
    const ROW_H: f64 = 20.0;
    const TOP: f64 = 20.0;
    let width = LABEL_W + BAR_W + 200.0;
    let height = TOP + ROW_H * rows.len() as f64 + 8.0;
    let mut s = svg_open(width, height, title);
    s.push_str(&grid(LABEL_W, BAR_W, TOP, height - 4.0, max));
    for (i, (label, value, note)) in rows.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let w = bar_len(*value, max, BAR_W);
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{LABEL_W}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"14\" fill=\"{}\">\
             <title>{}: {}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\">{} <tspan class=\"muted\">{}</tspan></text>\n",
            LABEL_W - 6.0,
            y + 11.0,
            escape(&cut(label, 24)),
            y + 1.0,
            ramp(*value / max),
            escape(label),
            fmt_f(*value),
            LABEL_W + w + 5.0,
            y + 11.0,
            fmt_short(*value),
            escape(note)
        ));
    }
    s.push_str("</svg>\n");
    s
}

/// Baseline and candidate bars side by side for each `(metric, baseline, candidate)` on a
/// 0–1 scale.
pub(super) fn paired_bar_chart(rows: &[(String, f64, f64)], names: (&str, &str)) -> String {
    const LABEL_W: f64 = 190.0;
    const BAR_W: f64 = 420.0;
    const GROUP_H: f64 = 38.0;
    const TOP: f64 = 44.0;
    let width = LABEL_W + BAR_W + 80.0;
    let height = TOP + GROUP_H * rows.len() as f64 + 4.0;
    let mut s = svg_open(width, height, "baseline and candidate on the main metrics");
    s.push_str(&format!(
        "<rect class=\"base\" x=\"{LABEL_W}\" y=\"4\" width=\"12\" height=\"12\"/>\
         <text x=\"{:.1}\" y=\"14\">{}</text>\
         <rect class=\"cand\" x=\"{:.1}\" y=\"4\" width=\"12\" height=\"12\"/>\
         <text x=\"{:.1}\" y=\"14\">{}</text>\n",
        LABEL_W + 16.0,
        escape(names.0),
        LABEL_W + 110.0,
        LABEL_W + 126.0,
        escape(names.1)
    ));
    s.push_str(&grid(LABEL_W, BAR_W, TOP - 4.0, height - 4.0, 1.0));
    for (i, (metric, base, cand)) in rows.iter().enumerate() {
        let y = TOP + GROUP_H * i as f64;
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LABEL_W - 6.0,
            y + 18.0,
            escape(metric)
        ));
        for (j, (class, v)) in [("base", base), ("cand", cand)].into_iter().enumerate() {
            let (by, w) = (y + 15.0 * j as f64, bar_len(*v, 1.0, BAR_W));
            s.push_str(&format!(
                "<rect class=\"{class}\" x=\"{LABEL_W}\" y=\"{by:.1}\" width=\"{w:.1}\" \
                 height=\"13\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
                LABEL_W + w + 5.0,
                by + 10.5,
                fmt_short(*v)
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}

/// A histogram of `values` over [0, 1] in `bins` equal bins (1 falls in the last).
pub(super) fn histogram(values: &[f64], bins: usize, axis: &str, unit: &str) -> String {
    const LEFT: f64 = 40.0;
    const PLOT_W: f64 = 600.0;
    const PLOT_H: f64 = 160.0;
    const TOP: f64 = 20.0;
    let bins = bins.max(1);
    let mut counts = vec![0usize; bins];
    for v in values.iter().filter(|v| v.is_finite()) {
        let i = (v.clamp(0.0, 1.0) * bins as f64) as usize;
        counts[i.min(bins - 1)] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let (w, base) = (PLOT_W / bins as f64, TOP + PLOT_H);
    let mut s = svg_open(
        LEFT + PLOT_W + 20.0,
        base + 40.0,
        &format!("{axis} histogram"),
    );
    s.push_str(&format!(
        "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{base}\" x2=\"{:.1}\" y2=\"{base}\"/>\n",
        LEFT + PLOT_W
    ));
    for (i, n) in counts.iter().enumerate() {
        let h = PLOT_H * *n as f64 / max;
        let x = LEFT + w * i as f64;
        s.push_str(&format!(
            "<rect class=\"cand\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\">\
             <title>{:.1}–{:.1}: {n} {}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{n}</text>\n",
            x + 1.0,
            base - h,
            w - 2.0,
            i as f64 / bins as f64,
            (i + 1) as f64 / bins as f64,
            escape(unit),
            x + w / 2.0,
            base - h - 4.0
        ));
    }
    for i in 0..=bins {
        s.push_str(&format!(
            "<text class=\"muted\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.1}</text>\n",
            LEFT + w * i as f64,
            base + 14.0,
            i as f64 / bins as f64
        ));
    }
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{} ({} {})</text></svg>\n",
        LEFT + PLOT_W / 2.0,
        base + 32.0,
        escape(axis),
        values.len(),
        escape(unit)
    ));
    s
}

/// The top confusions as a reference × predicted grid (at most `side` of each), shaded
/// by count.
pub(super) fn heatmap(pairs: &[(String, String, f64)], side: usize) -> String {
    const LEFT: f64 = 110.0;
    const TOP: f64 = 80.0;
    const CELL_W: f64 = 46.0;
    const CELL_H: f64 = 24.0;
    let (mut rows, mut cols): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    for (r, p, _) in pairs {
        if !rows.contains(&r.as_str()) && rows.len() < side {
            rows.push(r);
        }
        if !cols.contains(&p.as_str()) && cols.len() < side {
            cols.push(p);
        }
    }
    let max = pairs.iter().map(|p| p.2).fold(1.0, f64::max);
    let width = LEFT + CELL_W * cols.len() as f64 + 20.0;
    let height = TOP + CELL_H * rows.len() as f64 + 10.0;
    let mut s = svg_open(width, height, "confusion heatmap");
    s.push_str("<text class=\"muted\" x=\"4\" y=\"12\">reference ↓ predicted →</text>\n");
    for (j, c) in cols.iter().enumerate() {
        let x = LEFT + CELL_W * (j as f64 + 0.5);
        s.push_str(&format!(
            "<text transform=\"translate({x:.1},{:.1}) rotate(-45)\">{}</text>\n",
            TOP - 6.0,
            escape(&cut(c, 14))
        ));
    }
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + CELL_H * i as f64;
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LEFT - 6.0,
            y + 16.0,
            escape(&cut(r, 16))
        ));
        for (j, c) in cols.iter().enumerate() {
            let n = pairs
                .iter()
                .find(|(pr, pc, _)| pr == r && pc == c)
                .map_or(0.0, |p| p.2);
            s.push_str(&heat_cell(LEFT + CELL_W * j as f64, y, n, max, (r, c)));
        }
    }
    s.push_str("</svg>\n");
    s
}

fn heat_cell(x: f64, y: f64, n: f64, max: f64, (r, c): (&str, &str)) -> String {
    let t = n / max;
    // White to #cf222e.
    let mix = |full: f64| (255.0 - (255.0 - full) * t).round();
    let fill = format!("rgb({},{},{})", mix(207.0), mix(34.0), mix(46.0));
    let label = if n > 0.0 {
        format!("{n}")
    } else {
        String::new()
    };
    let ink = if t > 0.5 { " style=\"fill:#fff\"" } else { "" };
    format!(
        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"45\" height=\"23\" fill=\"{fill}\" \
         stroke=\"#d8dee4\"><title>{} → {}: {n}</title></rect>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\"{ink}>{label}</text>\n",
        escape(r),
        escape(c),
        x + 22.5,
        y + 16.0
    )
}

fn svg_open(width: f64, height: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"{0}\">\
         <title>{0}</title>\n",
        escape(title)
    )
}

/// Vertical grid lines at quarters of `max`, labelled at the top.
fn grid(left: f64, span: f64, top: f64, bottom: f64, max: f64) -> String {
    (0..=4)
        .map(|q| {
            let x = left + span * q as f64 / 4.0;
            format!(
                "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" \
                 y2=\"{bottom:.1}\"/>\
                 <text class=\"muted\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                top - 6.0,
                fmt_short(max * q as f64 / 4.0)
            )
        })
        .collect()
}

fn bar_len(value: f64, max: f64, span: f64) -> f64 {
    if value.is_finite() && max > 0.0 {
        (value / max).clamp(0.0, 1.0) * span
    } else {
        0.0
    }
}

/// Red (0) through amber to green (1).
fn ramp(t: f64) -> String {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    format!("hsl({:.0},60%,45%)", 120.0 * t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_puts_one_in_the_last_bin() {
        let svg = histogram(&[0.0, 0.05, 0.95, 1.0, 0.5], 10, "ROUGE-L", "summaries");
        assert!(svg.contains("0.9–1.0: 2 summaries"), "{svg}");
        assert!(svg.contains("0.0–0.1: 2 summaries"), "{svg}");
        assert!(svg.contains("0.5–0.6: 1 summaries"), "{svg}");
    }

    #[test]
    fn bars_are_clamped_to_the_scale() {
        let rows = vec![
            ("over".to_owned(), 1.5, String::new()),
            ("missing".to_owned(), f64::NAN, String::new()),
        ];
        let svg = bar_chart(&rows, 1.0, "t");
        assert!(svg.contains("width=\"380.0\""), "{svg}");
        assert!(svg.contains("width=\"0.0\""), "{svg}");
        assert!(svg.contains("n/a"), "{svg}");
    }

    #[test]
    fn the_heatmap_shades_the_largest_count_fully() {
        let pairs = vec![
            ("T1105".to_owned(), "T1566".to_owned(), 4.0),
            ("T1059".to_owned(), "none".to_owned(), 1.0),
        ];
        let svg = heatmap(&pairs, 10);
        assert!(svg.contains("fill=\"rgb(207,34,46)\""), "{svg}");
        assert!(svg.contains("<title>T1059 → none: 1</title>"), "{svg}");
    }
}
