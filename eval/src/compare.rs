//! Base against tuned: per-metric deltas between two reports on the same examples, with
//! paired bootstrap confidence intervals, and `--require` checks on them.
//!
//! Examples are paired by id (only ids both reports scored count). Each resample re-scores
//! both systems on the same drawn examples with the full aggregation of [`crate::score`],
//! so corpus metrics (micro F1, macro F1, BLEU, perplexity) are resampled as corpus
//! metrics.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::bootstrap::{BootstrapConfig, paired_bootstrap};
use crate::error::{Error, Result};
use crate::score::{Outcome, aggregate, flatten};
use crate::threshold::{Requirement, Verdict};

/// One metric of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDelta {
    /// Dotted metric path (`technique.micro_f1`).
    pub metric: String,
    /// The baseline's value on the paired examples.
    pub baseline: f64,
    /// The candidate's value on the paired examples.
    pub candidate: f64,
    /// `candidate − baseline`.
    pub delta: f64,
    /// Lower end of the confidence interval of the delta.
    pub low: f64,
    /// Upper end of the confidence interval of the delta.
    pub high: f64,
    /// One-sided p-value of "the candidate is not better" (for metrics where lower is
    /// better, such as perplexity, of "not lower").
    pub p_value: f64,
    /// Whether a higher value is better.
    pub higher_is_better: bool,
}

/// A comparison of two reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The baseline report (path or label).
    pub baseline: String,
    /// The candidate report.
    pub candidate: String,
    /// Examples both reports scored.
    pub paired_examples: usize,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// One entry per metric both reports have.
    pub deltas: Vec<MetricDelta>,
    /// `--require` outcomes.
    #[serde(default)]
    pub requirements: Vec<Verdict>,
    /// Whether every requirement holds.
    pub passed: bool,
}

/// Metric paths that are counts, not scores, and are left out of comparisons.
fn is_count(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    matches!(
        last,
        "examples" | "labels" | "predicted" | "reference" | "tokens" | "unparsed_lines"
    ) || path.contains(".ids.")
}

fn lower_is_better(path: &str) -> bool {
    path.ends_with("perplexity") || path.ends_with("loss") || path.ends_with("hamming_loss")
}

/// Compares `candidate` with `baseline` outcome by outcome.
///
/// # Errors
/// No example ids in common; a line of the wrong shape; bad bootstrap settings.
pub fn compare(
    baseline: &[Outcome],
    candidate: &[Outcome],
    labels: (&str, &str),
    config: &BootstrapConfig,
) -> Result<Comparison> {
    let by_id: HashMap<&str, &Outcome> = baseline.iter().map(|o| (o.id.as_str(), o)).collect();
    let pairs: Vec<(&Outcome, &Outcome)> = candidate
        .iter()
        .filter_map(|c| by_id.get(c.id.as_str()).map(|b| (*b, c)))
        .collect();
    if pairs.is_empty() {
        return Err(Error::Input {
            path: labels.1.into(),
            message: format!(
                "no example id in common with {}; compare reports on the same data",
                labels.0
            ),
        });
    }
    let differing = pairs
        .iter()
        .filter(|(b, c)| b.reference != c.reference)
        .count();
    if differing > 0 {
        tracing::warn!(
            differing,
            "examples with the same id have different references in the two reports"
        );
    }
    let score = |idx: &[usize]| -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
        let b: Vec<&Outcome> = idx.iter().map(|&i| pairs[i].0).collect();
        let c: Vec<&Outcome> = idx.iter().map(|&i| pairs[i].1).collect();
        let flat = |o: &[&Outcome]| {
            aggregate(o, 0)
                .map(|(m, _)| flatten(&m))
                .unwrap_or_default()
        };
        (flat(&b), flat(&c))
    };
    let all: Vec<usize> = (0..pairs.len()).collect();
    let (fb, fc) = score(&all);
    // Score every resample once; each metric's bootstrap below draws the same indices
    // (same seed, same size), so it reads the cached scores by call number.
    let mut cache: Vec<(BTreeMap<String, f64>, BTreeMap<String, f64>)> = Vec::new();
    let mut deltas = Vec::new();
    for (metric, _) in fb
        .iter()
        .filter(|(k, _)| fc.contains_key(*k) && !is_count(k))
    {
        let mut call = 0usize;
        let sign = if lower_is_better(metric) { -1.0 } else { 1.0 };
        let r = paired_bootstrap(pairs.len(), config, |idx| {
            call += 1;
            if call == 1 {
                return (sign * fb[metric], sign * fc[metric]);
            }
            if cache.len() < call - 1 {
                cache.push(score(idx));
            }
            let (b, c) = &cache[call - 2];
            let get = |m: &BTreeMap<String, f64>| m.get(metric).copied().unwrap_or(f64::NAN);
            (sign * get(b), sign * get(c))
        })?;
        let (low, high) = if sign < 0.0 {
            (-r.high, -r.low)
        } else {
            (r.low, r.high)
        };
        deltas.push(MetricDelta {
            metric: metric.clone(),
            baseline: fb[metric],
            candidate: fc[metric],
            delta: fc[metric] - fb[metric],
            low,
            high,
            p_value: r.p_value,
            higher_is_better: sign > 0.0,
        });
    }
    Ok(Comparison {
        baseline: labels.0.to_owned(),
        candidate: labels.1.to_owned(),
        paired_examples: pairs.len(),
        resamples: config.resamples,
        confidence: config.confidence,
        deltas,
        requirements: Vec::new(),
        passed: true,
    })
}

impl Comparison {
    /// Checks `requirements` (`technique.micro_f1 >= +0.05` is a delta, `>= 0.3` a floor)
    /// on the paired metrics and records the verdicts.
    ///
    /// # Errors
    /// A requirement names a metric the reports do not have.
    pub fn check(&mut self, requirements: &[Requirement]) -> Result<()> {
        let side = |f: fn(&MetricDelta) -> f64| -> serde_json::Value {
            let mut root = serde_json::Map::new();
            for d in &self.deltas {
                insert_path(&mut root, &d.metric, f(d));
            }
            serde_json::Value::Object(root)
        };
        let (b, c) = (side(|d| d.baseline), side(|d| d.candidate));
        for req in requirements {
            let v = req.check(&c, Some(&b))?;
            self.passed &= v.passed;
            self.requirements.push(v);
        }
        Ok(())
    }

    /// A plain-text table of the deltas and verdicts.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} vs {} on {} paired examples ({:.0}% intervals, {} resamples)\n",
            self.candidate,
            self.baseline,
            self.paired_examples,
            self.confidence * 100.0,
            self.resamples
        );
        s.push_str(&format!(
            "{:<32} {:>10} {:>10} {:>10} {:>22} {:>8}\n",
            "metric", "baseline", "candidate", "delta", "interval", "p"
        ));
        for d in &self.deltas {
            s.push_str(&format!(
                "{:<32} {:>10.4} {:>10.4} {:>+10.4} {:>22} {:>8.4}\n",
                d.metric,
                d.baseline,
                d.candidate,
                d.delta,
                format!("[{:+.4}, {:+.4}]", d.low, d.high),
                d.p_value
            ));
        }
        for v in &self.requirements {
            s.push_str(&format!(
                "{} {} (compared value {:.4})\n",
                if v.passed { "PASS" } else { "FAIL" },
                v.requirement,
                v.compared
            ));
        }
        s
    }
}

fn insert_path(root: &mut serde_json::Map<String, serde_json::Value>, path: &str, x: f64) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or(path);
    let mut node = root;
    for p in parts {
        let entry = node
            .entry(p.to_owned())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if !entry.is_object() {
            *entry = serde_json::Value::Object(serde_json::Map::new());
        }
        let Some(next) = entry.as_object_mut() else {
            return;
        };
        node = next;
    }
    node.insert(last.to_owned(), serde_json::json!(x));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::{EvalExample, Reference};
    use crate::score::{RawOutput, ScoreContext, score_one};
    use ctiforge_data_prep::Task;

    fn outcomes(answers: &[&str]) -> Vec<Outcome> {
        let ctx = ScoreContext::default();
        answers
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let ex = EvalExample {
                    id: format!("e{i}"),
                    task: Task::TechniqueClassification,
                    text: "t".into(),
                    prompt: "p".into(),
                    completion: "c".into(),
                    reference: Reference::Techniques(vec!["T1105".into()]),
                };
                let out = RawOutput {
                    text: (*a).into(),
                    lm: Some((if a.contains("T1105") { 1.0 } else { 3.0 }, 2)),
                    ..RawOutput::default()
                };
                score_one(&ex, &out, &ctx)
            })
            .collect()
    }

    #[test]
    fn a_better_candidate_has_a_positive_interval_and_passes_its_requirement() {
        let base = outcomes(&["none"; 40]);
        let mut answers = vec![" T1105"; 30];
        answers.extend([" none"; 10]);
        let cand = outcomes(&answers);
        let cfg = BootstrapConfig {
            resamples: 200,
            ..BootstrapConfig::default()
        };
        let mut c = compare(&base, &cand, ("base", "tuned"), &cfg).expect("compare");
        let f1 = c
            .deltas
            .iter()
            .find(|d| d.metric == "technique.micro_f1")
            .expect("micro f1");
        assert!(f1.delta > 0.8 && f1.low > 0.5, "{f1:?}");
        let ppl = c
            .deltas
            .iter()
            .find(|d| d.metric == "lm.perplexity")
            .expect("perplexity");
        assert!(
            ppl.delta < 0.0 && ppl.high < 0.0 && !ppl.higher_is_better,
            "{ppl:?}"
        );
        assert!(ppl.p_value < 0.05, "{ppl:?}");
        let reqs: Vec<Requirement> = ["technique.micro_f1 >= +0.05", "technique.micro_f1 >= 0.99"]
            .iter()
            .map(|r| r.parse().expect("requirement"))
            .collect();
        c.check(&reqs).expect("check");
        assert!(c.requirements[0].passed);
        assert!(!c.requirements[1].passed && !c.passed);
        assert!(c.table().contains("FAIL technique.micro_f1 >= 0.99"));
    }
}
