//! Entity / IOC extraction scores over (type, value) pairs, micro-averaged, in the style of
//! the CoNLL and MUC "exact" and "type-agnostic" schemes
//! (<https://www.davidsbatista.net/blog/2018/05/09/Named_Entity_Evaluation/>).
//!
//! Each sample's entities form a **multiset**: extracting the same IOC twice when the
//! reference lists it once is one true positive and one false positive, and a reference
//! that lists it twice needs two predictions. Values are compared as given, so the caller
//! normalises first (data-prep's IOC refanging and case folding).
//!
//! - **strict**: a prediction matches a reference with the same type and the same value;
//! - **lenient**: the type is ignored, the value must match.
//!
//! Matches are counted per sample as `min(predicted count, reference count)` per key. Per
//! type, strict scores restrict both sides to that type. Lenient per-type scores attribute
//! a lenient match to the predicted item's type for precision and to the reference item's
//! type for recall; within one value, same-type pairs are matched first, then the rest in
//! type order, so lenient per-type counts are deterministic.

use std::collections::BTreeMap;
use std::fmt::Display;

use serde::Serialize;

use super::prf::{Prf, ZeroDivision};
use crate::{Error, Result};

/// Counts and scores of one matching scheme over one slice of the entities.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Scored {
    /// Predicted entities that matched a reference entity.
    pub matched_predicted: usize,
    /// Reference entities that a predicted entity matched.
    pub matched_reference: usize,
    /// Predicted entities.
    pub predicted: usize,
    /// Reference entities (support).
    pub reference: usize,
    /// Precision, recall and F1 (F1 = 2PR / (P + R), 0 when both are 0).
    #[serde(flatten)]
    pub scores: Prf,
}

impl Scored {
    fn finish(mut self) -> Self {
        let zd = ZeroDivision::Zero;
        let p = zd.divide(self.matched_predicted as f64, self.predicted as f64);
        let r = zd.divide(self.matched_reference as f64, self.reference as f64);
        self.scores = Prf {
            precision: p,
            recall: r,
            f1: super::prf::harmonic(p, r),
        };
        self
    }
}

/// Scores of one entity type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeScores<T> {
    /// The type (IOC kind).
    pub kind: T,
    /// Type and value must match.
    pub strict: Scored,
    /// Value must match, type ignored.
    pub lenient: Scored,
}

/// Entity extraction scores of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityReport<T> {
    /// Micro-averaged strict scores.
    pub strict: Scored,
    /// Micro-averaged lenient scores.
    pub lenient: Scored,
    /// Per-type scores, sorted by type; a type appears if it is predicted or referenced.
    pub per_type: Vec<TypeScores<T>>,
}

/// Scores predicted (type, value) entities against reference entities, sample by sample.
///
/// # Errors
/// [`Error::LengthMismatch`] when the slices differ in length, [`Error::Empty`] when they
/// are empty.
pub fn entity_scores<T, V>(
    predicted: &[Vec<(T, V)>],
    reference: &[Vec<(T, V)>],
) -> Result<EntityReport<T>>
where
    T: Ord + Clone + Display,
    V: Ord,
{
    if predicted.len() != reference.len() {
        return Err(Error::LengthMismatch {
            what: "entity samples".into(),
            left: predicted.len(),
            right: reference.len(),
        });
    }
    if predicted.is_empty() {
        return Err(Error::Empty {
            metric: "entity extraction",
        });
    }
    let mut types: BTreeMap<T, TypeScores<T>> = BTreeMap::new();
    for (pred, gold) in predicted.iter().zip(reference) {
        score_sample(pred, gold, &mut types);
    }
    let mut strict = Scored::default();
    let mut lenient = Scored::default();
    let per_type = types
        .into_values()
        .map(|mut t| {
            add(&mut strict, &t.strict);
            add(&mut lenient, &t.lenient);
            t.strict = t.strict.finish();
            t.lenient = t.lenient.finish();
            t
        })
        .collect();
    Ok(EntityReport {
        strict: strict.finish(),
        lenient: lenient.finish(),
        per_type,
    })
}

fn add(total: &mut Scored, part: &Scored) {
    total.matched_predicted += part.matched_predicted;
    total.matched_reference += part.matched_reference;
    total.predicted += part.predicted;
    total.reference += part.reference;
}

/// Per type: how many entities of one value carry it.
type TypeCounts<'a, T> = BTreeMap<&'a T, usize>;

fn score_sample<T: Ord + Clone, V: Ord>(
    pred: &[(T, V)],
    gold: &[(T, V)],
    types: &mut BTreeMap<T, TypeScores<T>>,
) {
    let mut by_value: BTreeMap<&V, (TypeCounts<T>, TypeCounts<T>)> = BTreeMap::new();
    for (t, v) in pred {
        *by_value.entry(v).or_default().0.entry(t).or_default() += 1;
    }
    for (t, v) in gold {
        *by_value.entry(v).or_default().1.entry(t).or_default() += 1;
    }
    for (p_types, g_types) in by_value.into_values() {
        let mut p_left: Vec<(&T, usize)> = Vec::new();
        let mut g_left: TypeCounts<T> = g_types.clone();
        for (t, &pc) in &p_types {
            let gc = g_types.get(t).copied().unwrap_or(0);
            let m = pc.min(gc);
            let e = entry(types, t);
            e.strict.predicted += pc;
            e.strict.matched_predicted += m;
            e.strict.matched_reference += m;
            e.lenient.predicted += pc;
            e.lenient.matched_predicted += m;
            e.lenient.matched_reference += m;
            if pc > m {
                p_left.push((t, pc - m));
            }
            if let Some(g) = g_left.get_mut(t) {
                *g -= m;
            }
        }
        for (t, &gc) in &g_types {
            let e = entry(types, t);
            e.strict.reference += gc;
            e.lenient.reference += gc;
        }
        // Cross-type (lenient only) matches, in type order on both sides.
        let mut g_iter = g_left
            .into_iter()
            .filter(|(_, c)| *c > 0)
            .collect::<Vec<_>>();
        let mut gi = 0;
        for (pt, mut pc) in p_left {
            while pc > 0 && gi < g_iter.len() {
                let take = pc.min(g_iter[gi].1);
                entry(types, pt).lenient.matched_predicted += take;
                entry(types, g_iter[gi].0).lenient.matched_reference += take;
                pc -= take;
                g_iter[gi].1 -= take;
                if g_iter[gi].1 == 0 {
                    gi += 1;
                }
            }
        }
    }
}

fn entry<'a, T: Ord + Clone>(
    types: &'a mut BTreeMap<T, TypeScores<T>>,
    t: &T,
) -> &'a mut TypeScores<T> {
    types.entry(t.clone()).or_insert_with(|| TypeScores {
        kind: t.clone(),
        strict: Scored::default(),
        lenient: Scored::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(t, x)| (t.to_string(), x.to_string()))
            .collect()
    }

    #[test]
    fn strict_and_lenient_by_hand() {
        let gold = vec![
            e(&[
                ("ipv4", "1.2.3.4"),
                ("domain", "evil.com"),
                ("sha256", "ab"),
            ]),
            e(&[("url", "http://x.y/z")]),
        ];
        let pred = vec![
            e(&[
                ("ipv4", "1.2.3.4"),
                ("url", "evil.com"),
                ("ipv4", "9.9.9.9"),
            ]),
            e(&[]),
        ];
        let r = entity_scores(&pred, &gold).unwrap();
        // strict: 1 of 3 predicted, 1 of 4 reference.
        assert_eq!((r.strict.matched_predicted, r.strict.predicted), (1, 3));
        assert_eq!(r.strict.reference, 4);
        assert_eq!(r.strict.scores.precision, 1.0 / 3.0);
        assert_eq!(r.strict.scores.recall, 0.25);
        // lenient: evil.com also matches.
        assert_eq!(r.lenient.scores.precision, 2.0 / 3.0);
        assert_eq!(r.lenient.scores.recall, 0.5);
        let url = r.per_type.iter().find(|t| t.kind == "url").unwrap();
        assert_eq!(url.strict.scores.precision, 0.0);
        assert_eq!(url.lenient.scores.precision, 1.0);
        assert_eq!(url.lenient.scores.recall, 0.0);
        let domain = r.per_type.iter().find(|t| t.kind == "domain").unwrap();
        assert_eq!(domain.lenient.scores.recall, 1.0);
        assert_eq!(domain.strict.scores.recall, 0.0);
    }

    #[test]
    fn duplicates_are_a_multiset() {
        let gold = vec![e(&[("ipv4", "1.1.1.1")])];
        let pred = vec![e(&[("ipv4", "1.1.1.1"), ("ipv4", "1.1.1.1")])];
        let r = entity_scores(&pred, &gold).unwrap();
        assert_eq!(r.strict.scores.precision, 0.5);
        assert_eq!(r.strict.scores.recall, 1.0);
        let r = entity_scores(&gold, &pred).unwrap();
        assert_eq!(r.strict.scores.precision, 1.0);
        assert_eq!(r.strict.scores.recall, 0.5);
    }
}
