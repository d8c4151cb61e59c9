//! The promotion gate: a TOML file (`configs/gates/*.toml`) of rules on evaluation metrics
//! that a candidate version must pass to become `champion`. A rule is an absolute floor or
//! ceiling (`technique.micro_f1 >= 0.30`) or a comparison with the current champion
//! (`technique.micro_f1 >= champion + 0.00`, `perplexity <= champion * 1.05`); the gate can
//! also require a drift verdict (see [`crate::drift`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::drift::DriftVerdict;
use crate::error::{Error, Result};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `<`
    Lt,
}

impl Op {
    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Self::Ge => left >= right,
            Self::Le => left <= right,
            Self::Gt => left > right,
            Self::Lt => left < right,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::Ge => ">=",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Lt => "<",
        }
    }
}

/// The right-hand side of a rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// A fixed number.
    Absolute(f64),
    /// The champion's value plus a number (`champion + 0.01`, `champion - 0.02`).
    ChampionPlus(f64),
    /// The champion's value times a number (`champion * 1.05`).
    ChampionTimes(f64),
}

/// One parsed rule: `<metric> <op> <bound>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The metric name, e.g. `technique.micro_f1`.
    pub metric: String,
    /// The comparison.
    pub op: Op,
    /// What it is compared with.
    pub bound: Bound,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.metric, self.op.symbol())?;
        match self.bound {
            Bound::Absolute(x) => write!(f, "{x}"),
            Bound::ChampionPlus(x) if x < 0.0 => write!(f, "champion - {}", -x),
            Bound::ChampionPlus(x) => write!(f, "champion + {x}"),
            Bound::ChampionTimes(x) => write!(f, "champion * {x}"),
        }
    }
}

impl Rule {
    /// Parses `<metric> <op> <bound>` where `<op>` is `>=`, `<=`, `>` or `<` and `<bound>`
    /// is a number, `champion`, `champion + x`, `champion - x` or `champion * x`.
    ///
    /// # Errors
    /// A message saying what part is wrong (the caller adds the rule's position).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (at, op, len) = [(">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt)]
            .iter()
            .filter_map(|(sym, op)| text.find(sym).map(|at| (at, *op, sym.len())))
            .min_by_key(|(at, _, len)| (*at, usize::MAX - len))
            .ok_or_else(|| format!("{text:?} has no operator (>=, <=, > or <)"))?;
        let metric = text[..at].trim();
        crate::validate::key("metric", metric).map_err(|e| e.to_string())?;
        let right = text[at + len..].trim();
        let number = |s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{text:?}: {:?} is not a number", s.trim()))
        };
        let bound = match right.strip_prefix("champion") {
            None => Bound::Absolute(number(right)?),
            Some(rest) => {
                let rest = rest.trim();
                if rest.is_empty() {
                    Bound::ChampionPlus(0.0)
                } else if let Some(x) = rest.strip_prefix('+') {
                    Bound::ChampionPlus(number(x)?)
                } else if let Some(x) = rest.strip_prefix('-') {
                    Bound::ChampionPlus(-number(x)?)
                } else if let Some(x) = rest.strip_prefix('*') {
                    Bound::ChampionTimes(number(x)?)
                } else {
                    return Err(format!(
                        "{text:?}: after `champion` expected `+ x`, `- x` or `* x`"
                    ));
                }
            }
        };
        Ok(Self {
            metric: metric.to_string(),
            op,
            bound,
        })
    }
}

/// What the gate asks of the drift verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DriftRequirement {
    /// The verdict is not checked.
    None,
    /// `pass` or `warn` is required.
    Warn,
    /// `pass` is required.
    #[default]
    Pass,
}

/// The gate file as written (see `configs/gates/default.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateFile {
    #[serde(default = "default_champion")]
    champion_alias: String,
    #[serde(default = "default_previous")]
    previous_alias: String,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    drift: DriftSection,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DriftSection {
    #[serde(default)]
    require: DriftRequirement,
}

fn default_champion() -> String {
    "champion".into()
}

fn default_previous() -> String {
    "previous".into()
}

/// A validated promotion gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The alias a passing candidate takes (default `champion`).
    pub champion_alias: String,
    /// The alias the displaced champion takes (default `previous`).
    pub previous_alias: String,
    /// The metric rules, all of which must hold.
    pub rules: Vec<Rule>,
    /// What the drift verdict must be.
    pub drift: DriftRequirement,
}

/// The result of checking a candidate against a gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether every rule passed.
    pub passed: bool,
    /// One line per rule (and for the drift requirement), saying pass or fail and why.
    pub reasons: Vec<String>,
}

impl Gate {
    /// Reads and validates a gate file.
    ///
    /// # Errors
    /// [`Error::Io`] if unreadable; [`Error::Gate`] listing every problem.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses a gate from TOML text; `path` is only used in messages.
    ///
    /// # Errors
    /// [`Error::Gate`] listing every problem.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let gate_error = |problems| Error::Gate {
            path: PathBuf::from(path),
            problems,
        };
        let file: GateFile =
            toml::from_str(text).map_err(|e| gate_error(vec![e.to_string().trim().to_string()]))?;
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        for (i, text) in file.rules.iter().enumerate() {
            match Rule::parse(text) {
                Ok(rule) => rules.push(rule),
                Err(message) => problems.push(format!("rules[{i}]: {message}")),
            }
        }
        for (key, alias) in [
            ("champion_alias", &file.champion_alias),
            ("previous_alias", &file.previous_alias),
        ] {
            if let Err(e) = crate::validate::alias(alias) {
                problems.push(format!("{key}: {e}"));
            }
        }
        if file.champion_alias == file.previous_alias {
            problems.push("champion_alias and previous_alias must differ".into());
        }
        if rules.is_empty() && problems.is_empty() {
            problems.push("rules: a gate needs at least one rule".into());
        }
        if !problems.is_empty() {
            return Err(gate_error(problems));
        }
        Ok(Self {
            champion_alias: file.champion_alias,
            previous_alias: file.previous_alias,
            rules,
            drift: file.drift.require,
        })
    }

    /// Checks a candidate's metrics (and drift verdict) against the gate, with the
    /// champion's metrics when there is a champion. Rules relative to the champion pass
    /// when there is none (the first promotion); a metric the candidate lacks fails.
    pub fn evaluate(
        &self,
        candidate: &BTreeMap<String, f64>,
        champion: Option<&BTreeMap<String, f64>>,
        drift: Option<DriftVerdict>,
    ) -> Verdict {
        let mut reasons = Vec::new();
        let mut passed = true;
        for rule in &self.rules {
            let (ok, reason) = check_rule(rule, candidate, champion);
            passed &= ok;
            reasons.push(format!(
                "{} `{rule}`: {reason}",
                if ok { "pass" } else { "FAIL" }
            ));
        }
        let (ok, reason) = match (self.drift, drift) {
            (DriftRequirement::None, _) => (true, "not required".to_string()),
            (_, None) => (
                false,
                "no drift verdict recorded (tag drift.verdict)".to_string(),
            ),
            (DriftRequirement::Pass, Some(v)) => (
                v == DriftVerdict::Pass,
                format!("verdict {v}, pass required"),
            ),
            (DriftRequirement::Warn, Some(v)) => (
                v <= DriftVerdict::Warn,
                format!("verdict {v}, pass or warn required"),
            ),
        };
        passed &= ok;
        reasons.push(format!(
            "{} drift: {reason}",
            if ok { "pass" } else { "FAIL" }
        ));
        Verdict { passed, reasons }
    }
}

fn check_rule(
    rule: &Rule,
    candidate: &BTreeMap<String, f64>,
    champion: Option<&BTreeMap<String, f64>>,
) -> (bool, String) {
    let Some(&value) = candidate.get(&rule.metric) else {
        return (false, "the candidate has no value for this metric".into());
    };
    let threshold = match (rule.bound, champion) {
        (Bound::Absolute(x), _) => x,
        (_, None) => return (true, format!("{value} (no champion yet to compare with)")),
        (bound, Some(champ)) => {
            let Some(&base) = champ.get(&rule.metric) else {
                return (
                    true,
                    format!("{value} (the champion has no value to compare with)"),
                );
            };
            match bound {
                Bound::ChampionPlus(x) => base + x,
                Bound::ChampionTimes(x) => base * x,
                Bound::Absolute(x) => x,
            }
        }
    };
    let ok = rule.op.holds(value, threshold);
    (
        ok,
        format!(
            "{value} {} {threshold}",
            if ok { rule.op.symbol() } else { "vs" }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn every_shipped_gate_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/gates");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let gate = Gate::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(!gate.rules.is_empty());
                count += 1;
            }
        }
        assert!(count >= 1, "no gate files in {}", dir.display());
        let default = Gate::load(&dir.join("default.toml")).unwrap();
        assert_eq!(default.drift, DriftRequirement::Pass);
        assert_eq!(default.champion_alias, "champion");
    }

    #[test]
    fn rules_parse_and_print() {
        let rule = Rule::parse("perplexity <= champion * 1.05").unwrap();
        assert_eq!(rule.op, Op::Le);
        assert_eq!(rule.bound, Bound::ChampionTimes(1.05));
        assert_eq!(Rule::parse("a.b>=0.3").unwrap().bound, Bound::Absolute(0.3));
        assert_eq!(
            Rule::parse("f1 > champion - 0.5").unwrap().bound,
            Bound::ChampionPlus(-0.5)
        );
        assert_eq!(
            Rule::parse("f1 >= champion").unwrap().to_string(),
            "f1 >= champion + 0"
        );
        for bad in [
            "f1 0.3",
            ">= 0.3",
            "f1 >= x",
            "f1 >= champion / 2",
            "f1 >= inf",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn gate_file_problems_are_listed_together() {
        let text = "rules = [\"f1 >= x\", \"ok >= 1\", \"nope\"]\nchampion_alias = \"latest\"\n";
        let error = Gate::parse(text, Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("rules[0]") && error.contains("rules[2]"),
            "{error}"
        );
        assert!(error.contains("champion_alias"), "{error}");
        assert!(Gate::parse("rules = []\nextra = 1", Path::new("g.toml")).is_err());
    }

    #[test]
    fn evaluation_covers_floors_deltas_and_drift() {
        let gate = Gate::parse(
            "rules = [\"f1 >= 0.3\", \"f1 >= champion + 0.0\", \"ppl <= champion * 1.05\"]\n\
             [drift]\nrequire = \"warn\"\n",
            Path::new("g.toml"),
        )
        .unwrap();
        let champ = metrics(&[("f1", 0.5), ("ppl", 10.0)]);
        let good = metrics(&[("f1", 0.55), ("ppl", 10.4)]);
        assert!(
            gate.evaluate(&good, Some(&champ), Some(DriftVerdict::Warn))
                .passed
        );
        assert!(
            !gate
                .evaluate(&good, Some(&champ), Some(DriftVerdict::Fail))
                .passed
        );
        assert!(!gate.evaluate(&good, Some(&champ), None).passed);
        let worse_ppl = metrics(&[("f1", 0.55), ("ppl", 10.6)]);
        let verdict = gate.evaluate(&worse_ppl, Some(&champ), Some(DriftVerdict::Pass));
        assert!(!verdict.passed);
        assert!(
            verdict.reasons.iter().any(|r| r.starts_with("FAIL `ppl")),
            "{:?}",
            verdict.reasons
        );
        let below_floor = metrics(&[("f1", 0.2), ("ppl", 1.0)]);
        assert!(
            !gate
                .evaluate(&below_floor, None, Some(DriftVerdict::Pass))
                .passed
        );
        assert!(gate.evaluate(&good, None, Some(DriftVerdict::Pass)).passed);
        assert!(
            !gate
                .evaluate(&metrics(&[("ppl", 1.0)]), None, Some(DriftVerdict::Pass))
                .passed
        );
    }
}
