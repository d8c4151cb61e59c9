//! The sample of wrong predictions at the end of `report.html`: inputs, references and
//! outputs side by side, shared out between tasks.
use ctiforge_data_prep::Task;
use serde_json::Value;

use super::{cut, escape, value_text};
use crate::score::Outcome;

/// Wrong predictions shown in the sample table, shared out between tasks.
const SAMPLE_ROWS: usize = 50;
const INPUT_CHARS: usize = 200;
const ANSWER_CHARS: usize = 400;
/// A summary below this ROUGE-L counts as wrong in the sample table.
const SUMMARY_WRONG_BELOW: f64 = 0.5;

pub(super) fn predictions_section(outcomes: &[Outcome]) -> String {
    if outcomes.is_empty() {
        return String::new();
    }
    let wrong: Vec<&Outcome> = outcomes.iter().filter(|o| is_wrong(o)).collect();
    let sample = share_out(&wrong, SAMPLE_ROWS);
    let mut s = format!(
        "<section id=\"predictions\">\n<h2>Wrong predictions</h2>\n<p>{} of {} predictions \
         are wrong (techniques: not an exact match; extraction: strict F1 below 1; \
         summaries: ROUGE-L below {SUMMARY_WRONG_BELOW}). ",
        wrong.len(),
        outcomes.len()
    );
    if sample.is_empty() {
        s.push_str("</p>\n</section>\n");
        return s;
    }
    s.push_str(&format!(
        "The first {} of them, shared between tasks; inputs cut to {INPUT_CHARS} characters.\
         </p>\n<table class=\"samples\"><tr><th>Example</th><th>Input</th><th>Reference</th>\
         <th>Output</th><th class=\"num\">Score</th></tr>\n",
        sample.len()
    ));
    for o in sample {
        s.push_str(&sample_row(o));
    }
    s.push_str("</table>\n</section>\n");
    s
}

fn sample_row(o: &Outcome) -> String {
    let mut id = format!(
        "<code>{}</code><br>{}",
        escape(&o.id),
        escape(o.task.as_str())
    );
    if o.truncated {
        id.push_str("<br><span class=\"note\">prompt cut</span>");
    }
    // Stop tokens and strings are the normal end; a length or context limit is news.
    if let Some(f) = o.finish.as_ref().filter(|f| !f.starts_with("stop")) {
        id.push_str(&format!(
            "<br><span class=\"note\">stopped: {}</span>",
            escape(f)
        ));
    }
    let (key, name) = score_key(o.task);
    let score = o
        .scores
        .get(key)
        .map_or("n/a".into(), |x| format!("{name} {x:.2}"));
    format!(
        "<tr><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{score}</td></tr>\n",
        escape(&cut(&o.input, INPUT_CHARS)),
        escape(&cut(&answer_text(&o.reference), ANSWER_CHARS)),
        escape(&cut(&o.output, ANSWER_CHARS))
    )
}

fn score_key(task: Task) -> (&'static str, &'static str) {
    match task {
        Task::TechniqueClassification => ("f1", "F1"),
        Task::IocExtraction | Task::EntityExtraction => ("strict_f1", "strict F1"),
        Task::Summarization => ("rougeL", "ROUGE-L"),
        Task::Text => ("lm_loss_sum", "loss"),
    }
}

fn is_wrong(o: &Outcome) -> bool {
    let score = |k: &str| o.scores.get(k).copied().unwrap_or(f64::NAN);
    match o.task {
        Task::TechniqueClassification => score("exact_match") < 1.0,
        Task::IocExtraction | Task::EntityExtraction => score("strict_f1") < 1.0,
        Task::Summarization => score("rougeL") < SUMMARY_WRONG_BELOW,
        Task::Text => false,
    }
}

/// Up to `limit` outcomes, taken in turn from each task (in file order within a task), so
/// one large task does not crowd out the others; grouped by task.
fn share_out<'a>(outcomes: &[&'a Outcome], limit: usize) -> Vec<&'a Outcome> {
    let groups: Vec<Vec<&Outcome>> = Task::ALL
        .iter()
        .map(|t| outcomes.iter().copied().filter(|o| o.task == *t).collect())
        .collect();
    let mut taken = vec![0usize; groups.len()];
    let mut total = 0;
    while total < limit {
        let before = total;
        for (g, n) in groups.iter().zip(taken.iter_mut()) {
            if total < limit && *n < g.len() {
                *n += 1;
                total += 1;
            }
        }
        if total == before {
            break;
        }
    }
    groups
        .iter()
        .zip(taken)
        .flat_map(|(g, n)| g[..n].iter().copied())
        .collect()
}

/// A reference or prediction as text: IDs joined by commas, `type: value` lines, or the
/// summary itself.
fn answer_text(v: &Value) -> String {
    let Some(inner) = v.as_object().and_then(|m| m.values().next()) else {
        return v.to_string();
    };
    match inner {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "(none)".into(),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    Value::Object(m) => {
                        let f: Vec<String> = m.values().map(value_text).collect();
                        f.join(": ")
                    }
                    other => other.to_string(),
                })
                .collect();
            let sep = if items.iter().all(Value::is_string) {
                ", "
            } else {
                "\n"
            };
            parts.join(sep)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::html::tests::outcomes;

    #[test]
    fn the_sample_shares_rows_between_tasks() {
        let out = outcomes(false);
        let wrong: Vec<&Outcome> = out.iter().filter(|o| is_wrong(o)).collect();
        let sample = share_out(&wrong, 4);
        let tasks: Vec<Task> = sample.iter().map(|o| o.task).collect();
        assert_eq!(
            tasks,
            [
                Task::TechniqueClassification,
                Task::TechniqueClassification,
                Task::IocExtraction,
                Task::Summarization
            ]
        );
    }
}
