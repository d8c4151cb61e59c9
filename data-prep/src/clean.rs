//! Text cleaning: Unicode normalisation, ATT&CK `(Citation: ...)` markers, markdown links
//! and whitespace. The regex passes run as one vectorised Polars expression over the whole
//! text column; the original text is kept beside the cleaned one.

use polars::prelude::*;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick, is_nfkc_quick};

use crate::config::{CleanSection, UnicodeForm};
use crate::error::{Error, Result};

/// `(Citation: Some Source 2019)`, possibly repeated, with the space before it.
const CITATION: &str = r"\s*\(Citation:[^)]*\)";
/// `[text](url)`, where the URL may hold one level of balanced parentheses.
const MARKDOWN_LINK: &str = r"\[([^\[\]]*)\]\((?:[^()\s]|\([^()\s]*\))*\)";
/// Any whitespace run.
const WHITESPACE: &str = r"\s+";

/// Applies the configured Unicode normalisation to one text.
pub fn normalize_unicode(text: &str, form: UnicodeForm) -> String {
    // Most CTI prose is ASCII, which every normal form leaves alone; the quick check
    // answers for most other text without decomposing it.
    let unchanged = match form {
        UnicodeForm::None => true,
        _ if text.is_ascii() => true,
        UnicodeForm::Nfc => is_nfc_quick(text.chars()) == IsNormalized::Yes,
        UnicodeForm::Nfkc => is_nfkc_quick(text.chars()) == IsNormalized::Yes,
    };
    if unchanged {
        return text.to_owned();
    }
    match form {
        UnicodeForm::Nfc => text.nfc().collect(),
        UnicodeForm::Nfkc => text.nfkc().collect(),
        UnicodeForm::None => text.to_owned(),
    }
}

/// The cleaning expression over column `name`.
fn expression(name: &str, cfg: &CleanSection) -> Expr {
    let mut e = col(name);
    if cfg.strip_citations {
        e = e.str().replace_all(lit(CITATION), lit(""), false);
    }
    if cfg.strip_markdown_links {
        e = e.str().replace_all(lit(MARKDOWN_LINK), lit("$1"), false);
    }
    if cfg.collapse_whitespace {
        e = e
            .str()
            .replace_all(lit(WHITESPACE), lit(" "), false)
            .str()
            .strip_chars(lit(NULL));
    }
    e
}

/// Cleans `texts` where `apply[i]` is true (entity rows keep their text so that span
/// offsets stay valid) and returns the cleaned texts in order.
///
/// # Errors
/// A Polars failure (a bad regex would be a bug here: the patterns are constants).
pub fn clean_texts(
    texts: Vec<String>,
    apply: Vec<bool>,
    cfg: &CleanSection,
) -> Result<Vec<String>> {
    let df = DataFrame::new_infer_height(vec![
        Column::new("text".into(), texts),
        Column::new("apply".into(), apply),
    ])
    .map_err(|e| Error::polars("building the text column", e))?;
    let cleaned = df
        .lazy()
        .select([when(col("apply"))
            .then(expression("text", cfg))
            .otherwise(col("text"))
            .alias("text")])
        .collect()
        .map_err(|e| Error::polars("cleaning texts", e))?;
    let s = cleaned
        .column("text")
        .and_then(|c| c.str().cloned())
        .map_err(|e| Error::polars("reading cleaned texts", e))?;
    Ok(s.iter().map(|v| v.unwrap_or_default().to_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_citations_links_and_whitespace_only_where_asked() {
        let texts = vec![
            "[Gamaredon Group](https://attack.mitre.org/groups/G0047) has used  obfuscated \
             VBScripts.(Citation: unit42_gamaredon_dec2022) "
                .to_owned(),
            "[APT29](https://x.org/a_(b)) ran it.(Citation: A)(Citation: B)".to_owned(),
            "keep  [this](http://x)".to_owned(),
        ];
        let out =
            clean_texts(texts, vec![true, true, false], &CleanSection::default()).expect("clean");
        assert_eq!(out[0], "Gamaredon Group has used obfuscated VBScripts.");
        assert_eq!(out[1], "APT29 ran it.");
        assert_eq!(out[2], "keep  [this](http://x)");
    }

    #[test]
    fn unicode_forms() {
        let s = "e\u{301} \u{FB01}";
        assert_eq!(normalize_unicode(s, UnicodeForm::Nfc), "\u{e9} \u{FB01}");
        assert_eq!(normalize_unicode(s, UnicodeForm::Nfkc), "\u{e9} fi");
        assert_eq!(normalize_unicode(s, UnicodeForm::None), s);
        // Already-normal text takes the quick path and must come back unchanged.
        for t in [
            "plain ascii",
            "caf\u{e9} \u{FB01}",
            "\u{0391}\u{03c0}\u{03c4}",
        ] {
            assert_eq!(
                normalize_unicode(t, UnicodeForm::Nfc),
                t.nfc().collect::<String>()
            );
            assert_eq!(
                normalize_unicode(t, UnicodeForm::Nfkc),
                t.nfkc().collect::<String>()
            );
        }
    }
}
