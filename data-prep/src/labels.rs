//! Target validation: technique labels against the ATT&CK catalog (with the recipe's
//! policies for revoked, deprecated and unknown IDs) and typed indicators through
//! [`crate::ioc`]. Outcomes are counted for the manifest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::attack::{Catalog, Resolution};
use crate::config::{AttackSection, LabelPolicy};
use crate::ioc::{self, Ioc};

/// What label validation did, for the manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelReport {
    /// `revoked → replacement` with the number of labels mapped.
    pub replaced: BTreeMap<String, usize>,
    /// Labels folded from a sub-technique into its parent.
    pub folded: usize,
    /// Labels dropped, by reason and ID.
    pub dropped: BTreeMap<String, usize>,
    /// Labels kept although revoked, deprecated or unknown (policy `keep`).
    pub kept_inactive: BTreeMap<String, usize>,
    /// Indicators whose type label is not an indicator kind here (`user-agent`, `asn`).
    pub ioc_types_skipped: BTreeMap<String, usize>,
    /// Indicators that failed validation, by kind.
    pub iocs_invalid: BTreeMap<String, usize>,
}

fn bump(map: &mut BTreeMap<String, usize>, key: String) {
    *map.entry(key).or_default() += 1;
}

impl LabelReport {
    /// Resolves one row's technique labels. Returns the sorted, unique IDs, or the reason
    /// to reject the row.
    pub fn techniques(
        &mut self,
        raw: &[String],
        catalog: &Catalog,
        cfg: &AttackSection,
    ) -> Result<Vec<String>, String> {
        let mut out: Vec<String> = Vec::with_capacity(raw.len());
        for label in raw {
            let resolved = catalog.resolve(label, cfg.fold_subtechniques);
            let (policy, what, id) = match resolved {
                Resolution::Active(id) => {
                    if id.as_str() != label.trim().to_ascii_uppercase() {
                        self.folded += 1;
                    }
                    out.push(id.to_string());
                    continue;
                }
                Resolution::Replaced { from, to } if cfg.revoked == LabelPolicy::Map => {
                    bump(&mut self.replaced, format!("{from}->{to}"));
                    out.push(to.to_string());
                    continue;
                }
                Resolution::Replaced { from, .. } => (cfg.revoked, "revoked", from),
                Resolution::RevokedUnmapped(id) => match cfg.revoked {
                    LabelPolicy::Map => {
                        return Err(format!(
                            "technique {id} is revoked and no replacement is known; add it \
                             to attack.replacements"
                        ));
                    }
                    p => (p, "revoked", id),
                },
                Resolution::Deprecated(id) => (cfg.deprecated, "deprecated", id),
                Resolution::Unknown(id) => (cfg.unknown, "unknown", id),
                Resolution::Malformed(s) => {
                    return Err(format!("label `{s}` is not an ATT&CK technique ID"));
                }
            };
            match policy {
                LabelPolicy::Reject | LabelPolicy::Map => {
                    return Err(format!("technique {id} is {what} in the ATT&CK catalog"));
                }
                LabelPolicy::Drop => bump(&mut self.dropped, format!("{what} {id}")),
                LabelPolicy::Keep => {
                    bump(&mut self.kept_inactive, format!("{what} {id}"));
                    out.push(id.to_string());
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Validates one row's typed indicators: unknown types are skipped, invalid values
    /// dropped (both counted), duplicates removed. Rejects a row whose indicators were all
    /// invalid, since its target would be wrong.
    pub fn iocs(&mut self, raw: &[(String, String)]) -> Result<Vec<Ioc>, String> {
        let mut out: Vec<Ioc> = Vec::with_capacity(raw.len());
        let mut invalid = Vec::new();
        for (label, value) in raw {
            let Some(kind) = ioc::kind_from_label(label, value) else {
                bump(&mut self.ioc_types_skipped, label.clone());
                continue;
            };
            match ioc::validate(kind, value) {
                Ok(i) => {
                    if !out.contains(&i) {
                        out.push(i);
                    }
                }
                Err(e) => {
                    bump(&mut self.iocs_invalid, kind.to_string());
                    invalid.push(e.to_string());
                }
            }
        }
        if out.is_empty() && !invalid.is_empty() {
            return Err(format!("no valid indicator: {}", invalid.join("; ")));
        }
        Ok(out)
    }
}
