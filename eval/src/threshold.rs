//! Metric gates: the `--require` expressions of `ctiforge eval` and `eval compare`, such as
//! `technique.micro_f1 >= 0.6` (an absolute floor) or `technique.micro_f1 >= +0.05` (the
//! candidate must beat the baseline by at least 0.05).
//!
//! Grammar (whitespace around the operator optional):
//! ```text
//! requirement := path op value
//! path        := segment ('.' segment)*      segment := [A-Za-z0-9_-]+
//! op          := '>=' | '<=' | '>' | '<' | '==' | '!='
//! value       := number            an absolute bound on the candidate's metric
//!              | ('+' | '-') number a bound on candidate − baseline (needs a baseline)
//! ```
//! A path names a number in a JSON report: object keys, or array indices for arrays.
//! `==` and `!=` compare exactly.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::{Error, Result};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Comparison {
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Comparison {
    fn symbol(self) -> &'static str {
        match self {
            Self::Ge => ">=",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Lt => "<",
            Self::Eq => "==",
            Self::Ne => "!=",
        }
    }

    /// Whether `lhs op rhs` holds (false when either side is NaN, except for `!=`).
    pub fn holds(self, lhs: f64, rhs: f64) -> bool {
        match self {
            Self::Ge => lhs >= rhs,
            Self::Le => lhs <= rhs,
            Self::Gt => lhs > rhs,
            Self::Lt => lhs < rhs,
            Self::Eq => lhs == rhs,
            Self::Ne => lhs != rhs,
        }
    }
}

/// What the metric is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Bound {
    /// The candidate's value itself is compared with this number.
    Absolute(f64),
    /// `candidate − baseline` is compared with this signed number.
    Delta(f64),
}

/// A parsed `--require` expression.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Requirement {
    /// The expression as written.
    pub text: String,
    /// Dotted metric path.
    pub path: String,
    /// Operator.
    pub op: Comparison,
    /// Right-hand side.
    pub bound: Bound,
}

/// The outcome of checking one requirement.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Verdict {
    /// The requirement as written.
    pub requirement: String,
    /// The candidate's value of the metric.
    pub candidate: f64,
    /// The baseline's value, when a baseline was given.
    pub baseline: Option<f64>,
    /// The value compared: the candidate's value, or the delta.
    pub compared: f64,
    /// Whether the requirement holds.
    pub passed: bool,
}

/// Something that can answer "what is the value of metric `path`?".
pub trait MetricSource {
    /// The number at `path`, or `None` when there is none.
    fn metric(&self, path: &str) -> Option<f64>;
}

impl MetricSource for serde_json::Value {
    fn metric(&self, path: &str) -> Option<f64> {
        let mut v = self;
        for seg in path.split('.') {
            v = match v {
                serde_json::Value::Object(m) => m.get(seg)?,
                serde_json::Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        v.as_f64()
    }
}

fn parse_error(expr: &str, position: usize, message: impl Into<String>) -> Error {
    Error::Requirement {
        expr: expr.to_string(),
        position,
        message: message.into(),
    }
}

impl FromStr for Requirement {
    type Err = Error;

    fn from_str(expr: &str) -> Result<Self> {
        let chars: Vec<char> = expr.chars().collect();
        let mut i = 0;
        let skip_ws = |i: &mut usize| {
            while *i < chars.len() && chars[*i].is_whitespace() {
                *i += 1;
            }
        };
        skip_ws(&mut i);
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '-' | '.'))
        {
            i += 1;
        }
        let path: String = chars[start..i].iter().collect();
        if path.is_empty() {
            return Err(parse_error(
                expr,
                start,
                "expected a metric path such as `technique.micro_f1`",
            ));
        }
        if path.split('.').any(str::is_empty) {
            return Err(parse_error(
                expr,
                start,
                format!("metric path {path:?} has an empty segment"),
            ));
        }
        skip_ws(&mut i);
        let rest: String = chars[i..].iter().collect();
        let ops = [
            (">=", Comparison::Ge),
            ("<=", Comparison::Le),
            ("==", Comparison::Eq),
            ("!=", Comparison::Ne),
            (">", Comparison::Gt),
            ("<", Comparison::Lt),
        ];
        let Some(&(sym, op)) = ops.iter().find(|(s, _)| rest.starts_with(s)) else {
            let found = chars
                .get(i)
                .map_or("the end".to_string(), |c| format!("{c:?}"));
            return Err(parse_error(
                expr,
                i,
                format!(
                    "expected a comparison (>=, <=, >, <, ==, !=) after the metric path, \
                     found {found}"
                ),
            ));
        };
        i += sym.len();
        skip_ws(&mut i);
        let value_at = i;
        let value: String = chars[i..].iter().collect::<String>().trim_end().to_string();
        if value.is_empty() {
            return Err(parse_error(
                expr,
                value_at,
                "expected a number (absolute) or a signed number (+0.05: delta to the baseline)",
            ));
        }
        let signed = value.starts_with(['+', '-']);
        let number: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| {
                parse_error(expr, value_at, format!("{value:?} is not a finite number"))
            })?;
        Ok(Requirement {
            text: expr.trim().to_string(),
            path,
            op,
            bound: if signed {
                Bound::Delta(number)
            } else {
                Bound::Absolute(number)
            },
        })
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bound {
            Bound::Absolute(v) => write!(f, "{} {} {v}", self.path, self.op.symbol()),
            Bound::Delta(v) => write!(f, "{} {} {v:+}", self.path, self.op.symbol()),
        }
    }
}

impl Requirement {
    /// Checks the requirement on `candidate`, against `baseline` for delta bounds.
    ///
    /// # Errors
    /// [`Error::Gate`] when a report lacks the metric (or it is not a number), or a delta
    /// bound has no baseline.
    pub fn check(
        &self,
        candidate: &dyn MetricSource,
        baseline: Option<&dyn MetricSource>,
    ) -> Result<Verdict> {
        let missing = |which: &str| Error::Gate {
            expr: self.text.clone(),
            message: format!("the {which} report has no numeric metric `{}`", self.path),
        };
        let c = candidate
            .metric(&self.path)
            .ok_or_else(|| missing("candidate"))?;
        let b = match baseline {
            Some(src) => Some(src.metric(&self.path).ok_or_else(|| missing("baseline"))?),
            None => None,
        };
        let (compared, rhs) = match self.bound {
            Bound::Absolute(v) => (c, v),
            Bound::Delta(v) => {
                let Some(b) = b else {
                    return Err(Error::Gate {
                        expr: self.text.clone(),
                        message:
                            "a signed bound is a delta to a baseline; use it with `eval compare` \
                                  or write an unsigned number for an absolute bound"
                                .into(),
                    });
                };
                (c - b, v)
            }
        };
        Ok(Verdict {
            requirement: self.text.clone(),
            candidate: c,
            baseline: b,
            compared,
            passed: self.op.holds(compared, rhs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_absolute_and_delta() {
        let r: Requirement = "technique.micro_f1 >= +0.05".parse().unwrap();
        assert_eq!(r.path, "technique.micro_f1");
        assert_eq!(r.op, Comparison::Ge);
        assert_eq!(r.bound, Bound::Delta(0.05));
        let r: Requirement = "rouge.rougeL.fmeasure>0.3".parse().unwrap();
        assert_eq!((r.op, r.bound), (Comparison::Gt, Bound::Absolute(0.3)));
        let r: Requirement = " lm.perplexity <= -1.5 ".parse().unwrap();
        assert_eq!(r.bound, Bound::Delta(-1.5));
        assert_eq!(r.to_string(), "lm.perplexity <= -1.5");
    }

    #[test]
    fn parse_errors_say_where_and_what() {
        for (expr, pos, needle) in [
            ("", 0, "metric path"),
            (">= 1", 0, "metric path"),
            ("a..b >= 1", 0, "empty segment"),
            ("a.b 1", 4, "comparison"),
            ("a.b =>1", 4, "comparison"),
            ("a.b >=", 6, "number"),
            ("a.b >= 0.5x", 7, "finite number"),
            ("a.b >= nan", 7, "finite number"),
        ] {
            match expr.parse::<Requirement>() {
                Err(Error::Requirement {
                    position, message, ..
                }) => {
                    assert_eq!(position, pos, "{expr}: {message}");
                    assert!(message.contains(needle), "{expr}: {message}");
                }
                other => panic!("{expr}: {other:?}"),
            }
        }
    }

    #[test]
    fn checks_against_reports() {
        let cand = json!({"technique": {"micro_f1": 0.72}, "per_label": [{"f1": 0.5}]});
        let base = json!({"technique": {"micro_f1": 0.65}, "per_label": [{"f1": 0.6}]});
        let r: Requirement = "technique.micro_f1 >= +0.05".parse().unwrap();
        let v = r.check(&cand, Some(&base)).unwrap();
        assert!(v.passed);
        assert!((v.compared - 0.07).abs() < 1e-12);
        let r: Requirement = "technique.micro_f1 >= +0.1".parse().unwrap();
        assert!(!r.check(&cand, Some(&base)).unwrap().passed);
        assert!(matches!(r.check(&cand, None), Err(Error::Gate { .. })));
        let r: Requirement = "per_label.0.f1 < 0.6".parse().unwrap();
        assert!(r.check(&cand, None).unwrap().passed);
        let r: Requirement = "technique.macro_f1 >= 0.1".parse().unwrap();
        assert!(matches!(r.check(&cand, None), Err(Error::Gate { .. })));
    }
}
