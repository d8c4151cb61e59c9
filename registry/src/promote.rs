//! Gated promotion: a candidate version takes the `champion` alias only if every rule of
//! the [`Gate`] passes against the current champion's metrics, and the displaced champion
//! becomes `previous`. The decision and its reasons are recorded on the candidate as tags.
//!
//! Racing promotions never leave `champion` on a version that lost its gate: the move is a
//! [`Registry::swap_alias`] conditioned on the champion the gate was evaluated against; if
//! another promotion moved it first, the candidate is re-evaluated against the new
//! champion. The embedded store makes the swap one transaction; see [`crate::mlflow`] for
//! the residual race on MLflow.
//!
//! Metrics come from version tags `eval.<metric>` (e.g. `eval.technique.micro_f1`), and
//! then from the numeric leaves of an `eval.json` artifact of the version, if it has one
//! (a top-level `metrics` or `overall` object is looked into first). The drift verdict is
//! the tag `drift.verdict`.

use std::collections::BTreeMap;

use crate::drift::{self, DriftVerdict};
use crate::error::{Error, Result};
use crate::gate::Gate;
use crate::names;
use crate::registry::{AliasSwap, Registry};
use crate::types::ModelVersion;

/// How many times a promotion re-evaluates after losing an alias race.
const MAX_RACES: usize = 8;

/// The outcome of [`promote`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Whether the candidate is now the champion.
    pub promoted: bool,
    /// The champion it was compared with (`None`: there was none).
    pub compared_with: Option<String>,
    /// One line per rule, saying pass or fail and why.
    pub reasons: Vec<String>,
}

/// Evaluates `version` of `model` against `gate` and, if it passes, moves the champion
/// alias to it (keeping the old champion as the previous alias). Records the decision as
/// version tags `ctiforge.promotion.decision`, `ctiforge.promotion.reasons` and
/// `ctiforge.promotion.compared_with`.
///
/// # Errors
/// An unknown version; a malformed metric or drift tag; a backend failure; the champion
/// alias moving more than a few times while this promotion re-evaluated.
pub fn promote(
    registry: &dyn Registry,
    model: &str,
    version: &str,
    gate: &Gate,
) -> Result<Decision> {
    let candidate = registry.get_version(model, version)?;
    let candidate_metrics = version_metrics(registry, &candidate)?;
    let drift = candidate
        .tags
        .get(drift::TAG_VERDICT)
        .map(|v| DriftVerdict::parse(v))
        .transpose()?;
    for _ in 0..MAX_RACES {
        let champion = registry.get_alias(model, &gate.champion_alias)?;
        if champion
            .as_ref()
            .is_some_and(|c| c.version == candidate.version)
        {
            return Ok(Decision {
                promoted: true,
                compared_with: None,
                reasons: vec![format!("already {}", gate.champion_alias)],
            });
        }
        let champion_metrics = champion
            .as_ref()
            .map(|c| version_metrics(registry, c))
            .transpose()?;
        let verdict = gate.evaluate(&candidate_metrics, champion_metrics.as_ref(), drift);
        let compared_with = champion.as_ref().map(|c| c.version.clone());
        let decision = Decision {
            promoted: verdict.passed,
            compared_with,
            reasons: verdict.reasons,
        };
        if !decision.promoted {
            record(registry, &candidate, &decision)?;
            tracing::info!(model, version, "promotion refused by the gate");
            return Ok(decision);
        }
        let swap = AliasSwap {
            alias: &gate.champion_alias,
            expected: decision.compared_with.as_deref(),
            version: &candidate.version,
            keep_previous_as: Some(&gate.previous_alias),
        };
        if registry.swap_alias(model, &swap)? {
            record(registry, &candidate, &decision)?;
            tracing::info!(model, version, "promoted to {}", gate.champion_alias);
            return Ok(decision);
        }
        tracing::info!(
            model,
            version,
            "champion moved during promotion; re-evaluating"
        );
    }
    Err(Error::Conflict(format!(
        "{model:?} {} kept moving while version {version} was being promoted; try again",
        gate.champion_alias
    )))
}

fn record(registry: &dyn Registry, version: &ModelVersion, decision: &Decision) -> Result<()> {
    let set = |key: &str, value: &str| {
        registry.set_version_tag(&version.model, &version.version, key, value)
    };
    let mut reasons = decision.reasons.join("; ");
    if reasons.len() > crate::validate::MAX_TAG_VALUE_LEN {
        let mut cut = crate::validate::MAX_TAG_VALUE_LEN - 3;
        while !reasons.is_char_boundary(cut) {
            cut -= 1;
        }
        reasons.truncate(cut);
        reasons.push_str("...");
    }
    set(names::TAG_PROMOTION_REASONS, &reasons)?;
    set(
        names::TAG_PROMOTION_COMPARED_WITH,
        decision.compared_with.as_deref().unwrap_or("none"),
    )?;
    set(
        names::TAG_PROMOTION_DECISION,
        if decision.promoted {
            "promoted"
        } else {
            "refused"
        },
    )
}

/// The evaluation metrics of a version: tags `eval.<metric>`, then the numeric leaves of
/// its `eval.json` artifact for metrics no tag gives.
///
/// # Errors
/// An `eval.*` tag that is not a number; an unreadable `eval.json`.
pub fn version_metrics(
    registry: &dyn Registry,
    version: &ModelVersion,
) -> Result<BTreeMap<String, f64>> {
    let mut metrics = BTreeMap::new();
    if let Some(record) = version
        .artifacts
        .iter()
        .find(|a| a.path == names::EVAL_ARTIFACT || a.path.ends_with("/eval.json"))
    {
        let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let local = dir.path().join("eval.json");
        registry.download_artifact(version, &record.path, &local)?;
        let text = std::fs::read_to_string(&local).map_err(|e| Error::io(&local, e))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(
                format!(
                    "{} of {} version {}",
                    record.path, version.model, version.version
                ),
                e.to_string(),
            )
        })?;
        let root = json
            .get("metrics")
            .or_else(|| json.get("overall"))
            .unwrap_or(&json);
        flatten("", root, &mut metrics);
    }
    for (key, value) in &version.tags {
        if let Some(metric) = key.strip_prefix(names::TAG_EVAL_PREFIX) {
            let number = value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| {
                    Error::invalid(
                        format!(
                            "tag {key:?} of {} version {}",
                            version.model, version.version
                        ),
                        format!("{value:?} is not a finite number"),
                    )
                })?;
            metrics.insert(metric.to_string(), number);
        }
    }
    Ok(metrics)
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(x) = n.as_f64().filter(|x| x.is_finite()) {
                out.insert(prefix.to_string(), x);
            }
        }
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, child, out);
            }
        }
        _ => {}
    }
}
