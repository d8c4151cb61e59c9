//! Registering the outputs of a pipeline as one model version: the training run folder,
//! the eval report and the export folder become one registry run (params from the
//! resolved config, step metrics from `metrics.jsonl`, eval metrics, every file as an
//! artifact) and one version pointing at it, tagged with its eval metrics and drift
//! verdict so that [`crate::promote()`] can gate it.
//!
//! Registration is idempotent: the version is keyed by a hash of the model name and every
//! file's SHA-256, so registering the same outputs twice returns the first version.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::drift::{self, DriftVerdict};
use crate::error::{Error, Result};
use crate::names;
use crate::registry::Registry;
use crate::types::{ArtifactRecord, Metric, ModelVersion, PageRequest, RunId, RunStatus, Tags};

/// Sub-folders of a run folder that are not uploaded (resumable checkpoints stay local).
const SKIPPED_DIRS: [&str; 1] = ["checkpoints"];

/// The version tag holding the key of the outputs it was registered from.
pub const TAG_OUTPUTS_KEY: &str = "ctiforge.outputs_key";

/// The training run's summary, whose lineage fields become tags.
const RUN_SUMMARY: &str = "run.json";

/// Lineage fields of `run.json` and the tags they become on the run and the version.
const LINEAGE: [(&str, &str); 3] = [
    ("dataset_fingerprint", "ctiforge.dataset.fingerprint"),
    ("base_model_hash", "ctiforge.base_model.hash"),
    ("code_version", "ctiforge.code_version"),
];

/// Files of a run folder whose contents become run params, first found wins.
const CONFIG_FILES: [&str; 3] = ["config.toml", "train.toml", "config.json"];

/// What to register.
#[derive(Debug, Clone, Default)]
pub struct RegisterRequest {
    /// The registered model's name.
    pub model: String,
    /// The experiment the registry run goes into.
    pub experiment: String,
    /// The registry run's display name (default: the run folder's name, or the model's).
    pub run_name: Option<String>,
    /// A training run folder (`metrics.jsonl`, resolved config, adapter, `run.json`).
    pub run_dir: Option<PathBuf>,
    /// An eval report: a folder holding `eval.json`, or the `eval.json` file itself.
    pub eval: Option<PathBuf>,
    /// An export folder (`.gguf`, `Modelfile`, `export.json`).
    pub export_dir: Option<PathBuf>,
    /// More files to attach, stored under `files/`.
    pub files: Vec<PathBuf>,
    /// Tags for the run and the version.
    pub tags: Tags,
    /// The drift verdict to record as the version's `drift.verdict` tag.
    pub drift: Option<DriftVerdict>,
    /// A drift report folder (`drift.json`, `drift.html`): its verdict and statistics
    /// become version tags (overriding `drift`) and its files are stored under `drift/`.
    pub drift_dir: Option<PathBuf>,
    /// The idempotency key (default: derived from the model name and the files' hashes).
    pub key: Option<String>,
}

/// What [`register`] did.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The registry run holding the artifacts.
    pub run: RunId,
    /// The version (the existing one when these outputs were registered before).
    pub version: ModelVersion,
    /// Metrics logged to the run (step metrics and eval metrics).
    pub metrics_logged: usize,
    /// Params logged to the run.
    pub params_logged: usize,
}

/// One local file and where it goes in the run's artifacts.
struct Upload {
    local: PathBuf,
    artifact: String,
}

/// Creates a run holding every file of the request, logs its params and metrics, and
/// registers a version of `request.model` from it.
///
/// # Errors
/// A folder or file that does not exist or cannot be read; a malformed `metrics.jsonl`
/// line, config or `eval.json` (named with its line); nothing to register; a backend
/// failure.
pub fn register(registry: &dyn Registry, request: &RegisterRequest) -> Result<Registered> {
    let uploads = plan_uploads(request)?;
    if uploads.is_empty() {
        return Err(Error::invalid(
            "register",
            "nothing to register: give a run folder, an eval report, an export folder or files",
        ));
    }
    let key = match &request.key {
        Some(k) => k.clone(),
        None => default_key(&request.model, &uploads)?,
    };
    if let Some(version) = find_registered(registry, &request.model, &key)? {
        tracing::info!(
            model = %request.model,
            version = %version.version,
            "these outputs are already registered"
        );
        return Ok(Registered {
            run: version.run_id.clone(),
            version,
            metrics_logged: 0,
            params_logged: 0,
        });
    }
    let params = match &request.run_dir {
        Some(dir) => config_params(dir)?,
        None => Tags::new(),
    };
    let mut metrics = match &request.run_dir {
        Some(dir) => step_metrics(&dir.join("metrics.jsonl"))?,
        None => Vec::new(),
    };
    let eval_metrics = match &request.eval {
        Some(path) => eval_metrics(&eval_file(path))?,
        None => BTreeMap::new(),
    };
    metrics.extend(
        eval_metrics
            .iter()
            .map(|(k, v)| Metric::now(format!("{}{k}", names::TAG_EVAL_PREFIX), *v, 0)),
    );

    let run_name = request.run_name.clone().unwrap_or_else(|| {
        request
            .run_dir
            .as_deref()
            .and_then(Path::file_name)
            .map_or_else(
                || request.model.clone(),
                |n| n.to_string_lossy().into_owned(),
            )
    });
    let mut run_tags = request.tags.clone();
    if let Some(dir) = &request.run_dir {
        run_tags.extend(lineage_tags(dir)?);
    }
    let run = registry.create_run(&request.experiment, &run_name, &run_tags)?;
    let outcome = fill_run(registry, &run, &uploads, &params, &metrics);
    let artifacts = match outcome {
        Ok(a) => a,
        Err(e) => {
            // Leave the run visibly failed rather than running forever.
            let _ = registry.finish_run(&run, RunStatus::Failed);
            return Err(e);
        }
    };
    registry.finish_run(&run, RunStatus::Finished)?;

    let mut tags = run_tags;
    tags.insert(TAG_OUTPUTS_KEY.to_string(), key.clone());
    for (k, v) in &eval_metrics {
        tags.insert(format!("{}{k}", names::TAG_EVAL_PREFIX), format!("{v}"));
    }
    if let Some(verdict) = request.drift {
        tags.insert(drift::TAG_VERDICT.to_string(), verdict.to_string());
    }
    if let Some(dir) = &request.drift_dir {
        tags.extend(drift_tags(dir)?);
    }
    let version = registry.register_version(&request.model, &run, &artifacts, &tags, &key)?;
    Ok(Registered {
        run,
        version,
        metrics_logged: metrics.len(),
        params_logged: params.len(),
    })
}

/// The version of `model` registered from the outputs with `key`, if any.
fn find_registered(
    registry: &dyn Registry,
    model: &str,
    key: &str,
) -> Result<Option<ModelVersion>> {
    if !registry.list_models()?.iter().any(|m| m == model) {
        return Ok(None);
    }
    let mut page = PageRequest::default();
    loop {
        let versions = registry.list_versions(model, &page)?;
        if let Some(v) = versions
            .items
            .into_iter()
            .find(|v| v.tags.get(TAG_OUTPUTS_KEY).is_some_and(|k| k == key))
        {
            return Ok(Some(v));
        }
        match versions.next_token {
            Some(token) => page.token = Some(token),
            None => return Ok(None),
        }
    }
}

/// Logs params and metrics and uploads every file to `run`.
fn fill_run(
    registry: &dyn Registry,
    run: &RunId,
    uploads: &[Upload],
    params: &Tags,
    metrics: &[Metric],
) -> Result<Vec<ArtifactRecord>> {
    if !params.is_empty() {
        registry.log_params(run, params)?;
    }
    if !metrics.is_empty() {
        registry.log_metrics(run, metrics)?;
    }
    uploads
        .iter()
        .map(|u| registry.upload_artifact(run, &u.local, &u.artifact))
        .collect()
}

/// Every file to upload, with its artifact path, sorted by artifact path.
fn plan_uploads(request: &RegisterRequest) -> Result<Vec<Upload>> {
    let mut out = Vec::new();
    if let Some(dir) = &request.run_dir {
        walk(dir, "run", &mut out)?;
    }
    if let Some(eval) = &request.eval {
        if eval.is_dir() {
            walk(eval, "eval", &mut out)?;
        } else {
            out.push(file_upload(eval, "eval")?);
        }
    }
    if let Some(dir) = &request.export_dir {
        walk(dir, "export", &mut out)?;
    }
    if let Some(dir) = &request.drift_dir {
        walk(dir, "drift", &mut out)?;
    }
    for f in &request.files {
        out.push(file_upload(f, "files")?);
    }
    out.sort_by(|a, b| a.artifact.cmp(&b.artifact));
    if let Some(w) = out.windows(2).find(|w| w[0].artifact == w[1].artifact) {
        return Err(Error::invalid(
            "register",
            format!(
                "two files would be stored as {:?} ({} and {})",
                w[0].artifact,
                w[0].local.display(),
                w[1].local.display()
            ),
        ));
    }
    Ok(out)
}

fn file_upload(path: &Path, prefix: &str) -> Result<Upload> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::invalid(
            path.display().to_string(),
            "is not a file".to_string(),
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Upload {
        local: path.to_path_buf(),
        artifact: format!("{prefix}/{name}"),
    })
}

/// Adds the files under `dir` (recursively, skipping [`SKIPPED_DIRS`] and hidden entries).
fn walk(dir: &Path, prefix: &str, out: &mut Vec<Upload>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                walk(&path, &format!("{prefix}/{name}"), out)?;
            }
        } else if kind.is_file() {
            out.push(Upload {
                local: path,
                artifact: format!("{prefix}/{name}"),
            });
        }
    }
    Ok(())
}

/// Dataset and base-model lineage from the run folder's `run.json` (none without one).
fn lineage_tags(dir: &Path) -> Result<Tags> {
    let path = dir.join(RUN_SUMMARY);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tags::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
    Ok(LINEAGE
        .iter()
        .filter_map(|(field, tag)| {
            let value = json.get(field)?.as_str()?;
            Some(((*tag).to_string(), value.to_string()))
        })
        .collect())
}

/// The tags of the drift report in `dir` (its verdict and each statistic).
fn drift_tags(dir: &Path) -> Result<Tags> {
    let path = dir.join(drift::JSON_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let report: drift::DriftReport = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(
            path.display().to_string(),
            format!("not a drift report: {e}"),
        )
    })?;
    Ok(report.tags())
}

/// `sha256(model NUL (artifact NUL sha256 NL)*)`: the same outputs give the same key.
fn default_key(model: &str, uploads: &[Upload]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update([0]);
    for u in uploads {
        h.update(u.artifact.as_bytes());
        h.update([0]);
        h.update(sha256_file(&u.local)?.as_bytes());
        h.update(b"\n");
    }
    Ok(format!("{:x}", h.finalize()))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(format!("{:x}", h.finalize()))
}

/// The run's resolved config as dotted params (`lora.rank = "16"`), from the first of
/// [`CONFIG_FILES`] present; none present gives no params.
fn config_params(dir: &Path) -> Result<Tags> {
    let Some(path) = CONFIG_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
    else {
        return Ok(Tags::new());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let value: Value = if path.extension().is_some_and(|e| e == "toml") {
        let t: toml::Value = toml::from_str(&text)
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
        serde_json::to_value(t)
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?
    } else {
        serde_json::from_str(&text)
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?
    };
    let mut out = Tags::new();
    flatten_params("", &value, &mut out);
    Ok(out)
}

fn flatten_params(prefix: &str, value: &Value, out: &mut Tags) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten_params(&join(k), v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The numeric fields of each `metrics.jsonl` line as metrics at that line's `step`
/// (`step` and `epoch` themselves are not metrics). A missing file gives none.
fn step_metrics(path: &Path) -> Result<Vec<Metric>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), i + 1);
        let row: serde_json::Map<String, Value> =
            serde_json::from_str(&line).map_err(|e| Error::invalid(at(), e.to_string()))?;
        let step = row
            .get("step")
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::invalid(at(), "no non-negative integer `step`"))?;
        for (k, v) in &row {
            if k == "step" || k == "epoch" {
                continue;
            }
            if let Some(x) = v.as_f64().filter(|x| x.is_finite()) {
                out.push(Metric::now(k.clone(), x, step));
            }
        }
    }
    Ok(out)
}

/// `eval.json` inside a report folder, or the file itself.
fn eval_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(names::EVAL_ARTIFACT)
    } else {
        path.to_path_buf()
    }
}

/// The numeric leaves of an eval report (under `metrics` or `overall` when present), as
/// dotted names.
fn eval_metrics(path: &Path) -> Result<BTreeMap<String, f64>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
    let root = json
        .get("metrics")
        .or_else(|| json.get("overall"))
        .unwrap_or(&json);
    let mut out = BTreeMap::new();
    numeric_leaves("", root, &mut out);
    Ok(out)
}

fn numeric_leaves(prefix: &str, value: &Value, out: &mut BTreeMap<String, f64>) {
    match value {
        Value::Number(n) => {
            if let Some(x) = n.as_f64().filter(|x| x.is_finite()) {
                out.insert(prefix.to_string(), x);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                numeric_leaves(&path, v, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }

    fn outputs(root: &Path) -> RegisterRequest {
        let run = root.join("run-1");
        write(
            &run.join("config.toml"),
            "[lora]\nrank = 8\ntargets = [\"q_proj\"]\n",
        );
        write(
            &run.join("metrics.jsonl"),
            "{\"step\":1,\"epoch\":0,\"loss\":2.5,\"lr\":0.001}\n\
             {\"step\":2,\"epoch\":0,\"loss\":2.0,\"lr\":0.002}\n",
        );
        write(&run.join("adapter_model.safetensors"), "weights");
        write(
            &run.join("run.json"),
            "{\"dataset_fingerprint\":\"sha256:abc\",\"base_model_hash\":\"f00\",\"steps\":2}",
        );
        write(&run.join("checkpoints/step-2/state.bin"), "not uploaded");
        write(
            &root.join("eval/eval.json"),
            "{\"metrics\":{\"technique\":{\"micro_f1\":0.42},\"perplexity\":7.5}}",
        );
        write(&root.join("export/model.gguf"), "GGUF");
        RegisterRequest {
            model: "cti-tiny".into(),
            experiment: "ctiforge".into(),
            run_dir: Some(run),
            eval: Some(root.join("eval")),
            export_dir: Some(root.join("export")),
            drift: Some(DriftVerdict::Pass),
            ..RegisterRequest::default()
        }
    }

    #[test]
    fn registers_every_output_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(&dir.path().join("registry")).expect("open");
        let request = outputs(dir.path());
        let first = register(&store, &request).expect("register");
        let paths: Vec<&str> = first
            .version
            .artifacts
            .iter()
            .map(|a| a.path.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "eval/eval.json",
                "export/model.gguf",
                "run/adapter_model.safetensors",
                "run/config.toml",
                "run/metrics.jsonl",
                "run/run.json"
            ]
        );
        let tags = &first.version.tags;
        assert_eq!(tags["eval.technique.micro_f1"], "0.42");
        assert_eq!(tags[drift::TAG_VERDICT], "pass");
        assert_eq!(tags["ctiforge.dataset.fingerprint"], "sha256:abc");
        assert_eq!(tags["ctiforge.base_model.hash"], "f00");
        let run = store.get_run(&first.run).expect("run");
        assert_eq!(run.params["lora.rank"], "8");
        assert_eq!(run.params["lora.targets"], "[\"q_proj\"]");
        assert_eq!(run.metrics["loss"], 2.0);
        assert_eq!(run.metrics["eval.perplexity"], 7.5);
        assert_eq!(run.status, RunStatus::Finished);
        let metrics = crate::promote::version_metrics(&store, &first.version).expect("metrics");
        assert_eq!(metrics["technique.micro_f1"], 0.42);

        // The same outputs again: the same version, and no second run.
        let again = register(&store, &request).expect("register again");
        assert_eq!(again.version.version, first.version.version);
        assert_eq!(again.run, first.run);
        // Changed outputs: a new version.
        write(&dir.path().join("export/model.gguf"), "GGUF v2");
        let next = register(&store, &request).expect("register changed");
        assert_ne!(next.version.version, first.version.version);
    }

    #[test]
    fn bad_metrics_lines_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(&dir.path().join("registry")).expect("open");
        let request = outputs(dir.path());
        let run_dir = request.run_dir.clone().expect("run dir");
        write(
            &run_dir.join("metrics.jsonl"),
            "{\"step\":1,\"loss\":2.5}\n{\"loss\":2.0}\n",
        );
        let err = register(&store, &request)
            .expect_err("bad line")
            .to_string();
        assert!(err.contains("metrics.jsonl line 2"), "{err}");
        let empty = RegisterRequest {
            model: "m".into(),
            experiment: "e".into(),
            ..RegisterRequest::default()
        };
        let err = register(&store, &empty).expect_err("empty").to_string();
        assert!(err.contains("nothing to register"), "{err}");
    }
}
