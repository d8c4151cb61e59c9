//! Reading a model's generated text back into structured predictions, robustly: technique
//! IDs anywhere in the text (`t1059.001`, `T1059/001` and `T1059.1` are all `T1059.001`),
//! `kind: value` indicator lines in any common spelling, `type: text` entity lines.
//!
//! Technique IDs are checked against the ATT&CK catalog when one is given: revoked IDs are
//! mapped to their replacement and counted, unknown and deprecated IDs are kept (they are
//! wrong answers) and counted, so a report can say how often a model invents IDs.

use std::sync::LazyLock;

use ctiforge_data_prep::attack::{Catalog, Resolution};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::example::{canonical_ioc, normalise_ids};

static TECHNIQUE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bT(\d{4})(?:[./](\d{1,3}))?\b").unwrap_or_else(|e| panic!("{e}"))
});

/// How the technique IDs of one output resolved against the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdCounts {
    /// IDs found in the text.
    pub found: usize,
    /// Revoked IDs mapped to their replacement.
    pub revoked: usize,
    /// Deprecated or revoked-without-replacement IDs.
    pub deprecated: usize,
    /// Well-formed IDs that ATT&CK does not have.
    pub unknown: usize,
}

impl IdCounts {
    /// Adds another output's counts.
    pub fn add(&mut self, other: &IdCounts) {
        self.found += other.found;
        self.revoked += other.revoked;
        self.deprecated += other.deprecated;
        self.unknown += other.unknown;
    }
}

/// The technique IDs in `text`, normalised (`T1059.001`), resolved with `catalog` (revoked
/// IDs replaced), sorted and unique.
pub fn techniques(text: &str, catalog: Option<&Catalog>) -> (Vec<String>, IdCounts) {
    let mut counts = IdCounts::default();
    let mut ids = Vec::new();
    for c in TECHNIQUE_RE.captures_iter(text) {
        let base = &c[1];
        let id = match c.get(2) {
            Some(sub) => format!("T{base}.{:0>3}", sub.as_str()),
            None => format!("T{base}"),
        };
        counts.found += 1;
        let id = match catalog.map(|cat| cat.resolve(&id, false)) {
            None | Some(Resolution::Active(_)) => id,
            Some(Resolution::Replaced { to, .. }) => {
                counts.revoked += 1;
                to.as_str().to_owned()
            }
            Some(Resolution::Deprecated(_) | Resolution::RevokedUnmapped(_)) => {
                counts.deprecated += 1;
                id
            }
            Some(Resolution::Unknown(_) | Resolution::Malformed(_)) => {
                counts.unknown += 1;
                id
            }
        };
        ids.push(id);
    }
    (normalise_ids(ids), counts)
}

/// `label: value` lines of an output, skipping a leading `none` and lines without a colon.
/// Returns the pairs and the number of non-empty lines that did not parse.
fn colon_lines(text: &str) -> (Vec<(String, String)>, usize) {
    let mut pairs = Vec::new();
    let mut skipped = 0;
    for line in text.lines() {
        let line = line.trim().trim_start_matches(['-', '*', '•']).trim();
        if line.is_empty() || line.eq_ignore_ascii_case("none") {
            continue;
        }
        match line.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                pairs.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            _ => skipped += 1,
        }
    }
    (pairs, skipped)
}

/// Indicators as (kind, canonical value) from `kind: value` lines, and the number of lines
/// that were not of that form.
pub fn iocs(text: &str) -> (Vec<(String, String)>, usize) {
    let (pairs, skipped) = colon_lines(text);
    let list = pairs.iter().map(|(k, v)| canonical_ioc(k, v)).collect();
    (list, skipped)
}

/// Entities as (lower-case type, text) from `type: text` lines, and the number of lines
/// that were not of that form.
pub fn entities(text: &str) -> (Vec<(String, String)>, usize) {
    let (pairs, skipped) = colon_lines(text);
    let list = pairs
        .into_iter()
        .map(|(k, v)| (k.to_lowercase(), v))
        .collect();
    (list, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn catalog() -> Catalog {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../datasets/attack/enterprise_techniques.tsv");
        Catalog::from_tsv(&p).expect("bundled ATT&CK table")
    }

    #[test]
    fn technique_ids_are_found_in_any_spelling() {
        let (ids, c) = techniques(" t1059.001, T1105 and T1059/1; T1105.", None);
        assert_eq!(ids, vec!["T1059.001", "T1105"]);
        assert_eq!(c.found, 4);
        let (ids, _) = techniques("none", None);
        assert!(ids.is_empty());
        // Not an ID: part of a longer token.
        let (ids, _) = techniques("XT10591 T12345", None);
        assert!(ids.is_empty(), "{ids:?}");
    }

    #[test]
    fn revoked_and_unknown_ids_are_counted() {
        let cat = catalog();
        // T1086 (PowerShell) was revoked in favour of T1059.001; T9999 does not exist.
        let (ids, c) = techniques("T1086, T9999, T1105", Some(&cat));
        assert_eq!(ids, vec!["T1059.001", "T1105", "T9999"]);
        assert_eq!((c.found, c.revoked, c.unknown), (3, 1, 1));
    }

    #[test]
    fn indicator_lines_are_canonicalised() {
        let (list, skipped) = iocs("\nipv4: 10.0.0[.]1\n- domain: Evil[.]COM\ngarbage\n");
        assert_eq!(
            list,
            vec![
                ("ipv4".to_owned(), "10.0.0.1".to_owned()),
                ("domain".to_owned(), "evil.com".to_owned())
            ]
        );
        assert_eq!(skipped, 1);
        assert_eq!(iocs(" none").0, vec![]);
    }

    #[test]
    fn entity_lines_keep_text_and_lowercase_types() {
        let (list, _) = entities("\nMalware: Emotet\nGROUP: APT28");
        assert_eq!(
            list,
            vec![
                ("malware".to_owned(), "Emotet".to_owned()),
                ("group".to_owned(), "APT28".to_owned())
            ]
        );
    }
}
