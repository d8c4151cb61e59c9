//! The synthetic CTI corpus of `cargo xtask bench-prep`: JSON Lines rows shaped like the
//! generic source of `ctiforge prep` (`id`, `report`, `text`, `labels`), made from seeded
//! word lists so that every machine writes the same bytes.
//!
//! Each row is 10 to 60 words of threat-report prose in reports of about 50 rows, labelled
//! with 1 to 3 active ATT&CK technique IDs drawn with Zipf-like frequencies. The rows
//! exercise every step of the pipeline: ATT&CK `(Citation: ...)` markers and markdown links
//! (cleaning), irregular whitespace, about 3% exact duplicates that differ in case and
//! whitespace (exact de-duplication, sometimes with other labels to merge), about 2% near
//! duplicates with one word changed (MinHash), lower-case or padded IDs (label
//! normalisation) and about 0.5% malformed IDs (rejects).
//!
//! Randomness is splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
//! generators", OOPSLA 2014), written out here so the corpus never depends on a crate.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

/// Seed of the corpus; changing it changes every benchmark input.
const SEED: u64 = 0x00C7_1F02_6E5E_ED01;

/// Active Enterprise techniques of `datasets/attack/enterprise_techniques.tsv`, most
/// frequent first (weights fall as 1 / rank).
#[rustfmt::skip]
const TECHNIQUES: [&str; 60] = [
    "T1059.001", "T1105", "T1071.001", "T1027", "T1566.001", "T1547.001", "T1053.005", "T1082",
    "T1083", "T1055", "T1059.003", "T1204.002", "T1003.001", "T1057", "T1016", "T1033", "T1021.001",
    "T1078", "T1140", "T1112", "T1486", "T1041", "T1562.001", "T1070.004", "T1036.005", "T1218.011",
    "T1059.005", "T1566.002", "T1049", "T1018", "T1087.002", "T1069.002", "T1482", "T1003.003",
    "T1110.003", "T1021.002", "T1570", "T1078.002", "T1136.001", "T1543.003", "T1070.001",
    "T1218.005", "T1490", "T1489", "T1567.002", "T1048.003", "T1560.001", "T1005", "T1039", "T1113",
    "T1056.001", "T1573.002", "T1090.003", "T1095", "T1102", "T1133", "T1190", "T1505.003", "T1047",
    "T1071.004",
];

/// Labels that are not technique IDs; each makes its row a reject.
const MALFORMED: [&str; 5] = ["T99", "T1059.1", "TA0002", "T10590", "Initial Access"];

/// Clause subjects: groups, software and the usual report phrasings.
#[rustfmt::skip]
const SUBJECTS: [&str; 32] = [
    "APT29", "APT28", "Lazarus Group", "FIN7", "Sandworm Team", "Turla", "Kimsuky", "OilRig",
    "the threat actor", "the operators", "the intruders", "the group", "the malware", "the implant",
    "the backdoor", "the loader", "the dropper", "the ransomware", "Cobalt Strike", "Emotet",
    "TrickBot", "QakBot", "PlugX", "Mimikatz", "the attackers", "the campaign", "the second stage",
    "the payload", "BlackCat affiliates", "Wizard Spider", "MuddyWater", "the tool",
];

/// Clause verbs.
#[rustfmt::skip]
const VERBS: [&str; 24] = [
    "used", "leveraged", "deployed", "executed", "abused", "relied on", "downloaded", "installed",
    "created", "modified", "launched", "dropped", "staged", "configured", "invoked", "ran",
    "employed", "obtained", "collected", "enumerated", "has used", "can use", "is known to use",
    "has been observed using",
];

/// Clause objects: what was used or done.
#[rustfmt::skip]
const OBJECTS: [&str; 36] = [
    "PowerShell scripts", "a scheduled task", "malicious macros", "spearphishing attachments",
    "a Windows service", "registry run keys", "valid accounts", "stolen credentials",
    "WMI commands", "encoded commands", "a web shell", "a custom DLL", "rundll32",
    "remote desktop sessions", "SMB shares", "a reverse proxy", "DNS tunneling", "HTTPS beacons",
    "compressed archives", "a keylogger", "screen captures", "LSASS memory dumps",
    "domain trust information", "the local system time", "process listings",
    "network share listings", "cloud storage accounts", "legitimate remote access software",
    "obfuscated JavaScript", "a signed binary", "batch files", "a VBScript downloader",
    "password spraying", "a public exploit", "Group Policy objects", "WinRAR archives",
];

/// Optional clause modifiers: where or how.
#[rustfmt::skip]
const MODIFIERS: [&str; 16] = [
    "on compromised hosts", "across the victim network", "from a remote server", "via cmd.exe",
    "under the SYSTEM account", "during the intrusion", "after initial access", "within hours",
    "on domain controllers", "in memory", "through a VPN appliance",
    "with administrator privileges", "over port 443", "from a staging directory",
    "on internet-facing servers", "against the finance department",
];

/// Optional clause purposes: why.
#[rustfmt::skip]
const PURPOSES: [&str; 14] = [
    "to maintain persistence", "to escalate privileges", "to move laterally", "to evade detection",
    "to exfiltrate data", "to collect credentials", "to discover the environment",
    "to download additional payloads", "to encrypt files", "to communicate with the C2 server",
    "to disable security tools", "to inhibit recovery", "to stage collected files",
    "to gain initial access",
];

/// File extensions of the artifact names that make clauses distinct.
const EXTENSIONS: [&str; 6] = ["exe", "dll", "ps1", "vbs", "bat", "zip"];

/// Single words that replace one word of a near duplicate.
#[rustfmt::skip]
const EDITS: [&str; 8] = [
    "reportedly", "subsequently", "likely", "again", "also", "quickly", "later", "initially",
];

/// Sources named in `(Citation: ...)` markers.
#[rustfmt::skip]
const CITED: [&str; 10] = [
    "Mandiant APT29 2022", "Unit 42 OilRig", "Talos Emotet 2020", "Microsoft NOBELIUM",
    "ESET Turla Mosquito", "CISA AA23-061A", "Secureworks GOLD BLACKBURN", "DFIR Report",
    "Kaspersky Lazarus 2021", "CrowdStrike Wizard Spider",
];

/// How many recent rows duplicates and near duplicates are copied from.
const RECENT: usize = 4096;

/// splitmix64: a 64-bit state advanced by a constant and scrambled on output.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`), by multiply-shift (bias below 2^-40 for small `n`).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }

    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// A row before decoration: its words and labels.
#[derive(Clone)]
struct Base {
    words: Vec<String>,
    labels: Vec<&'static str>,
}

/// Writes `rows` rows to `path` (through a temporary file, so a killed run leaves none).
///
/// # Errors
/// The file cannot be written.
pub fn write(path: &Path, rows: usize) -> Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut rng = SplitMix64(SEED);
    let zipf = zipf_table(TECHNIQUES.len());
    let mut recent: Vec<Base> = Vec::with_capacity(RECENT);
    let (mut report, mut left_in_report) = (0_usize, 0_usize);
    for row in 0..rows {
        if left_in_report == 0 {
            report += 1;
            left_in_report = 1 + rng.below(99);
        }
        left_in_report -= 1;
        let roll = rng.below(1000);
        let (base, exact_copy) = if roll < 30 && !recent.is_empty() {
            (exact_duplicate(&mut rng, &recent, &zipf), true)
        } else if roll < 50 && !recent.is_empty() {
            (near_duplicate(&mut rng, &recent), false)
        } else {
            let base = fresh(&mut rng, &zipf);
            remember(&mut recent, row, base.clone());
            (base, false)
        };
        let text = decorate(&mut rng, &base.words, exact_copy);
        let labels = spell_labels(&mut rng, &base.labels);
        let line = json!({
            "id": format!("r{:07}", row + 1),
            "report": format!("RPT-{report:06}"),
            "text": text,
            "labels": labels,
        });
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()))
}

/// Keeps the last [`RECENT`] fresh rows, overwriting the oldest.
fn remember(recent: &mut Vec<Base>, row: usize, base: Base) {
    if recent.len() < RECENT {
        recent.push(base);
    } else {
        recent[row % RECENT] = base;
    }
}

/// Cumulative Zipf-like weights `1 / (rank + 1)`.
fn zipf_table(n: usize) -> Vec<f64> {
    let mut total = 0.0;
    (0..n)
        .map(|rank| {
            total += 1.0 / (rank as f64 + 1.0);
            total
        })
        .collect()
}

fn draw_label(rng: &mut SplitMix64, zipf: &[f64]) -> &'static str {
    let total = zipf.last().copied().unwrap_or(1.0);
    let u = (rng.next() >> 11) as f64 / (1_u64 << 53) as f64 * total;
    let rank = zipf.partition_point(|&c| c <= u).min(TECHNIQUES.len() - 1);
    TECHNIQUES[rank]
}

fn draw_labels(rng: &mut SplitMix64, zipf: &[f64]) -> Vec<&'static str> {
    let count = match rng.below(100) {
        0..55 => 1,
        55..85 => 2,
        _ => 3,
    };
    let mut labels: Vec<&'static str> = Vec::with_capacity(count);
    // A few extra draws make room for repeats of the frequent IDs.
    for _ in 0..count * 4 {
        let label = draw_label(rng, zipf);
        if !labels.contains(&label) {
            labels.push(label);
        }
        if labels.len() == count {
            break;
        }
    }
    labels
}

/// A new row: clauses of report prose until `10..=60` words, ending with a period.
fn fresh(rng: &mut SplitMix64, zipf: &[f64]) -> Base {
    let target = 10 + rng.below(51);
    let mut words: Vec<String> = Vec::with_capacity(target + 16);
    while words.len() < target {
        if let Some(last) = words.last_mut() {
            last.push_str(rng.pick(&[".", ".", ",", ";"]));
        }
        let start = words.len();
        clause(rng, &mut words);
        if start == 0 || words[start - 1].ends_with('.') {
            words[start] = capitalised(&words[start]);
        }
    }
    words.truncate(target);
    if let Some(last) = words.last_mut() {
        last.truncate(last.trim_end_matches([',', ';', '.']).len());
        last.push('.');
    }
    Base {
        words,
        labels: draw_labels(rng, zipf),
    }
}

/// One clause: subject, verb, object, then maybe an artifact, a modifier and a purpose.
fn clause(rng: &mut SplitMix64, words: &mut Vec<String>) {
    let mut push = |phrase: &str| words.extend(phrase.split(' ').map(str::to_owned));
    push(rng.pick(&SUBJECTS));
    push(rng.pick(&VERBS));
    push(rng.pick(&OBJECTS));
    if rng.chance(600) {
        let artifact = match rng.below(3) {
            0 => format!(
                "named {}{:04x}.{}",
                rng.pick(&["svc", "upd", "msc", "tmp", "wlb"]),
                rng.below(1 << 16),
                rng.pick(&EXTENSIONS)
            ),
            1 => format!("on host WS-{:05}", rng.below(100_000)),
            _ => format!(
                "in build {}.{}.{}",
                rng.below(10),
                rng.below(30),
                rng.below(1000)
            ),
        };
        push(&artifact);
    }
    if rng.chance(500) {
        push(rng.pick(&MODIFIERS));
    }
    if rng.chance(500) {
        push(rng.pick(&PURPOSES));
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A recent row again, in other case; one time in three with one label changed.
fn exact_duplicate(rng: &mut SplitMix64, recent: &[Base], zipf: &[f64]) -> Base {
    let mut base = recent[rng.below(recent.len())].clone();
    let upper = rng.chance(300);
    for word in &mut base.words {
        *word = if upper {
            word.to_uppercase()
        } else {
            word.to_lowercase()
        };
    }
    if rng.chance(333) {
        let slot = rng.below(base.labels.len());
        base.labels[slot] = draw_label(rng, zipf);
    }
    base
}

/// A recent row with one interior word replaced.
fn near_duplicate(rng: &mut SplitMix64, recent: &[Base]) -> Base {
    let mut base = recent[rng.below(recent.len())].clone();
    let n = base.words.len();
    let at = 1 + rng.below(n.saturating_sub(2).max(1));
    let edit = rng.pick(&EDITS);
    base.words[at] = if base.words[at] == edit {
        "meanwhile".to_owned()
    } else {
        edit.to_owned()
    };
    base
}

/// The text as a report shows it: words with irregular whitespace, a markdown link around
/// one word and citation markers, none of which survives cleaning.
fn decorate(rng: &mut SplitMix64, words: &[String], messy: bool) -> String {
    let messy = messy || rng.chance(100);
    let link = rng.chance(100).then(|| rng.below(words.len()));
    let inline_citation = rng.chance(50).then(|| rng.below(words.len()));
    let mut text = String::with_capacity(words.len() * 8 + 64);
    if messy && rng.chance(300) {
        text.push_str(" \t");
    }
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            text.push_str(match (messy, rng.below(8)) {
                (true, 0) => "  ",
                (true, 1) => "\t",
                (true, 2) => " \n",
                _ => " ",
            });
        }
        if link == Some(i) {
            let id = rng.below(1000);
            text.push_str(&format!(
                "[{word}](https://attack.mitre.org/software/S{id:04})"
            ));
        } else {
            text.push_str(word);
        }
        if inline_citation == Some(i) && i + 1 < words.len() {
            text.push_str(&format!(" (Citation: {})", rng.pick(&CITED)));
        }
    }
    if rng.chance(150) {
        for _ in 0..1 + rng.below(2) {
            text.push_str(&format!("(Citation: {})", rng.pick(&CITED)));
        }
    }
    if messy && rng.chance(300) {
        text.push_str("  \n");
    }
    text
}

/// The labels as written: mostly canonical, 1% lower-case or padded, 0.5% with one
/// malformed entry.
fn spell_labels(rng: &mut SplitMix64, labels: &[&'static str]) -> Vec<String> {
    let mut out: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
    if rng.chance(10) {
        let slot = rng.below(out.len());
        out[slot] = if rng.chance(500) {
            out[slot].to_lowercase()
        } else {
            format!(" {} ", out[slot])
        };
    }
    if rng.chance(5) {
        let slot = rng.below(out.len());
        out[slot] = rng.pick(&MALFORMED).to_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs for seed 0 from the reference C implementation.
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn corpus_is_deterministic_and_shaped() {
        let dir = std::env::temp_dir().join(format!("bench-prep-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
        write(&a, 2000).expect("write a");
        write(&b, 2000).expect("write b");
        let text = std::fs::read_to_string(&a).expect("read a");
        assert_eq!(text, std::fs::read_to_string(&b).expect("read b"));
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(rows.len(), 2000);
        for row in &rows {
            let words = row["text"]
                .as_str()
                .expect("text")
                .split_whitespace()
                .count();
            assert!((10..=80).contains(&words), "{row}");
            let labels = row["labels"].as_array().expect("labels");
            assert!((1..=3).contains(&labels.len()), "{row}");
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
