//! BIO span F1, number for number the `classification_report` of
//! [`seqeval`](https://github.com/chakki-works/seqeval) 1.2 (CoNLL-style span scoring).
//!
//! Two modes:
//! - [`BioMode::Conlleval`] is seqeval's default (`mode=None`): the lenient chunking of
//!   `conlleval`, where an `I-X` without a preceding `B-X` still starts a chunk, a type
//!   change ends one, and any tag is accepted (the first character is the prefix, the part
//!   after the first `-` the type). Sentences are joined with an `O` between them, as seqeval
//!   flattens nested lists, so spans never cross sentences.
//! - [`BioMode::StrictIob2`] is `mode='strict', scheme=IOB2`: a span is a `B-X` followed by
//!   `I-X`s; an `I-X` that does not continue a span is not an entity; a prefix other than
//!   `B`, `I` or `O` is an error.
//!
//! Spans are compared as sets of (type, sentence, start, end): a predicted span counts only
//! if its type and both boundaries are exact. Per type P = tp/pred and R = tp/true (0 when
//! the denominator is 0) and F1 = 2PR/(P+R); the micro average sums the counts, macro is the
//! plain mean over the types seen in either side (NaN when there are none, as seqeval), and
//! the weighted average weights by support (seqeval's all-zero-support rule included).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::prf::{Prf, ZeroDivision};
use crate::{Error, Result};

/// How chunks are read from the tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum BioMode {
    /// seqeval's default, conlleval-compatible lenient chunking.
    #[default]
    Conlleval,
    /// seqeval `mode='strict'` with `scheme=IOB2`.
    StrictIob2,
}

/// A chunk: type, start token and end token (exclusive), in sentence `sentence`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Span {
    /// The entity type (`_` when the tag has none).
    pub kind: String,
    /// Index of the sentence.
    pub sentence: usize,
    /// First token.
    pub start: usize,
    /// One past the last token.
    pub end: usize,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpanRow {
    /// Precision, recall and F1.
    #[serde(flatten)]
    pub scores: Prf,
    /// Reference spans.
    pub support: usize,
    /// Predicted spans.
    pub predicted: usize,
    /// Exactly matching spans.
    pub true_positives: usize,
}

/// seqeval's `classification_report(..., output_dict=True)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpanReport {
    /// One row per type, sorted by type name.
    pub per_type: BTreeMap<String, SpanRow>,
    /// Micro average.
    pub micro: SpanRow,
    /// Macro average (support = total support).
    pub macro_avg: SpanRow,
    /// Support-weighted average (support = total support).
    pub weighted: SpanRow,
}

/// Extracts the chunks of tagged sentences. `side` names the input in errors.
///
/// # Errors
/// [`Error::InvalidTag`] for an empty tag (both modes) or a prefix outside `B`/`I`/`O`
/// ([`BioMode::StrictIob2`]).
pub fn spans<S: AsRef<str>>(
    sentences: &[Vec<S>],
    mode: BioMode,
    side: &'static str,
) -> Result<Vec<Span>> {
    match mode {
        BioMode::Conlleval => conlleval_spans(sentences, side),
        BioMode::StrictIob2 => {
            let mut out = Vec::new();
            for (i, s) in sentences.iter().enumerate() {
                strict_iob2_spans(i, s, side, &mut out)?;
            }
            Ok(out)
        }
    }
}

/// Scores predicted tag sequences against reference ones.
///
/// # Errors
/// [`Error::LengthMismatch`] when the sentence counts or any sentence's token counts differ,
/// [`Error::Empty`] without sentences, and the errors of [`spans`].
pub fn span_report<S: AsRef<str>, P: AsRef<str>>(
    reference: &[Vec<S>],
    predicted: &[Vec<P>],
    mode: BioMode,
) -> Result<SpanReport> {
    if reference.len() != predicted.len() {
        return Err(Error::LengthMismatch {
            what: "BIO sentences".into(),
            left: predicted.len(),
            right: reference.len(),
        });
    }
    if reference.is_empty() {
        return Err(Error::Empty {
            metric: "BIO span F1",
        });
    }
    for (i, (r, p)) in reference.iter().zip(predicted).enumerate() {
        if r.len() != p.len() {
            return Err(Error::LengthMismatch {
                what: format!("BIO sentence {i} (tokens)"),
                left: p.len(),
                right: r.len(),
            });
        }
    }
    let gold: BTreeSet<Span> = spans(reference, mode, "reference")?.into_iter().collect();
    let pred: BTreeSet<Span> = spans(predicted, mode, "predicted")?.into_iter().collect();
    Ok(report(&gold, &pred))
}

fn report(gold: &BTreeSet<Span>, pred: &BTreeSet<Span>) -> SpanReport {
    let mut counts: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for s in pred {
        let c = counts.entry(s.kind.clone()).or_default();
        c.1 += 1;
        if gold.contains(s) {
            c.0 += 1;
        }
    }
    for s in gold {
        counts.entry(s.kind.clone()).or_default().2 += 1;
    }
    let zd = ZeroDivision::Zero;
    let row = |tp: usize, p: usize, t: usize| SpanRow {
        scores: Prf::from_counts_via_pr(tp as f64, p as f64, t as f64, zd),
        support: t,
        predicted: p,
        true_positives: tp,
    };
    let per_type: BTreeMap<String, SpanRow> = counts
        .into_iter()
        .map(|(k, (tp, p, t))| (k, row(tp, p, t)))
        .collect();
    let (tp, p, t) = per_type.values().fold((0, 0, 0), |a, r| {
        (a.0 + r.true_positives, a.1 + r.predicted, a.2 + r.support)
    });
    let macro_avg = SpanRow {
        scores: Prf::mean(per_type.values().map(|r| &r.scores)),
        support: t,
        predicted: p,
        true_positives: tp,
    };
    let weighted_scores = if t == 0 {
        // seqeval: precision and F are 0 unless nothing was predicted either; recall is 0.
        Prf::default()
    } else {
        let mut w = Prf::default();
        for r in per_type.values() {
            let s = r.support as f64;
            w.precision += r.scores.precision * s;
            w.recall += r.scores.recall * s;
            w.f1 += r.scores.f1 * s;
        }
        let t = t as f64;
        Prf {
            precision: w.precision / t,
            recall: w.recall / t,
            f1: w.f1 / t,
        }
    };
    SpanReport {
        micro: row(tp, p, t),
        macro_avg,
        weighted: SpanRow {
            scores: weighted_scores,
            support: t,
            predicted: p,
            true_positives: tp,
        },
        per_type,
    }
}

/// seqeval's `get_entities` over the flattened sentences (each followed by `O`).
fn conlleval_spans<S: AsRef<str>>(sentences: &[Vec<S>], side: &'static str) -> Result<Vec<Span>> {
    let mut out = Vec::new();
    let mut prev_tag = 'O';
    let mut prev_type: &str = "";
    // The current chunk's start: (sentence, token in sentence, flattened position).
    let mut begin = (0usize, 0usize, 0usize);
    // Flattened position (sentences joined, each followed by the `O` sentinel).
    let mut g = 0usize;
    let sentinel = "O";
    for (si, sentence) in sentences.iter().enumerate() {
        let tags = sentence
            .iter()
            .map(AsRef::as_ref)
            .chain(std::iter::once(sentinel));
        for (ti, chunk) in tags.enumerate() {
            let mut chars = chunk.chars();
            let Some(tag) = chars.next() else {
                return Err(Error::InvalidTag {
                    side,
                    sentence: si,
                    token: ti,
                    tag: chunk.to_string(),
                    expected: "a non-empty tag such as O, B-X or I-X",
                });
            };
            let rest = chars.as_str();
            let kind = match rest.split_once('-') {
                Some((_, after)) => after,
                None => rest,
            };
            let kind = if kind.is_empty() { "_" } else { kind };
            if end_of_chunk(prev_tag, tag, prev_type, kind) {
                // seqeval's chunk is (type, begin, g - 1) in flattened positions; in the
                // rare malformed case where it runs across a sentence end, `end` is past
                // the sentence's length but the span stays unique.
                out.push(Span {
                    kind: prev_type.to_string(),
                    sentence: begin.0,
                    start: begin.1,
                    end: begin.1 + (g - begin.2),
                });
            }
            if start_of_chunk(prev_tag, tag, prev_type, kind) {
                begin = (si, ti, g);
            }
            prev_tag = tag;
            prev_type = kind;
            g += 1;
        }
    }
    Ok(out)
}

fn end_of_chunk(prev_tag: char, tag: char, prev_type: &str, kind: &str) -> bool {
    matches!(prev_tag, 'E' | 'S')
        || (matches!(prev_tag, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev_tag != 'O' && prev_tag != '.' && prev_type != kind)
}

fn start_of_chunk(prev_tag: char, tag: char, prev_type: &str, kind: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev_tag, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_type != kind)
}

/// seqeval's `Tokens(..., scheme=IOB2).entities` for one sentence.
fn strict_iob2_spans<S: AsRef<str>>(
    si: usize,
    sentence: &[S],
    side: &'static str,
    out: &mut Vec<Span>,
) -> Result<()> {
    let mut parsed: Vec<(char, &str)> = Vec::with_capacity(sentence.len());
    for (ti, token) in sentence.iter().enumerate() {
        let token = token.as_ref();
        let mut chars = token.chars();
        let prefix = chars.next().filter(|c| matches!(c, 'B' | 'I' | 'O'));
        let Some(prefix) = prefix else {
            return Err(Error::InvalidTag {
                side,
                sentence: si,
                token: ti,
                tag: token.to_string(),
                expected: "an IOB2 tag: O, B-<type> or I-<type>",
            });
        };
        let kind = chars.as_str().trim_matches('-');
        parsed.push((prefix, if kind.is_empty() { "_" } else { kind }));
    }
    let mut i = 0;
    while i < parsed.len() {
        let (prefix, kind) = parsed[i];
        if prefix != 'B' {
            i += 1;
            continue;
        }
        let mut end = i + 1;
        while end < parsed.len() && parsed[end] == ('I', kind) {
            end += 1;
        }
        out.push(Span {
            kind: kind.to_string(),
            sentence: si,
            start: i,
            end,
        });
        i = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(tags: &str) -> Vec<String> {
        tags.split_whitespace().map(str::to_string).collect()
    }

    /// The example of seqeval's README: micro 0.5, MISC 0, PER 1.
    #[test]
    fn seqeval_readme_example() {
        let gold = vec![v("O O O B-MISC I-MISC I-MISC O"), v("B-PER I-PER O")];
        let pred = vec![v("O O B-MISC I-MISC I-MISC I-MISC O"), v("B-PER I-PER O")];
        let r = span_report(&gold, &pred, BioMode::Conlleval).unwrap();
        assert_eq!(r.per_type["MISC"].scores.f1, 0.0);
        assert_eq!(r.per_type["PER"].scores.f1, 1.0);
        assert_eq!(r.micro.scores.f1, 0.5);
        assert_eq!(r.macro_avg.scores.f1, 0.5);
        assert_eq!(r.weighted.scores.f1, 0.5);
        assert_eq!(r.micro.support, 2);
    }

    #[test]
    fn lenient_and_strict_chunking_differ_on_orphan_inside() {
        let tags = vec![v("I-MAL I-MAL O B-IND I-MAL")];
        let lenient = spans(&tags, BioMode::Conlleval, "reference").unwrap();
        let kinds: Vec<_> = lenient
            .iter()
            .map(|s| (s.kind.as_str(), s.start, s.end))
            .collect();
        assert_eq!(kinds, [("MAL", 0, 2), ("IND", 3, 4), ("MAL", 4, 5)]);
        let strict = spans(&tags, BioMode::StrictIob2, "reference").unwrap();
        let kinds: Vec<_> = strict
            .iter()
            .map(|s| (s.kind.as_str(), s.start, s.end))
            .collect();
        assert_eq!(kinds, [("IND", 3, 4)]);
    }

    #[test]
    fn strict_rejects_other_prefixes_and_lengths_must_match() {
        let tags = vec![v("B-X E-X")];
        assert!(matches!(
            spans(&tags, BioMode::StrictIob2, "predicted"),
            Err(Error::InvalidTag { token: 1, .. })
        ));
        let short = vec![v("O")];
        assert!(matches!(
            span_report(&tags, &short, BioMode::Conlleval),
            Err(Error::LengthMismatch { .. })
        ));
    }
}
