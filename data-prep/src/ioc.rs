//! Indicators of compromise (IOCs) in threat-report text: detection, refanging, validation,
//! and one canonical plus one defanged spelling per indicator.
//!
//! Reports "defang" indicators (`hxxp://example[.]com`) so that nobody clicks them. A model
//! should see and write one spelling per indicator, so this module refangs first, then works
//! on canonical values ([`Ioc::value`]), and can defang them again for display
//! ([`Ioc::defanged`]).
//!
//! References: top-level domains are checked against the Public Suffix List
//! (<https://publicsuffix.org/>, embedded by the `psl` crate); IPv6 addresses are written as
//! RFC 5952 prescribes (<https://www.rfc-editor.org/rfc/rfc5952>); CVE IDs follow
//! <https://cve.mitre.org/cve/identifiers/syntaxchange.html>.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::{Captures, Regex, Replacer};

/// The kinds of indicator this module detects and validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IocKind {
    /// An IPv4 address in dotted-decimal form (`192.0.2.1`).
    Ipv4,
    /// An IPv6 address, stored in RFC 5952 form (`2001:db8::1`).
    Ipv6,
    /// A host name whose top-level domain is on the Public Suffix List.
    Domain,
    /// A URL with a scheme (`http://…`), or a host followed by a path (`example.com/a.php`).
    Url,
    /// An e-mail address.
    Email,
    /// An MD5 digest: 32 hex digits.
    Md5,
    /// A SHA-1 digest: 40 hex digits.
    Sha1,
    /// A SHA-256 digest: 64 hex digits.
    Sha256,
    /// A SHA-512 digest: 128 hex digits.
    Sha512,
    /// A CVE identifier (`CVE-2017-0144`).
    Cve,
    /// A Windows (`C:\…`, `%APPDATA%\…`, `\\server\share`) or Unix (`/tmp/x`, `~/.x`) path.
    FilePath,
    /// A bare file name with an extension (`rundll32.exe`).
    FileName,
    /// A Windows registry key under a hive (`HKLM\Software\…`).
    RegistryKey,
}

impl IocKind {
    /// Every kind, in declaration order.
    pub const ALL: [IocKind; 13] = [
        IocKind::Ipv4,
        IocKind::Ipv6,
        IocKind::Domain,
        IocKind::Url,
        IocKind::Email,
        IocKind::Md5,
        IocKind::Sha1,
        IocKind::Sha256,
        IocKind::Sha512,
        IocKind::Cve,
        IocKind::FilePath,
        IocKind::FileName,
        IocKind::RegistryKey,
    ];

    /// The stable name of the kind, as written to parquet files and reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            IocKind::Ipv4 => "ipv4",
            IocKind::Ipv6 => "ipv6",
            IocKind::Domain => "domain",
            IocKind::Url => "url",
            IocKind::Email => "email",
            IocKind::Md5 => "md5",
            IocKind::Sha1 => "sha1",
            IocKind::Sha256 => "sha256",
            IocKind::Sha512 => "sha512",
            IocKind::Cve => "cve",
            IocKind::FilePath => "file_path",
            IocKind::FileName => "file_name",
            IocKind::RegistryKey => "registry_key",
        }
    }

    /// Whether the kind is a hash digest.
    #[must_use]
    pub fn is_hash(self) -> bool {
        matches!(
            self,
            IocKind::Md5 | IocKind::Sha1 | IocKind::Sha256 | IocKind::Sha512
        )
    }
}

impl fmt::Display for IocKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IocKind {
    type Err = IocError;

    /// Accepts the [`IocKind::as_str`] spellings, ignoring ASCII case and surrounding spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        IocKind::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| IocError::UnknownKind(s.to_owned()))
    }
}

/// One indicator: its kind and its canonical value.
///
/// Canonical means refanged; hashes, domains and e-mail addresses lower-case; a URL's scheme
/// and host lower-case with the rest as written; CVE IDs upper-case; IPv6 in RFC 5952 form;
/// paths and registry keys with runs of `\` or `/` collapsed and no trailing separator; a
/// registry hive upper-case (`HKLM:\` becomes `HKLM\`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ioc {
    /// What the indicator is.
    pub kind: IocKind,
    /// The canonical value.
    pub value: String,
}

impl Ioc {
    /// The value written so that it is not live: `hxxp://`, `fxp://`, `example[.]com`,
    /// `192.0.2[.]1`, `user[@]example[.]com`. Hashes, CVE IDs, IPv6 addresses, paths, file
    /// names and registry keys come back unchanged. [`refang`] (and so [`validate`]) undoes it.
    #[must_use]
    pub fn defanged(&self) -> String {
        match self.kind {
            IocKind::Ipv4 => defang_ipv4(&self.value),
            IocKind::Domain => self.value.replace('.', "[.]"),
            IocKind::Email => match self.value.rsplit_once('@') {
                Some((local, domain)) => format!("{local}[@]{}", domain.replace('.', "[.]")),
                None => self.value.clone(),
            },
            IocKind::Url => defang_url(&self.value),
            _ => self.value.clone(),
        }
    }
}

impl fmt::Display for Ioc {
    /// Writes the canonical value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// Why a value is not an indicator of the kind it was given as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IocError {
    /// The value is not a valid indicator of `kind`.
    #[error("{kind} `{value}`: {reason}")]
    Invalid {
        /// The kind the value was checked as.
        kind: IocKind,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A kind name that [`IocKind::from_str`] does not know.
    #[error(
        "unknown indicator kind `{0}` (expected one of ipv4, ipv6, domain, url, email, md5, \
         sha1, sha256, sha512, cve, file_path, file_name, registry_key)"
    )]
    UnknownKind(String),
}

// ---------------------------------------------------------------------------------------------
// Refanging
// ---------------------------------------------------------------------------------------------

/// Undoes the usual defanging conventions: `hxxp`, `hxxps`, `fxp` (any case) before `:`,
/// `[:]` or `[://]`; `[.]`, `(.)`, `{.}`, `[dot]`, `(dot)`, `{dot}` (with optional spaces
/// around `[dot]`); `[@]`, `(@)`, `{@}`, `[at]`, `(at)`, `{at}`; `[:]`, `[://]`, `[/]`;
/// half brackets between letters (`example[.com`); backslash-escaped dots (`example\.com`,
/// unless the name follows a `\`, as a folder in a Windows path does).
///
/// Text without any of these is returned as [`Cow::Borrowed`], without allocating.
#[must_use]
pub fn refang(text: &str) -> Cow<'_, str> {
    if !may_be_defanged(text) {
        return Cow::Borrowed(text);
    }
    DEFANG_RE.replace_all(text, Refanger { text })
}

/// A cheap filter: every defanging form contains a bracket, a backslash or `xp`.
fn may_be_defanged(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| match b {
        b'[' | b'(' | b'{' | b'\\' => true,
        b'x' | b'X' => bytes
            .get(i + 1)
            .is_some_and(|n| n.eq_ignore_ascii_case(&b'p')),
        _ => false,
    })
}

static DEFANG_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?x)
        (?P<scheme>(?i-u:\b(?:hxxps?|fxps?))(?:\[:\]|\[://\]|:))
        | (?P<half>(?-u:[A-Za-z0-9])(?:\[\.|\.\])(?-u:[A-Za-z0-9]))
        | (?P<escaped>(?-u:[A-Za-z0-9-])+(?:\\\.(?-u:[A-Za-z0-9-])+)+)
        | [\ \t]?(?i-u:\[dot\]|\{dot\})[\ \t]? | (?i-u:\(dot\)) | \[\.\] | \(\.\) | \{\.\}
        | [\ \t]?(?i-u:\[at\]|\{at\})[\ \t]? | (?i-u:\(at\)) | \[@\] | \(@\) | \{@\}
        | \[://\] | \[:\] | \[/\]
        ",
    )
});

/// Writes the refanged form of each [`DEFANG_RE`] match.
struct Refanger<'t> {
    /// The whole text, to look at what precedes a match.
    text: &'t str,
}

impl Replacer for Refanger<'_> {
    fn replace_append(&mut self, caps: &Captures<'_>, dst: &mut String) {
        let Some(whole) = caps.get(0) else { return };
        let token = whole.as_str();
        if let Some(scheme) = caps.name("scheme") {
            let s = scheme.as_str();
            let word_len = s.bytes().take_while(u8::is_ascii_alphabetic).count();
            let (word, sep) = s.split_at(word_len);
            let word = word.to_ascii_lowercase();
            dst.push_str(match word.as_str() {
                "hxxp" => "http",
                "hxxps" => "https",
                "fxp" => "ftp",
                "fxps" => "ftps",
                other => other,
            });
            dst.push_str(if sep == "[://]" { "://" } else { ":" });
        } else if caps.name("half").is_some() {
            let bytes = token.as_bytes();
            dst.push(char::from(bytes[0]));
            dst.push('.');
            dst.push(char::from(bytes[bytes.len() - 1]));
        } else if caps.name("escaped").is_some() {
            if self.text[..whole.start()].ends_with('\\') {
                dst.push_str(token);
            } else {
                dst.push_str(&token.replace("\\.", "."));
            }
        } else {
            dst.push_str(refang_token(token));
        }
    }
}

/// The replacement of a bracketed defanging token such as `[.]`, ` [dot] `, `(@)` or `[/]`.
fn refang_token(token: &str) -> &'static str {
    let inner = token.trim_matches([' ', '\t']);
    match inner {
        "[://]" => "://",
        "[:]" => ":",
        "[/]" => "/",
        _ if inner.contains('@')
            || inner
                .get(1..3)
                .is_some_and(|w| w.eq_ignore_ascii_case("at")) =>
        {
            "@"
        }
        _ => ".",
    }
}

// ---------------------------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------------------------

/// Finds the indicators in `text`, defanged or not, and returns their canonical values,
/// each (kind, value) once, in order of first appearance.
///
/// Where matches overlap the more specific one wins: the host of a URL is not reported again
/// as a domain or IP address, nor the domain of an e-mail address, nor a file name inside a
/// path. A dotted name whose last part is a common file extension (`setup.exe`, `a.docx`) is
/// a [`IocKind::FileName`], otherwise a [`IocKind::Domain`] if its top-level domain is real.
/// `192,168,0,1` is not an address; an IPv4 address followed by a port keeps only the
/// address; one followed by a CIDR suffix (`/24`) reports the network address.
#[must_use]
pub fn extract(text: &str) -> Vec<Ioc> {
    let mut clues = Clues::of(text);
    if !clues.any() {
        return Vec::new();
    }
    let refanged = refang(text);
    if let Cow::Owned(refanged) = &refanged {
        clues = Clues::of(refanged);
    }
    let text = refanged.as_ref();
    let mut found = Found::default();
    if clues.slash {
        scan_scheme_urls(text, &mut found);
    }
    if clues.at {
        scan_emails(text, &mut found);
    }
    if clues.slash && clues.inner_dot {
        scan_bare_urls(text, &mut found);
    }
    if clues.backslash {
        scan_registry_keys(text, &mut found);
        scan_windows_paths(text, &mut found);
    }
    if clues.slash {
        scan_unix_paths(text, &mut found);
    }
    if clues.inner_colon {
        scan_ipv6(text, &mut found);
    }
    if clues.digit {
        if clues.inner_dot {
            scan_ipv4(text, &mut found);
        }
        scan_cves(text, &mut found);
        scan_hashes(text, &mut found);
    }
    if clues.inner_dot {
        scan_dotted_names(text, &mut found);
    }
    found.into_iocs()
}

/// Which characters a text holds, from one pass over its bytes, to skip the scanners that
/// cannot match. Most sentences end with a dot but hold no dot followed by a letter or digit.
#[derive(Debug, Default)]
struct Clues {
    /// An ASCII digit (IP addresses, hashes, CVE IDs).
    digit: bool,
    /// A `.` followed by a letter or digit (domains, addresses, file names).
    inner_dot: bool,
    /// A `:` followed by something other than a space (IPv6).
    inner_colon: bool,
    /// `@` (e-mail addresses).
    at: bool,
    /// `/` (URLs, Unix paths).
    slash: bool,
    /// `\` (Windows paths, registry keys).
    backslash: bool,
    /// An opening bracket or `xp`, which defanged forms such as `[dot]` and `hxxp` hold.
    defanged: bool,
}

impl Clues {
    fn of(text: &str) -> Clues {
        let mut clues = Clues::default();
        let bytes = text.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            let next = bytes.get(i + 1).copied().unwrap_or(b' ');
            match b {
                b'0'..=b'9' => clues.digit = true,
                b'.' => clues.inner_dot |= next.is_ascii_alphanumeric(),
                b':' => clues.inner_colon |= !next.is_ascii_whitespace(),
                b'@' => clues.at = true,
                b'/' => clues.slash = true,
                b'\\' => clues.backslash = true,
                b'[' | b'(' | b'{' => clues.defanged = true,
                b'x' | b'X' => clues.defanged |= next.eq_ignore_ascii_case(&b'p'),
                _ => {}
            }
        }
        clues
    }

    /// Whether any scanner could match, in this text or in its refanged form.
    fn any(&self) -> bool {
        self.digit
            || self.inner_dot
            || self.inner_colon
            || self.at
            || self.slash
            || self.backslash
            || self.defanged
    }
}

/// Accepted matches by start offset, never overlapping.
#[derive(Default)]
struct Found {
    spans: BTreeMap<usize, (usize, Ioc)>,
}

impl Found {
    /// Whether `start..end` overlaps no accepted match.
    fn is_free(&self, start: usize, end: usize) -> bool {
        match self.spans.range(..end).next_back() {
            Some((_, (prev_end, _))) => *prev_end <= start,
            None => true,
        }
    }

    /// Accepts `candidate`, found at `start..end`, as `kind` if the span is free and the
    /// value validates.
    fn offer(&mut self, kind: IocKind, start: usize, end: usize, candidate: &str) {
        if candidate.is_empty() || !self.is_free(start, end) {
            return;
        }
        if let Ok(value) = canonicalize(kind, candidate) {
            self.spans.insert(start, (end, Ioc { kind, value }));
        }
    }

    /// [`Found::offer`] for a candidate that is exactly the text at `start..`.
    fn offer_at(&mut self, kind: IocKind, start: usize, candidate: &str) {
        self.offer(kind, start, start + candidate.len(), candidate);
    }

    /// The accepted indicators in text order, keeping the first of equal ones.
    fn into_iocs(self) -> Vec<Ioc> {
        let mut all: Vec<(usize, Ioc)> = self
            .spans
            .into_iter()
            .map(|(start, (_, ioc))| (start, ioc))
            .collect();
        all.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
        all.dedup_by(|later, first| later.1 == first.1);
        all.sort_by_key(|(start, _)| *start);
        all.into_iter().map(|(_, ioc)| ioc).collect()
    }
}

/// Characters that close a token in running text but rarely end an indicator.
const TRAILING_PUNCTUATION: &[char] = &[
    '.', ',', ';', ':', '!', '?', '\'', '"', '*', '`', '“', '”', '‘', '’', '»', '…',
];

/// `s` without trailing punctuation, opening brackets or `\\`, and without closing brackets
/// that it does not open.
fn trim_trailing(s: &str) -> &str {
    let mut s = s;
    loop {
        let Some(last) = s.chars().next_back() else {
            return s;
        };
        let open = match last {
            ')' => Some('('),
            ']' => Some('['),
            '}' => Some('{'),
            '>' => Some('<'),
            _ => None,
        };
        let drop = match open {
            Some(open) => s.matches(open).count() < s.matches(last).count(),
            None => TRAILING_PUNCTUATION.contains(&last) || matches!(last, '[' | '(' | '{' | '\\'),
        };
        if !drop {
            return s;
        }
        s = &s[..s.len() - last.len_utf8()];
    }
}

/// The character before byte offset `at`, if any.
fn char_before(text: &str, at: usize) -> Option<char> {
    text[..at].chars().next_back()
}

/// The character at byte offset `at`, if any.
fn char_at(text: &str, at: usize) -> Option<char> {
    text[at..].chars().next()
}

/// Characters that glue a token to the one before it.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A URL with a scheme; reports sometimes defang by putting a space after `://`.
static SCHEME_URL_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(r#"(?i-u:\b(?:https?|ftps?|sftp|tcp|udp|wss?)://) ?[^\s<>"'`\\“”‘’«»|^]+"#)
});

fn scan_scheme_urls(text: &str, found: &mut Found) {
    for m in SCHEME_URL_RE.find_iter(text) {
        let candidate = trim_trailing(m.as_str());
        let end = m.start() + candidate.len();
        match candidate.split_once(":// ") {
            Some((scheme, rest)) => {
                found.offer(IocKind::Url, m.start(), end, &format!("{scheme}://{rest}"));
            }
            None => found.offer(IocKind::Url, m.start(), end, candidate),
        }
    }
}

/// A host name: letter-digit-hyphen labels and a lettered top-level domain.
macro_rules! host_name {
    () => {
        r"(?-u:(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9])"
    };
}

static EMAIL_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(concat!(
        r"(?-u:[A-Za-z0-9_%+-][A-Za-z0-9._%+-]*@)",
        host_name!(),
        r"(?-u:\b)"
    ))
});

fn scan_emails(text: &str, found: &mut Found) {
    for m in EMAIL_RE.find_iter(text) {
        found.offer_at(IocKind::Email, m.start(), m.as_str());
    }
}

/// A host (IPv4 or domain), an optional port, then a path: a URL written without a scheme.
static BARE_URL_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(concat!(
        r"(?-u:\b)(?:(?-u:[0-9]{1,3}(?:\.[0-9]{1,3}){3})|",
        host_name!(),
        r")(?-u::[0-9]{1,5})?/",
        r#"[^\s<>"'`\\“”‘’«»|^]*"#,
    ))
});

fn scan_bare_urls(text: &str, found: &mut Found) {
    for m in BARE_URL_RE.find_iter(text) {
        if char_before(text, m.start()).is_some_and(|c| matches!(c, '.' | '-' | '/' | '@' | '\\')) {
            continue;
        }
        let candidate = trim_trailing(m.as_str());
        let Some(slash) = candidate.find('/') else {
            continue;
        };
        let (host, path) = (&candidate[..slash], &candidate[slash + 1..]);
        let is_cidr = host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && (1..=2).contains(&path.len())
            && path.bytes().all(|b| b.is_ascii_digit());
        if path.is_empty() || is_cidr {
            continue;
        }
        found.offer_at(IocKind::Url, m.start(), candidate);
    }
}

/// Registry hives, long names first so that alternation prefers them.
const HIVES: [&str; 11] = [
    "HKEY_LOCAL_MACHINE",
    "HKEY_CURRENT_USER",
    "HKEY_CLASSES_ROOT",
    "HKEY_CURRENT_CONFIG",
    "HKEY_PERFORMANCE_DATA",
    "HKEY_USERS",
    "HKLM",
    "HKCU",
    "HKCR",
    "HKCC",
    "HKU",
];

/// One path or key component; inner components may hold single spaces (`Windows NT`).
macro_rules! seg {
    () => {
        r#"[^\\/:*?"'|\s,;“”‘’]+"#
    };
}

static REGISTRY_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(concat!(
        r"(?i-u:\b(?:HKEY_LOCAL_MACHINE|HKEY_CURRENT_USER|HKEY_CLASSES_ROOT|HKEY_CURRENT_CONFIG",
        r"|HKEY_PERFORMANCE_DATA|HKEY_USERS|HKLM|HKCU|HKCR|HKCC|HKU)\b):?\\+",
        "(?:",
        seg!(),
        "(?: ",
        seg!(),
        r")*\\+)*",
        seg!(),
    ))
});

fn scan_registry_keys(text: &str, found: &mut Found) {
    scan_rooted(text, &REGISTRY_RE, IocKind::RegistryKey, found);
}

static WINDOWS_PATH_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(concat!(
        r"(?:(?-u:\b[A-Za-z]:)|%(?-u:[A-Za-z_][A-Za-z0-9_()]*)%|\\\\(?-u:[A-Za-z0-9._$-])+)\\+",
        "(?:",
        seg!(),
        "(?: ",
        seg!(),
        r")*\\+)*(?:",
        seg!(),
        ")?",
    ))
});

fn scan_windows_paths(text: &str, found: &mut Found) {
    scan_rooted(text, &WINDOWS_PATH_RE, IocKind::FilePath, found);
}

/// Scans for backslash-separated names (Windows paths, registry keys). A match that runs
/// into a second root after a space (`…\Run and HKCU\…`) is cut before it, and the scan
/// resumes there.
fn scan_rooted(text: &str, re: &Regex, kind: IocKind, found: &mut Found) {
    let mut at = 0;
    while let Some(m) = re.find_at(text, at) {
        let start = m.start();
        if start > 0 && text[..start].ends_with(['\\', '%']) {
            at = m.end();
            continue;
        }
        let whole = cut_before_new_root(m.as_str());
        let candidate = trim_trailing(last_component_first_word(whole));
        found.offer_at(kind, start, candidate);
        at = start + whole.len().max(1);
        while !text.is_char_boundary(at) {
            at += 1;
        }
    }
}

/// `s` up to the first space that is followed by a new path root or registry hive.
fn cut_before_new_root(s: &str) -> &str {
    for (i, _) in s.match_indices(' ') {
        let rest = &s[i + 1..];
        if starts_with_root(rest) {
            return &s[..i];
        }
    }
    s
}

/// `s` with its last `\`-separated component cut at its first space: only inner components
/// may hold spaces (`…\Start Menu\…`), since the end of the last one cannot be told from
/// the prose that follows.
fn last_component_first_word(s: &str) -> &str {
    let last_start = s.rfind('\\').map_or(0, |i| i + 1);
    match s[last_start..].find(' ') {
        Some(space) => &s[..last_start + space],
        None => s,
    }
}

/// Whether `s` begins like a Windows path or a registry key.
fn starts_with_root(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\' {
        return true;
    }
    if s.starts_with("\\\\") {
        return true;
    }
    if let Some(var) = s.strip_prefix('%')
        && let Some(end) = var.find('%')
    {
        return var[end + 1..].starts_with('\\');
    }
    hive_prefix(s).is_some()
}

/// The hive at the start of `s` and the rest after it, when a `\` or `:\` follows the hive.
fn hive_prefix(s: &str) -> Option<(&'static str, &str)> {
    HIVES.iter().find_map(|hive| {
        let head = s.get(..hive.len())?;
        if !head.eq_ignore_ascii_case(hive) {
            return None;
        }
        let rest = &s[hive.len()..];
        let rest = rest.strip_prefix(':').unwrap_or(rest);
        rest.starts_with('\\').then_some((*hive, rest))
    })
}

static UNIX_PATH_RE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?-u:(?:~|\$HOME)?(?:/[A-Za-z0-9._+~-]+)+/?)"));

/// Unix paths must start a token (after a space, quote or bracket) and have two components,
/// start with `~`, or be one file name with an extension (`/FeedBack.php`), so that
/// `and/or` and command switches (`/c`) are not paths.
fn scan_unix_paths(text: &str, found: &mut Found) {
    for m in UNIX_PATH_RE.find_iter(text) {
        if char_before(text, m.start())
            .is_some_and(|c| is_word_char(c) || matches!(c, '.' | '-' | '/' | '\\' | ':' | '<'))
        {
            continue;
        }
        let candidate = trim_trailing(m.as_str());
        let from_home = candidate.starts_with('~') || candidate.starts_with('$');
        let components: Vec<&str> = candidate.split('/').filter(|c| !c.is_empty()).collect();
        let one_file = components.len() == 1 && canonical_file_name(components[0]).is_ok();
        if from_home || components.len() >= 2 || one_file {
            found.offer_at(IocKind::FilePath, m.start(), candidate);
        }
    }
}

static IPV6_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?-u:[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,8}(?:\.[0-9]{1,3}){0,3})")
});

fn scan_ipv6(text: &str, found: &mut Found) {
    for m in IPV6_RE.find_iter(text) {
        // A single trailing `:` ends a sentence part; `::` ends an address (`fe80::`).
        let matched = m.as_str();
        let candidate = match matched.strip_suffix(':') {
            Some(head) if !head.ends_with(':') => head,
            _ => matched,
        };
        if char_before(text, m.start()).is_some_and(|c| is_word_char(c) || c == ':' || c == '.')
            || char_at(text, m.end()).is_some_and(is_word_char)
        {
            continue;
        }
        let Ok(addr) = candidate.parse::<Ipv6Addr>() else {
            continue;
        };
        // `::`, `1::` and the like are too short to tell from text such as `Step 1::`.
        let groups = candidate.split(':').filter(|g| !g.is_empty()).count();
        let long_group = candidate.split(':').any(|g| g.len() >= 3);
        if !addr.is_unspecified() && (groups >= 3 || long_group) {
            found.offer_at(IocKind::Ipv6, m.start(), candidate);
        }
    }
}

static IPV4_RE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?-u:\b[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\b)"));

fn scan_ipv4(text: &str, found: &mut Found) {
    for m in IPV4_RE.find_iter(text) {
        let before_dot = char_before(text, m.start()) == Some('.');
        let after = &text[m.end()..];
        let after_dot =
            after.starts_with('.') && after[1..].starts_with(|c: char| c.is_ascii_digit());
        if before_dot || after_dot {
            continue;
        }
        found.offer_at(IocKind::Ipv4, m.start(), m.as_str());
    }
}

static CVE_RE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i-u:\bcve[-_ ]?[0-9]{4}[-_][0-9]{4,19}\b)"));

fn scan_cves(text: &str, found: &mut Found) {
    for m in CVE_RE.find_iter(text) {
        found.offer_at(IocKind::Cve, m.start(), m.as_str());
    }
}

static HASH_RE: LazyLock<Regex> = LazyLock::new(|| compile(r"(?-u:\b[0-9A-Fa-f]{32,128}\b)"));

fn scan_hashes(text: &str, found: &mut Found) {
    for m in HASH_RE.find_iter(text) {
        let kind = match m.len() {
            32 => IocKind::Md5,
            40 => IocKind::Sha1,
            64 => IocKind::Sha256,
            128 => IocKind::Sha512,
            _ => continue,
        };
        found.offer_at(kind, m.start(), m.as_str());
    }
}

/// Dot-separated names: domains and file names.
static DOTTED_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?-u:[A-Za-z0-9_~$][A-Za-z0-9_~$-]*(?:\.[A-Za-z0-9_~$-]+)*\.[A-Za-z0-9-]+\b)")
});

fn scan_dotted_names(text: &str, found: &mut Found) {
    for m in DOTTED_RE.find_iter(text) {
        let token = m.as_str();
        let Some((_, last)) = token.rsplit_once('.') else {
            continue;
        };
        if !last.bytes().any(|b| b.is_ascii_alphabetic()) {
            continue;
        }
        if is_file_extension(last) {
            found.offer_at(IocKind::FileName, m.start(), token);
        } else if looks_like_domain_in_prose(token, char_at(text, m.end())) {
            found.offer_at(IocKind::Domain, m.start(), token);
        }
    }
}

/// Rejects dotted words that are code or glued sentences rather than host names:
/// `WshShell.Run(` (a call), `infected.In` and `System.IO` (an upper-case top-level domain
/// after a name that is not all upper-case), `ASP.NET`.
fn looks_like_domain_in_prose(token: &str, next: Option<char>) -> bool {
    if next == Some('(') || NOT_DOMAINS.contains(&token) {
        return false;
    }
    let tld_has_upper = token
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_uppercase()));
    !tld_has_upper || !token.bytes().any(|b| b.is_ascii_lowercase())
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Refangs `value`, checks that it is a valid indicator of `kind`, and returns it in
/// canonical form.
///
/// The checks: IPv4 has four decimal octets up to 255 without leading zeros; IPv6 parses
/// (brackets allowed); domains have letter-digit-hyphen labels of 1 to 63 characters, at most
/// 253 characters in all, and a top-level domain on the Public Suffix List; hashes have the
/// kind's number of hex digits; CVE IDs are `CVE-YYYY-NNNN` with a year from 1999 and a
/// sequence of 4 digits or more without leading zero; e-mail addresses have a plain local part
/// and a valid domain; URLs have a known scheme (`http`, `https`, `ftp`, `ftps`, `sftp`,
/// `tcp`, `udp`, `ws`, `wss`) or none but then a path, and a valid host (domain, IPv4 or
/// bracketed IPv6) and port; paths start at a drive, `%VAR%`, `\\server`, `/`, `~/` or
/// `$HOME/`; file names have a lettered extension and no separators; registry keys start
/// with a hive (`HKLM`, `HKEY_LOCAL_MACHINE`, …) and name a subkey.
///
/// # Errors
///
/// [`IocError::Invalid`] naming the value and what is wrong with it, e.g.
/// ``ipv4 `1.2.3.999`: octet 999 is above 255``.
pub fn validate(kind: IocKind, value: &str) -> Result<Ioc, IocError> {
    let refanged = refang(value.trim());
    canonicalize(kind, refanged.trim())
        .map(|canonical| Ioc {
            kind,
            value: canonical,
        })
        .map_err(|reason| IocError::Invalid {
            kind,
            value: value.to_owned(),
            reason,
        })
}

/// The canonical form of `v` as `kind`, or the reason it is not one.
fn canonicalize(kind: IocKind, v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("is empty".to_owned());
    }
    if v.chars().any(char::is_control) {
        return Err("contains a control character".to_owned());
    }
    match kind {
        IocKind::Ipv4 => canonical_ipv4(v),
        IocKind::Ipv6 => canonical_ipv6(v),
        IocKind::Domain => canonical_domain(v),
        IocKind::Url => canonical_url(v),
        IocKind::Email => canonical_email(v),
        IocKind::Md5 | IocKind::Sha1 | IocKind::Sha256 | IocKind::Sha512 => canonical_hash(kind, v),
        IocKind::Cve => canonical_cve(v),
        IocKind::FilePath => canonical_path(v),
        IocKind::FileName => canonical_file_name(v),
        IocKind::RegistryKey => canonical_registry_key(v),
    }
}

fn canonical_ipv4(v: &str) -> Result<String, String> {
    let octets: Vec<&str> = v.split('.').collect();
    if octets.len() != 4 {
        return Err(format!("has {} dot-separated parts, not 4", octets.len()));
    }
    for octet in &octets {
        if octet.is_empty() || octet.len() > 3 || !octet.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("octet `{octet}` is not 1 to 3 decimal digits"));
        }
        if octet.len() > 1 && octet.starts_with('0') {
            return Err(format!(
                "octet `{octet}` has a leading zero (octal or decimal?)"
            ));
        }
        let n: u16 = octet
            .parse()
            .map_err(|_| format!("octet `{octet}` is not a number"))?;
        if n > 255 {
            return Err(format!("octet {n} is above 255"));
        }
    }
    Ok(v.to_owned())
}

fn canonical_ipv6(v: &str) -> Result<String, String> {
    let bare = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    bare.parse::<Ipv6Addr>()
        .map(|addr| addr.to_string())
        .map_err(|_| "is not an IPv6 address".to_owned())
}

fn canonical_domain(v: &str) -> Result<String, String> {
    let name = v.strip_suffix('.').unwrap_or(v).to_ascii_lowercase();
    if name.len() > 253 {
        return Err(format!("is {} characters long, above 253", name.len()));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err("has no top-level domain".to_owned());
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label `{label}` is not 1 to 63 characters long"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "label `{label}` has characters other than a-z, 0-9 and `-`"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` starts or ends with `-`"));
        }
    }
    let tld = labels[labels.len() - 1];
    if !is_known_tld(tld) {
        return Err(format!(
            "`.{tld}` is not a top-level domain on the public suffix list"
        ));
    }
    Ok(name)
}

/// Whether `tld` (lower-case, one label) is a top-level domain on the Public Suffix List.
fn is_known_tld(tld: &str) -> bool {
    !tld.bytes().all(|b| b.is_ascii_digit())
        && psl::suffix(tld.as_bytes()).is_some_and(|s| s.is_known())
}

/// URL schemes accepted after refanging (`hxxp` and `fxp` become `http` and `ftp`).
const URL_SCHEMES: [&str; 9] = [
    "http", "https", "ftp", "ftps", "sftp", "tcp", "udp", "ws", "wss",
];

fn canonical_url(v: &str) -> Result<String, String> {
    if v.chars().any(char::is_whitespace) {
        return Err("contains whitespace".to_owned());
    }
    if let Some(bad) = v
        .chars()
        .find(|c| matches!(c, '"' | '<' | '>' | '\\' | '`'))
    {
        return Err(format!(
            "contains `{bad}`, which URLs cannot hold unescaped"
        ));
    }
    let (scheme, rest) = match v.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, v),
    };
    if let Some(scheme) = &scheme
        && !URL_SCHEMES.contains(&scheme.as_str())
    {
        return Err(format!(
            "scheme `{scheme}` is not one of {}",
            URL_SCHEMES.join(", ")
        ));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if scheme.is_none() && tail.len() < 2 {
        return Err("has neither a scheme nor a path".to_owned());
    }
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) if scheme.is_some() => (Some(user), host_port),
        Some(_) => return Err("has user info but no scheme".to_owned()),
        None => (None, authority),
    };
    let (host, port) = split_host_port(host_port)?;
    let host = canonical_host(host)?;
    let mut out = String::with_capacity(v.len());
    if let Some(scheme) = &scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    if let Some(user) = userinfo {
        out.push_str(user);
        out.push('@');
    }
    out.push_str(&host);
    if let Some(port) = port {
        out.push(':');
        out.push_str(port);
    }
    out.push_str(tail);
    Ok(out)
}

/// Splits `host[:port]` or `[v6][:port]`, checking the port.
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), String> {
    let (host, port) = if s.starts_with('[') {
        let close = s.find(']').ok_or("has `[` without `]` around its host")?;
        let after = &s[close + 1..];
        match after.strip_prefix(':') {
            Some(port) => (&s[..=close], Some(port)),
            None if after.is_empty() => (&s[..=close], None),
            None => return Err(format!("has `{after}` after its host")),
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    if let Some(port) = port {
        let valid = port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !valid {
            return Err(format!("port `{port}` is not a number from 1 to 65535"));
        }
    }
    Ok((host, port))
}

/// A URL host: bracketed IPv6, IPv4 (all digits and dots) or a domain.
fn canonical_host(host: &str) -> Result<String, String> {
    if host.is_empty() {
        return Err("has no host".to_owned());
    }
    if host.starts_with('[') {
        return canonical_ipv6(host).map(|addr| format!("[{addr}]"));
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return canonical_ipv4(host).map_err(|e| format!("host `{host}`: {e}"));
    }
    canonical_domain(host).map_err(|e| format!("host `{host}`: {e}"))
}

fn canonical_email(v: &str) -> Result<String, String> {
    let (local, domain) = v.rsplit_once('@').ok_or("has no `@`")?;
    if local.is_empty() || local.len() > 64 {
        return Err("local part is not 1 to 64 characters long".to_owned());
    }
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b);
    if !local.bytes().all(plain) {
        return Err(format!(
            "local part `{local}` has characters outside the plain set"
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(format!("local part `{local}` has a misplaced dot"));
    }
    let domain = canonical_domain(domain).map_err(|e| format!("domain `{domain}`: {e}"))?;
    Ok(format!("{}@{domain}", local.to_ascii_lowercase()))
}

fn canonical_hash(kind: IocKind, v: &str) -> Result<String, String> {
    let expected = match kind {
        IocKind::Md5 => 32,
        IocKind::Sha1 => 40,
        IocKind::Sha256 => 64,
        _ => 128,
    };
    if !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("has characters other than hex digits".to_owned());
    }
    if v.len() != expected {
        return Err(format!(
            "has {} hex digits where {kind} has {expected}",
            v.len()
        ));
    }
    Ok(v.to_ascii_lowercase())
}

fn canonical_cve(v: &str) -> Result<String, String> {
    let shape = "is not shaped CVE-YYYY-NNNN";
    let prefix = v
        .get(..3)
        .filter(|p| p.eq_ignore_ascii_case("cve"))
        .ok_or(shape)?;
    let rest = v[prefix.len()..].trim_start_matches(['-', '_', ' ']);
    let (year, seq) = rest.split_once(['-', '_']).ok_or(shape)?;
    if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("year `{year}` is not 4 digits"));
    }
    if year < "1999" {
        return Err(format!("year {year} is before 1999, the first CVE year"));
    }
    if seq.len() < 4 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("sequence `{seq}` is not 4 or more digits"));
    }
    if seq.len() > 4 && seq.starts_with('0') {
        return Err(format!(
            "sequence `{seq}` has more than 4 digits and a leading zero"
        ));
    }
    Ok(format!("CVE-{year}-{seq}"))
}

/// Characters no Windows path component may hold (`<` and `>` are let through for
/// placeholders such as `<username>` in reports).
const WINDOWS_FORBIDDEN: &[char] = &['/', ':', '*', '?', '"', '|'];

fn canonical_path(v: &str) -> Result<String, String> {
    if v.starts_with('/') || v.starts_with("~/") || v.starts_with("$HOME/") {
        return canonical_unix_path(v);
    }
    let b = v.as_bytes();
    let root_len = if b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\' {
        2
    } else if let Some(var) = v.strip_prefix('%') {
        let end = var.find('%').ok_or("has `%` without a closing `%`")?;
        end + 2
    } else if let Some(unc) = v.strip_prefix("\\\\") {
        2 + unc.find('\\').ok_or("names a server but no share")?
    } else {
        return Err(
            "does not start at a drive, `%VAR%`, `\\\\server`, `/`, `~/` or `$HOME/`".to_owned(),
        );
    };
    let (root, rest) = v.split_at(root_len);
    let components: Vec<&str> = rest.split('\\').filter(|c| !c.is_empty()).collect();
    if components.is_empty() {
        return Err("names no file or folder below its root".to_owned());
    }
    for c in &components {
        if c.contains(WINDOWS_FORBIDDEN) {
            return Err(format!("component `{c}` has one of / : * ? \" |"));
        }
        if c.starts_with(' ') || c.ends_with(' ') {
            return Err(format!("component `{c}` starts or ends with a space"));
        }
    }
    Ok(format!("{root}\\{}", components.join("\\")))
}

fn canonical_unix_path(v: &str) -> Result<String, String> {
    if v.chars().any(char::is_whitespace) {
        return Err("contains whitespace (a command line rather than a path?)".to_owned());
    }
    let (root, rest) = match v.find('/') {
        Some(i) => v.split_at(i),
        None => (v, ""),
    };
    let components: Vec<&str> = rest.split('/').filter(|c| !c.is_empty()).collect();
    if components.is_empty() {
        return Err("names no file or folder below its root".to_owned());
    }
    Ok(format!("{root}/{}", components.join("/")))
}

fn canonical_file_name(v: &str) -> Result<String, String> {
    if v.len() > 255 {
        return Err(format!("is {} characters long, above 255", v.len()));
    }
    if v.chars().any(char::is_whitespace) {
        return Err("contains whitespace".to_owned());
    }
    if v.contains(['\\', '/', ':', '*', '?', '"', '<', '>', '|']) {
        return Err("contains a path separator or a character file names cannot hold".to_owned());
    }
    let (stem, ext) = v.rsplit_once('.').ok_or("has no extension")?;
    let stem = stem.trim_start_matches('.');
    if stem.is_empty() {
        return Err("has nothing before its extension".to_owned());
    }
    if ext.is_empty() || !ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("extension `{ext}` is not letters and digits"));
    }
    if !ext.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Err(format!("extension `{ext}` has no letter"));
    }
    Ok(v.to_owned())
}

fn canonical_registry_key(v: &str) -> Result<String, String> {
    let (hive, rest) = hive_prefix(v).ok_or_else(|| {
        format!(
            "does not start with a registry hive followed by `\\` ({})",
            HIVES.join(", ")
        )
    })?;
    let components: Vec<&str> = rest.split('\\').filter(|c| !c.is_empty()).collect();
    if components.is_empty() {
        return Err("names no subkey".to_owned());
    }
    Ok(format!("{hive}\\{}", components.join("\\")))
}

// ---------------------------------------------------------------------------------------------
// Defanging
// ---------------------------------------------------------------------------------------------

/// `192.0.2.1` → `192.0.2[.]1`.
fn defang_ipv4(v: &str) -> String {
    match v.rsplit_once('.') {
        Some((head, last)) => format!("{head}[.]{last}"),
        None => v.to_owned(),
    }
}

/// Defangs the scheme and the host of a canonical URL and leaves the rest as it is.
fn defang_url(v: &str) -> String {
    let (scheme, rest) = match v.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, v),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (Some(user), host_port),
        None => (None, authority),
    };
    let mut out = String::with_capacity(v.len() + 8);
    if let Some(scheme) = scheme {
        out.push_str(match scheme {
            "http" => "hxxp",
            "https" => "hxxps",
            "ftp" => "fxp",
            "ftps" => "fxps",
            other => other,
        });
        out.push_str("://");
    }
    if let Some(user) = user {
        out.push_str(user);
        out.push('@');
    }
    if host_port.starts_with('[') {
        out.push_str(host_port);
    } else {
        let (host, port) = match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        };
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            out.push_str(&defang_ipv4(host));
        } else {
            out.push_str(&host.replace('.', "[.]"));
        }
        if let Some(port) = port {
            out.push(':');
            out.push_str(port);
        }
    }
    out.push_str(tail);
    out
}

// ---------------------------------------------------------------------------------------------
// Dataset labels
// ---------------------------------------------------------------------------------------------

/// Maps an indicator type label from a dataset (Text2TTP, MISP, STIX and others) to a kind,
/// using the value where the label does not decide: `ip-address` is IPv4 or IPv6 by the
/// presence of `:`, `hash` is MD5, SHA-1, SHA-256 or SHA-512 by its length. Labels are
/// compared ignoring case, spaces, `_` and `-`. Returns `None` for labels that are not
/// indicators here (`mitre-attack`, `user-agent`, `asn`, …).
///
/// A hash of an unusual length gets the label's own algorithm (`md5`, …), or MD5 for a bare
/// `hash`, so that [`validate`] can report the length.
#[must_use]
pub fn kind_from_label(label: &str, value: &str) -> Option<IocKind> {
    let label: String = label
        .trim()
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let value = value.trim();
    let kind = match label.as_str() {
        "ipaddress" | "ip" | "ipv4" | "ipv6" | "ipv4addr" | "ipv6addr" | "ipaddr" | "ipsrc"
        | "ipdst" => {
            if value.contains(':') {
                IocKind::Ipv6
            } else {
                IocKind::Ipv4
            }
        }
        "domain" | "domainname" | "hostname" | "fqdn" => IocKind::Domain,
        "url" | "uri" => IocKind::Url,
        "emailaddress" | "email" | "emailaddr" | "emailsrc" | "emaildst" => IocKind::Email,
        "hash" | "filehash" | "md5" | "sha1" | "sha256" | "sha512" => match value.len() {
            32 => IocKind::Md5,
            40 => IocKind::Sha1,
            64 => IocKind::Sha256,
            128 => IocKind::Sha512,
            _ => match label.as_str() {
                "sha1" => IocKind::Sha1,
                "sha256" => IocKind::Sha256,
                "sha512" => IocKind::Sha512,
                _ => IocKind::Md5,
            },
        },
        "cve" | "vulnerability" => IocKind::Cve,
        "path" | "filepath" => IocKind::FilePath,
        "file" | "filename" => IocKind::FileName,
        "registrykey" | "regkey" | "windowsregistrykey" => IocKind::RegistryKey,
        _ => return None,
    };
    Some(kind)
}

// ---------------------------------------------------------------------------------------------
// Name tables
// ---------------------------------------------------------------------------------------------

/// Whether `ext` (any case) is a common file extension, which makes `name.ext` a file name
/// rather than a domain. `zip`, `mov`, `sh`, `py`, `so`, `cab` and `one` are also top-level
/// domains, but in threat reports they name files far more often; `pl`, `com`, `ai` and `app`
/// stay domains.
fn is_file_extension(ext: &str) -> bool {
    FILE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext))
}

/// Common extensions of executables, scripts, documents, archives, images and data files.
const FILE_EXTENSIONS: &[&str] = &[
    // Windows executables and libraries.
    "exe", "dll", "sys", "drv", "ocx", "cpl", "scr", "msi", "msp", "msc", "efi", "pif",
    // Scripts and code.
    "bat", "cmd", "ps1", "psm1", "psd1", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta", "jar",
    "class", "py", "pyc", "sh", "bash", "rb", "php", "asp", "aspx", "jsp", "cgi", "lua", "c",
    "cpp", "h", "cs", "go", "elf", "so", "dylib", "ko", "apk", "ipa", "lnk", "url", "inf", "reg",
    "mui", // Documents.
    "doc", "docx", "docm", "dotm", "xls", "xlsx", "xlsm", "xlsb", "ppt", "pptx", "pptm", "rtf",
    "pdf", "txt", "csv", "odt", "ods", "one", "hwp", "chm", "xml", "json", "yml", "yaml", "ini",
    "cfg", "conf", "log", "html", "htm", "mht", "eml", "msg", "xsl", "md",
    // Archives and disk images.
    "zip", "rar", "7z", "gz", "tgz", "tar", "bz2", "xz", "cab", "iso", "img", "vhd", "vhdx", "dmg",
    "ace", "arj", // Media.
    "jpg", "jpeg", "png", "gif", "bmp", "ico", "svg", "mp3", "mp4", "avi", "mov", "wav",
    // Data, debug and temporary files.
    "dat", "db", "sqlite", "tmp", "bak", "pdb", "lib", "obj", "dmp", "bin", "pem", "crt", "cer",
    "pfx", "p12", "key", "der",
];

/// Dotted words that have a real top-level domain but name technologies in prose.
const NOT_DOMAINS: [&str; 3] = ["ASP.NET", "VB.NET", "ADO.NET"];

/// Compiles one of this module's fixed patterns.
fn compile(pattern: &str) -> Regex {
    // NOTE: the patterns are constants; `tests::patterns_compile` compiles each one.
    Regex::new(pattern).expect("built-in ioc pattern is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ioc(kind: IocKind, value: &str) -> Ioc {
        Ioc {
            kind,
            value: value.to_owned(),
        }
    }

    fn pairs(iocs: &[Ioc]) -> Vec<(IocKind, &str)> {
        iocs.iter().map(|i| (i.kind, i.value.as_str())).collect()
    }

    fn invalid_reason(kind: IocKind, value: &str) -> String {
        match validate(kind, value) {
            Err(IocError::Invalid { reason, .. }) => reason,
            other => panic!("{kind} `{value}` should be invalid, got {other:?}"),
        }
    }

    /// The lines of one iocextract fixture file, read from the repository.
    fn fixture_lines(name: &str) -> Vec<String> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../datasets/ioc/iocextract_test_data/"
        );
        let text = std::fs::read_to_string(format!("{path}{name}"))
            .unwrap_or_else(|e| panic!("reading fixture {path}{name}: {e}"));
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn patterns_compile() {
        for re in [
            &DEFANG_RE,
            &SCHEME_URL_RE,
            &EMAIL_RE,
            &BARE_URL_RE,
            &REGISTRY_RE,
            &WINDOWS_PATH_RE,
            &UNIX_PATH_RE,
            &IPV6_RE,
            &IPV4_RE,
            &CVE_RE,
            &HASH_RE,
            &DOTTED_RE,
        ] {
            assert!(!re.as_str().is_empty());
        }
    }

    #[test]
    fn kind_names_round_trip() {
        let names: Vec<&str> = IocKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "ipv4",
                "ipv6",
                "domain",
                "url",
                "email",
                "md5",
                "sha1",
                "sha256",
                "sha512",
                "cve",
                "file_path",
                "file_name",
                "registry_key"
            ]
        );
        for kind in IocKind::ALL {
            assert_eq!(kind.as_str().parse::<IocKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(" SHA256 ".parse::<IocKind>(), Ok(IocKind::Sha256));
        let err = "ip".parse::<IocKind>().unwrap_err();
        assert!(
            err.to_string().starts_with("unknown indicator kind `ip`"),
            "{err}"
        );
    }

    #[test]
    fn refang_undoes_common_defanging() {
        let cases = [
            ("hxxp://example[.]com/a", "http://example.com/a"),
            ("hXXps[:]//example(.)com", "https://example.com"),
            ("fxp://files{.}example[dot]org", "ftp://files.example.org"),
            ("http[://]example.com[/]x", "http://example.com/x"),
            ("example [dot] com", "example.com"),
            (
                "user[@]example[.]com, user(at)example(dot)com",
                "user@example.com, user@example.com",
            ),
            (
                "1.2.3[.]4 and 192[.]168[dot]0[.]1",
                "1.2.3.4 and 192.168.0.1",
            ),
            (
                "example[.com and example.]org",
                "example.com and example.org",
            ),
            (r"evil\.example\.com", "evil.example.com"),
            (r"C:\Users\.ssh\id_rsa", r"C:\Users\.ssh\id_rsa"),
        ];
        for (defanged, expected) in cases {
            assert_eq!(refang(defanged), expected, "refang({defanged:?})");
        }
    }

    #[test]
    fn refang_borrows_clean_text() {
        for clean in [
            "plain prose without indicators",
            "http://example.com/a (see the report) at 10:00",
            "a hexdump shows 0x50 and xp_cmdshell",
        ] {
            assert!(
                matches!(refang(clean), Cow::Borrowed(_)),
                "{clean:?} was copied"
            );
        }
    }

    #[test]
    fn validate_rejects_bad_ipv4() {
        let err = validate(IocKind::Ipv4, "1.2.3.999").unwrap_err();
        assert_eq!(err.to_string(), "ipv4 `1.2.3.999`: octet 999 is above 255");
        assert_eq!(
            invalid_reason(IocKind::Ipv4, "192.168.0.256"),
            "octet 256 is above 255"
        );
        assert!(invalid_reason(IocKind::Ipv4, "010.1.1.1").contains("leading zero"));
        assert!(invalid_reason(IocKind::Ipv4, "1.2.3").contains("3 dot-separated parts"));
        assert!(invalid_reason(IocKind::Ipv4, "192,168,0,1").contains("1 dot-separated part"));
        assert_eq!(
            validate(IocKind::Ipv4, " 1.2.3[.]4 "),
            Ok(ioc(IocKind::Ipv4, "1.2.3.4"))
        );
    }

    #[test]
    fn validate_checks_hash_lengths_and_lowercases() {
        let md5 = "78734CD268E5C9AB4184E1BBE21A6EB9";
        assert_eq!(
            validate(IocKind::Md5, md5).map(|i| i.value),
            Ok(md5.to_ascii_lowercase())
        );
        let sha1 = "adc83b19e793491b1c6ea0fd8b46cd9f32e592fc";
        assert_eq!(
            validate(IocKind::Md5, sha1).unwrap_err().to_string(),
            format!("md5 `{sha1}`: has 40 hex digits where md5 has 32")
        );
        assert!(validate(IocKind::Sha1, sha1).is_ok());
        assert!(invalid_reason(IocKind::Sha256, sha1).contains("sha256 has 64"));
        assert!(invalid_reason(IocKind::Md5, "78734cd268e5c9ab4184e1bbe21a6ebz").contains("hex"));
    }

    #[test]
    fn validate_checks_domains() {
        assert_eq!(
            validate(IocKind::Domain, "example.notatld")
                .unwrap_err()
                .to_string(),
            "domain `example.notatld`: `.notatld` is not a top-level domain on the public \
             suffix list"
        );
        let ok = |v: &str| validate(IocKind::Domain, v).map(|i| i.value);
        assert_eq!(
            ok("Mafra.GO.kr.jeojang[.]ga."),
            Ok("mafra.go.kr.jeojang.ga".to_owned())
        );
        assert_eq!(
            ok("xn--80ak6aa92e.xn--p1ai"),
            Ok("xn--80ak6aa92e.xn--p1ai".to_owned())
        );
        assert!(invalid_reason(IocKind::Domain, "hktl_nbtscan.ga").contains("hktl_nbtscan"));
        assert!(invalid_reason(IocKind::Domain, "-bad.com").contains("starts or ends with `-`"));
        assert!(invalid_reason(IocKind::Domain, "localhost").contains("no top-level domain"));
        assert!(invalid_reason(IocKind::Domain, "a..com").contains("1 to 63"));
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(invalid_reason(IocKind::Domain, &long_label).contains("1 to 63"));
        let long_name = format!("{}com", "abcdefghi.".repeat(26));
        assert!(invalid_reason(IocKind::Domain, &long_name).contains("above 253"));
    }

    #[test]
    fn validate_checks_cve_ids() {
        let ok = |v: &str| validate(IocKind::Cve, v).map(|i| i.value);
        assert_eq!(ok("cve-2017-0144"), Ok("CVE-2017-0144".to_owned()));
        assert_eq!(ok("CVE 2020-0688"), Ok("CVE-2020-0688".to_owned()));
        assert_eq!(ok("CVE-2021-44228"), Ok("CVE-2021-44228".to_owned()));
        assert!(invalid_reason(IocKind::Cve, "CVE-1998-0001").contains("before 1999"));
        assert!(invalid_reason(IocKind::Cve, "CVE-2017-014").contains("4 or more digits"));
        assert!(invalid_reason(IocKind::Cve, "CVE-2017-01234").contains("leading zero"));
        assert!(invalid_reason(IocKind::Cve, "CVE-17-0144").contains("4 digits"));
        assert!(invalid_reason(IocKind::Cve, "MS17-010").contains("CVE-YYYY-NNNN"));
    }

    #[test]
    fn validate_checks_urls() {
        let ok = |v: &str| validate(IocKind::Url, v).map(|i| i.value);
        assert_eq!(
            ok("hxxps://Example[.]COM:8443/Path?Q=1"),
            Ok("https://example.com:8443/Path?Q=1".to_owned())
        );
        assert_eq!(
            ok("tcp://[FDC4:2581:575b:5a72:0000:0000:0000:0001]:80/path"),
            Ok("tcp://[fdc4:2581:575b:5a72::1]:80/path".to_owned())
        );
        assert_eq!(ok("Example.com/a.php"), Ok("example.com/a.php".to_owned()));
        assert!(invalid_reason(IocKind::Url, "gopher://example.com/").contains("scheme"));
        assert!(invalid_reason(IocKind::Url, "http://example.notatld/").contains("notatld"));
        assert!(invalid_reason(IocKind::Url, "http://1.2.3.999/").contains("octet 999"));
        assert!(invalid_reason(IocKind::Url, "http://example.com:99999/").contains("port"));
        assert!(invalid_reason(IocKind::Url, "http://[example.com/").contains("`]`"));
        assert!(invalid_reason(IocKind::Url, "example.com").contains("neither a scheme"));
        assert!(invalid_reason(IocKind::Url, "http://a.com/x\",vbhide").contains("`\"`"));
    }

    #[test]
    fn validate_checks_emails_addresses_paths_and_keys() {
        let ok = |k: IocKind, v: &str| validate(k, v).map(|i| i.value);
        assert_eq!(
            ok(IocKind::Email, "John.Doe[@]Example[.]com"),
            Ok("john.doe@example.com".to_owned())
        );
        assert!(invalid_reason(IocKind::Email, ".a@example.com").contains("misplaced dot"));
        assert!(invalid_reason(IocKind::Email, "a@example.zzzz").contains("zzzz"));
        assert_eq!(
            ok(IocKind::Ipv6, "FDC4:2581:575B:5A72:0000:0000:0000:0001"),
            Ok("fdc4:2581:575b:5a72::1".to_owned())
        );
        assert_eq!(
            ok(IocKind::Ipv6, "[2001:db8::1]"),
            Ok("2001:db8::1".to_owned())
        );
        assert!(invalid_reason(IocKind::Ipv6, "2001:db8::g").contains("not an IPv6"));
        assert_eq!(
            ok(IocKind::FilePath, r"C:\\Windows\\System32\"),
            Ok(r"C:\Windows\System32".to_owned())
        );
        assert_eq!(
            ok(IocKind::FilePath, "/tmp//.X11/xmr/"),
            Ok("/tmp/.X11/xmr".to_owned())
        );
        assert_eq!(
            ok(IocKind::FilePath, r"\\srv\share\a.exe"),
            Ok(r"\\srv\share\a.exe".into())
        );
        assert!(invalid_reason(IocKind::FilePath, r"Windows\x.exe").contains("does not start"));
        assert!(invalid_reason(IocKind::FilePath, "/c powershell").contains("whitespace"));
        assert!(invalid_reason(IocKind::FilePath, r"C:\a\b?c").contains("component `b?c`"));
        assert_eq!(
            ok(IocKind::FileName, "Install_Flash.EXE"),
            Ok("Install_Flash.EXE".into())
        );
        assert!(invalid_reason(IocKind::FileName, r"dir\a.exe").contains("separator"));
        assert!(invalid_reason(IocKind::FileName, "README").contains("no extension"));
        assert_eq!(
            ok(IocKind::RegistryKey, r"hklm:\Software\\Run\"),
            Ok(r"HKLM\Software\Run".to_owned())
        );
        assert!(invalid_reason(IocKind::RegistryKey, r"HKXX\Software").contains("hive"));
        assert!(invalid_reason(IocKind::RegistryKey, r"HKCU\").contains("no subkey"));
    }

    /// One canonical indicator of each kind, with the defanged spelling expected for it.
    const SAMPLES: [(IocKind, &str, &str); 16] = [
        (IocKind::Ipv4, "89.46.222.97", "89.46.222[.]97"),
        (
            IocKind::Ipv6,
            "fdc4:2581:575b:5a72::1",
            "fdc4:2581:575b:5a72::1",
        ),
        (IocKind::Domain, "api.ipify.org", "api[.]ipify[.]org"),
        (
            IocKind::Url,
            "http://110.10.179.65:80/ptF2",
            "hxxp://110.10.179[.]65:80/ptF2",
        ),
        (
            IocKind::Url,
            "https://example.com/a.php?x=1",
            "hxxps://example[.]com/a.php?x=1",
        ),
        (
            IocKind::Url,
            "ftp://user@files.example.org/x",
            "fxp://user@files[.]example[.]org/x",
        ),
        (
            IocKind::Url,
            "tcp://[fdc4::1]:80/path",
            "tcp://[fdc4::1]:80/path",
        ),
        (
            IocKind::Url,
            "example.com:8080/gate.php",
            "example[.]com:8080/gate.php",
        ),
        (
            IocKind::Email,
            "yuri.sidorav@yandex.ru",
            "yuri.sidorav[@]yandex[.]ru",
        ),
        (
            IocKind::Md5,
            "78734cd268e5c9ab4184e1bbe21a6eb9",
            "78734cd268e5c9ab4184e1bbe21a6eb9",
        ),
        (
            IocKind::Sha1,
            "adc83b19e793491b1c6ea0fd8b46cd9f32e592fc",
            "=",
        ),
        (IocKind::Cve, "CVE-2017-0144", "CVE-2017-0144"),
        (IocKind::FilePath, r"C:\Windows\System32\rundll32.exe", "="),
        (IocKind::FilePath, "/tmp/.X11/xmr", "/tmp/.X11/xmr"),
        (
            IocKind::FileName,
            "install_flash_player.exe",
            "install_flash_player.exe",
        ),
        (
            IocKind::RegistryKey,
            r"HKLM\Software\Microsoft\Windows\CurrentVersion\Run",
            "=",
        ),
    ];

    #[test]
    fn defanged_renders_and_round_trips() {
        for (kind, value, expected) in SAMPLES {
            let original = ioc(kind, value);
            assert_eq!(
                validate(kind, value).as_ref(),
                Ok(&original),
                "{value} is canonical"
            );
            let defanged = original.defanged();
            let expected = if expected == "=" { value } else { expected };
            assert_eq!(defanged, expected);
            assert_eq!(
                validate(kind, &defanged),
                Ok(original.clone()),
                "round trip of {value}"
            );
            assert_eq!(
                extract(&defanged),
                vec![original.clone()],
                "extract({defanged:?})"
            );
            assert_eq!(extract(&format!("seen at {defanged}.")), vec![original]);
        }
    }

    #[test]
    fn labels_map_to_kinds() {
        let md5 = "a".repeat(32);
        let cases = [
            ("ip-address", "89.46.222.97", Some(IocKind::Ipv4)),
            ("ip-address", "2001:db8::1", Some(IocKind::Ipv6)),
            ("IPv4", "1.2.3.4", Some(IocKind::Ipv4)),
            ("domain", "example.com", Some(IocKind::Domain)),
            ("url", "http://a.com", Some(IocKind::Url)),
            ("email-address", "a@b.com", Some(IocKind::Email)),
            ("email", "a@b.com", Some(IocKind::Email)),
            ("hash", md5.as_str(), Some(IocKind::Md5)),
            ("hash", &"a".repeat(40), Some(IocKind::Sha1)),
            ("md5", &"a".repeat(64), Some(IocKind::Sha256)),
            ("hash", &"a".repeat(128), Some(IocKind::Sha512)),
            ("sha256", "abc", Some(IocKind::Sha256)),
            ("hash", "abc", Some(IocKind::Md5)),
            ("cve", "CVE-2017-0144", Some(IocKind::Cve)),
            ("path", "/tmp/x", Some(IocKind::FilePath)),
            ("file_path", "/tmp/x", Some(IocKind::FilePath)),
            ("file", "a.exe", Some(IocKind::FileName)),
            ("filename", "a.exe", Some(IocKind::FileName)),
            ("registry-key", r"HKLM\x", Some(IocKind::RegistryKey)),
            ("registry_key", r"HKLM\x", Some(IocKind::RegistryKey)),
            ("mitre-attack", "T1059", None),
            ("user-agent", "Mozilla/5.0", None),
            ("asn", "ASN3", None),
        ];
        for (label, value, expected) in cases {
            assert_eq!(kind_from_label(label, value), expected, "{label} {value}");
        }
    }

    /// Sentences in the style of Text2TTP's report excerpts, with every indicator expected.
    #[test]
    fn extracts_typed_indicators_from_report_sentences() {
        use IocKind::*;
        let cases: Vec<(&str, Vec<(IocKind, &str)>)> = vec![
            (
                "In February 2018, several KHRAT associated domains began resolving to the IP \
                 address 89.46.222[.]97",
                vec![(Ipv4, "89.46.222.97")],
            ),
            (
                "The dropped executable (MD5: 78734CD268E5C9AB4184E1BBE21A6EB9) contains the \
                 compressed FELIXROOT dropper component",
                vec![(Md5, "78734cd268e5c9ab4184e1bbe21a6eb9")],
            ),
            (
                "The implant then beacons to hxxp://110.10.179(.)65:80/ptF2 every ten minutes.",
                vec![(Url, "http://110.10.179.65:80/ptF2")],
            ),
            (
                "The worm spreads with CVE-2017-0144 (EternalBlue), cve-2017-0145 and CVE \
                 2020-0688.",
                vec![
                    (Cve, "CVE-2017-0144"),
                    (Cve, "CVE-2017-0145"),
                    (Cve, "CVE-2020-0688"),
                ],
            ),
            (
                concat!(
                    r"It adds HKLM\Software\Microsoft\Windows\CurrentVersion\Run so that ",
                    r"C:\Windows\System32\rundll32.exe loads it."
                ),
                vec![
                    (
                        RegistryKey,
                        r"HKLM\Software\Microsoft\Windows\CurrentVersion\Run",
                    ),
                    (FilePath, r"C:\Windows\System32\rundll32.exe"),
                ],
            ),
            (
                "The miner is copied to /tmp/.X11/xmr and started from ~/.bashrc, and/or cron.",
                vec![(FilePath, "/tmp/.X11/xmr"), (FilePath, "~/.bashrc")],
            ),
            (
                "It downloads install_flash_player.exe from update-flash[.]net and connects to \
                 185.130.212[.]168 on port 443.",
                vec![
                    (FileName, "install_flash_player.exe"),
                    (Domain, "update-flash.net"),
                    (Ipv4, "185.130.212.168"),
                ],
            ),
            (
                "Mail from Yuri.Sidorav[@]yandex[.]ru linked to https://Docs.Example-Cloud.com/\
                 Invoice.PDF?id=7, hosted on yandex.ru",
                vec![
                    (Email, "yuri.sidorav@yandex.ru"),
                    (Url, "https://docs.example-cloud.com/Invoice.PDF?id=7"),
                    (Domain, "yandex.ru"),
                ],
            ),
            (
                "It queries api.ipify.org: the public IP comes from “https://api.ipify.org/”, \
                 and api.ipify.org is queried again.",
                vec![(Domain, "api.ipify.org"), (Url, "https://api.ipify.org/")],
            ),
            (
                "The loader uses the following URL: http:// service.chrome-up[.]date:8080 \
                 /WebService.asmx",
                vec![
                    (Url, "http://service.chrome-up.date:8080"),
                    (FilePath, "/WebService.asmx"),
                ],
            ),
            (
                concat!(
                    r"It saves %APPDATA%\Microsoft\Windows\Templates\WindowsTemplate.exe and a ",
                    r"link at %APPDATA%\Microsoft\Windows\Start Menu\Programs\Startup\",
                    r"OneDrive.lnk to run it."
                ),
                vec![
                    (
                        FilePath,
                        r"%APPDATA%\Microsoft\Windows\Templates\WindowsTemplate.exe",
                    ),
                    (
                        FilePath,
                        r"%APPDATA%\Microsoft\Windows\Start Menu\Programs\Startup\OneDrive.lnk",
                    ),
                ],
            ),
            (
                concat!(
                    r"Keys HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon and ",
                    r"HKCU\Software\Classes\ms-settings are changed."
                ),
                vec![
                    (
                        RegistryKey,
                        r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon",
                    ),
                    (RegistryKey, r"HKCU\Software\Classes\ms-settings"),
                ],
            ),
            (
                "The C2 at [2001:db8:85a3::8a2e:370:7334]:443 also served 1.2.9.0/24, \
                 wp.piedslibres[.]com/wp/js/Next.scr. and a sample with SHA-256 \
                 9B5E36BB7518A9E333C31D09B589102F89E3425571DD434820AB3C437DC4E0D9.",
                vec![
                    (Ipv6, "2001:db8:85a3::8a2e:370:7334"),
                    (Ipv4, "1.2.9.0"),
                    (Url, "wp.piedslibres.com/wp/js/Next.scr"),
                    (
                        Sha256,
                        "9b5e36bb7518a9e333c31d09b589102f89e3425571dd434820ab3c437dc4e0d9",
                    ),
                ],
            ),
        ];
        for (text, expected) in &cases {
            assert_eq!(pairs(&extract(text)), *expected, "extract({text:?})");
        }
    }

    #[test]
    fn ignores_look_alikes() {
        for text in [
            "The actor moved laterally with stolen credentials.",
            "The script calls WScript.Shell and WshShell.Run(cmd), then sleeps.It waits.",
            "Windows build 10.0.17763.1 and version 1.2.3.4.5 are affected, e.g. on ASP.NET.",
            "Addresses 192.168.0.256 and 192,168,0,1 and 010.1.1.1 are not valid.",
            "Times 12:30:45, MAC 00:1a:2b:3c:4d:5e, C++ std::vector, a::b and Step 1::",
            "A 34-digit string adc83b191b1c6ea0fd8b46cd9f32e592fc is no hash; TCP/IP, km/h.",
            "Switches /c /q and the ratio 24/7 are no paths; neither is System.IO here.",
        ] {
            assert_eq!(extract(text), Vec::<Ioc>::new(), "extract({text:?})");
        }
    }

    #[test]
    fn extract_deduplicates_in_order_of_first_appearance() {
        let text = "b.example.com, 1.2.3.4, B.EXAMPLE.COM, b[.]example[.]com and 1.2.3[.]4";
        assert_eq!(
            extract(text),
            vec![
                ioc(IocKind::Domain, "b.example.com"),
                ioc(IocKind::Ipv4, "1.2.3.4")
            ]
        );
    }

    /// iocextract's `valid.txt`: each line holds an indicator. Two lines are deliberately not
    /// extracted: `http://example,com/`, because a comma is read as a list separator and
    /// never as a defanged dot (so `192,168,0,1` stays text too), and `456-7890`, a telephone
    /// number fragment, which is not an indicator kind here.
    #[test]
    fn iocextract_valid_lines_yield_an_indicator() {
        let skipped = ["http://example,com/", "456-7890"];
        let lines = fixture_lines("valid.txt");
        assert_eq!(lines.len(), 48);
        for line in &lines {
            let found = extract(line);
            if skipped.contains(&line.as_str()) {
                assert!(found.is_empty(), "{line:?} gave {found:?}");
            } else {
                assert!(!found.is_empty(), "nothing found in valid line {line:?}");
            }
        }
        assert!(skipped.iter().all(|s| lines.iter().any(|l| l == s)));
    }

    /// iocextract's `invalid.txt`: look-alikes of domains, IP addresses, hashes and URLs.
    /// `100.20.30.0/24` is a network in CIDR notation: it is no URL, and its network address
    /// is reported as an IPv4 address.
    #[test]
    fn iocextract_invalid_lines_yield_nothing() {
        let lines = fixture_lines("invalid.txt");
        assert_eq!(lines.len(), 11);
        for line in &lines {
            let found = extract(line);
            if line == "100.20.30.0/24" {
                assert_eq!(found, vec![ioc(IocKind::Ipv4, "100.20.30.0")]);
            } else {
                assert!(found.is_empty(), "invalid line {line:?} gave {found:?}");
            }
        }
    }

    /// iocextract's `input.txt`, line by line, with the canonical values expected.
    #[test]
    fn iocextract_input_lines_give_canonical_values() {
        use IocKind::*;
        let v6 = "fdc4:2581:575b:5a72::1";
        let cases: Vec<(&str, Vec<(IocKind, &str)>)> = vec![
            ("http://192.168.0.1", vec![(Url, "http://192.168.0.1")]),
            ("http://192,168,0,1", vec![]),
            (
                "http://192[.]168[.]0[.]1:80/path",
                vec![(Url, "http://192.168.0.1:80/path")],
            ),
            (
                "192[.]168[.]0[.]1:80/path",
                vec![(Url, "192.168.0.1:80/path")],
            ),
            (
                "tcp://192[.]168[.]0[.]1:80/path",
                vec![(Url, "tcp://192.168.0.1:80/path")],
            ),
            (
                "tcp://[fdc4:2581:575b:5a72:0000:0000:0000:0001]:80/path",
                vec![(Url, "tcp://[fdc4:2581:575b:5a72::1]:80/path")],
            ),
            (
                "http://fdc4:2581:575b:5a72:0000:0000:0000:0001",
                vec![(Ipv6, v6)],
            ),
            (
                "[fdc4:2581:575b:5a72:0000:0000:0000:0001]:80/path",
                vec![(Ipv6, v6)],
            ),
            ("fdc4:2581:575b:5a72:0000:0000:0000:0001", vec![(Ipv6, v6)]),
            (
                "http://example.com:80/path",
                vec![(Url, "http://example.com:80/path")],
            ),
            ("http://example[.]com/", vec![(Url, "http://example.com/")]),
            ("http://example(.)com/", vec![(Url, "http://example.com/")]),
            (
                "hxxp://example[dot]com/",
                vec![(Url, "http://example.com/")],
            ),
            (
                "hxxps://example[.]com/",
                vec![(Url, "https://example.com/")],
            ),
            ("http://example[.com/", vec![(Url, "http://example.com/")]),
            (
                "http://example.com[/]test",
                vec![(Url, "http://example.com/test")],
            ),
            (
                "http://example.com/ test",
                vec![(Url, "http://example.com/")],
            ),
            (
                "http://example.com test /test",
                vec![(Url, "http://example.com")],
            ),
            ("http://[example.com", vec![(Domain, "example.com")]),
            (
                r"http://example.com\\bad.doc",
                vec![(Url, "http://example.com"), (FileName, "bad.doc")],
            ),
            ("example[.]com", vec![(Domain, "example.com")]),
            ("example[.]com/", vec![(Domain, "example.com")]),
            ("example[dot]com", vec![(Domain, "example.com")]),
            ("example[.]com test", vec![(Domain, "example.com")]),
            ("example,com", vec![]),
            ("192[.]168[dot]0[.]1", vec![(Ipv4, "192.168.0.1")]),
            ("192.168.0.1:9090", vec![(Ipv4, "192.168.0.1")]),
            ("192.168.0.1/some/url", vec![(Url, "192.168.0.1/some/url")]),
            (
                "192[.]188[dot]0[.]1:9090/url",
                vec![(Url, "192.188.0.1:9090/url")],
            ),
            ("short[.]is", vec![(Domain, "short.is")]),
            ("http://exa-mple.com", vec![(Url, "http://exa-mple.com")]),
            (
                "68b329da9893e34099c7d8ad5cb9c940",
                vec![(Md5, "68b329da9893e34099c7d8ad5cb9c940")],
            ),
            (
                "adc83b19e793491b1c6ea0fd8b46cd9f32e592fc",
                vec![(Sha1, "adc83b19e793491b1c6ea0fd8b46cd9f32e592fc")],
            ),
            ("adc83b191b1c6ea0fd8b46cd9f32e592fc", vec![]),
            ("+example.tld+", vec![]),
            ("_____.tld", vec![]),
            ("x.x.x.x", vec![]),
            ("tooshor.t", vec![]),
            ("85.85", vec![]),
            ("123.102.1215", vec![]),
            ("(123) 456-7890", vec![]),
        ];
        let lines = fixture_lines("input.txt");
        assert_eq!(lines.len(), 113);
        for (line, expected) in &cases {
            assert!(
                lines.iter().any(|l| l == line),
                "{line:?} is not in input.txt"
            );
            assert_eq!(pairs(&extract(line)), *expected, "extract({line:?})");
        }
        let sha512 = lines
            .iter()
            .find(|l| l.len() == 128)
            .expect("a SHA-512 line");
        assert_eq!(pairs(&extract(sha512)), [(Sha512, sha512.as_str())]);
    }
}
