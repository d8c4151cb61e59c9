//! Corpus BLEU identical to [`sacrebleu`](https://github.com/mjpost/sacrebleu) 2.6
//! (`sacrebleu.metrics.BLEU`), after Papineni et al., "BLEU: a Method for Automatic
//! Evaluation of Machine Translation", 2002 (<https://aclanthology.org/P02-1040/>), with
//! Post, "A Call for Clarity in Reporting BLEU Scores", 2018
//! (<https://aclanthology.org/W18-6319/>).
//!
//! Defaults are sacrebleu's: the `13a` tokenizer (mteval-v13a), mixed case, `exp`
//! smoothing, n-grams up to 4, no effective order. Each segment may have several
//! references: n-gram counts are clipped by the maximum count in any reference, and the
//! reference length is the closest to the hypothesis (the shorter on ties). The signature
//! string records the settings (`nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`;
//! `nrefs:var` when segments have different numbers of references).

use std::collections::HashMap;

use serde::Serialize;

use super::pyspace::{is_py_space, py_rstrip, py_split};
use crate::{Error, Result};

/// The sacrebleu version whose behaviour and signature this module reproduces.
pub const SACREBLEU_VERSION: &str = "2.6.0";

/// Tokenization applied to hypotheses and references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum BleuTokenizer {
    /// mteval-v13a (`tok:13a`).
    #[default]
    Tok13a,
    /// Whitespace only (`tok:none`).
    None,
}

/// Smoothing of zero n-gram precisions.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub enum Smoothing {
    /// No smoothing (`none`).
    None,
    /// mteval's exponential smoothing (`exp`): the k-th zero precision becomes
    /// `100 / (2^k · total)`.
    #[default]
    Exp,
    /// A zero precision becomes `100 · value / total` (`floor`, sacrebleu default 0.1).
    Floor(f64),
    /// Add `value` to matches and totals of orders ≥ 2 (`add-k`, sacrebleu default 1).
    AddK(f64),
}

/// Options of [`corpus_bleu`], sacrebleu's `BLEU(...)` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BleuOptions {
    /// Lowercase before tokenizing (`case:lc`).
    pub lowercase: bool,
    /// Tokenizer.
    pub tokenizer: BleuTokenizer,
    /// Smoothing method.
    pub smoothing: Smoothing,
    /// Highest n-gram order.
    pub max_ngram_order: usize,
    /// Average only up to the highest order with any hypothesis n-gram (`eff:yes`).
    pub effective_order: bool,
}

impl Default for BleuOptions {
    fn default() -> Self {
        Self {
            lowercase: false,
            tokenizer: BleuTokenizer::Tok13a,
            smoothing: Smoothing::Exp,
            max_ngram_order: 4,
            effective_order: false,
        }
    }
}

/// A corpus BLEU result (sacrebleu's `BLEUScore`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BleuScore {
    /// BLEU on a 0–100 scale.
    pub score: f64,
    /// Matched n-grams per order (after add-k smoothing, if any).
    pub counts: Vec<f64>,
    /// Hypothesis n-grams per order (after add-k smoothing, if any).
    pub totals: Vec<f64>,
    /// n-gram precisions per order, in percent.
    pub precisions: Vec<f64>,
    /// Brevity penalty.
    pub bp: f64,
    /// Total hypothesis length in tokens.
    pub sys_len: usize,
    /// Total (closest) reference length in tokens.
    pub ref_len: usize,
    /// sacrebleu's reproducibility signature.
    pub signature: String,
}

/// Corpus BLEU of `hypotheses` against `references[i]` (one or more references per
/// segment).
///
/// # Errors
/// [`Error::LengthMismatch`] when the two slices differ in length, [`Error::NoReference`]
/// for a segment without references, [`Error::InvalidValue`] for a zero n-gram order.
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[Vec<R>],
    options: &BleuOptions,
) -> Result<BleuScore> {
    if hypotheses.len() != references.len() {
        return Err(Error::LengthMismatch {
            what: "BLEU segments".into(),
            left: hypotheses.len(),
            right: references.len(),
        });
    }
    if options.max_ngram_order == 0 {
        return Err(Error::InvalidValue {
            what: "BLEU max_ngram_order".into(),
            value: "0".into(),
            expected: "an order of at least 1",
        });
    }
    let order = options.max_ngram_order;
    let mut correct = vec![0usize; order];
    let mut total = vec![0usize; order];
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    let mut nrefs: Option<usize> = None;
    let mut var_refs = false;
    for (i, (hyp, refs)) in hypotheses.iter().zip(references).enumerate() {
        if refs.is_empty() {
            return Err(Error::NoReference { segment: i });
        }
        match nrefs {
            None => nrefs = Some(refs.len()),
            Some(n) if n != refs.len() => var_refs = true,
            Some(_) => {}
        }
        let stats = segment_stats(hyp.as_ref(), refs, options);
        sys_len += stats.hyp_len;
        ref_len += stats.ref_len;
        for n in 0..order {
            correct[n] += stats.correct[n];
            total[n] += stats.total[n];
        }
    }
    let nrefs = match (var_refs, nrefs) {
        (true, _) => "var".to_string(),
        (false, Some(n)) => n.to_string(),
        // sacrebleu reports `nrefs:0` for an empty corpus.
        (false, None) => "0".to_string(),
    };
    let mut score = compute_bleu(&correct, &total, sys_len, ref_len, options);
    score.signature = signature(&nrefs, options);
    Ok(score)
}

/// sacrebleu's signature for these options and reference count.
pub fn signature(nrefs: &str, options: &BleuOptions) -> String {
    let smooth = match options.smoothing {
        Smoothing::None => "none".to_string(),
        Smoothing::Exp => "exp".to_string(),
        Smoothing::Floor(v) => format!("floor[{v:.2}]"),
        Smoothing::AddK(v) => format!("add-k[{v:.2}]"),
    };
    format!(
        "nrefs:{nrefs}|case:{}|eff:{}|tok:{}|smooth:{smooth}|version:{SACREBLEU_VERSION}",
        if options.lowercase { "lc" } else { "mixed" },
        if options.effective_order { "yes" } else { "no" },
        match options.tokenizer {
            BleuTokenizer::Tok13a => "13a",
            BleuTokenizer::None => "none",
        },
    )
}

struct SegmentStats {
    hyp_len: usize,
    ref_len: usize,
    correct: Vec<usize>,
    total: Vec<usize>,
}

fn preprocess(text: &str, options: &BleuOptions) -> String {
    let stripped = if options.lowercase {
        text.to_lowercase()
    } else {
        text.to_string()
    };
    let stripped = py_rstrip(&stripped);
    match options.tokenizer {
        BleuTokenizer::Tok13a => tokenize_13a(stripped),
        BleuTokenizer::None => stripped.to_string(),
    }
}

fn segment_stats<R: AsRef<str>>(hyp: &str, refs: &[R], options: &BleuOptions) -> SegmentStats {
    let order = options.max_ngram_order;
    let mut vocab: HashMap<String, u32> = HashMap::new();
    let mut ids = |text: &str| -> Vec<u32> {
        py_split(text)
            .map(|t| {
                let next = vocab.len() as u32;
                *vocab.entry(t.to_string()).or_insert(next)
            })
            .collect()
    };
    let ref_ids: Vec<Vec<u32>> = refs
        .iter()
        .map(|r| ids(&preprocess(r.as_ref(), options)))
        .collect();
    let hyp_ids = ids(&preprocess(hyp, options));
    let mut ref_max: HashMap<&[u32], usize> = HashMap::new();
    for r in &ref_ids {
        for (gram, c) in ngrams(r, order) {
            let e = ref_max.entry(gram).or_insert(0);
            *e = (*e).max(c);
        }
    }
    let mut correct = vec![0; order];
    let mut total = vec![0; order];
    for (gram, c) in ngrams(&hyp_ids, order) {
        total[gram.len() - 1] += c;
        if let Some(&rc) = ref_max.get(gram) {
            correct[gram.len() - 1] += c.min(rc);
        }
    }
    let hyp_len = hyp_ids.len();
    SegmentStats {
        hyp_len,
        ref_len: closest_ref_len(hyp_len, &ref_ids),
        correct,
        total,
    }
}

fn ngrams(tokens: &[u32], order: usize) -> HashMap<&[u32], usize> {
    let mut counts = HashMap::new();
    for n in 1..=order.min(tokens.len()) {
        for w in tokens.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// The reference length closest to `hyp_len`, the shorter on ties.
fn closest_ref_len(hyp_len: usize, refs: &[Vec<u32>]) -> usize {
    let mut best: Option<(usize, usize)> = None;
    for r in refs {
        let len = r.len();
        let diff = len.abs_diff(hyp_len);
        best = match best {
            Some((d, l)) if d < diff || (d == diff && l <= len) => Some((d, l)),
            _ => Some((diff, len)),
        };
    }
    best.map_or(0, |(_, l)| l)
}

/// sacrebleu's `BLEU.compute_bleu` from corpus statistics.
fn compute_bleu(
    correct: &[usize],
    total: &[usize],
    sys_len: usize,
    ref_len: usize,
    options: &BleuOptions,
) -> BleuScore {
    let order = options.max_ngram_order;
    let mut counts: Vec<f64> = correct.iter().map(|&c| c as f64).collect();
    let mut totals: Vec<f64> = total.iter().map(|&c| c as f64).collect();
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = vec![0.0; order];
    let mut out = BleuScore {
        score: 0.0,
        counts: Vec::new(),
        totals: Vec::new(),
        precisions: Vec::new(),
        bp,
        sys_len,
        ref_len,
        signature: String::new(),
    };
    if correct.iter().all(|&c| c == 0) {
        out.counts = counts;
        out.totals = totals;
        out.precisions = precisions;
        return out;
    }
    let mut smooth_mteval = 1.0f64;
    let mut eff_order = order;
    for n in 0..order {
        if let Smoothing::AddK(k) = options.smoothing
            && n > 0
        {
            counts[n] += k;
            totals[n] += k;
        }
        if totals[n] == 0.0 {
            break;
        }
        if options.effective_order {
            eff_order = n + 1;
        }
        if counts[n] == 0.0 {
            match options.smoothing {
                Smoothing::Exp => {
                    smooth_mteval *= 2.0;
                    precisions[n] = 100.0 / (smooth_mteval * totals[n]);
                }
                Smoothing::Floor(v) => precisions[n] = 100.0 * v / totals[n],
                Smoothing::None | Smoothing::AddK(_) => {}
            }
        } else {
            precisions[n] = 100.0 * counts[n] / totals[n];
        }
    }
    let log_sum: f64 = precisions[..eff_order]
        .iter()
        .map(|&p| if p == 0.0 { -9_999_999_999.0 } else { p.ln() })
        .sum();
    out.score = bp * (log_sum / eff_order as f64).exp();
    out.counts = counts;
    out.totals = totals;
    out.precisions = precisions;
    out
}

/// The mteval-v13a tokenizer as sacrebleu's `Tokenizer13a`: drop `<skipped>`, join
/// `-\n` line breaks, unescape four HTML entities, split off punctuation and symbols,
/// split `.` and `,` unless between digits, split `-` after a digit, collapse whitespace.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut s: Vec<char> = Vec::with_capacity(line.len() + 2);
    s.push(' ');
    // Pass 1: `([\{-\~\[-\` -\&\(-\+\:-\@\/])` → ` \1 `.
    for c in line.chars() {
        if is_13a_symbol(c) {
            s.extend([' ', c, ' ']);
        } else {
            s.push(c);
        }
    }
    s.push(' ');
    // Pass 2: `([^0-9])([\.,])` → `\1 \2 `.
    let s = two_char_pass(
        &s,
        |a, b| !a.is_ascii_digit() && matches!(b, '.' | ','),
        |a, b, o| o.extend([a, ' ', b, ' ']),
    );
    // Pass 3: `([\.,])([^0-9])` → ` \1 \2`.
    let s = two_char_pass(
        &s,
        |a, b| matches!(a, '.' | ',') && !b.is_ascii_digit(),
        |a, b, o| o.extend([' ', a, ' ', b]),
    );
    // Pass 4: `([0-9])(-)` → `\1 \2 `.
    let s = two_char_pass(
        &s,
        |a, b| a.is_ascii_digit() && b == '-',
        |a, b, o| o.extend([a, ' ', b, ' ']),
    );
    let joined: String = s.into_iter().collect();
    let mut out = String::with_capacity(joined.len());
    for (i, tok) in joined
        .split(is_py_space)
        .filter(|t| !t.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(tok);
    }
    out
}

fn is_13a_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// One `re.sub` pass of a two-character pattern: leftmost, non-overlapping matches.
fn two_char_pass(
    s: &[char],
    matches: impl Fn(char, char) -> bool,
    emit: impl Fn(char, char, &mut Vec<char>),
) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() + s.len() / 4);
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && matches(s[i], s[i + 1]) {
            emit(s[i], s[i + 1], &mut out);
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_examples() {
        assert_eq!(
            tokenize_13a("Hello, world! It's 3.14 - no 1,000-2."),
            "Hello , world ! It's 3.14 - no 1,000 - 2 ."
        );
        assert_eq!(tokenize_13a("a..b &amp; x<skipped>y"), "a . . b & xy");
        assert_eq!(tokenize_13a("hy-\nphen\nnext"), "hyphen next");
    }

    /// A perfect match scores 100 and the signature is sacrebleu's default one.
    #[test]
    fn identity_and_signature() {
        let hyps = ["The cat sat on the mat today."];
        let refs = [vec!["The cat sat on the mat today."]];
        let s = corpus_bleu(&hyps, &refs, &BleuOptions::default()).unwrap();
        assert!((s.score - 100.0).abs() < 1e-12);
        assert_eq!(
            s.signature,
            "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
        );
    }

    /// Hand-computed: hyp "a b c d" vs ref "a b c e f": p1 3/4, p2 2/3, p3 1/2, p4 0 → exp
    /// smoothing 100/(2·1); bp = exp(1 - 5/4).
    #[test]
    fn hand_computed_with_exp_smoothing() {
        let s = corpus_bleu(&["a b c d"], &[vec!["a b c e f"]], &BleuOptions::default()).unwrap();
        let logs = [
            75.0f64.ln(),
            (200.0f64 / 3.0).ln(),
            50.0f64.ln(),
            50.0f64.ln(),
        ];
        let want = (1.0f64 - 5.0 / 4.0).exp() * (logs.iter().sum::<f64>() / 4.0).exp();
        assert!((s.score - want).abs() < 1e-12, "{} vs {want}", s.score);
        assert_eq!((s.sys_len, s.ref_len), (4, 5));
        let multi = corpus_bleu(&["x"], &[vec!["x y", "x y z"]], &BleuOptions::default()).unwrap();
        assert_eq!(multi.ref_len, 2);
        let var = corpus_bleu(
            &["x", "y"],
            &[vec!["x"], vec!["y", "z"]],
            &BleuOptions::default(),
        )
        .unwrap();
        assert!(var.signature.starts_with("nrefs:var|"));
    }

    #[test]
    fn missing_references_are_errors() {
        let none: [Vec<&str>; 1] = [vec![]];
        assert!(matches!(
            corpus_bleu(&["x"], &none, &BleuOptions::default()),
            Err(Error::NoReference { segment: 0 })
        ));
        assert!(matches!(
            corpus_bleu(&["x", "y"], &none, &BleuOptions::default()),
            Err(Error::LengthMismatch { .. })
        ));
    }
}
