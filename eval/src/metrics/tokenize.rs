//! Tokenizers for ROUGE: `rouge-score`'s default tokenizer
//! (`rouge_score/tokenize.py`: lowercase, every run of characters outside `[a-z0-9]`
//! becomes a separator, optional Porter stemming of tokens longer than three characters)
//! and a CTI-aware variant.
//!
//! The CTI variant differs in one way: before the default rules run, it keeps indicator-
//! shaped spans whole, as one lowercased, unstemmed token each, where the default tokenizer
//! would split them on their punctuation:
//! - URLs (`http`, `https`, `hxxp`, `hxxps`, `ftp` with `://`), trailing `.,;:!?)]}'"` cut;
//! - IPv4 addresses (dotted quads of 0–255, optional `/prefix`);
//! - MD5, SHA-1 and SHA-256 hex digests (32, 40, 64 hex digits);
//! - CVE IDs (`CVE-2021-44228`);
//! - ATT&CK technique, sub-technique and tactic IDs (`T1059`, `T1059.001`, `TA0002`);
//! - domain names (dot-separated labels ending in an alphabetic label of 2–24 letters),
//!   which also keeps file names such as `svchost.exe` whole.
//!
//! So `"Exploits CVE-2021-44228 from 10.0.0.1"` is `[exploits, cve-2021-44228, 10.0.0.1]`
//! rather than `[exploits, cve, 2021, 44228, from, 10, 0, 0, 1]`, and a summary that gets one
//! octet of an address wrong earns no partial n-gram credit for it. Defanged forms
//! (`1.2.3[.]4`) are not refanged here: normalise IOCs first.

use std::sync::OnceLock;

use regex::Regex;

use super::porter;

/// Which ROUGE tokenizer to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum RougeTokenizer {
    /// `rouge-score`'s `DefaultTokenizer`.
    #[default]
    Default,
    /// The default tokenizer with CTI indicators kept whole (see the module docs).
    Cti,
}

/// Tokenizes `text` with the chosen tokenizer, stemming when `stem` is set.
pub fn tokenize(text: &str, tokenizer: RougeTokenizer, stem: bool) -> Vec<String> {
    match tokenizer {
        RougeTokenizer::Default => default_tokens(text, stem),
        RougeTokenizer::Cti => cti_tokens(text, stem),
    }
}

/// `rouge-score`'s default tokenization of `text`.
pub fn default_tokens(text: &str, stem: bool) -> Vec<String> {
    let mut out = Vec::new();
    push_default(&text.to_lowercase(), stem, &mut out);
    out
}

/// Tokenizes already-lowercased text with the default rules, appending to `out`.
fn push_default(lower: &str, stem: bool, out: &mut Vec<String>) {
    for token in lower.split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit())) {
        if token.is_empty() {
            continue;
        }
        if stem && token.len() > 3 {
            out.push(porter::stem(token));
        } else {
            out.push(token.to_string());
        }
    }
}

fn cti_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let octet = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
        let pattern = [
            r"(?:https?|hxxps?|ftp)://[^\s<>]+".to_string(),
            r"\bcve-[0-9]{4}-[0-9]{4,}\b".to_string(),
            r"\bt(?:a[0-9]{4}|[0-9]{4}(?:\.[0-9]{3})?)\b".to_string(),
            format!(r"\b(?:{octet}\.){{3}}{octet}(?:/[0-9]{{1,2}})?\b"),
            r"\b(?:[0-9a-f]{64}|[0-9a-f]{40}|[0-9a-f]{32})\b".to_string(),
            r"\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b".to_string(),
        ]
        .join("|");
        // The pattern is a constant; a failure here is a bug caught by the unit tests.
        #[allow(clippy::expect_used)]
        Regex::new(&pattern).expect("the CTI token pattern compiles")
    })
}

/// The CTI-aware tokenization of `text`.
pub fn cti_tokens(text: &str, stem: bool) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    for m in cti_regex().find_iter(&lower) {
        let mut token = m.as_str();
        if token.contains("://") {
            token =
                token.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}', '\'', '"']);
        }
        push_default(&lower[at..m.start()], stem, &mut out);
        out.push(token.to_string());
        at = m.start() + token.len();
    }
    push_default(&lower[at..], stem, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matches_rouge_score_rules() {
        assert_eq!(
            default_tokens("The QUICK, brown-fox; 42x!", false),
            ["the", "quick", "brown", "fox", "42x"]
        );
        // Non-ASCII letters are separators; the Kelvin sign lowercases to `k`.
        assert_eq!(
            default_tokens("naïve \u{212a}elvin", false),
            ["na", "ve", "kelvin"]
        );
        assert_eq!(default_tokens("", false), Vec::<String>::new());
        // Only tokens longer than 3 characters are stemmed.
        assert_eq!(
            default_tokens("running was dies", true),
            ["run", "was", "die"]
        );
    }

    #[test]
    fn cti_keeps_indicators_whole() {
        let text = "APT29 used T1059.001 and CVE-2021-44228 against 10.0.0.1/24, \
                    see https://evil.example.com/a?b=1). Hash \
                    d41d8cd98f00b204e9800998ecf8427e dropped svchost.exe (TA0002).";
        let tokens = cti_tokens(text, false);
        for want in [
            "t1059.001",
            "cve-2021-44228",
            "10.0.0.1/24",
            "https://evil.example.com/a?b=1",
            "d41d8cd98f00b204e9800998ecf8427e",
            "svchost.exe",
            "ta0002",
        ] {
            assert!(
                tokens.iter().any(|t| t == want),
                "{want} missing from {tokens:?}"
            );
        }
        assert_eq!(&tokens[..3], ["apt29", "used", "t1059.001"]);
        // A number that is not an address still splits as before.
        assert_eq!(
            cti_tokens("version 1.2 of 300.1.1.1", false),
            ["version", "1", "2", "of", "300", "1", "1", "1"]
        );
    }
}
