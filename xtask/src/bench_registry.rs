//! `cargo xtask bench-registry [--size-mib N] [--repeats R]`: artifact upload and download
//! throughput of ctiforge's MLflow client and of `curl` against the same local `mlflow
//! server` (SQLite backend, artifact proxy on loopback), and ctiforge's peak memory for
//! the transfer of an N MiB file (default 1024, one GiB).
//!
//! ctiforge runs through the `artifact_bench` example of the registry crate, one process
//! per transfer: `upload_artifact` (which hashes the file, then streams it in a PUT to
//! `/api/2.0/mlflow-artifacts/artifacts/...`) and `download_artifact` (which streams the
//! GET into the destination file, hashing as it goes, and syncs it to disk). `curl` does
//! the same PUT and GET with no hashing and no sync. Each transfer is repeated R times
//! (default 3); the table shows the median throughput and the largest peak RSS. Results go
//! between the `<!-- bench-registry:start -->` and `<!-- bench-registry:end -->` markers of
//! `docs/benchmarks.md`.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::ci::reference_env;
use crate::step::{
    Timings, capture, cargo, last_json, machine, median, replace_between, target_dir, today,
};

const START: &str = "<!-- bench-registry:start -->";
const END: &str = "<!-- bench-registry:end -->";

/// Options of the benchmark.
pub struct Options {
    /// Size of the artifact in MiB.
    pub size_mib: u64,
    /// Transfers of each kind.
    pub repeats: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            size_mib: 1024,
            repeats: 3,
        }
    }
}

/// One transfer: seconds and, when known, the peak RSS of the process that made it.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    secs: f64,
    peak_rss_bytes: Option<u64>,
}

/// A local `mlflow server` in its own process group, killed (group and all) on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(python: &Path, dir: &Path) -> Result<Server> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        let log = std::fs::File::create(dir.join("server.log")).context("server.log")?;
        let child = Command::new(python)
            .args([
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--workers",
                "1",
            ])
            .args(["--port", &port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .arg("--serve-artifacts")
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("server.log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} -m mlflow server", python.display()))?;
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        loop {
            let probe = Command::new("curl")
                .args(["-sf", "-o", "/dev/null"])
                .arg(format!("{}/health", server.url))
                .status();
            if probe.is_ok_and(|s| s.success()) {
                break;
            }
            if start.elapsed() > Duration::from_secs(180) {
                bail!(
                    "mlflow server did not answer /health within 180 s; see {}",
                    dir.join("server.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        eprintln!(
            "mlflow server up at {} in {:.1?}",
            server.url,
            start.elapsed()
        );
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("sh")
                .args(["-c", "kill -9 -\"$0\""])
                .arg(self.child.id().to_string())
                .status();
        }
        let _ = self.child.wait();
    }
}

/// Runs the benchmark and updates `docs/benchmarks.md`.
///
/// # Errors
/// The MLflow environment, the build, the server or a transfer fails, or the doc cannot
/// be written.
pub fn run(opts: &Options) -> Result<()> {
    if opts.size_mib == 0 || opts.repeats == 0 {
        bail!("bench-registry: --size-mib and --repeats must be at least 1");
    }
    let mut t = Timings::default();
    let python = t.step("mlflow env", "bash ci/setup-mlflow.sh", || {
        reference_env("ci/setup-mlflow.sh", "CTIFORGE_MLFLOW_PYTHON")
    })?;
    let mut build = cargo();
    build.args([
        "build",
        "--quiet",
        "--workspace",
        "--example",
        "artifact_bench",
    ]);
    t.command(
        "build",
        &mut build,
        "the artifact_bench example must build before it can be measured",
    )?;
    let bench = target_dir().join("debug/examples/artifact_bench");
    let dir = target_dir().join("bench-registry");
    let size = opts.size_mib << 20;
    let blob = dir.join(format!("blob-{}m.bin", opts.size_mib));
    if std::fs::metadata(&blob).map(|m| m.len()).ok() != Some(size) {
        t.step(
            "artifact",
            &format!("{} MiB of noise", opts.size_mib),
            || write_noise(&blob, size),
        )?;
    }
    let work = dir.join("work");
    let _ = std::fs::remove_dir_all(&work);
    let server = t.step("server", "python -m mlflow server", || {
        Server::start(&python, &work.join("server"))
    })?;
    let dest = work.join("download.bin");
    let time = Path::new("/usr/bin/time");

    let (mut ours_up, mut ours_down, mut curl_up, mut curl_down) = (vec![], vec![], vec![], vec![]);
    for r in 0..opts.repeats {
        let model = format!("bench-{r}");
        let name = format!("round {}/{}", r + 1, opts.repeats);
        t.step(&name, "ctiforge and curl, upload and download", || {
            let mut up = Command::new(&bench);
            up.arg("upload").arg(&server.url).arg(&blob).arg(&model);
            let report = last_json(&capture(&mut up)?, "artifact_bench upload")?;
            ours_up.push(reported_transfer(&report)?);
            let version = report
                .get("version")
                .and_then(Value::as_str)
                .context("artifact_bench upload: no version")?
                .to_owned();

            let mut down = Command::new(&bench);
            down.arg("download")
                .arg(&server.url)
                .arg(&model)
                .arg(&version)
                .arg(&dest);
            let report = last_json(&capture(&mut down)?, "artifact_bench download")?;
            ours_down.push(reported_transfer(&report)?);
            check_size(&dest, size)?;
            std::fs::remove_file(&dest)?;

            let url = format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/bench-curl/{r}/blob.bin",
                server.url
            );
            let mut up = Command::new("curl");
            up.args(["-sS", "--fail", "-X", "PUT", "-T"])
                .arg(&blob)
                .arg(&url);
            curl_up.push(timed(&mut up, time)?);
            let mut down = Command::new("curl");
            down.args(["-sS", "--fail", "-o"]).arg(&dest).arg(&url);
            curl_down.push(timed(&mut down, time)?);
            check_size(&dest, size)?;
            std::fs::remove_file(&dest)?;
            Ok(())
        })?;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&work);

    let table = render(
        size,
        &[
            (
                "ctiforge (`upload_artifact` / `download_artifact`)",
                &ours_up,
                &ours_down,
            ),
            (&curl_label(), &curl_up, &curl_down),
        ],
    );
    println!("{table}");
    let command = if opts.size_mib == 1024 && opts.repeats == 3 {
        "cargo xtask bench-registry".to_owned()
    } else {
        format!(
            "cargo xtask bench-registry --size-mib {} --repeats {}",
            opts.size_mib, opts.repeats
        )
    };
    let body = format!(
        "Measured {} with `{command}` ({} MiB artifact, {} rounds).\nMachine: {}.\n\n{table}",
        today(),
        opts.size_mib,
        opts.repeats,
        machine()
    );
    replace_between(
        &crate::step::workspace_root().join("docs/benchmarks.md"),
        START,
        END,
        &body,
    )?;
    eprintln!("\nbench-registry done: {}", t.summary());
    Ok(())
}

/// Runs `cmd` and times it from outside, under `/usr/bin/time -f %M` for the peak RSS
/// when `time` exists (the RSS is unknown otherwise).
fn timed(cmd: &mut Command, time: &Path) -> Result<Transfer> {
    let rss_file = tempfile_path("rss");
    let mut wrapped;
    let cmd = if time.exists() {
        wrapped = Command::new(time);
        wrapped
            .arg("-o")
            .arg(&rss_file)
            .args(["-f", "%M"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        &mut wrapped
    } else {
        cmd
    };
    let start = Instant::now();
    capture(cmd)?;
    let secs = start.elapsed().as_secs_f64();
    let peak_rss_bytes = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| s.trim().lines().last()?.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024);
    let _ = std::fs::remove_file(&rss_file);
    Ok(Transfer {
        secs,
        peak_rss_bytes,
    })
}

/// `curl X.Y.Z (\`-T\` / \`-o\`)`, from `curl --version`.
fn curl_label() -> String {
    let version = capture(Command::new("curl").arg("--version"))
        .ok()
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_default();
    format!("curl {version} (`-T` / `-o`)")
}

fn tempfile_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "xtask-bench-registry-{}-{what}",
        std::process::id()
    ))
}

/// The transfer an `artifact_bench` report gives (its own timing of the call).
fn reported_transfer(v: &Value) -> Result<Transfer> {
    Ok(Transfer {
        secs: v
            .get("secs")
            .and_then(Value::as_f64)
            .context("artifact_bench: no secs")?,
        peak_rss_bytes: v.get("peak_rss_bytes").and_then(Value::as_u64),
    })
}

fn check_size(path: &Path, want: u64) -> Result<()> {
    let got = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if got != want {
        bail!(
            "{}: {got} bytes downloaded, expected {want}",
            path.display()
        );
    }
    Ok(())
}

/// `size` bytes of xorshift noise (incompressible, so no transfer layer can shrink it).
fn write_noise(path: &Path, size: u64) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("partial");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    drop(file);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

type Side<'a> = (&'a str, &'a Vec<Transfer>, &'a Vec<Transfer>);

fn render(size: u64, sides: &[Side<'_>]) -> String {
    let mib = size as f64 / (1024.0 * 1024.0);
    let rate = |t: &[Transfer]| mib / median(&t.iter().map(|t| t.secs).collect::<Vec<_>>());
    let peak = |t: &[Transfer]| {
        t.iter().filter_map(|t| t.peak_rss_bytes).max().map_or_else(
            || "n/a".to_owned(),
            |b| format!("{:.0} MiB", b as f64 / 1048576.0),
        )
    };
    let mut s = String::from(
        "| client | upload MiB/s (median) | download MiB/s (median) | peak RSS upload | peak \
         RSS download |\n|---|---|---|---|---|\n",
    );
    for (name, up, down) in sides {
        s.push_str(&format!(
            "| {name} | {:.0} | {:.0} | {} | {} |\n",
            rate(up),
            rate(down),
            peak(up),
            peak(down)
        ));
    }
    s
}
