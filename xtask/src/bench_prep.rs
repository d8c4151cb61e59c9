//! `cargo xtask bench-prep`: `ctiforge prep` against the same pipeline written with pandas
//! (`ci/reference_prep_pandas.py`) on a synthetic corpus of N rows (default 1,000,000).
//!
//! Both read the same JSON Lines file and run the same steps with the same settings: label
//! validation against the bundled ATT&CK table, the three regex cleanings, exact and
//! near-duplicate removal (MinHash + LSH, 128 permutations in 16 bands, word bigrams,
//! threshold 0.8), grouped stratified 0.8 / 0.1 / 0.1 splits, prompt rendering and parquet
//! output. Each is timed end to end as a separate process, with its peak resident memory
//! from `/usr/bin/time` (or, without it, from `VmHWM` in `/proc/<pid>/status`).
//!
//! ctiforge runs as the `dev`-profile binary of `cargo build -p ctiforge-cli`, the one this
//! workspace builds (dependencies at `opt-level = 3`, workspace crates at 1). The table is
//! printed and written between the `<!-- bench-prep:start -->` and
//! `<!-- bench-prep:end -->` markers of `docs/benchmarks.md`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::step::{
    Timings, capture, cargo, last_json, machine, replace_between, target_dir, today, workspace_root,
};

const START: &str = "<!-- bench-prep:start -->";
const END: &str = "<!-- bench-prep:end -->";
const TIME: &str = "/usr/bin/time";

/// Rows of the default corpus.
pub const DEFAULT_ROWS: usize = 1_000_000;

/// Tenths of the corpus that ctiforge also prepares, to show how its memory grows.
const SCALING_PARTS: [usize; 2] = [1, 3];

/// The settings both pipelines run with (data-prep's defaults, spelled out).
const SEED: u64 = 20250607;
const THRESHOLD: f64 = 0.8;
const NUM_PERM: usize = 128;
const BANDS: usize = 16;
const SHINGLE_WORDS: usize = 2;
const MAX_REJECT_FRACTION: f64 = 0.05;

/// Largest difference in kept rows, as a fraction of rows read, before the two pipelines
/// are taken to do different work. Only near-duplicate decisions may differ: the two use
/// different hash functions, so pairs close to the threshold can fall either way.
const KEPT_TOLERANCE: f64 = 0.01;

/// CPU use by others, just before a measured run, above which a warning is printed.
const BUSY_WARNING: f64 = 0.25;

/// One pipeline's run: time, memory and what it counted.
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    secs: f64,
    peak_rss_bytes: u64,
    read: u64,
    rejected: u64,
    exact: u64,
    near: u64,
    kept: u64,
}

/// Runs the benchmark on `rows` rows and updates `docs/benchmarks.md`.
///
/// # Errors
/// Fails if the corpus cannot be written, ctiforge cannot be built, either pipeline fails,
/// their row counts disagree beyond [`KEPT_TOLERANCE`], or the doc cannot be written.
pub fn run(rows: usize) -> Result<()> {
    if rows == 0 {
        bail!("bench-prep: --rows must be at least 1");
    }
    let mut t = Timings::default();
    let dir = target_dir().join("bench-prep");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let python = t.step("bench env", "bash ci/setup-bench.sh", bench_python)?;
    let corpus = dir.join(format!("corpus-{rows}.jsonl"));
    if !corpus.is_file() {
        t.step("corpus", &corpus.display().to_string(), || {
            crate::prep_corpus::write(&corpus, rows)
        })?;
    }
    let recipe = dir.join(format!("recipe-{rows}.toml"));
    std::fs::write(&recipe, recipe_text(&corpus, rows)?)
        .with_context(|| format!("writing {}", recipe.display()))?;
    let mut build = cargo();
    build.args(["build", "--quiet", "-p", "ctiforge-cli"]);
    t.command(
        "build",
        &mut build,
        "ctiforge must build before it can be measured",
    )?;

    let ours_out = dir.join(format!("out-ctiforge-{rows}"));
    let ours = t.step("ctiforge prep", &recipe.display().to_string(), || {
        run_ctiforge(&recipe, &ours_out)
    })?;
    let theirs_out = dir.join(format!("out-pandas-{rows}"));
    let theirs = t.step("pandas", "ci/reference_prep_pandas.py", || {
        run_pandas(&python, &corpus, &theirs_out)
    })?;
    check_agreement(&ours, &theirs)?;
    let mut scaling = Vec::new();
    for part in SCALING_PARTS {
        let n = rows * part / 10;
        if n < 1000 {
            continue;
        }
        let sample = dir.join(format!("corpus-{rows}-first-{n}.jsonl"));
        let recipe = dir.join(format!("recipe-{rows}-first-{n}.toml"));
        let out = dir.join(format!("out-ctiforge-{rows}-first-{n}"));
        let outcome = t.step("ctiforge prep", &format!("first {n} rows"), || {
            first_lines(&corpus, &sample, n)?;
            std::fs::write(&recipe, recipe_text(&sample, n)?)
                .with_context(|| format!("writing {}", recipe.display()))?;
            run_ctiforge(&recipe, &out)
        })?;
        scaling.push((n, outcome));
    }
    scaling.push((rows, ours));
    let mut table = render(rows, &ours, &theirs);
    table.push_str(&render_scaling(&scaling));
    println!("{table}");
    update_doc(&workspace_root().join("docs/benchmarks.md"), rows, &table)?;
    eprintln!("\nbench-prep done: {}", t.summary());
    Ok(())
}

/// The interpreter of the cached pandas environment (`ci/setup-bench.sh`).
fn bench_python() -> Result<PathBuf> {
    let mut cmd = Command::new("bash");
    cmd.arg(workspace_root().join("ci/setup-bench.sh"));
    let out = capture(&mut cmd)?;
    let path = PathBuf::from(out.trim());
    if !path.is_file() {
        bail!("ci/setup-bench.sh printed {path:?}, which is not a file");
    }
    Ok(path)
}

/// The recipe ctiforge runs: the corpus as a generic JSON Lines source, every step on.
fn recipe_text(corpus: &Path, rows: usize) -> Result<String> {
    let tsv = workspace_root().join("datasets/attack/enterprise_techniques.tsv");
    // A JSON string is a valid TOML basic string.
    let quote = |p: &Path| serde_json::to_string(&p.display().to_string());
    Ok(format!(
        "# Written by `cargo xtask bench-prep`: the synthetic corpus through every step.\n\
         [dataset]\nname = \"bench-synthetic-{rows}\"\nseed = {SEED}\n\n\
         [attack]\ntechniques = {}\n\n\
         [[sources]]\nname = \"bench\"\nkind = \"jsonl\"\npath = {}\n\
         columns = {{ text = \"text\", labels = \"labels\", group = \"report\", id = \"id\" }}\n\n\
         [dedup]\nexact = true\nmerge_labels = true\nnear = true\nthreshold = {THRESHOLD:?}\n\
         num_perm = {NUM_PERM}\nbands = {BANDS}\nshingle_words = {SHINGLE_WORDS}\n\n\
         [split]\ntrain = 0.8\nvalidation = 0.1\ntest = 0.1\nstratify = true\n\n\
         [reject]\nmax_fraction = {MAX_REJECT_FRACTION:?}\n",
        quote(&tsv)?,
        quote(corpus)?,
    ))
}

fn run_ctiforge(recipe: &Path, out: &Path) -> Result<Outcome> {
    let exe = target_dir().join("debug").join("ctiforge");
    let args: Vec<OsString> = vec![
        "prep".into(),
        "--config".into(),
        recipe.into(),
        "--out".into(),
        out.into(),
        "--force".into(),
    ];
    let (secs, peak_rss_bytes, _) = measure(&exe, &args)?;
    let path = out.join("manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    counted(
        &manifest["counts"],
        secs,
        peak_rss_bytes,
        "ctiforge manifest",
    )
}

fn run_pandas(python: &Path, corpus: &Path, out: &Path) -> Result<Outcome> {
    let root = workspace_root();
    let mut args: Vec<OsString> = vec![
        root.join("ci/reference_prep_pandas.py").into(),
        corpus.into(),
        root.join("datasets/attack/enterprise_techniques.tsv")
            .into(),
        out.into(),
    ];
    for (flag, value) in [
        ("--seed", SEED.to_string()),
        ("--threshold", THRESHOLD.to_string()),
        ("--num-perm", NUM_PERM.to_string()),
        ("--bands", BANDS.to_string()),
        ("--shingle-words", SHINGLE_WORDS.to_string()),
        ("--max-reject-fraction", MAX_REJECT_FRACTION.to_string()),
    ] {
        args.extend([flag.into(), value.into()]);
    }
    let (secs, peak_rss_bytes, stdout) = measure(python, &args)?;
    let summary = last_json(&stdout, "the pandas reference")?;
    counted(&summary, secs, peak_rss_bytes, "pandas summary")
}

/// Reads the row counts shared by ctiforge's manifest and the reference's summary.
fn counted(counts: &Value, secs: f64, peak_rss_bytes: u64, what: &str) -> Result<Outcome> {
    let get = |key: &str| {
        counts
            .get(key)
            .and_then(Value::as_u64)
            .with_context(|| format!("{what}: no count `{key}` in {counts}"))
    };
    Ok(Outcome {
        secs,
        peak_rss_bytes,
        read: get("read")?,
        rejected: get("rejected")?,
        exact: get("exact_duplicates")?,
        near: get("near_duplicates")?,
        kept: get("kept")?,
    })
}

/// Runs `program` with stderr passed through; returns wall seconds, peak RSS in bytes and
/// stdout (kept in a file, so a chatty child never blocks on a full pipe).
fn measure(program: &Path, args: &[OsString]) -> Result<(f64, u64, String)> {
    let scratch = target_dir().join("bench-prep");
    let stdout_path = scratch.join("child.stdout");
    let stdout = std::fs::File::create(&stdout_path)
        .with_context(|| format!("creating {}", stdout_path.display()))?;
    let use_time = Path::new(TIME).is_file();
    let time_path = scratch.join("child.time");
    let mut cmd = if use_time {
        let mut c = Command::new(TIME);
        c.args(["-f", "%e %M", "-o"]).arg(&time_path).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .current_dir(workspace_root())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::inherit());
    let shown = crate::step::display(&cmd);
    let busy = other_load();
    if busy > BUSY_WARNING {
        eprintln!(
            "bench-prep: warning: the CPUs were {:.0}% busy just before this run; other work \
             will slow it down",
            100.0 * busy
        );
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let (status, polled_kib) = if use_time {
        (child.wait()?, 0)
    } else {
        poll_peak_rss(&mut child)?
    };
    let wall = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("`{shown}` exited with {status}");
    }
    let (secs, kib) = if use_time {
        parse_time(&std::fs::read_to_string(&time_path)?)
            .with_context(|| format!("{TIME} wrote no `%e %M` line"))?
    } else {
        (wall, polled_kib)
    };
    let out = std::fs::read_to_string(&stdout_path)?;
    Ok((secs, kib * 1024, out))
}

/// Fraction of CPU time spent outside idle over one second, from `/proc/stat` (0 where it
/// cannot be read).
fn other_load() -> f64 {
    let sample = || -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait ...: idle time is idle + iowait.
        let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
        Some((fields.iter().sum(), idle))
    };
    let Some((total_a, idle_a)) = sample() else {
        return 0.0;
    };
    std::thread::sleep(Duration::from_secs(1));
    let Some((total_b, idle_b)) = sample() else {
        return 0.0;
    };
    let total = total_b.saturating_sub(total_a).max(1);
    1.0 - idle_b.saturating_sub(idle_a) as f64 / total as f64
}

/// The last `seconds kib` line `/usr/bin/time -f '%e %M'` wrote.
fn parse_time(text: &str) -> Option<(f64, u64)> {
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let mut fields = line.split_whitespace();
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// Waits for `child`, reading its `VmHWM` (peak resident set, KiB) every 20 ms. The mark only
/// grows, so the last reading before exit is at most 20 ms stale.
fn poll_peak_rss(child: &mut std::process::Child) -> Result<(std::process::ExitStatus, u64)> {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            peak = peak.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait()? {
            return Ok((status, peak));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails when the pipelines disagree on anything but near-duplicate decisions.
fn check_agreement(ours: &Outcome, theirs: &Outcome) -> Result<()> {
    let same = [
        ("rows read", ours.read, theirs.read),
        ("rows rejected", ours.rejected, theirs.rejected),
        ("exact duplicates", ours.exact, theirs.exact),
    ];
    for (what, a, b) in same {
        if a != b {
            bail!("ctiforge and pandas disagree on {what}: {a} vs {b}; the pipelines differ");
        }
    }
    let gap = ours.kept.abs_diff(theirs.kept) as f64 / ours.read.max(1) as f64;
    if gap > KEPT_TOLERANCE {
        bail!(
            "ctiforge kept {} rows and pandas {} ({:.2}% of rows read, more than {:.0}%)",
            ours.kept,
            theirs.kept,
            100.0 * gap,
            100.0 * KEPT_TOLERANCE
        );
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn render(rows: usize, ours: &Outcome, theirs: &Outcome) -> String {
    let mut s = String::from(
        "| pipeline | rows read | rejected | exact dup. | near dup. | kept | seconds | rows/s \
         | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, o) in [("ctiforge prep", ours), ("pandas + datasketch", theirs)] {
        s.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {:.0} |\n",
            o.read,
            o.rejected,
            o.exact,
            o.near,
            o.kept,
            o.secs,
            rows as f64 / o.secs,
            mib(o.peak_rss_bytes)
        ));
    }
    s.push_str(&format!(
        "| ctiforge / pandas | | | | | | {:.2} | {:.2} | {:.2} |\n",
        ours.secs / theirs.secs,
        theirs.secs / ours.secs,
        mib(ours.peak_rss_bytes) / mib(theirs.peak_rss_bytes)
    ));
    s
}

/// Copies the first `n` lines of `corpus` to `out`.
fn first_lines(corpus: &Path, out: &Path, n: usize) -> Result<()> {
    use std::io::{BufRead, Write};
    let reader = std::io::BufReader::new(
        std::fs::File::open(corpus).with_context(|| format!("opening {}", corpus.display()))?,
    );
    let mut writer = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    for line in reader.lines().take(n) {
        writeln!(writer, "{}", line?)?;
    }
    writer.flush()?;
    Ok(())
}

/// ctiforge's time and peak memory by corpus size, with the memory each further row adds.
fn render_scaling(runs: &[(usize, Outcome)]) -> String {
    let mut s = String::from(
        "\nctiforge alone on the first rows of the same corpus. Memory added per row: the\n\
         increase in peak memory over the previous size, divided by the rows added.\n\n\
         | rows | seconds | rows/s | peak RSS MiB | bytes per added row |\n|---|---|---|---|---|\n",
    );
    let mut previous: Option<(usize, u64)> = None;
    for &(rows, o) in runs {
        let per_row = match previous {
            Some((n, bytes)) if rows > n => format!(
                "{:.0}",
                o.peak_rss_bytes.saturating_sub(bytes) as f64 / (rows - n) as f64
            ),
            _ => "-".into(),
        };
        s.push_str(&format!(
            "| {rows} | {:.1} | {:.0} | {:.0} | {per_row} |\n",
            o.secs,
            rows as f64 / o.secs,
            mib(o.peak_rss_bytes)
        ));
        previous = Some((rows, o.peak_rss_bytes));
    }
    s
}

/// Writes the tables, with the date, the command and the machine, between the markers.
fn update_doc(path: &Path, rows: usize, table: &str) -> Result<()> {
    let command = if rows == DEFAULT_ROWS {
        "cargo xtask bench-prep".to_owned()
    } else {
        format!("cargo xtask bench-prep --rows {rows}")
    };
    let body = format!(
        "Measured {} with `{command}` ({rows} rows).\nMachine: {}.\n\
         Last row: ctiforge's seconds, rows/s and peak memory divided by pandas'.\n\n\
         {table}",
        today(),
        machine()
    );
    replace_between(path, START, END, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_output_is_parsed_from_its_last_line() {
        let text = "Command exited with non-zero status 1\n12.34 567890\n";
        assert_eq!(parse_time(text), Some((12.34, 567_890)));
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn near_duplicate_differences_are_tolerated_but_rejects_are_not() {
        let ours = Outcome {
            read: 1000,
            rejected: 5,
            exact: 30,
            near: 20,
            kept: 945,
            ..Outcome::default()
        };
        let close = Outcome {
            near: 25,
            kept: 940,
            ..ours
        };
        assert!(check_agreement(&ours, &close).is_ok());
        let other = Outcome {
            rejected: 6,
            ..ours
        };
        assert!(check_agreement(&ours, &other).is_err());
        let far = Outcome { kept: 900, ..ours };
        assert!(check_agreement(&ours, &far).is_err());
    }

    #[test]
    fn recipe_names_absolute_paths_and_the_shared_settings() {
        let text = recipe_text(Path::new("/tmp/corpus-10.jsonl"), 10).expect("recipe");
        assert!(text.contains("path = \"/tmp/corpus-10.jsonl\""), "{text}");
        assert!(text.contains("threshold = 0.8\n"), "{text}");
        assert!(text.contains("enterprise_techniques.tsv\""), "{text}");
    }
}
