//! Scoring: each example's output parsed into a prediction with its own sample scores (one
//! line of `predictions.jsonl`), and any set of those lines aggregated into the metrics of
//! `eval.json`. Aggregation works on any subset of the lines, so `eval compare` resamples
//! corpus-level metrics (micro F1, BLEU) exactly, not just averages.

use std::collections::BTreeMap;

use ctiforge_data_prep::Task;
use ctiforge_data_prep::attack::Catalog;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::example::{EvalExample, Reference};
use crate::metrics::bleu::{BleuOptions, corpus_bleu};
use crate::metrics::classification::{MultiLabelOptions, multi_label, multi_label_mapped};
use crate::metrics::entity::{EntityReport, entity_scores};
use crate::metrics::rouge::RougeScorer;
use crate::metrics::tokenize::RougeTokenizer;
use crate::parse::{self, IdCounts};
use crate::{Error, Result};

/// One line of `predictions.jsonl`: an example, what the model said, what that was read
/// as, and the example's own scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The example id.
    pub id: String,
    /// Its task.
    pub task: Task,
    /// The input text.
    pub input: String,
    /// The structured reference.
    pub reference: Value,
    /// The model's raw output (generated text, or the chosen candidate).
    pub output: String,
    /// The output parsed into the reference's shape.
    pub prediction: Value,
    /// Per-sample scores (`f1`, `exact_match`, `strict_f1`, `rougeL`, `lm_loss`, ...).
    pub scores: BTreeMap<String, f64>,
    /// How technique IDs in the output resolved (technique rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<IdCounts>,
    /// Output lines that were not `type: value` (extraction rows).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unparsed_lines: usize,
    /// Why generation stopped (`stop_token`, `length`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish: Option<String>,
    /// Whether the prompt was cut (from the left) to fit the model's context.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What the scorer needs besides the outputs.
#[derive(Debug, Default)]
pub struct ScoreContext {
    /// The ATT&CK catalog technique IDs are resolved against (none: taken as written).
    pub catalog: Option<Catalog>,
}

/// The model's answer for one example, before scoring.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawOutput {
    /// The generated text (or chosen candidate).
    pub text: String,
    /// Why generation stopped.
    pub finish: Option<String>,
    /// Whether the prompt was cut to fit.
    pub truncated: bool,
    /// Summed completion loss and its token count, when measured.
    pub lm: Option<(f64, u64)>,
}

/// Parses and scores one example's output.
pub fn score_one(ex: &EvalExample, out: &RawOutput, ctx: &ScoreContext) -> Outcome {
    let mut scores = BTreeMap::new();
    let mut ids = None;
    let mut unparsed_lines = 0;
    let prediction = match &ex.reference {
        Reference::Techniques(gold) => {
            let (pred, counts) = parse::techniques(&out.text, ctx.catalog.as_ref());
            ids = Some(counts);
            let tp = pred.iter().filter(|p| gold.contains(p)).count() as f64;
            let (np, ng) = (pred.len() as f64, gold.len() as f64);
            scores.insert("tp".into(), tp);
            scores.insert("fp".into(), np - tp);
            scores.insert("fn".into(), ng - tp);
            // scikit-learn's sample F1 with zero_division = 0, except that an empty
            // prediction for an empty reference is right.
            let f1 = if np + ng == 0.0 {
                1.0
            } else {
                2.0 * tp / (np + ng)
            };
            scores.insert("f1".into(), f1);
            scores.insert("exact_match".into(), f64::from(u8::from(pred == *gold)));
            json!({ "techniques": pred })
        }
        Reference::Iocs(gold) => {
            let (pred, skipped) = parse::iocs(&out.text);
            unparsed_lines = skipped;
            insert_entity_scores(&mut scores, &pred, gold);
            Reference::Iocs(pred).to_json()
        }
        Reference::Entities(gold) => {
            let (pred, skipped) = parse::entities(&out.text);
            unparsed_lines = skipped;
            insert_entity_scores(&mut scores, &pred, gold);
            Reference::Entities(pred).to_json()
        }
        Reference::Summary(gold) => {
            let summary = out.text.trim().to_owned();
            for (prefix, tok) in [("", RougeTokenizer::Default), ("cti_", RougeTokenizer::Cti)] {
                let scorer = RougeScorer {
                    tokenizer: tok,
                    ..RougeScorer::new(true)
                };
                for (ty, s) in scorer.types.iter().zip(scorer.score(gold, &summary)) {
                    scores.insert(format!("{prefix}{}", ty.name()), s.fmeasure);
                }
            }
            json!({ "summary": summary })
        }
        Reference::Text(_) => json!({}),
    };
    if let Some((sum, tokens)) = out.lm {
        scores.insert("lm_loss_sum".into(), sum);
        scores.insert("lm_tokens".into(), tokens as f64);
    }
    Outcome {
        id: ex.id.clone(),
        task: ex.task,
        input: ex.text.clone(),
        reference: ex.reference.to_json(),
        output: out.text.clone(),
        prediction,
        scores,
        ids,
        unparsed_lines,
        finish: out.finish.clone(),
        truncated: out.truncated,
    }
}

fn insert_entity_scores(
    scores: &mut BTreeMap<String, f64>,
    pred: &[(String, String)],
    gold: &[(String, String)],
) {
    if let Ok(r) = entity_scores(&[pred.to_vec()], &[gold.to_vec()]) {
        // An empty prediction for an empty reference is right.
        let empty = pred.is_empty() && gold.is_empty();
        let f1 = |f: f64| if empty { 1.0 } else { f };
        scores.insert("strict_f1".into(), f1(r.strict.scores.f1));
        scores.insert("lenient_f1".into(), f1(r.lenient.scores.f1));
    }
}

/// Per-label results kept beside the metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// Per-technique precision, recall, F1, support and predicted count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub technique: Vec<Value>,
    /// Per-indicator-kind strict and lenient scores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ioc: Vec<Value>,
    /// Per-entity-type strict and lenient scores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entity: Vec<Value>,
    /// The most frequent (reference, predicted) technique confusions: a missed reference
    /// ID paired with each wrongly predicted ID of the same example (`none` for an empty
    /// side).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confusions: Vec<Value>,
}

/// Aggregates outcomes into the `metrics` object of `eval.json` (one key per task present,
/// plus `lm` when losses were measured) and the per-label breakdown.
///
/// # Errors
/// A line whose reference or prediction does not have its task's shape.
pub fn aggregate(outcomes: &[&Outcome], confusions: usize) -> Result<(Value, Breakdown)> {
    let mut metrics = serde_json::Map::new();
    let mut breakdown = Breakdown::default();
    let of = |task: Task| -> Vec<&Outcome> {
        outcomes
            .iter()
            .copied()
            .filter(|o| o.task == task)
            .collect()
    };

    let tech = of(Task::TechniqueClassification);
    if !tech.is_empty() {
        let (m, labels, conf) = technique_metrics(&tech, confusions)?;
        metrics.insert("technique".into(), m);
        breakdown.technique = labels;
        breakdown.confusions = conf;
    }
    for (task, key, field, type_key, value_key) in [
        (Task::IocExtraction, "ioc", "iocs", "kind", "value"),
        (Task::EntityExtraction, "entity", "entities", "type", "text"),
    ] {
        let rows = of(task);
        if rows.is_empty() {
            continue;
        }
        let mut pred = Vec::with_capacity(rows.len());
        let mut gold = Vec::with_capacity(rows.len());
        for o in &rows {
            pred.push(pairs(&o.prediction, field, type_key, value_key, &o.id)?);
            gold.push(pairs(&o.reference, field, type_key, value_key, &o.id)?);
        }
        let r: EntityReport<String> = entity_scores(&pred, &gold)?;
        let unparsed: usize = rows.iter().map(|o| o.unparsed_lines).sum();
        metrics.insert(
            key.into(),
            json!({
                "entity_f1": r.strict.scores.f1,
                "strict_f1": r.strict.scores.f1,
                "strict_precision": r.strict.scores.precision,
                "strict_recall": r.strict.scores.recall,
                "lenient_f1": r.lenient.scores.f1,
                "lenient_precision": r.lenient.scores.precision,
                "lenient_recall": r.lenient.scores.recall,
                "predicted": r.strict.predicted,
                "reference": r.strict.reference,
                "unparsed_lines": unparsed,
                "examples": rows.len(),
            }),
        );
        let per: Vec<Value> = r
            .per_type
            .iter()
            .map(|t| {
                json!({
                    "label": t.kind,
                    "precision": t.strict.scores.precision,
                    "recall": t.strict.scores.recall,
                    "f1": t.strict.scores.f1,
                    "lenient_f1": t.lenient.scores.f1,
                    "support": t.strict.reference,
                    "predicted": t.strict.predicted,
                })
            })
            .collect();
        match task {
            Task::IocExtraction => breakdown.ioc = per,
            _ => breakdown.entity = per,
        }
    }

    let summ = of(Task::Summarization);
    if !summ.is_empty() {
        let mean = |key: &str| {
            summ.iter()
                .map(|o| o.scores.get(key).copied().unwrap_or(0.0))
                .sum::<f64>()
                / summ.len() as f64
        };
        let mut hyps = Vec::with_capacity(summ.len());
        let mut refs = Vec::with_capacity(summ.len());
        for o in &summ {
            hyps.push(string_field(&o.prediction, "summary", &o.id)?);
            refs.push(vec![string_field(&o.reference, "summary", &o.id)?]);
        }
        let bleu = corpus_bleu(&hyps, &refs, &BleuOptions::default())?;
        metrics.insert(
            "summarization".into(),
            json!({
                "rouge1": mean("rouge1"),
                "rouge2": mean("rouge2"),
                "rougeL": mean("rougeL"),
                "rougeLsum": mean("rougeLsum"),
                "cti": {
                    "rouge1": mean("cti_rouge1"),
                    "rouge2": mean("cti_rouge2"),
                    "rougeL": mean("cti_rougeL"),
                    "rougeLsum": mean("cti_rougeLsum"),
                },
                "bleu": bleu.score,
                "bleu_signature": bleu.signature,
                "examples": summ.len(),
            }),
        );
    }

    let (mut loss, mut tokens) = (0.0f64, 0.0f64);
    for o in outcomes {
        if let (Some(s), Some(t)) = (o.scores.get("lm_loss_sum"), o.scores.get("lm_tokens")) {
            loss += s;
            tokens += t;
        }
    }
    if tokens > 0.0 {
        let mean = loss / tokens;
        metrics.insert(
            "lm".into(),
            json!({ "loss": mean, "perplexity": mean.exp(), "tokens": tokens }),
        );
    }
    Ok((Value::Object(metrics), breakdown))
}

fn technique_metrics(
    rows: &[&Outcome],
    confusions: usize,
) -> Result<(Value, Vec<Value>, Vec<Value>)> {
    let mut pred = Vec::with_capacity(rows.len());
    let mut gold = Vec::with_capacity(rows.len());
    let mut ids = IdCounts::default();
    for o in rows {
        pred.push(strings(&o.prediction, "techniques", &o.id)?);
        gold.push(strings(&o.reference, "techniques", &o.id)?);
        if let Some(c) = &o.ids {
            ids.add(c);
        }
    }
    let opts = MultiLabelOptions::default();
    let r = multi_label(&pred, &gold, opts)?;
    let parent = multi_label_mapped(&pred, &gold, opts, |l: &String| {
        l.split('.').next().unwrap_or(l).to_owned()
    })?;
    let metrics = json!({
        "micro_f1": r.micro.f1,
        "micro_precision": r.micro.precision,
        "micro_recall": r.micro.recall,
        "macro_f1": nan_to_zero(r.macro_avg.f1),
        "macro_precision": nan_to_zero(r.macro_avg.precision),
        "macro_recall": nan_to_zero(r.macro_avg.recall),
        "samples_f1": r.samples.f1,
        "exact_match": r.exact_match,
        "hamming_loss": r.hamming_loss,
        "labels": r.n_labels,
        "examples": rows.len(),
        "parent": {
            "micro_f1": parent.micro.f1,
            "macro_f1": nan_to_zero(parent.macro_avg.f1),
            "exact_match": parent.exact_match,
        },
        "ids": {
            "found": ids.found,
            "revoked": ids.revoked,
            "deprecated": ids.deprecated,
            "unknown": ids.unknown,
        },
    });
    let labels = r
        .per_label
        .iter()
        .map(|l| {
            json!({
                "label": l.label,
                "precision": l.scores.precision,
                "recall": l.scores.recall,
                "f1": l.scores.f1,
                "support": l.support,
                "predicted": l.predicted,
            })
        })
        .collect();
    let mut pairs: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (p, g) in pred.iter().zip(&gold) {
        let missed: Vec<&String> = g.iter().filter(|x| !p.contains(x)).collect();
        let wrong: Vec<&String> = p.iter().filter(|x| !g.contains(x)).collect();
        let none = "none".to_owned();
        let missed = if missed.is_empty() && !wrong.is_empty() && g.is_empty() {
            vec![&none]
        } else {
            missed
        };
        let wrong = if wrong.is_empty() && !missed.is_empty() && p.is_empty() {
            vec![&none]
        } else {
            wrong
        };
        for m in &missed {
            for w in &wrong {
                *pairs.entry(((*m).clone(), (*w).clone())).or_default() += 1;
            }
        }
    }
    let mut pairs: Vec<_> = pairs.into_iter().collect();
    pairs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let conf = pairs
        .into_iter()
        .take(confusions)
        .map(|((r, p), n)| json!({ "reference": r, "predicted": p, "count": n }))
        .collect();
    Ok((metrics, labels, conf))
}

fn nan_to_zero(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x }
}

fn shape_error(id: &str, what: &str) -> Error {
    Error::Input {
        path: "predictions.jsonl".into(),
        message: format!("example {id:?}: {what}"),
    }
}

fn strings(v: &Value, field: &str, id: &str) -> Result<Vec<String>> {
    match v.get(field) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| shape_error(id, &format!("`{field}` holds a non-string")))
            })
            .collect(),
        _ => Err(shape_error(id, &format!("expected a `{field}` list"))),
    }
}

fn string_field(v: &Value, field: &str, id: &str) -> Result<String> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| shape_error(id, &format!("expected a `{field}` string")))
}

fn pairs(v: &Value, field: &str, a: &str, b: &str, id: &str) -> Result<Vec<(String, String)>> {
    match v.get(field) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                match (
                    i.get(a).and_then(Value::as_str),
                    i.get(b).and_then(Value::as_str),
                ) {
                    (Some(x), Some(y)) => Ok((x.to_owned(), y.to_owned())),
                    _ => Err(shape_error(
                        id,
                        &format!("`{field}` items need `{a}` and `{b}`"),
                    )),
                }
            })
            .collect(),
        _ => Err(shape_error(id, &format!("expected a `{field}` list"))),
    }
}

/// The numeric leaves of a `metrics` object as `dotted.path → value`
/// (`technique.micro_f1`, `lm.perplexity`).
pub fn flatten(metrics: &Value) -> BTreeMap<String, f64> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, f64>) {
        match v {
            Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    out.insert(prefix.to_owned(), x);
                }
            }
            Value::Object(m) => {
                for (k, child) in m {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, child, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk("", metrics, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(id: &str, gold: &[&str]) -> EvalExample {
        EvalExample {
            id: id.into(),
            task: Task::TechniqueClassification,
            text: "t".into(),
            prompt: "p".into(),
            completion: "c".into(),
            reference: Reference::Techniques(gold.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    fn out(text: &str) -> RawOutput {
        RawOutput {
            text: text.into(),
            ..RawOutput::default()
        }
    }

    #[test]
    fn technique_outcomes_aggregate_like_scikit_learn() {
        let ctx = ScoreContext::default();
        // Micro: tp 2, fp 1, fn 1 -> P 2/3, R 2/3, F1 2/3.
        let o = [
            score_one(
                &ex("a", &["T1059.001", "T1105"]),
                &out(" T1059.001, T1105"),
                &ctx,
            ),
            score_one(&ex("b", &["T1566"]), &out(" T1027"), &ctx),
            score_one(&ex("c", &[]), &out(" none"), &ctx),
        ];
        assert_eq!(o[0].scores["exact_match"], 1.0);
        assert_eq!(o[2].scores["f1"], 1.0);
        let refs: Vec<&Outcome> = o.iter().collect();
        let (m, b) = aggregate(&refs, 5).expect("aggregate");
        let f = flatten(&m);
        assert!((f["technique.micro_f1"] - 2.0 / 3.0).abs() < 1e-12);
        assert!((f["technique.exact_match"] - 2.0 / 3.0).abs() < 1e-12);
        // Labels: T1027 (0), T1059.001 (1), T1105 (1), T1566 (0) -> macro 0.5.
        assert!((f["technique.macro_f1"] - 0.5).abs() < 1e-12);
        assert_eq!(b.confusions[0]["reference"], "T1566");
        assert_eq!(b.confusions[0]["predicted"], "T1027");
        // The outcome survives a JSON round trip (predictions.jsonl).
        let line = serde_json::to_string(&o[1]).expect("ser");
        let back: Outcome = serde_json::from_str(&line).expect("de");
        assert_eq!(back, o[1]);
    }

    #[test]
    fn perplexity_is_token_weighted() {
        let ctx = ScoreContext::default();
        let mut a = out(" none");
        a.lm = Some((2.0, 1));
        let mut b = out(" none");
        b.lm = Some((3.0, 3));
        let o = [
            score_one(&ex("a", &[]), &a, &ctx),
            score_one(&ex("b", &[]), &b, &ctx),
        ];
        let refs: Vec<&Outcome> = o.iter().collect();
        let f = flatten(&aggregate(&refs, 0).expect("aggregate").0);
        assert!((f["lm.loss"] - 1.25).abs() < 1e-12);
        assert!((f["lm.perplexity"] - 1.25f64.exp()).abs() < 1e-9);
    }
}
