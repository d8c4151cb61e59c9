//! STIX 2.0 and 2.1 bundles as ATT&CK publishes them: attack-patterns become the technique
//! catalog, `revoked-by` relationships its replacement map, and `uses` relationships from
//! intrusion sets, malware, tools and campaigns to attack-patterns become labelled
//! procedure sentences. Spec: <https://docs.oasis-open.org/cti/stix/v2.1/stix-v2.1.html>.
//!
//! STIX 2.0 puts `spec_version` on the bundle, 2.1 on each object; both are read the same.
//! A `.gz` bundle is decompressed on the fly.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::attack::{Technique, TechniqueId};
use crate::error::{Error, Result};

/// An object that can be the source of a `uses` relationship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `intrusion-set`, `malware`, `tool` or `campaign`.
    pub kind: String,
    /// Its ATT&CK ID (`G0016`, `S0154`, `C0014`) when it has one.
    pub external_id: Option<String>,
    /// Its name.
    pub name: String,
    /// Its description (markdown with citations, as published).
    pub description: String,
}

/// A `uses` relationship from an actor to a technique, with its procedure text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procedure {
    /// The relationship's STIX id.
    pub stix_id: String,
    /// The technique used.
    pub technique: TechniqueId,
    /// The actor's STIX id.
    pub source_ref: String,
    /// The procedure description.
    pub text: String,
}

/// What a bundle holds that data-prep uses.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    /// `2.0` or `2.1`.
    pub spec_version: String,
    /// Every attack-pattern with an ATT&CK ID.
    pub techniques: Vec<Technique>,
    /// `revoked-by` pairs between attack-patterns.
    pub replacements: Vec<(TechniqueId, TechniqueId)>,
    /// Intrusion sets, malware, tools and campaigns by STIX id.
    pub actors: HashMap<String, Actor>,
    /// `uses` relationships to techniques that carry a description, in bundle order.
    pub procedures: Vec<Procedure>,
}

/// The ATT&CK ID in an object's `external_references` (source `mitre-attack` and friends).
fn attack_id(obj: &Value) -> Option<String> {
    obj.get("external_references")?
        .as_array()?
        .iter()
        .find(|r| {
            r.get("source_name")
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with("mitre-"))
        })?
        .get("external_id")?
        .as_str()
        .map(str::to_owned)
}

fn text(obj: &Value, key: &str) -> String {
    obj.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn flag(obj: &Value, key: &str) -> bool {
    obj.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Reads a bundle.
///
/// # Errors
/// The file is unreadable, not JSON, not a bundle, or an attack-pattern's ATT&CK ID is
/// malformed (named with the object's id).
pub fn read_bundle(path: &Path) -> Result<Bundle> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut crate::sources::open(path)?, &mut bytes)
        .map_err(|e| Error::io(path, e))?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        message: format!("not JSON: {e}"),
    })?;
    let bad = |message: String| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    if doc.get("type").and_then(Value::as_str) != Some("bundle") {
        return Err(bad(
            "not a STIX bundle (expected `\"type\": \"bundle\"`)".into()
        ));
    }
    let objects = doc
        .get("objects")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the bundle has no `objects` array".into()))?;
    let mut bundle = Bundle {
        spec_version: doc
            .get("spec_version")
            .or_else(|| objects.iter().find_map(|o| o.get("spec_version")))
            .and_then(Value::as_str)
            .unwrap_or("2.1")
            .to_owned(),
        ..Bundle::default()
    };

    // Attack-patterns and actors first: relationships refer to them by STIX id.
    let mut pattern_ids: HashMap<&str, TechniqueId> = HashMap::new();
    for obj in objects {
        let id = obj.get("id").and_then(Value::as_str).unwrap_or_default();
        match obj.get("type").and_then(Value::as_str) {
            Some("attack-pattern") => {
                let Some(ext) = attack_id(obj) else { continue };
                let tid: TechniqueId = ext.parse().map_err(|e| bad(format!("object {id}: {e}")))?;
                pattern_ids.insert(id, tid.clone());
                bundle.techniques.push(Technique {
                    id: tid,
                    name: text(obj, "name"),
                    revoked: flag(obj, "revoked"),
                    deprecated: flag(obj, "x_mitre_deprecated"),
                });
            }
            Some(kind @ ("intrusion-set" | "malware" | "tool" | "campaign")) => {
                bundle.actors.insert(
                    id.to_owned(),
                    Actor {
                        kind: kind.to_owned(),
                        external_id: attack_id(obj),
                        name: text(obj, "name"),
                        description: text(obj, "description"),
                    },
                );
            }
            _ => {}
        }
    }
    for obj in objects {
        if obj.get("type").and_then(Value::as_str) != Some("relationship")
            || flag(obj, "revoked")
            || flag(obj, "x_mitre_deprecated")
        {
            continue;
        }
        let source = obj
            .get("source_ref")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let target = obj
            .get("target_ref")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match obj.get("relationship_type").and_then(Value::as_str) {
            Some("revoked-by") => {
                if let (Some(from), Some(to)) = (pattern_ids.get(source), pattern_ids.get(target)) {
                    bundle.replacements.push((from.clone(), to.clone()));
                }
            }
            Some("uses") => {
                let description = text(obj, "description");
                if let Some(technique) = pattern_ids.get(target)
                    && bundle.actors.contains_key(source)
                    && !description.trim().is_empty()
                {
                    bundle.procedures.push(Procedure {
                        stix_id: text(obj, "id"),
                        technique: technique.clone(),
                        source_ref: source.to_owned(),
                        text: description,
                    });
                }
            }
            _ => {}
        }
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_stix21_bundle_with_relationships() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("b.json");
        let bundle = serde_json::json!({
            "type": "bundle", "id": "bundle--1",
            "objects": [
                {"type": "attack-pattern", "spec_version": "2.1", "id": "attack-pattern--a",
                 "name": "Old", "revoked": true,
                 "external_references": [{"source_name": "mitre-attack", "external_id": "T0001"}]},
                {"type": "attack-pattern", "spec_version": "2.1", "id": "attack-pattern--b",
                 "name": "New",
                 "external_references": [
                    {"source_name": "mitre-ics-attack", "external_id": "T0002"}]},
                {"type": "intrusion-set", "spec_version": "2.1", "id": "intrusion-set--g",
                 "name": "Sandworm Team", "description": "A group.",
                 "external_references": [{"source_name": "mitre-attack", "external_id": "G0034"}]},
                {"type": "relationship", "spec_version": "2.1", "id": "relationship--1",
                 "relationship_type": "uses", "source_ref": "intrusion-set--g",
                 "target_ref": "attack-pattern--b", "description": "Sandworm used it."},
                {"type": "relationship", "spec_version": "2.1", "id": "relationship--2",
                 "relationship_type": "revoked-by", "source_ref": "attack-pattern--a",
                 "target_ref": "attack-pattern--b"},
                {"type": "relationship", "spec_version": "2.1", "id": "relationship--3",
                 "relationship_type": "uses", "source_ref": "intrusion-set--g",
                 "target_ref": "attack-pattern--b", "description": "", "revoked": false}
            ]
        });
        std::fs::write(&p, bundle.to_string()).expect("write");
        let b = read_bundle(&p).expect("bundle");
        assert_eq!(b.spec_version, "2.1");
        assert_eq!(b.techniques.len(), 2);
        assert_eq!(b.replacements.len(), 1);
        assert_eq!(b.procedures.len(), 1, "the empty description is skipped");
        assert_eq!(b.procedures[0].technique.as_str(), "T0002");
        assert_eq!(
            b.actors["intrusion-set--g"].external_id.as_deref(),
            Some("G0034")
        );
    }

    #[test]
    fn reads_the_real_ics_attack_stix21_bundle() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../datasets/attack/ics-attack-18.1.stix21.json.gz");
        let b = read_bundle(&p).expect("ics bundle");
        assert_eq!(b.spec_version, "2.1");
        assert_eq!(b.techniques.len(), 95);
        // Its two revoked-by relationships link intrusion sets, not techniques.
        assert!(b.replacements.is_empty());
        // Counted independently with Python's json module over the same file.
        assert_eq!(b.procedures.len(), 246);
        assert!(
            b.procedures
                .iter()
                .all(|p| b.actors.contains_key(&p.source_ref))
        );
        assert!(
            b.procedures
                .iter()
                .all(|p| p.technique.as_str().starts_with("T0"))
        );
    }

    #[test]
    fn not_a_bundle_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.json");
        std::fs::write(&p, r#"{"type": "indicator"}"#).expect("write");
        let err = read_bundle(&p).expect_err("not a bundle").to_string();
        assert!(err.contains("x.json") && err.contains("bundle"), "{err}");
    }
}
