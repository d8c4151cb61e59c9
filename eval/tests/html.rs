//! `report.html` in a real browser. A full report (technique, indicator and summary rows,
//! the language-model loss and a base-vs-tuned comparison made by
//! [`ctiforge_eval::compare::compare`] on scored outcomes) is written with
//! [`write_report`] and loaded by headless Chromium (`ci/setup-chromium.sh`, browser in
//! `CTIFORGE_CHROMIUM`). The dumped DOM must hold every section and chart with the markup
//! from the data still escaped, the console must show no errors or refused loads, and the
//! screenshot must be a full-size PNG; it is kept as `test-artifacts/eval-report.png`
//! under the target folder.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctiforge_data_prep::Task;
use ctiforge_eval::bootstrap::BootstrapConfig;
use ctiforge_eval::compare::compare;
use ctiforge_eval::example::{EvalExample, Reference};
use ctiforge_eval::harness::{GenSettings, Throughput};
use ctiforge_eval::report::{
    Counts, DataInfo, EvalReport, FORMAT, HTML_FILE, ModelInfo, Settings, write_report,
};
use ctiforge_eval::score::{Outcome, RawOutput, ScoreContext, aggregate, score_one};
use ctiforge_eval::threshold::Requirement;

const ENV: &str = "CTIFORGE_CHROMIUM";
/// The browser is killed after this long, so the test never hangs.
const TIMEOUT: Duration = Duration::from_secs(60);
const WINDOW: (u32, u32) = (1280, 2400);
/// A blank page of this size compresses to about 14 KiB (1280×1800: 10.5 KiB); this one,
/// text and charts, to about 280 KiB.
const MIN_PNG_BYTES: u64 = 64 * 1024;

const TECHNIQUES: [&str; 30] = [
    "T1059.001",
    "T1105",
    "T1566.001",
    "T1071.001",
    "T1027",
    "T1547.001",
    "T1055",
    "T1082",
    "T1083",
    "T1003.001",
    "T1021.001",
    "T1053.005",
    "T1070.004",
    "T1112",
    "T1204.002",
    "T1036.005",
    "T1486",
    "T1490",
    "T1140",
    "T1218.011",
    "T1057",
    "T1016",
    "T1033",
    "T1005",
    "T1041",
    "T1567.002",
    "T1190",
    "T1133",
    "T1078",
    "T1110.003",
];

/// A small linear congruential generator: the same data on every run, no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index below `n`, skewed towards small ones (a long-tailed label frequency).
    fn skewed(&mut self, n: usize) -> usize {
        ((self.next() * self.next() * n as f64) as usize).min(n - 1)
    }
}

fn score(i: usize, task: Task, input: String, reference: Reference, answer: String) -> Outcome {
    let lm_loss = 40.0 - answer.len().min(30) as f64;
    let ex = EvalExample {
        id: format!("{}-{i:03}", task.as_str()),
        task,
        text: input,
        prompt: "prompt".into(),
        completion: "completion".into(),
        reference,
    };
    let out = RawOutput {
        text: answer,
        finish: Some(if i % 23 == 7 { "length" } else { "stop_token" }.into()),
        truncated: i % 37 == 5,
        lm: Some((lm_loss, 20)),
    };
    score_one(&ex, &out, &ScoreContext::default())
}

/// Technique rows: `skill` is the chance of naming each reference ID; a miss names the
/// next ID in the list instead, so confusions concentrate on a few pairs.
fn technique_rows(skill: f64, seed: u64) -> Vec<Outcome> {
    let (mut gold_rng, mut rng) = (Lcg(7), Lcg(seed));
    (0..150)
        .map(|i| {
            let mut gold = vec![TECHNIQUES[gold_rng.skewed(TECHNIQUES.len())]];
            if gold_rng.next() < 0.3 {
                gold.push(TECHNIQUES[gold_rng.skewed(TECHNIQUES.len())]);
            }
            gold.sort_unstable();
            gold.dedup();
            let answer: Vec<&str> = gold
                .iter()
                .map(|g| {
                    let k = TECHNIQUES.iter().position(|t| t == g).unwrap_or(0);
                    if rng.next() < skill {
                        g
                    } else {
                        TECHNIQUES[(k + 1) % TECHNIQUES.len()]
                    }
                })
                .collect();
            let mut answer = answer.join(", ");
            if i == 3 {
                answer.push_str(" T9999 <script>alert('technique')</script>");
            }
            let input = format!(
                "Report {i}: the actor used {} to stage tooling on <img src=x onerror=alert(1)> \
                 hosts before moving laterally; {}",
                gold.join(" and "),
                "the loader beaconed to its command server every 60 seconds. ".repeat(4)
            );
            let reference = Reference::Techniques(gold.iter().map(|g| (*g).to_owned()).collect());
            score(i, Task::TechniqueClassification, input, reference, answer)
        })
        .collect()
}

fn ioc_rows(skill: f64, seed: u64) -> Vec<Outcome> {
    let mut rng = Lcg(seed);
    (0..40)
        .map(|i| {
            let gold = vec![
                ("ipv4".to_owned(), format!("10.0.{}.{}", i / 7, i % 250)),
                ("domain".to_owned(), format!("update{i}.example.com")),
                ("sha256".to_owned(), format!("{i:064x}")),
            ];
            let answer: Vec<String> = gold
                .iter()
                .filter(|_| rng.next() < skill)
                .map(|(k, v)| format!("{k}: {v}"))
                .chain((i % 4 == 0).then(|| format!("url: http://cdn{i}.example.net/a.bin")))
                .collect();
            let input = format!("Indicators in report {i}: {:?}", gold);
            score(
                i,
                Task::IocExtraction,
                input,
                Reference::Iocs(gold),
                answer.join("\n"),
            )
        })
        .collect()
}

fn summary_rows(skill: f64, seed: u64) -> Vec<Outcome> {
    const WORDS: [&str; 12] = [
        "the",
        "group",
        "delivered",
        "a",
        "loader",
        "by",
        "phishing",
        "that",
        "stole",
        "credentials",
        "over",
        "https",
    ];
    let mut rng = Lcg(seed);
    (0..30)
        .map(|i| {
            let reference = WORDS.join(" ");
            let kept: Vec<&str> = WORDS
                .iter()
                .copied()
                .filter(|_| rng.next() < skill)
                .collect();
            let answer = format!("{} in campaign {i}", kept.join(" "));
            let input = format!("Long report {i}. {}", reference.repeat(3));
            score(
                i,
                Task::Summarization,
                input,
                Reference::Summary(reference),
                answer,
            )
        })
        .collect()
}

fn outcomes(skill: f64, seed: u64) -> Vec<Outcome> {
    let mut all = technique_rows(skill, seed);
    all.extend(ioc_rows(skill, seed + 1));
    all.extend(summary_rows(skill, seed + 2));
    all
}

fn report(tuned: &[Outcome], base: &[Outcome]) -> EvalReport {
    let refs: Vec<&Outcome> = tuned.iter().collect();
    let (metrics, per_label) = aggregate(&refs, 20).expect("aggregate");
    let cfg = BootstrapConfig {
        resamples: 300,
        ..BootstrapConfig::default()
    };
    let mut comparison = compare(base, tuned, ("runs/base", "runs/tuned"), &cfg).expect("compare");
    let reqs: Vec<Requirement> = ["technique.micro_f1 >= +0.05", "ioc.strict_f1 >= 0.99"]
        .iter()
        .map(|r| r.parse().expect("requirement"))
        .collect();
    comparison.check(&reqs).expect("check");
    let mut by_task = BTreeMap::new();
    for o in tuned {
        *by_task.entry(o.task.as_str().to_owned()).or_insert(0) += 1;
    }
    EvalReport {
        format: FORMAT.into(),
        created_by: "ctiforge-eval (integration test)".into(),
        model: ModelInfo {
            model: "meta-llama/Llama-3.2-1B".into(),
            dir: "/models/llama-3.2-1b".into(),
            adapter: Some("runs/tram-lora-r16".into()),
            run: None,
            parameters: 1_235_814_400,
            context: 2048,
        },
        data: DataInfo {
            source: "data/cti-mix".into(),
            split: Some("test".into()),
            name: Some("cti-mix <v2>".into()),
            fingerprint: Some("sha256:9f2c4e1b7a0d3e5f".into()),
            available: 400,
        },
        settings: Settings {
            scorer: "generate".into(),
            generation: GenSettings::default(),
            limit: None,
            device: "cpu".into(),
        },
        counts: Counts {
            examples: tuned.len(),
            by_task,
            truncated_prompts: tuned.iter().filter(|o| o.truncated).count(),
            finish: finish_counts(tuned),
        },
        metrics,
        per_label,
        comparison: Some(comparison),
        throughput: Throughput {
            examples: tuned.len(),
            generated_tokens: 9_400,
            secs: 212.5,
        },
        duration_secs: 231.8,
    }
}

fn finish_counts(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for f in outcomes.iter().filter_map(|o| o.finish.clone()) {
        *counts.entry(f).or_insert(0) += 1;
    }
    counts
}

fn chromium() -> PathBuf {
    match std::env::var_os(ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "{ENV} is not set: run `bash ci/setup-chromium.sh` and export {ENV}=<the path it \
             prints> to run the report rendering test"
        ),
    }
}

/// Runs headless Chromium with `args` (a fresh profile, output in files so a large DOM
/// cannot fill a pipe), killing it after [`TIMEOUT`]. Returns stdout and stderr.
fn browser(work: &Path, name: &str, args: &[String]) -> (String, String) {
    let profile = tempfile::tempdir_in(work).expect("profile dir");
    let (out_path, err_path) = (
        work.join(format!("{name}.out")),
        work.join(format!("{name}.err")),
    );
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            // Without it, tiles not yet rasterized come out blank in the screenshot.
            "--run-all-compositor-stages-before-draw",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium().display()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium ({name}) did not finish in {TIMEOUT:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_path).expect("chromium stdout");
    let stderr = std::fs::read_to_string(&err_path).expect("chromium stderr");
    assert!(
        status.success(),
        "chromium ({name}) failed with {status}:\n{stderr}"
    );
    for bad in ["Uncaught", "Refused to"] {
        let line = stderr.lines().find(|l| l.contains(bad));
        assert!(
            line.is_none(),
            "chromium ({name}) console: {line:?}\n{stderr}"
        );
    }
    (stdout, stderr)
}

/// `$CARGO_TARGET_DIR/test-artifacts`, else `test-artifacts` in the target folder that
/// holds this test binary (`target/debug/deps/html-…`).
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-artifacts")
}

fn check_png(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).expect("screenshot written");
    assert!(
        bytes.len() as u64 > MIN_PNG_BYTES,
        "screenshot is {} bytes: blank or broken page",
        bytes.len()
    );
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR", "PNG without a header chunk");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
#[ignore = "needs headless Chromium (ci/setup-chromium.sh, CTIFORGE_CHROMIUM)"]
fn the_report_page_renders_in_chromium() {
    let tuned = outcomes(0.8, 11);
    let base = outcomes(0.35, 23);
    let report = report(&tuned, &base);
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("eval");
    write_report(&dir, &report, &tuned).expect("write report");
    let url = format!("file://{}", dir.join(HTML_FILE).display());

    let (dom, _) = browser(work.path(), "dom", &["--dump-dom".into(), url.clone()]);
    for needle in [
        "<h1>Evaluation report</h1>",
        "cti-mix &lt;v2&gt;",
        "<h2>Metrics</h2>",
        "<h2>Technique classification</h2>",
        "F1 per technique",
        "Most confused techniques",
        "<h2>Indicator extraction</h2>",
        "<h2>Summarization</h2>",
        "ROUGE-L per summary",
        "<h2>Base vs tuned</h2>",
        "The candidate scores higher on technique.micro_f1 (+",
        "1 of 2 requirements fail.",
        "<h2>Wrong predictions</h2>",
        "&lt;script&gt;alert('technique')&lt;/script&gt;",
        "<rect",
        "<text",
    ] {
        assert!(dom.contains(needle), "the rendered DOM lacks {needle:?}");
    }
    let charts = dom.matches("<svg").count();
    assert!(charts >= 5, "{charts} charts in the DOM");
    // Nothing to run or fetch: markup from the data stayed text, and no element loads a
    // resource.
    for bad in ["<script", "<img", "<link", "src=\"", "href=\""] {
        assert!(!dom.contains(bad), "the rendered DOM holds {bad:?}");
    }

    let shot = work.path().join("eval-report.png");
    let arg = format!("--screenshot={}", shot.display());
    browser(work.path(), "screenshot", &[arg, url]);
    let (w, h) = check_png(&shot);
    assert_eq!((w, h), WINDOW, "screenshot size");

    let keep = artifacts_dir();
    std::fs::create_dir_all(&keep).expect("artifacts dir");
    std::fs::copy(&shot, keep.join("eval-report.png")).expect("keep screenshot");
    std::fs::copy(dir.join(HTML_FILE), keep.join("eval-report.html")).expect("keep page");
    println!(
        "screenshot ({w}x{h}, {charts} charts): {}",
        keep.join("eval-report.png").display()
    );
}
