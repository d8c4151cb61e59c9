//! What a drift report compares: the features of one dataset (or of a model's predictions
//! on it), as plain Rust data the caller extracts from wherever the dataset lives.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The category an example with no labels counts as in the label distribution, so a
/// growing share of unlabelled examples shows up as drift.
pub const NO_LABEL: &str = "(none)";

/// The features of one side (reference or current) of a drift report.
///
/// `labels`, `text_chars`, `token_counts` and `predicted_labels` hold one entry per
/// example, in the same order; `word_counts` and `ioc_kinds` are totals over the
/// examples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriftInput {
    /// Each example's gold labels (e.g. ATT&CK technique IDs); may be empty.
    pub labels: Vec<Vec<String>>,
    /// Each example's text length in characters (Unicode scalar values).
    pub text_chars: Vec<f64>,
    /// Each example's token count (prompt plus completion), when the dataset is
    /// tokenised.
    pub token_counts: Option<Vec<f64>>,
    /// How often each word occurs over all texts (see [`words`]).
    pub word_counts: BTreeMap<String, u64>,
    /// How many IOCs of each kind (`ipv4`, `domain`, `sha256`, …) occur over all examples.
    pub ioc_kinds: BTreeMap<String, u64>,
    /// Each example's labels as predicted by the model under review, when one is given.
    pub predicted_labels: Option<Vec<Vec<String>>>,
}

/// The words of a text for the vocabulary statistics: split on whitespace and on
/// brackets, quotes, commas and semicolons, stripped of leading and trailing
/// punctuation, lowercased. Dots, dashes, slashes and colons inside a word are kept, so
/// `evil.example.com`, `T1059.001` and `10.0.0.1` stay one word.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| c.is_whitespace() || "()[]{}<>\"'`,;|".contains(c))
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

impl DriftInput {
    /// Records one example's text: its length in characters and its [`words`].
    pub fn add_text(&mut self, text: &str) {
        self.text_chars.push(text.chars().count() as f64);
        for w in words(text) {
            *self.word_counts.entry(w).or_insert(0) += 1;
        }
    }

    /// The number of examples.
    pub fn examples(&self) -> usize {
        self.text_chars.len()
    }

    /// How often each gold label occurs, an unlabelled example counting as [`NO_LABEL`].
    pub fn label_counts(&self) -> BTreeMap<String, u64> {
        count_labels(&self.labels)
    }

    /// [`Self::label_counts`] of the predicted labels, if any.
    pub fn predicted_label_counts(&self) -> Option<BTreeMap<String, u64>> {
        self.predicted_labels.as_deref().map(count_labels)
    }

    /// Checks that the per-example vectors agree in length, that there is at least one
    /// example and that every number is finite and non-negative.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `side` (`reference` or `current`), the field and the
    /// first bad example.
    pub fn validate(&self, side: &str) -> Result<()> {
        let n = self.examples();
        let field = |f: &str| format!("{side} drift input {f}");
        if n == 0 {
            return Err(Error::invalid(field("text_chars"), "no examples"));
        }
        let mut lengths = vec![("labels", self.labels.len())];
        if let Some(t) = &self.token_counts {
            lengths.push(("token_counts", t.len()));
        }
        if let Some(p) = &self.predicted_labels {
            lengths.push(("predicted_labels", p.len()));
        }
        for (name, len) in lengths {
            if len != n {
                return Err(Error::invalid(
                    field(name),
                    format!("{len} entries for {n} examples (one per example expected)"),
                ));
            }
        }
        let numeric = [
            ("text_chars", Some(&self.text_chars)),
            ("token_counts", self.token_counts.as_ref()),
        ];
        for (name, values) in numeric {
            if let Some(i) = values.and_then(|v| v.iter().position(|x| !x.is_finite() || *x < 0.0))
            {
                return Err(Error::invalid(
                    field(name),
                    format!("example {i} is not a finite, non-negative number"),
                ));
            }
        }
        Ok(())
    }
}

fn count_labels(labels: &[Vec<String>]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for example in labels {
        if example.is_empty() {
            *counts.entry(NO_LABEL.to_string()).or_insert(0) += 1;
        }
        for label in example {
            *counts.entry(label.clone()).or_insert(0) += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_indicators_whole() {
        let w: Vec<String> = words("APT29 used (evil.example.com), 10.0.0.1; T1059.001.").collect();
        assert_eq!(
            w,
            ["apt29", "used", "evil.example.com", "10.0.0.1", "t1059.001"]
        );
    }

    #[test]
    fn text_and_labels_are_counted() {
        let mut input = DriftInput::default();
        input.add_text("a b a");
        input.add_text("é");
        input.labels = vec![vec!["T1".into(), "T2".into()], vec![]];
        assert_eq!(input.text_chars, [5.0, 1.0]);
        assert_eq!(input.word_counts.get("a"), Some(&2));
        let labels = input.label_counts();
        assert_eq!(labels.get(NO_LABEL), Some(&1));
        assert_eq!(labels.get("T2"), Some(&1));
        assert!(input.validate("reference").is_ok());
    }

    #[test]
    fn mismatched_or_bad_inputs_are_refused() {
        let mut input = DriftInput::default();
        assert!(format!("{:?}", input.validate("current")).contains("no examples"));
        input.add_text("x");
        let err = format!("{:?}", input.validate("current"));
        assert!(err.contains("current drift input labels"), "{err}");
        input.labels = vec![vec![]];
        input.token_counts = Some(vec![f64::NAN]);
        let err = format!("{:?}", input.validate("current"));
        assert!(
            err.contains("token_counts") && err.contains("example 0"),
            "{err}"
        );
    }
}
