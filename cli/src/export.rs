//! `ctiforge export gguf`: an HF Llama/Mistral folder (optionally with a LoRA adapter
//! merged in) to a (quantized) GGUF file that llama.cpp and Ollama load, with an Ollama
//! `Modelfile` and `export.json` (SHA-256, types, measured quality) beside it;
//! `export lora`: an adapter as a llama.cpp `--lora` GGUF; `export merge`: an adapter
//! merged into its base as an HF folder; `export inspect`: a GGUF file's header, metadata
//! and tensor table.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ctiforge_export::gguf::inspect;
use ctiforge_export::merge::MergeDtype;
use ctiforge_export::{
    ExportOptions, FileType, GgmlType, LoraExportOptions, MergeOptions, QualityOptions,
    export_gguf, export_lora_gguf, merge_adapter,
};

/// `ctiforge export ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Convert a model folder to GGUF (f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, ...),
    /// with a Modelfile and export.json (SHA-256, types, quality) beside it.
    Gguf(GgufArgs),
    /// Write a LoRA adapter as a GGUF adapter for llama.cpp's `--lora`.
    Lora(LoraArgs),
    /// Merge a LoRA adapter into its base model, writing an HF folder.
    Merge(MergeArgs),
    /// Print a GGUF file's header, metadata and tensors.
    Inspect(InspectArgs),
}

/// Arguments of `export gguf`.
#[derive(Debug, Args)]
pub struct GgufArgs {
    /// The model folder (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter folder (a training run) to merge before converting.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Whole-file type as llama.cpp names it: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0,
    /// q5_1, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k.
    #[arg(long, default_value = "f16")]
    quant: String,
    /// The .gguf file to write.
    #[arg(long)]
    out: PathBuf,
    /// `general.name` (default: the model folder's name).
    #[arg(long)]
    name: Option<String>,
    /// llama.cpp's pre-tokenizer name for byte-level BPE vocabularies (e.g. `llama-bpe`,
    /// `gpt-2`).
    #[arg(long, default_value = "default")]
    pre_tokenizer: String,
    /// Measure quality on these texts (one per line) instead of the built-in CTI sample.
    #[arg(long, conflicts_with = "no_quality")]
    quality_text: Option<PathBuf>,
    /// Skip the quality measurement (KL divergence and perplexity against the source).
    #[arg(long)]
    no_quality: bool,
    /// Replace `--out`, its Modelfile and export.json if they exist.
    #[arg(long)]
    force: bool,
    /// Print export.json on stdout.
    #[arg(long)]
    json: bool,
}

/// Arguments of `export lora`.
#[derive(Debug, Args)]
pub struct LoraArgs {
    /// The base model folder the adapter was trained on.
    #[arg(long)]
    model: PathBuf,
    /// The PEFT adapter folder (adapter_config.json, adapter_model.safetensors).
    #[arg(long)]
    adapter: PathBuf,
    /// The .gguf file to write.
    #[arg(long)]
    out: PathBuf,
    /// Store the adapter in F16 instead of F32.
    #[arg(long)]
    f16: bool,
    /// `general.name` (default: the adapter folder's name).
    #[arg(long)]
    name: Option<String>,
    /// Replace `--out` if it exists.
    #[arg(long)]
    force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `export merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The base model folder.
    #[arg(long)]
    model: PathBuf,
    /// The PEFT adapter folder.
    #[arg(long)]
    adapter: PathBuf,
    /// The HF folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Store merged tensors as F32 instead of the base's dtype.
    #[arg(long)]
    f32: bool,
    /// Replace `--out` if it exists.
    #[arg(long)]
    force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `export inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The GGUF file.
    file: PathBuf,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs an export command.
pub fn run(cmd: &ExportCommand) -> Result<()> {
    match cmd {
        ExportCommand::Gguf(a) => gguf(a),
        ExportCommand::Lora(a) => lora(a),
        ExportCommand::Merge(a) => merge(a),
        ExportCommand::Inspect(a) => show(a),
    }
}

fn gguf(a: &GgufArgs) -> Result<()> {
    let quant: FileType = a.quant.parse().context("--quant")?;
    let quality = match (&a.quality_text, a.no_quality) {
        (_, true) => None,
        (Some(path), false) => Some(
            QualityOptions::from_file(path, 64)
                .with_context(|| format!("--quality-text {}", path.display()))?,
        ),
        (None, false) => Some(QualityOptions::default()),
    };
    let opts = ExportOptions {
        model_dir: a.model.clone(),
        adapter_dir: a.adapter.clone(),
        quant,
        out: a.out.clone(),
        force: a.force,
        name: a.name.clone(),
        pre_tokenizer: a.pre_tokenizer.clone(),
        quality,
    };
    let report = export_gguf(&opts)
        .with_context(|| format!("exporting {} to {}", a.model.display(), a.out.display()))?;
    let m = &report.manifest;
    if a.json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(());
    }
    eprintln!(
        "wrote {} ({}, {:.1} MiB, sha256 {}) in {:.1}s",
        report.gguf.display(),
        m.quant,
        m.file_bytes as f64 / (1024.0 * 1024.0),
        m.sha256,
        m.elapsed_secs
    );
    if let Some(q) = &m.quality {
        eprintln!(
            "quality on {} positions: mean KL {:.3e}, max KL {:.3e}, top-1 agreement {:.3}, \
             perplexity {:.3} -> {:.3} ({:+.2}%)",
            q.n_positions,
            q.mean_kl,
            q.max_kl,
            q.top1_agreement,
            q.ppl_base,
            q.ppl_export,
            q.ppl_change_pct
        );
    }
    eprintln!(
        "also wrote {} and {}",
        report.modelfile.display(),
        report.manifest_path.display()
    );
    println!("{}", report.gguf.display());
    Ok(())
}

fn lora(a: &LoraArgs) -> Result<()> {
    let opts = LoraExportOptions {
        model_dir: a.model.clone(),
        adapter_dir: a.adapter.clone(),
        out: a.out.clone(),
        force: a.force,
        name: a.name.clone(),
        ty: if a.f16 { GgmlType::F16 } else { GgmlType::F32 },
    };
    let report = export_lora_gguf(&opts)
        .with_context(|| format!("exporting adapter {}", a.adapter.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        eprintln!(
            "wrote {} ({} modules, alpha {}, {} bytes)",
            report.path.display(),
            report.n_modules,
            report.alpha,
            report.file_bytes
        );
        println!("{}", report.path.display());
    }
    Ok(())
}

/// Runs `export merge` (also `ctiforge merge`).
pub fn merge(a: &MergeArgs) -> Result<()> {
    let opts = MergeOptions {
        force: a.force,
        dtype: if a.f32 {
            MergeDtype::F32
        } else {
            MergeDtype::Base
        },
    };
    let report = merge_adapter(&a.model, &a.adapter, &a.out, &opts)
        .with_context(|| format!("merging {} into {}", a.adapter.display(), a.model.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        eprintln!(
            "merged {} modules (rank {}) into {}",
            report.merged_modules,
            report.rank,
            report.out_dir.display()
        );
        println!("{}", report.out_dir.display());
    }
    Ok(())
}

fn show(a: &InspectArgs) -> Result<()> {
    let s = inspect(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "{}: GGUF v{}, {} bytes, alignment {}, data at {}",
        s.path.display(),
        s.version,
        s.file_bytes,
        s.alignment,
        s.data_offset
    );
    println!("metadata ({}):", s.metadata.len());
    for kv in &s.metadata {
        println!("  {:<40} {:?} = {}", kv.key, kv.value_type, kv.value);
    }
    println!("tensors ({}):", s.tensors.len());
    for t in &s.tensors {
        let dims: Vec<String> = t.dims.iter().map(u64::to_string).collect();
        println!(
            "  {:<32} {:<6} [{}] {} bytes",
            t.name,
            t.ty.to_string(),
            dims.join(", "),
            t.size_bytes
        );
    }
    Ok(())
}
