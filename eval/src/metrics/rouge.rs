//! ROUGE-N, ROUGE-L and ROUGE-Lsum, identical to Google's
//! [`rouge-score`](https://github.com/google-research/google-research/tree/master/rouge)
//! 0.1.2 (`rouge_scorer.RougeScorer`), after Lin, "ROUGE: A Package for Automatic Evaluation
//! of Summaries", 2004 (<https://aclanthology.org/W04-1013/>).
//!
//! - ROUGE-N: clipped n-gram overlap; precision over the prediction's n-grams, recall over
//!   the target's, each denominator at least 1.
//! - ROUGE-L: longest common subsequence of the whole token sequences.
//! - ROUGE-Lsum: summary-level LCS: both texts are split into sentences on `\n` (empty
//!   lines dropped), each target sentence takes the union of its LCS token positions against
//!   every predicted sentence, and hits are clipped by token counts so a token is not
//!   credited twice (as ROUGE-1.5.5 does).
//! - F-measure is `2PR / (P + R)`, 0 when both are 0.
//!
//! Aggregation: [`mean_scores`] is the plain mean of per-pair scores (what `rouge-score`'s
//! `BootstrapAggregator` reports as `mid` up to its unseeded resampling; use
//! [`crate::bootstrap`] for intervals).

use std::collections::HashMap;

use serde::Serialize;

use super::prf::harmonic;
use super::tokenize::{RougeTokenizer, tokenize};

/// A ROUGE variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RougeType {
    /// ROUGE-N for n ≥ 1 (`rouge1`, `rouge2`, …).
    N(usize),
    /// ROUGE-L over whole texts.
    L,
    /// Summary-level ROUGE-L over newline-separated sentences.
    Lsum,
}

impl RougeType {
    /// `rouge-score`'s name of the variant (`rouge1`, `rougeL`, `rougeLsum`).
    pub fn name(self) -> String {
        match self {
            Self::N(n) => format!("rouge{n}"),
            Self::L => "rougeL".into(),
            Self::Lsum => "rougeLsum".into(),
        }
    }
}

/// Precision, recall and F-measure of one variant on one pair (field names as
/// `rouge_score.scoring.Score`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct RougeScore {
    /// Matches over the prediction's size.
    pub precision: f64,
    /// Matches over the target's size.
    pub recall: f64,
    /// Harmonic mean of the two.
    pub fmeasure: f64,
}

impl RougeScore {
    fn from_pr(precision: f64, recall: f64) -> Self {
        Self {
            precision,
            recall,
            fmeasure: harmonic(precision, recall),
        }
    }
}

/// A configured scorer, like `rouge_scorer.RougeScorer(rouge_types, use_stemmer)`.
#[derive(Debug, Clone)]
pub struct RougeScorer {
    /// The variants to compute, in output order.
    pub types: Vec<RougeType>,
    /// Porter-stem tokens longer than three characters.
    pub use_stemmer: bool,
    /// Tokenizer.
    pub tokenizer: RougeTokenizer,
}

impl RougeScorer {
    /// ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum with the default tokenizer.
    pub fn new(use_stemmer: bool) -> Self {
        Self {
            types: vec![
                RougeType::N(1),
                RougeType::N(2),
                RougeType::L,
                RougeType::Lsum,
            ],
            use_stemmer,
            tokenizer: RougeTokenizer::Default,
        }
    }

    /// Scores `prediction` against `target` (the order of `RougeScorer.score(target,
    /// prediction)`), one score per configured variant.
    pub fn score(&self, target: &str, prediction: &str) -> Vec<RougeScore> {
        let mut vocab = Vocab::default();
        let needs_whole = self.types.iter().any(|t| *t != RougeType::Lsum);
        let (t, p) = if needs_whole {
            (
                vocab.ids(&self.tokens(target)),
                vocab.ids(&self.tokens(prediction)),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        self.types
            .iter()
            .map(|ty| match *ty {
                RougeType::N(n) => ngram_score(&t, &p, n),
                RougeType::L => lcs_score(&t, &p),
                RougeType::Lsum => {
                    let ts = self.sentences(target, &mut vocab);
                    let ps = self.sentences(prediction, &mut vocab);
                    summary_lcs_score(&ts, &ps)
                }
            })
            .collect()
    }

    /// Scores against several targets and keeps, per variant, the score with the highest
    /// F-measure (the first on ties), as `RougeScorer.score_multi`.
    pub fn score_multi<S: AsRef<str>>(&self, targets: &[S], prediction: &str) -> Vec<RougeScore> {
        let mut best: Vec<Option<RougeScore>> = vec![None; self.types.len()];
        for target in targets {
            for (slot, s) in best.iter_mut().zip(self.score(target.as_ref(), prediction)) {
                if slot.is_none_or(|b| s.fmeasure > b.fmeasure) {
                    *slot = Some(s);
                }
            }
        }
        best.into_iter().map(Option::unwrap_or_default).collect()
    }

    fn tokens(&self, text: &str) -> Vec<String> {
        tokenize(text, self.tokenizer, self.use_stemmer)
    }

    fn sentences(&self, text: &str, vocab: &mut Vocab) -> Vec<Vec<u32>> {
        text.split('\n')
            .filter(|s| !s.is_empty())
            .map(|s| vocab.ids(&self.tokens(s)))
            .collect()
    }
}

/// Per-variant mean of per-pair scores (`scores[i][k]` is pair i, variant k).
pub fn mean_scores(scores: &[Vec<RougeScore>]) -> Vec<RougeScore> {
    let k = scores.first().map_or(0, Vec::len);
    let n = scores.len() as f64;
    (0..k)
        .map(|j| {
            let mut sum = RougeScore::default();
            for row in scores {
                sum.precision += row[j].precision;
                sum.recall += row[j].recall;
                sum.fmeasure += row[j].fmeasure;
            }
            RougeScore {
                precision: sum.precision / n,
                recall: sum.recall / n,
                fmeasure: sum.fmeasure / n,
            }
        })
        .collect()
}

/// Interns tokens as integers so n-grams and LCS compare integers.
#[derive(Default)]
struct Vocab(HashMap<String, u32>);

impl Vocab {
    fn ids(&mut self, tokens: &[String]) -> Vec<u32> {
        tokens
            .iter()
            .map(|t| {
                let next = self.0.len() as u32;
                *self.0.entry(t.clone()).or_insert(next)
            })
            .collect()
    }
}

fn ngram_counts(tokens: &[u32], n: usize) -> HashMap<&[u32], usize> {
    let mut counts = HashMap::new();
    if n > 0 && tokens.len() >= n {
        for w in tokens.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

fn ngram_score(target: &[u32], prediction: &[u32], n: usize) -> RougeScore {
    let t = ngram_counts(target, n);
    let p = ngram_counts(prediction, n);
    let overlap: usize = t
        .iter()
        .map(|(g, &c)| c.min(p.get(g).copied().unwrap_or(0)))
        .sum();
    let t_total: usize = t.values().sum();
    let p_total: usize = p.values().sum();
    RougeScore::from_pr(
        overlap as f64 / p_total.max(1) as f64,
        overlap as f64 / t_total.max(1) as f64,
    )
}

/// The LCS dynamic-programming table, `(a.len() + 1) × (b.len() + 1)`, row-major.
fn lcs_table(a: &[u32], b: &[u32]) -> Vec<u32> {
    let w = b.len() + 1;
    let mut t = vec![0u32; (a.len() + 1) * w];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            t[i * w + j] = if a[i - 1] == b[j - 1] {
                t[(i - 1) * w + j - 1] + 1
            } else {
                t[(i - 1) * w + j].max(t[i * w + j - 1])
            };
        }
    }
    t
}

/// LCS length with two rows of memory.
fn lcs_len(a: &[u32], b: &[u32]) -> usize {
    let mut prev = vec![0u32; b.len() + 1];
    let mut cur = vec![0u32; b.len() + 1];
    for &x in a {
        for j in 1..=b.len() {
            cur[j] = if x == b[j - 1] {
                prev[j - 1] + 1
            } else {
                prev[j].max(cur[j - 1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()] as usize
}

fn lcs_score(target: &[u32], prediction: &[u32]) -> RougeScore {
    if target.is_empty() || prediction.is_empty() {
        return RougeScore::default();
    }
    let l = lcs_len(target, prediction) as f64;
    RougeScore::from_pr(l / prediction.len() as f64, l / target.len() as f64)
}

/// Positions in `r` of one LCS with `c`, chosen by `rouge-score`'s backtracking (match
/// first, else move left in `c` only when that cell is strictly larger).
fn lcs_positions(r: &[u32], c: &[u32], out: &mut Vec<usize>) {
    let t = lcs_table(r, c);
    let w = c.len() + 1;
    let (mut i, mut j) = (r.len(), c.len());
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i * w + j - 1] > t[(i - 1) * w + j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
}

fn summary_lcs_score(target: &[Vec<u32>], prediction: &[Vec<u32>]) -> RougeScore {
    if target.is_empty() || prediction.is_empty() {
        return RougeScore::default();
    }
    let m: usize = target.iter().map(Vec::len).sum();
    let n: usize = prediction.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return RougeScore::default();
    }
    let mut count_t: HashMap<u32, usize> = HashMap::new();
    let mut count_p: HashMap<u32, usize> = HashMap::new();
    for &tok in target.iter().flatten() {
        *count_t.entry(tok).or_default() += 1;
    }
    for &tok in prediction.iter().flatten() {
        *count_p.entry(tok).or_default() += 1;
    }
    let mut hits = 0usize;
    let mut union = Vec::new();
    for r in target {
        union.clear();
        for c in prediction {
            lcs_positions(r, c, &mut union);
        }
        union.sort_unstable();
        union.dedup();
        for &pos in &union {
            let tok = r[pos];
            let (Some(ct), Some(cp)) = (count_t.get_mut(&tok), count_p.get_mut(&tok)) else {
                continue;
            };
            if *ct > 0 && *cp > 0 {
                hits += 1;
                *ct -= 1;
                *cp -= 1;
            }
        }
    }
    RougeScore::from_pr(hits as f64 / n as f64, hits as f64 / m as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: RougeScore, p: f64, r: f64) {
        assert!(
            (a.precision - p).abs() < 1e-12 && (a.recall - r).abs() < 1e-12,
            "{a:?} vs {p} {r}"
        );
    }

    /// rouge-score's own unit-test pair ("testRouge1", "testRougeL").
    #[test]
    fn rouge_score_readme_pair() {
        let s = RougeScorer::new(false);
        let out = s.score(
            "The quick brown fox jumps over the lazy dog",
            "The quick brown dog jumps on the log.",
        );
        close(out[0], 6.0 / 8.0, 6.0 / 9.0);
        close(out[1], 2.0 / 7.0, 2.0 / 8.0);
        close(out[2], 5.0 / 8.0, 5.0 / 9.0);
    }

    /// The summary-level example of Lin (2004), section 3.2: r = w1..w5,
    /// c1 = w1 w2 w6 w7 w8, c2 = w1 w3 w8 w9 w5 gives union LCS w1 w2 w3 w5 (4 hits).
    #[test]
    fn lsum_union_lcs_example() {
        let s = RougeScorer {
            types: vec![RougeType::Lsum],
            ..RougeScorer::new(false)
        };
        let out = s.score("w1 w2 w3 w4 w5", "w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5");
        close(out[0], 4.0 / 10.0, 4.0 / 5.0);
        let empty = s.score("", "x");
        assert_eq!(empty[0], RougeScore::default());
    }

    #[test]
    fn multi_takes_best_fmeasure_and_mean_averages() {
        let s = RougeScorer {
            types: vec![RougeType::N(1)],
            ..RougeScorer::new(false)
        };
        let best = s.score_multi(&["a b", "a b c"], "a b c");
        assert_eq!(best[0].fmeasure, 1.0);
        let mean = mean_scores(&[vec![best[0]], vec![RougeScore::default()]]);
        assert_eq!(mean[0].fmeasure, 0.5);
    }
}
