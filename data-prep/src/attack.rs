//! MITRE ATT&CK vocabulary: validated technique IDs and the technique catalog that maps
//! revoked IDs to their replacements, reports deprecated ones and folds sub-techniques.
//!
//! The catalog reads the bundled table (`datasets/attack/enterprise_techniques.tsv`) or a
//! STIX 2.0/2.1 bundle (see [`crate::stix`]). Reference: <https://attack.mitre.org/resources/>.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An ATT&CK technique or sub-technique ID (`T1059`, `T1059.001`), validated on parse and
/// stored upper-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TechniqueId(String);

impl TechniqueId {
    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent technique of a sub-technique (`T1059.001` → `T1059`), else itself.
    pub fn parent(&self) -> TechniqueId {
        match self.0.split_once('.') {
            Some((parent, _)) => TechniqueId(parent.to_owned()),
            None => self.clone(),
        }
    }

    /// Whether this is a sub-technique.
    pub fn is_subtechnique(&self) -> bool {
        self.0.contains('.')
    }
}

impl FromStr for TechniqueId {
    type Err = String;

    /// Accepts `T` + 4 digits, optionally `.` + 3 digits, in either case and surrounded by
    /// whitespace; ICS IDs (`T0803`) have the same shape.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let t = s.trim().to_ascii_uppercase();
        let b = t.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let ok = match b.len() {
            5 => b[0] == b'T' && digits(1..5),
            9 => b[0] == b'T' && digits(1..5) && b[5] == b'.' && digits(6..9),
            _ => false,
        };
        if ok {
            Ok(TechniqueId(t))
        } else {
            Err(format!(
                "`{s}` is not an ATT&CK technique ID (expected T#### or T####.###)"
            ))
        }
    }
}

impl TryFrom<String> for TechniqueId {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TechniqueId> for String {
    fn from(t: TechniqueId) -> String {
        t.0
    }
}

impl fmt::Display for TechniqueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One technique of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Technique {
    /// Its ID.
    pub id: TechniqueId,
    /// Its name (`Windows Command Shell`).
    pub name: String,
    /// Revoked: replaced by another object.
    pub revoked: bool,
    /// Deprecated: no longer maintained, no replacement.
    pub deprecated: bool,
}

/// What the catalog says about a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// An active technique (possibly after replacement or folding).
    Active(TechniqueId),
    /// A revoked technique mapped to its replacement.
    Replaced {
        /// The revoked ID.
        from: TechniqueId,
        /// Its active replacement.
        to: TechniqueId,
    },
    /// Revoked, and no replacement is known.
    RevokedUnmapped(TechniqueId),
    /// Deprecated (ATT&CK gives no replacement).
    Deprecated(TechniqueId),
    /// Well-formed but not in the catalog.
    Unknown(TechniqueId),
    /// Not a technique ID at all.
    Malformed(String),
}

/// The technique table plus the revoked → replacement map.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    techniques: BTreeMap<TechniqueId, Technique>,
    replacements: BTreeMap<TechniqueId, TechniqueId>,
}

impl Catalog {
    /// Builds a catalog from techniques and explicit `revoked → replacement` pairs. Revoked
    /// techniques without an explicit replacement are mapped to the one active technique of
    /// the same name, when exactly one exists (ATT&CK usually keeps the name when it turns a
    /// technique into a sub-technique, e.g. `T1004` → `T1547.004` "Winlogon Helper DLL").
    pub fn new(
        techniques: impl IntoIterator<Item = Technique>,
        replacements: impl IntoIterator<Item = (TechniqueId, TechniqueId)>,
    ) -> Catalog {
        let techniques: BTreeMap<_, _> =
            techniques.into_iter().map(|t| (t.id.clone(), t)).collect();
        let mut by_name: BTreeMap<String, Vec<&TechniqueId>> = BTreeMap::new();
        for t in techniques.values().filter(|t| !t.revoked && !t.deprecated) {
            by_name
                .entry(t.name.to_lowercase())
                .or_default()
                .push(&t.id);
        }
        let mut map: BTreeMap<TechniqueId, TechniqueId> = BTreeMap::new();
        for t in techniques.values().filter(|t| t.revoked) {
            if let Some([only]) = by_name.get(&t.name.to_lowercase()).map(Vec::as_slice) {
                map.insert(t.id.clone(), (*only).clone());
            }
        }
        map.extend(replacements);
        Catalog {
            techniques,
            replacements: map,
        }
    }

    /// Reads the bundled TSV table (`technique_id, name, full_name, tactics,
    /// is_subtechnique, parent_id, revoked, deprecated`).
    ///
    /// # Errors
    /// The file is unreadable, lacks a column, or a row has a malformed ID or flag
    /// (named by line).
    pub fn from_tsv(path: &Path) -> Result<Catalog> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let parse_err = |line: usize, message: String| Error::Parse {
            path: path.to_path_buf(),
            message: format!("line {line}: {message}"),
        };
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .ok_or_else(|| Error::Schema {
                    path: path.to_path_buf(),
                    message: format!("missing column `{name}` (header: {})", header.join(", ")),
                })
        };
        let (c_id, c_name, c_rev, c_dep) = (
            col("technique_id")?,
            col("name")?,
            col("revoked")?,
            col("deprecated")?,
        );
        let flag = |line: usize, v: Option<&&str>, name: &str| match v.copied() {
            Some("true" | "True") => Ok(true),
            Some("false" | "False" | "") | None => Ok(false),
            Some(other) => Err(parse_err(
                line,
                format!("`{name}` is `{other}`, not a boolean"),
            )),
        };
        let mut techniques = Vec::new();
        for (i, row) in lines.enumerate() {
            let line = i + 2;
            if row.trim().is_empty() {
                continue;
            }
            let cells: Vec<&str> = row.split('\t').collect();
            let id = cells.get(c_id).copied().unwrap_or_default();
            let id = id.parse().map_err(|e| parse_err(line, e))?;
            techniques.push(Technique {
                id,
                name: cells.get(c_name).copied().unwrap_or_default().to_owned(),
                revoked: flag(line, cells.get(c_rev), "revoked")?,
                deprecated: flag(line, cells.get(c_dep), "deprecated")?,
            });
        }
        Ok(Catalog::new(techniques, []))
    }

    /// Adds explicit replacements (they win over name matches).
    pub fn with_replacements(
        mut self,
        pairs: impl IntoIterator<Item = (TechniqueId, TechniqueId)>,
    ) -> Catalog {
        self.replacements.extend(pairs);
        self
    }

    /// Merges another catalog's techniques and replacements into this one.
    pub fn merge(&mut self, other: Catalog) {
        self.techniques.extend(other.techniques);
        self.replacements.extend(other.replacements);
    }

    /// The number of techniques (all states).
    pub fn len(&self) -> usize {
        self.techniques.len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.techniques.is_empty()
    }

    /// Looks up one technique.
    pub fn get(&self, id: &TechniqueId) -> Option<&Technique> {
        self.techniques.get(id)
    }

    /// Resolves a raw label: parse, follow replacements (up to a few hops), then optionally
    /// fold a sub-technique into its parent. An empty catalog accepts every well-formed ID.
    pub fn resolve(&self, raw: &str, fold_to_parent: bool) -> Resolution {
        let id: TechniqueId = match raw.parse() {
            Ok(id) => id,
            Err(_) => return Resolution::Malformed(raw.to_owned()),
        };
        let fold = |t: TechniqueId| if fold_to_parent { t.parent() } else { t };
        if self.techniques.is_empty() {
            return Resolution::Active(fold(id));
        }
        let Some(t) = self.techniques.get(&id) else {
            return Resolution::Unknown(id);
        };
        if t.deprecated {
            return Resolution::Deprecated(id);
        }
        if !t.revoked {
            return Resolution::Active(fold(id));
        }
        let mut to = id.clone();
        for _ in 0..4 {
            match self.replacements.get(&to) {
                Some(next) => to = next.clone(),
                None => break,
            }
            if self
                .techniques
                .get(&to)
                .is_some_and(|t| !t.revoked && !t.deprecated)
            {
                return Resolution::Replaced {
                    from: id,
                    to: fold(to),
                };
            }
        }
        Resolution::RevokedUnmapped(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled() -> Catalog {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../datasets/attack/enterprise_techniques.tsv");
        Catalog::from_tsv(&p).expect("bundled table")
    }

    #[test]
    fn ids_parse_and_normalise() {
        let id: TechniqueId = " t1059.001 ".parse().expect("id");
        assert_eq!(id.as_str(), "T1059.001");
        assert_eq!(id.parent().as_str(), "T1059");
        assert!(id.is_subtechnique());
        for bad in [
            "T105",
            "T10590",
            "T1059.01",
            "1059",
            "TA0002",
            "T1059.0011",
            "",
        ] {
            assert!(bad.parse::<TechniqueId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bundled_table_matches_attack_v18_1_counts() {
        let c = bundled();
        assert_eq!(c.len(), 835);
        let active = c
            .techniques
            .values()
            .filter(|t| !t.revoked && !t.deprecated)
            .count();
        assert_eq!(active, 691);
    }

    #[test]
    fn revoked_ids_map_by_name_or_explicitly_and_deprecated_are_reported() {
        let c = bundled();
        let r = c.resolve("T1004", false);
        assert_eq!(
            r,
            Resolution::Replaced {
                from: "T1004".parse().expect("id"),
                to: "T1547.004".parse().expect("id")
            }
        );
        // DLL Side-Loading was merged into T1574.001 "DLL" in ATT&CK v17: no name match.
        assert!(matches!(
            c.resolve("T1574.002", false),
            Resolution::RevokedUnmapped(_)
        ));
        let c = c.with_replacements([(
            "T1574.002".parse().expect("id"),
            "T1574.001".parse().expect("id"),
        )]);
        assert!(matches!(
            c.resolve("T1574.002", true),
            Resolution::Replaced { to, .. } if to.as_str() == "T1574"
        ));
        assert_eq!(
            c.resolve("T1059.003", true),
            Resolution::Active("T1059".parse().expect("id"))
        );
        assert!(matches!(c.resolve("T9999", false), Resolution::Unknown(_)));
        assert!(matches!(
            c.resolve("lateral", false),
            Resolution::Malformed(_)
        ));
        let deprecated = c.techniques.values().find(|t| t.deprecated).expect("one");
        assert!(matches!(
            c.resolve(deprecated.id.as_str(), false),
            Resolution::Deprecated(_)
        ));
    }

    #[test]
    fn tsv_errors_name_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.tsv");
        std::fs::write(
            &p,
            "technique_id\tname\trevoked\tdeprecated\nT1001\tX\tmaybe\tfalse\n",
        )
        .expect("write");
        let err = Catalog::from_tsv(&p).expect_err("bad flag").to_string();
        assert!(err.contains("line 2") && err.contains("maybe"), "{err}");
        std::fs::write(&p, "id\tname\n").expect("write");
        let err = Catalog::from_tsv(&p).expect_err("no column").to_string();
        assert!(err.contains("technique_id"), "{err}");
    }
}
