//! The export job ([`export_gguf`]): optional LoRA merge into a temporary folder, HF → GGUF
//! conversion, the quality measurement against the unquantised model, and the Ollama
//! `Modelfile` and `export.json` beside the GGUF. Everything is built in a temporary
//! folder next to the target and renamed into place (GGUF, then `Modelfile`, then
//! `export.json`, whose presence marks a complete export). Spec: issue 6 and DESIGN.md's
//! Export artifact.

pub mod hash;
pub mod modelfile;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use modelfile::{Modelfile, TemplateFamily, build_modelfile};

use crate::convert::hf::HfConfig;
use crate::convert::{ConvertOptions, hf_to_gguf};
use crate::error::{Error, Result};
use crate::merge::{MergeOptions, MergeReport, merge_adapter};
use crate::quality::{QualityOptions, QualityReport, measure_quality};
use crate::quant::FileType;

/// The Ollama Modelfile written beside the GGUF.
pub const MODELFILE: &str = "Modelfile";
/// The export manifest written beside the GGUF.
pub const MANIFEST: &str = "export.json";
/// `format` of `export.json`.
pub const MANIFEST_FORMAT: &str = "ctiforge-export/1";

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The base (or already merged) HF model folder.
    pub model_dir: PathBuf,
    /// A PEFT LoRA adapter folder to merge first.
    pub adapter_dir: Option<PathBuf>,
    /// Whole-file quantization.
    pub quant: FileType,
    /// The `.gguf` file to write; `Modelfile` and `export.json` go beside it.
    pub out: PathBuf,
    /// Replace existing outputs.
    pub force: bool,
    /// `general.name` (default: the model folder's name).
    pub name: Option<String>,
    /// llama.cpp pre-tokenizer for byte-level BPE vocabularies (see [`ConvertOptions`]).
    pub pre_tokenizer: String,
    /// Quality measurement; `None` skips it.
    pub quality: Option<QualityOptions>,
}

/// The source model in `export.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SourceInfo {
    /// The model folder as given.
    pub model_dir: PathBuf,
    /// [`hash::sha256_folder`] of it.
    pub model_sha256: String,
    /// `model_type` from `config.json`.
    pub model_type: Option<String>,
}

/// The merged adapter in `export.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AdapterInfo {
    /// The adapter folder.
    pub adapter_dir: PathBuf,
    /// [`hash::sha256_folder`] of it.
    pub adapter_sha256: String,
    /// Modules merged.
    pub merged_modules: usize,
    /// Default rank.
    pub rank: usize,
    /// Default alpha.
    pub alpha: f64,
    /// rsLoRA scaling.
    pub rslora: bool,
}

/// One tensor of the GGUF in `export.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TensorEntry {
    /// GGUF name.
    pub name: String,
    /// ggml type name.
    #[serde(rename = "type")]
    pub ty: String,
}

/// `export.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExportManifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// The GGUF file name (beside `export.json`).
    pub gguf: String,
    /// Whole-file type (`Q4_K_M`).
    pub quant: String,
    /// Its `general.file_type` id.
    pub file_type_id: u32,
    /// GGUF size in bytes.
    pub file_bytes: u64,
    /// GGUF SHA-256 (hex).
    pub sha256: String,
    /// Tensor count per ggml type.
    pub tensor_types: BTreeMap<String, usize>,
    /// Every tensor and its type, in file order.
    pub tensors: Vec<TensorEntry>,
    /// Vocabulary size written.
    pub n_tokens: usize,
    /// Quality against the unquantised model, when measured.
    pub quality: Option<QualityReport>,
    /// The source model.
    pub source: SourceInfo,
    /// The merged adapter, if any.
    pub adapter: Option<AdapterInfo>,
    /// The Modelfile's template family.
    pub template_family: TemplateFamily,
    /// The Modelfile's stop strings.
    pub stop: Vec<String>,
    /// `tokenizer.ggml.pre` requested.
    pub pre_tokenizer: String,
    /// Version of ctiforge-export that wrote it.
    pub ctiforge_version: String,
    /// Seconds since the Unix epoch when written.
    pub created_unix: u64,
    /// Wall time of the whole export in seconds.
    pub elapsed_secs: f64,
}

/// What [`export_gguf`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    /// The GGUF.
    pub gguf: PathBuf,
    /// The Modelfile.
    pub modelfile: PathBuf,
    /// `export.json`.
    pub manifest_path: PathBuf,
    /// Its content.
    pub manifest: ExportManifest,
}

/// Runs the export described by `opts`.
///
/// # Errors
/// [`Error::Exists`] if the GGUF, `Modelfile` or `export.json` exists without `force`;
/// [`Error::Architecture`] for a model llama.cpp cannot load as `llama`; the errors of
/// [`merge_adapter`] (an adapter for a different base names the tensor and both shapes),
/// [`hf_to_gguf`] and [`measure_quality`].
pub fn export_gguf(opts: &ExportOptions) -> Result<ExportReport> {
    let started = Instant::now();
    let parent = opts
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let file_name = opts
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Invalid(format!("{}: not a file path", opts.out.display())))?;
    let targets = [
        opts.out.clone(),
        parent.join(MODELFILE),
        parent.join(MANIFEST),
    ];
    if !opts.force
        && let Some(t) = targets.iter().find(|t| t.exists())
    {
        return Err(Error::Exists(t.clone()));
    }
    let cfg = HfConfig::read(&opts.model_dir)?;
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let work = tempfile::Builder::new()
        .prefix(".ctiforge-export-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;

    let mut merged: Option<MergeReport> = None;
    let source_dir = match &opts.adapter_dir {
        Some(adapter) => {
            let dir = work.path().join("merged");
            merged = Some(merge_adapter(
                &opts.model_dir,
                adapter,
                &dir,
                &MergeOptions::default(),
            )?);
            dir
        }
        None => opts.model_dir.clone(),
    };
    let staged_gguf = work.path().join(&file_name);
    let name = opts.name.clone().or_else(|| {
        opts.model_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    });
    let convert = hf_to_gguf(
        &source_dir,
        &staged_gguf,
        &ConvertOptions {
            file_type: opts.quant,
            overwrite: false,
            name,
            pre_tokenizer: opts.pre_tokenizer.clone(),
        },
    )?;
    let quality = match &opts.quality {
        Some(q) => Some(measure_quality(&source_dir, &staged_gguf, q)?),
        None => None,
    };
    let modelfile = build_modelfile(&file_name, &source_dir)?;
    let mut tensor_types = BTreeMap::new();
    for (_, ty) in &convert.tensors {
        *tensor_types.entry(ty.name().to_string()).or_insert(0) += 1;
    }
    let adapter = match (&opts.adapter_dir, &merged) {
        (Some(dir), Some(m)) => Some(AdapterInfo {
            adapter_dir: dir.clone(),
            adapter_sha256: hash::sha256_folder(dir)?,
            merged_modules: m.merged_modules,
            rank: m.rank,
            alpha: m.alpha,
            rslora: m.rslora,
        }),
        _ => None,
    };
    let manifest = ExportManifest {
        format: MANIFEST_FORMAT.into(),
        gguf: file_name.clone(),
        quant: opts.quant.name().into(),
        file_type_id: opts.quant.id(),
        file_bytes: convert.file_bytes,
        sha256: hash::sha256_file(&staged_gguf)?,
        tensor_types,
        tensors: convert
            .tensors
            .iter()
            .map(|(n, t)| TensorEntry {
                name: n.clone(),
                ty: t.name().into(),
            })
            .collect(),
        n_tokens: convert.n_tokens,
        quality,
        source: SourceInfo {
            model_dir: opts.model_dir.clone(),
            model_sha256: hash::sha256_folder(&opts.model_dir)?,
            model_type: cfg.model_type.clone(),
        },
        adapter,
        template_family: modelfile.family,
        stop: modelfile.stop.clone(),
        pre_tokenizer: opts.pre_tokenizer.clone(),
        ctiforge_version: env!("CARGO_PKG_VERSION").into(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        elapsed_secs: started.elapsed().as_secs_f64(),
    };
    let staged_modelfile = work.path().join(MODELFILE);
    let staged_manifest = work.path().join(MANIFEST);
    write_file(&staged_modelfile, modelfile.text.as_bytes())?;
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Invalid(format!("{MANIFEST}: {e}")))?;
    write_file(&staged_manifest, &json)?;
    // Same filesystem, so each rename is atomic; export.json last marks completion.
    for (from, to) in [staged_gguf, staged_modelfile, staged_manifest]
        .iter()
        .zip(&targets)
    {
        std::fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    }
    tracing::info!(gguf = %opts.out.display(), quant = %opts.quant,
        bytes = manifest.file_bytes, secs = format!("{:.2}", manifest.elapsed_secs), "exported");
    Ok(ExportReport {
        gguf: opts.out.clone(),
        modelfile: targets[1].clone(),
        manifest_path: targets[2].clone(),
        manifest,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}
