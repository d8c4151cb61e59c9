//! Scorers that need no sampling, to put a number on a model (or on no model) quickly:
//!
//! - `regex`: indicators found by `data-prep`'s extractor in the input text, for
//!   `ioc_extraction`. No model; the floor a generative extractor must beat.
//! - `likelihood`: for `technique_classification`, each candidate answer (`none` and the
//!   most frequent techniques of the training split) is scored by the mean per-token
//!   log-likelihood the model gives its rendered completion (and EOS) after the prompt, and
//!   the best one is the prediction. Single-label by construction, deterministic, and it
//!   measures what the model knows even when its free-form generation is poor.

use ctiforge_data_prep::Task;
use ctiforge_data_prep::ioc;
use ctiforge_data_prep::prompt::Prompts;
use serde_json::json;

use crate::error::{Error, Result};
use crate::example::{EvalExample, Reference};
use crate::harness::Runner;
use crate::score::RawOutput;

/// The regex extractor's answer, written as the `kind: value` lines a model would write.
///
/// # Errors
/// The example is not an `ioc_extraction` one.
pub fn regex_answer(ex: &EvalExample) -> Result<RawOutput> {
    if ex.task != Task::IocExtraction {
        return Err(Error::Input {
            path: ex.id.clone().into(),
            message: format!(
                "the regex scorer answers ioc_extraction examples only, not {}",
                ex.task
            ),
        });
    }
    let found = ioc::extract(&ex.text);
    let text = if found.is_empty() {
        " none".to_owned()
    } else {
        found
            .iter()
            .map(|i| format!("\n{}: {}", i.kind.as_str(), i.value))
            .collect()
    };
    Ok(RawOutput {
        text,
        finish: None,
        truncated: false,
        lm: None,
    })
}

/// Candidate labels: the `k` most frequent techniques of `labels` (ties by ID), then
/// `none` (the empty set).
pub fn candidates(labels: &[Vec<String>], k: usize) -> Vec<Vec<String>> {
    let mut freq: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for set in labels {
        for l in set {
            *freq.entry(l.as_str()).or_default() += 1;
        }
    }
    let mut ranked: Vec<(&str, usize)> = freq.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut out: Vec<Vec<String>> = ranked
        .into_iter()
        .take(k)
        .map(|(l, _)| vec![l.to_owned()])
        .collect();
    out.push(Vec::new());
    out
}

/// The candidate whose rendered completion the model finds most likely after `ex`'s
/// prompt (mean log-probability per token of the completion and EOS), with the loss of
/// the reference completion.
///
/// # Errors
/// The example is not a technique one; rendering, tokenizer or model failures.
pub fn likelihood_answer(
    runner: &Runner<'_>,
    prompts: &Prompts,
    ex: &EvalExample,
    cands: &[Vec<String>],
) -> Result<RawOutput> {
    if !matches!(ex.reference, Reference::Techniques(_)) {
        return Err(Error::Input {
            path: ex.id.clone().into(),
            message: format!(
                "the likelihood scorer answers technique_classification examples only, not {}",
                ex.task
            ),
        });
    }
    let prompt_ids = runner
        .tokenizer
        .encode(&ex.prompt, true)
        .map_err(Error::model)?;
    let mut rows = Vec::with_capacity(cands.len());
    for c in cands {
        let (_, completion) = prompts
            .render_pair(ex.task, &ex.text, &json!({ "techniques": c }))
            .map_err(|e| Error::Input {
                path: "prompt template".into(),
                message: e.to_string(),
            })?;
        rows.push(EvalExample {
            completion,
            ..ex.clone()
        });
    }
    let n_cands = rows.len();
    // The reference completion is scored too, for the loss and perplexity.
    let own = match rows.iter().position(|r| r.completion == ex.completion) {
        Some(i) => i,
        None => {
            rows.push(ex.clone());
            n_cands
        }
    };
    let batch: Vec<(&EvalExample, Vec<u32>)> =
        rows.iter().map(|r| (r, prompt_ids.clone())).collect();
    let losses = runner.completion_losses(&batch)?;
    // Mean log-probability per token, so that short answers (`none`) are not favoured
    // for their length alone.
    let best = losses[..n_cands]
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.map(|(sum, n)| (i, sum / n.max(1) as f64)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
        .ok_or_else(|| Error::Input {
            path: ex.id.clone().into(),
            message: "no candidate answer fits the model's context".to_owned(),
        })?;
    Ok(RawOutput {
        text: rows[best].completion.clone(),
        finish: None,
        truncated: false,
        lm: losses[own],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_rank_by_frequency_and_end_with_none() {
        let labels = vec![
            vec!["T1105".to_owned()],
            vec!["T1105".to_owned(), "T1027".to_owned()],
            vec!["T1566".to_owned()],
        ];
        let c = candidates(&labels, 2);
        assert_eq!(
            c,
            vec![vec!["T1105".to_owned()], vec!["T1027".to_owned()], vec![]]
        );
    }

    #[test]
    fn regex_answers_read_back_as_the_extracted_indicators() {
        let ex = EvalExample {
            id: "a".into(),
            task: Task::IocExtraction,
            text: "Beacon to 203.0.113[.]7 and evil[.]com".into(),
            prompt: String::new(),
            completion: String::new(),
            reference: Reference::Iocs(vec![]),
        };
        let out = regex_answer(&ex).expect("answer");
        let (parsed, _) = crate::parse::iocs(&out.text);
        assert!(
            parsed.contains(&("ipv4".to_owned(), "203.0.113.7".to_owned())),
            "{parsed:?}"
        );
        assert!(
            parsed.contains(&("domain".to_owned(), "evil.com".to_owned())),
            "{parsed:?}"
        );
    }
}
