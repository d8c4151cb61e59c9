//! The Porter stemmer exactly as NLTK's `PorterStemmer()` in its default `NLTK_EXTENSIONS`
//! mode, which is what `rouge-score` uses for `use_stemmer=True`
//! (`rouge_score/tokenizers.py` builds `nltk.stem.porter.PorterStemmer()`).
//!
//! The algorithm is M. F. Porter, "An algorithm for suffix stripping", Program 14(3), 1980
//! (<https://tartarus.org/martin/PorterStemmer/def.txt>), with NLTK's departures
//! (<https://www.nltk.org/api/nltk.stem.porter.html>): a table of irregular forms
//! (`dying` → `die`, `skies` → `sky`, …), words of one or two letters left alone, `ies`/`ied`
//! in four-letter words becoming `ie`, `ied` elsewhere `i`, `y` → `i` only after a consonant
//! that is not the first letter, `bli` → `ble` instead of `abli` → `able`, a recursive
//! `alli` → `al`, `fulli` → `ful` and `logi` → `log` in step 2, and a two-letter vowel–
//! consonant stem counting as `*o`.

/// Irregular forms NLTK maps directly (the `pool` of `NLTK_EXTENSIONS` mode).
const IRREGULAR: &[(&str, &str)] = &[
    ("sky", "sky"),
    ("skies", "sky"),
    ("dying", "die"),
    ("lying", "lie"),
    ("tying", "tie"),
    ("news", "news"),
    ("innings", "inning"),
    ("inning", "inning"),
    ("outings", "outing"),
    ("outing", "outing"),
    ("cannings", "canning"),
    ("canning", "canning"),
    ("howe", "howe"),
    ("proceed", "proceed"),
    ("exceed", "exceed"),
    ("succeed", "succeed"),
];

/// Stems one word as NLTK's default `PorterStemmer().stem(word)`: the word is lowercased
/// first, then the steps run on its characters.
pub fn stem(word: &str) -> String {
    let lower = word.to_lowercase();
    if let Some((_, s)) = IRREGULAR.iter().find(|(w, _)| *w == lower) {
        return (*s).to_string();
    }
    // NLTK compares `len(word)` of the original word here, in code points.
    if word.chars().count() <= 2 {
        return lower;
    }
    let mut w: Vec<char> = lower.chars().collect();
    step1a(&mut w);
    step1b(&mut w);
    step1c(&mut w);
    step2(&mut w);
    step3(&mut w);
    step4(&mut w);
    step5a(&mut w);
    step5b(&mut w);
    w.into_iter().collect()
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

/// Consonant flags: `y` is a consonant at the start or after a vowel.
fn consonants(w: &[char]) -> Vec<bool> {
    let mut flags: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let f = if is_vowel(c) {
            false
        } else if c == 'y' {
            i == 0 || !flags[i - 1]
        } else {
            true
        };
        flags.push(f);
    }
    flags
}

fn is_consonant(w: &[char], i: usize) -> bool {
    consonants(&w[..=i])[i]
}

/// Porter's *m*: the number of vowel-consonant sequences.
fn measure(w: &[char]) -> usize {
    let f = consonants(w);
    f.windows(2).filter(|p| !p[0] && p[1]).count()
}

fn contains_vowel(w: &[char]) -> bool {
    consonants(w).iter().any(|c| !c)
}

fn ends_double_consonant(w: &[char]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

/// Porter's `*o`, with NLTK's two-letter case.
fn ends_cvc(w: &[char]) -> bool {
    let n = w.len();
    if n >= 3 {
        let f = consonants(w);
        if f[n - 3] && !f[n - 2] && f[n - 1] && !matches!(w[n - 1], 'w' | 'x' | 'y') {
            return true;
        }
    }
    if n == 2 {
        let f = consonants(w);
        return !f[0] && f[1];
    }
    false
}

fn ends_with(w: &[char], suffix: &str) -> bool {
    let k = suffix.len();
    w.len() >= k && w[w.len() - k..].iter().copied().eq(suffix.chars())
}

fn replace_end(w: &mut Vec<char>, remove: usize, add: &str) {
    w.truncate(w.len() - remove);
    w.extend(add.chars());
}

/// A condition on the stem that remains once the suffix is removed.
type Cond = fn(&[char]) -> bool;

fn m_gt0(s: &[char]) -> bool {
    measure(s) > 0
}

fn m_gt1(s: &[char]) -> bool {
    measure(s) > 1
}

/// Applies the first rule whose suffix matches; a failed condition stops the search.
/// Returns whether a suffix matched.
fn apply_rules(w: &mut Vec<char>, rules: &[(&str, &str, Cond)]) -> bool {
    for &(suffix, replacement, cond) in rules {
        if ends_with(w, suffix) {
            let stem_len = w.len() - suffix.len();
            if cond(&w[..stem_len]) {
                replace_end(w, suffix.len(), replacement);
            }
            return true;
        }
    }
    false
}

fn step1a(w: &mut Vec<char>) {
    if ends_with(w, "ies") && w.len() == 4 {
        replace_end(w, 3, "ie");
        return;
    }
    let always: Cond = |_| true;
    apply_rules(
        w,
        &[
            ("sses", "ss", always),
            ("ies", "i", always),
            ("ss", "ss", always),
            ("s", "", always),
        ],
    );
}

fn step1b(w: &mut Vec<char>) {
    if ends_with(w, "ied") {
        let rep = if w.len() == 4 { "ie" } else { "i" };
        replace_end(w, 3, rep);
        return;
    }
    if ends_with(w, "eed") {
        if measure(&w[..w.len() - 3]) > 0 {
            replace_end(w, 3, "ee");
        }
        return;
    }
    let mut stripped = false;
    for suffix in ["ed", "ing"] {
        if ends_with(w, suffix) && contains_vowel(&w[..w.len() - suffix.len()]) {
            w.truncate(w.len() - suffix.len());
            stripped = true;
            break;
        }
    }
    if !stripped {
        return;
    }
    for (suffix, rep) in [("at", "ate"), ("bl", "ble"), ("iz", "ize")] {
        if ends_with(w, suffix) {
            replace_end(w, suffix.len(), rep);
            return;
        }
    }
    if ends_double_consonant(w) {
        if let Some(&last) = w.last()
            && !matches!(last, 'l' | 's' | 'z')
        {
            w.pop();
        }
        return;
    }
    if measure(w) == 1 && ends_cvc(w) {
        w.push('e');
    }
}

fn step1c(w: &mut [char]) {
    if ends_with(w, "y") {
        let n = w.len() - 1;
        if n > 1 && is_consonant(w, n - 1) {
            w[n] = 'i';
        }
    }
}

fn step2(w: &mut Vec<char>) {
    if ends_with(w, "alli") && m_gt0(&w[..w.len() - 4]) {
        replace_end(w, 4, "al");
        step2(w);
        return;
    }
    const RULES: &[(&str, &str, Cond)] = &[
        ("ational", "ate", m_gt0),
        ("tional", "tion", m_gt0),
        ("enci", "ence", m_gt0),
        ("anci", "ance", m_gt0),
        ("izer", "ize", m_gt0),
        ("bli", "ble", m_gt0),
        ("alli", "al", m_gt0),
        ("entli", "ent", m_gt0),
        ("eli", "e", m_gt0),
        ("ousli", "ous", m_gt0),
        ("ization", "ize", m_gt0),
        ("ation", "ate", m_gt0),
        ("ator", "ate", m_gt0),
        ("alism", "al", m_gt0),
        ("iveness", "ive", m_gt0),
        ("fulness", "ful", m_gt0),
        ("ousness", "ous", m_gt0),
        ("aliti", "al", m_gt0),
        ("iviti", "ive", m_gt0),
        ("biliti", "ble", m_gt0),
        ("fulli", "ful", m_gt0),
    ];
    if apply_rules(w, RULES) {
        return;
    }
    // NLTK tests the measure of the word less its last three letters ("l" kept).
    if ends_with(w, "logi") && m_gt0(&w[..w.len() - 3]) {
        replace_end(w, 4, "log");
    }
}

fn step3(w: &mut Vec<char>) {
    apply_rules(
        w,
        &[
            ("icate", "ic", m_gt0),
            ("ative", "", m_gt0),
            ("alize", "al", m_gt0),
            ("iciti", "ic", m_gt0),
            ("ical", "ic", m_gt0),
            ("ful", "", m_gt0),
            ("ness", "", m_gt0),
        ],
    );
}

fn step4(w: &mut Vec<char>) {
    let ion: Cond = |s| m_gt1(s) && matches!(s.last(), Some('s' | 't'));
    apply_rules(
        w,
        &[
            ("al", "", m_gt1),
            ("ance", "", m_gt1),
            ("ence", "", m_gt1),
            ("er", "", m_gt1),
            ("ic", "", m_gt1),
            ("able", "", m_gt1),
            ("ible", "", m_gt1),
            ("ant", "", m_gt1),
            ("ement", "", m_gt1),
            ("ment", "", m_gt1),
            ("ent", "", m_gt1),
            ("ion", "", ion),
            ("ou", "", m_gt1),
            ("ism", "", m_gt1),
            ("ate", "", m_gt1),
            ("iti", "", m_gt1),
            ("ous", "", m_gt1),
            ("ive", "", m_gt1),
            ("ize", "", m_gt1),
        ],
    );
}

fn step5a(w: &mut Vec<char>) {
    if ends_with(w, "e") {
        let stem = &w[..w.len() - 1];
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            w.pop();
        }
    }
}

fn step5b(w: &mut Vec<char>) {
    // NLTK tests the measure of the word less one `l`.
    if ends_with(w, "ll") && m_gt1(&w[..w.len() - 1]) {
        w.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::stem;

    /// Examples from Porter's paper, with NLTK's outputs where its extensions differ.
    #[test]
    fn paper_examples() {
        let cases = [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("conflated", "conflat"),
            ("troubled", "troubl"),
            ("sized", "size"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("hissing", "hiss"),
            ("failing", "fail"),
            ("filing", "file"),
            ("happy", "happi"),
            ("sky", "sky"),
            ("relational", "relat"),
            ("conditional", "condit"),
            ("rational", "ration"),
            ("hopefulness", "hope"),
            ("generalization", "gener"),
            ("electrical", "electr"),
            ("adjustment", "adjust"),
            ("adoption", "adopt"),
            ("controlling", "control"),
            ("dying", "die"),
            ("enjoy", "enjoy"),
            ("analogies", "analog"),
            ("attackers", "attack"),
            ("exfiltrated", "exfiltr"),
            ("malicious", "malici"),
            ("persistence", "persist"),
            ("ransomware", "ransomwar"),
        ];
        for (word, want) in cases {
            assert_eq!(stem(word), want, "stem({word:?})");
        }
    }
}
