//! Python's notion of whitespace (`str.isspace`, used by `str.split()` and `str.rstrip()`),
//! which the reference tokenizers of `sacrebleu` and `rouge-score` rely on
//! (<https://docs.python.org/3/library/stdtypes.html#str.isspace>).
//!
//! It is Unicode `White_Space` plus the ASCII separators U+001C..U+001F (bidirectional class
//! B or S), which Rust's [`char::is_whitespace`] does not include.

/// Whether Python's `str.isspace()` is true for `c`.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()` with no argument: runs of whitespace separate, empty parts dropped.
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// Python's `s.rstrip()` with no argument.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_python() {
        let s = " a\u{1f}b\u{a0}c\u{3000} d\u{200b}e ";
        assert_eq!(
            py_split(s).collect::<Vec<_>>(),
            ["a", "b", "c", "d\u{200b}e"]
        );
        assert_eq!(py_rstrip("x \u{1c}\n"), "x");
    }
}
