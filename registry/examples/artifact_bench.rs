//! One timed artifact transfer through an MLflow tracking server's artifact proxy, for
//! `cargo xtask bench-registry` (which runs `curl` against the same server for comparison).
//!
//! ```text
//! artifact_bench upload URL FILE MODEL
//!     creates a run, uploads FILE as `blob.bin` (the SHA-256 is computed first, as every
//!     upload does), finishes the run and registers it as a version of MODEL
//! artifact_bench download URL MODEL VERSION DEST
//!     downloads that version's `blob.bin` to DEST (hashing while it streams)
//! ```
//!
//! Prints one JSON line: `secs` (the transfer call alone), `size_bytes`, `peak_rss_bytes`
//! (the process's `VmHWM`), and for an upload the `version` registered.

use std::error::Error;
use std::path::Path;
use std::time::Instant;

use ctiforge_registry::{MlflowConfig, MlflowRegistry, Registry, RunStatus, Tags};

const ARTIFACT: &str = "blob.bin";

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let line = match args.as_slice() {
        ["upload", url, file, model] => upload(url, Path::new(file), model)?,
        ["download", url, model, version, dest] => download(url, model, version, Path::new(dest))?,
        _ => {
            return Err("usage: artifact_bench upload URL FILE MODEL | \
                        artifact_bench download URL MODEL VERSION DEST"
                .into());
        }
    };
    println!("{line}");
    Ok(())
}

fn registry(url: &str) -> Result<MlflowRegistry, Box<dyn Error>> {
    Ok(MlflowRegistry::new(MlflowConfig::new(url)?)?)
}

fn upload(url: &str, file: &Path, model: &str) -> Result<serde_json::Value, Box<dyn Error>> {
    let reg = registry(url)?;
    let run = reg.create_run("bench-registry", model, &Tags::new())?;
    let start = Instant::now();
    let record = reg.upload_artifact(&run, file, ARTIFACT)?;
    let secs = start.elapsed().as_secs_f64();
    reg.finish_run(&run, RunStatus::Finished)?;
    let version = reg.register_version(
        model,
        &run,
        std::slice::from_ref(&record),
        &Tags::new(),
        run.as_str(),
    )?;
    Ok(serde_json::json!({
        "secs": secs,
        "size_bytes": record.size_bytes,
        "peak_rss_bytes": peak_rss_bytes(),
        "version": version.version,
    }))
}

fn download(
    url: &str,
    model: &str,
    version: &str,
    dest: &Path,
) -> Result<serde_json::Value, Box<dyn Error>> {
    let reg = registry(url)?;
    let version = reg.get_version(model, version)?;
    let start = Instant::now();
    let record = reg.download_artifact(&version, ARTIFACT, dest)?;
    let secs = start.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "secs": secs,
        "size_bytes": record.size_bytes,
        "peak_rss_bytes": peak_rss_bytes(),
    }))
}

/// The process's peak resident set (`VmHWM` in `/proc/self/status`), when Linux reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
