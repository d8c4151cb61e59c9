//! The marker check: work-left-to-do markers in Rust files must cite an issue.
//!
//! Allowed: `TODO(#123): ...` and `FIXME(#123): ...`. Rejected: either word without an
//! issue number, and the other two marker words at all (see [`MARKERS`]). The house
//! rule lives in CONTRIBUTING.md.
//!
//! NOTE: the marker words are assembled with `concat!` so that this file does not trip
//! its own check.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::step::{self, workspace_root};

/// The four marker words, as whole words, case-sensitive.
const MARKERS: [&str; 4] = [
    concat!("TO", "DO"),
    concat!("FIX", "ME"),
    concat!("X", "XX"),
    concat!("HA", "CK"),
];

/// Markers that are allowed when an issue reference `(#N)` follows them directly.
const WITH_ISSUE: [&str; 2] = [MARKERS[0], MARKERS[1]];

/// Searches tracked and not-ignored untracked `*.rs` files and fails if any line holds
/// a marker without an issue number.
///
/// # Errors
/// Fails listing every offending `path:line`, or if `git grep` itself fails.
pub fn check() -> Result<()> {
    let hits = grep_candidates()?;
    let bad: Vec<&str> = hits
        .lines()
        .filter(|line| has_bare_marker(content(line)))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    bail!(
        "{} line(s) with a marker that cites no issue; write `{}(#N): ...` or `{}(#N): ...` \
         (N an issue number) or remove the marker:\n  {}",
        bad.len(),
        WITH_ISSUE[0],
        WITH_ISSUE[1],
        bad.join("\n  ")
    )
}

/// `git grep` output (`path:line:text`) for every line that holds a marker word.
fn grep_candidates() -> Result<String> {
    let pattern = format!("({})", MARKERS.join("|"));
    let mut cmd = Command::new("git");
    cmd.current_dir(workspace_root()).args([
        "grep",
        "--untracked",
        "-n",
        "-I",
        "-w",
        "-E",
        &pattern,
        "--",
        "*.rs",
    ]);
    let shown = step::display(&cmd);
    let output = cmd
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    // git grep exits 1 when nothing matches; anything above that is a real error.
    match output.status.code() {
        Some(0) | Some(1) => {}
        _ => bail!(
            "`{shown}` failed ({}): {}; the marker check needs a git checkout",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
    String::from_utf8(output.stdout).context("git grep printed non-UTF-8 output")
}

/// The text part of a `path:line:text` row.
fn content(row: &str) -> &str {
    row.splitn(3, ':').nth(2).unwrap_or(row)
}

/// True if `text` holds a marker word that is not of the form `WORD(#digits)`.
fn has_bare_marker(text: &str) -> bool {
    MARKERS.iter().any(|marker| {
        text.match_indices(marker).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let rest = &text[at + marker.len()..];
            let whole_word =
                !before.is_some_and(is_word_char) && !rest.chars().next().is_some_and(is_word_char);
            whole_word && !(WITH_ISSUE.contains(marker) && cites_issue(rest))
        })
    })
}

/// True if `rest` starts with `(#` one or more digits `)`.
fn cites_issue(rest: &str) -> bool {
    let Some(inner) = rest.strip_prefix("(#") else {
        return false;
    };
    let digits = inner.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && inner[digits..].starts_with(')')
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(marker: usize, tail: &str) -> String {
        format!("    // {}{tail}", MARKERS[marker])
    }

    #[test]
    fn issue_numbers_make_the_first_two_markers_acceptable() {
        assert!(!has_bare_marker(&line(0, "(#12): split this")));
        assert!(!has_bare_marker(&line(1, "(#3) wrong on big-endian")));
    }

    #[test]
    fn markers_without_issue_numbers_are_rejected() {
        assert!(has_bare_marker(&line(0, ": later")));
        assert!(has_bare_marker(&line(0, "(alice): later")));
        assert!(has_bare_marker(&line(0, "(#): later")));
        assert!(has_bare_marker(&line(1, "")));
        assert!(has_bare_marker(&line(2, "(#4)")));
        assert!(has_bare_marker(&line(3, "(#4)")));
    }

    #[test]
    fn every_occurrence_on_a_line_counts() {
        let text = format!("{} and {}", line(0, "(#1)"), MARKERS[0]);
        assert!(has_bare_marker(&text));
    }

    #[test]
    fn words_that_merely_contain_a_marker_pass() {
        let text = format!("let {}_LIST = 1; // {}S", MARKERS[0], MARKERS[3]);
        assert!(!has_bare_marker(&text));
    }

    #[test]
    fn content_strips_path_and_line_number() {
        assert_eq!(
            content("src/a.rs:12:let x = 1; // a:b"),
            "let x = 1; // a:b"
        );
    }
}
