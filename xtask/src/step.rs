//! Named, timed steps and the child processes they run.
//!
//! Every piece of work xtask does is a *step*: it prints a header line to stderr, runs,
//! prints its duration, and on failure returns an error that names the step and the
//! command, so the first line of a failed CI log says what broke.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The workspace root: the parent of this crate's manifest directory.
///
/// `cargo run` passes the manifest directory at run time, and that value wins over the
/// one compiled in: CI clones share one target directory, and cargo does not rebuild
/// xtask when only the clone's path changed, so the compiled-in path can name an earlier
/// clone that no longer exists.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), Path::to_path_buf)
}

/// Variables `cargo run` sets for the xtask binary itself. A nested cargo must not inherit
/// them: build scripts such as ring's declare `rerun-if-env-changed` on
/// `CARGO_MANIFEST_DIR` and `CARGO_PKG_*`, so their values (xtask's, and the clone's path)
/// would make every build under xtask disagree with a plain `cargo build`, and with the
/// previous CI run in another clone, and recompile ring, reqwest and all of Polars.
const CARGO_RUN_VARS: [&str; 6] = [
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "OUT_DIR",
];

/// The cargo that launched xtask (`$CARGO`), so nested builds use the same toolchain, with
/// the variables `cargo run` set for xtask removed (see [`CARGO_RUN_VARS`]).
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root());
    for var in CARGO_RUN_VARS {
        cmd.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        if var.to_str().is_some_and(|v| v.starts_with("CARGO_PKG_")) {
            cmd.env_remove(var);
        }
    }
    cmd
}

/// The directory cargo builds into: `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        // Cargo resolves a relative value against the directory it was started in.
        Some(dir) => std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir)),
        None => workspace_root().join("target"),
    }
}

/// Durations of finished steps, for the summary line at the end of a run.
#[derive(Default)]
pub struct Timings(Vec<(String, Duration)>);

impl Timings {
    /// Runs `body` as the step `name`, announcing it with `what` (usually the command).
    ///
    /// # Errors
    /// Returns `body`'s error, wrapped with the step's name and elapsed time.
    pub fn step<T>(
        &mut self,
        name: &str,
        what: &str,
        body: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        eprintln!("\n==> {name}: {what}");
        let start = Instant::now();
        let result = body();
        let elapsed = start.elapsed();
        match &result {
            Ok(_) => eprintln!("==> {name}: ok in {}", secs(elapsed)),
            Err(_) => eprintln!("==> {name}: FAILED after {}", secs(elapsed)),
        }
        self.0.push((name.to_owned(), elapsed));
        result.with_context(|| format!("step `{name}` failed after {}", secs(elapsed)))
    }

    /// Runs `cmd` as the step `name`; `hint` tells the reader how to fix a failure.
    ///
    /// # Errors
    /// Fails if the command cannot start or exits unsuccessfully.
    pub fn command(&mut self, name: &str, cmd: &mut Command, hint: &str) -> Result<()> {
        let shown = display(cmd);
        self.step(name, &shown, || {
            run(cmd)?;
            Ok(())
        })
        .with_context(|| hint.to_owned())
    }

    /// One line listing every step and its duration.
    pub fn summary(&self) -> String {
        let total: Duration = self.0.iter().map(|(_, d)| *d).sum();
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(n, d)| format!("{n} {}", secs(*d)))
            .collect();
        format!("{} (total {})", parts.join(", "), secs(total))
    }
}

/// Runs `cmd` with inherited stdio and fails unless it exits with status 0.
///
/// # Errors
/// Fails if the program cannot be started or exits unsuccessfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` exited with {status}");
    }
    Ok(())
}

/// Runs `cmd`, passing stderr through, and returns its stdout as UTF-8 text.
///
/// # Errors
/// Fails if the program cannot be started, exits unsuccessfully, or prints non-UTF-8.
pub fn capture(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    let output = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !output.status.success() {
        bail!("`{shown}` exited with {}", output.status);
    }
    String::from_utf8(output.stdout).with_context(|| format!("`{shown}` printed non-UTF-8 output"))
}

/// A shell-like rendering of a command and the environment it sets, for messages.
pub fn display(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(key, value)| Some(format!("{}={}", key.display(), quote(value?))))
        .collect();
    let program = Path::new(cmd.get_program());
    let program = program.file_name().unwrap_or(program.as_os_str());
    parts.push(quote(program));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(word: &OsStr) -> String {
    let text = word.to_string_lossy();
    if text.is_empty() || text.contains(|c: char| c.is_whitespace() || "\"'$;&|*".contains(c)) {
        format!("'{}'", text.replace('\'', r"'\''"))
    } else {
        text.into_owned()
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Today's date (UTC) as `YYYY-MM-DD`, or empty when `date` fails.
pub fn today() -> String {
    capture(Command::new("date").arg("-u").arg("+%Y-%m-%d"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The machine a benchmark ran on: CPU model, cores and memory.
pub fn machine() -> String {
    let nproc = capture(&mut Command::new("nproc")).unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            let line = c.lines().find(|l| l.starts_with("model name"))?.to_owned();
            Some(line.split_once(':')?.1.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let free = capture(Command::new("free").arg("-g")).unwrap_or_default();
    let memory = free
        .lines()
        .find(|l| l.starts_with("Mem:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map_or_else(|| "unknown".to_owned(), |g| format!("{g} GiB"));
    format!(
        "{cpu}, {} cores (`nproc`), {memory} memory (`free -g`)",
        nproc.trim()
    )
}

/// Replaces what lies between the `start` and `end` marker lines of the file at `path`
/// with `body` (the markers stay).
///
/// # Errors
/// The file cannot be read or written, or lacks a marker.
pub fn replace_between(path: &Path, start: &str, end: &str, body: &str) -> Result<()> {
    let doc =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (Some(a), Some(b)) = (doc.find(start), doc.find(end)) else {
        bail!("{} lacks the {start} / {end} markers", path.display());
    };
    if b < a {
        bail!("{}: {end} comes before {start}", path.display());
    }
    let new = format!(
        "{}{start}\n{}\n{end}{}",
        &doc[..a],
        body.trim_end(),
        &doc[b + end.len()..]
    );
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

/// The last line of `out` that is a JSON object, parsed: how the benchmark programs report
/// their result after any log lines. `what` names the program in errors.
///
/// # Errors
/// No such line, or one that does not parse.
pub fn last_json(out: &str, what: &str) -> Result<serde_json::Value> {
    let Some(line) = out.lines().rev().find(|l| l.trim_start().starts_with('{')) else {
        bail!("{what} printed no JSON result")
    };
    serde_json::from_str(line).with_context(|| format!("{what}: bad JSON {line}"))
}

/// The median of the finite values (the upper one of an even count); NaN when none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_env_and_quotes_arguments() {
        let mut cmd = Command::new("/usr/bin/cargo");
        cmd.env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--workspace"]);
        assert_eq!(
            display(&cmd),
            "RUSTDOCFLAGS='-D warnings' cargo doc --workspace"
        );
    }

    #[test]
    fn failed_step_names_itself() {
        let mut timings = Timings::default();
        let err = timings
            .step("lint", "nothing", || -> Result<()> { bail!("boom") })
            .expect_err("the body fails");
        assert!(
            format!("{err:#}").starts_with("step `lint` failed after"),
            "{err:#}"
        );
        assert!(timings.summary().starts_with("lint "));
    }
}
