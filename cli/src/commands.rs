//! The subcommands: argument structs and the thin glue from them to library calls.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ctiforge_model::chat::{ChatMessage, select_template};
use ctiforge_model::init::{InitSpec, Preset, init_model, parse_override};
use ctiforge_model::weights::SaveDtype;
use ctiforge_model::{Architecture, Generated, LoadedModel, SamplingConfig, parse_device};
use serde_json::json;

use crate::settings::{self, GenerateFile, GenerateSettings};

/// The bundled model the demo uses when `--model` is not given.
const BUNDLED_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../datasets/models/aidreams260K"
);

/// `ctiforge model ...`
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Create a new model folder with seeded random weights and a BPE tokenizer.
    Init(InitArgs),
    /// Print architecture, parameter count, dtype and memory estimate.
    Inspect(InspectArgs),
    /// Print the logits at every position of a token sequence (for parity checks).
    Logits(LogitsArgs),
    /// Measure prompt-processing and generation throughput (tokens per second).
    Bench(BenchArgs),
}

/// Arguments of `ctiforge model bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A model folder or a Hugging Face id in the hub cache.
    #[arg(long)]
    model: String,
    /// Prompt length.
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens decoded after the prompt.
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Timed runs (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Device: cpu, cuda:N, rocm:N, wgpu (those compiled in).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Arguments of `ctiforge model init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Architecture: llama or mistral.
    #[arg(long, default_value = "llama")]
    arch: String,
    /// Size preset: tiny or small.
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Vocabulary size of the tokenizer and embeddings.
    #[arg(long, default_value_t = 512)]
    vocab_size: usize,
    /// Text to train the tokenizer on: one document per line, or JSONL with a `text` field.
    #[arg(long)]
    tokenizer_corpus: PathBuf,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Override a config.json field, e.g. `--set num_hidden_layers=4` (repeatable; values
    /// are JSON, else strings).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Storage dtype of the weights: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// The folder to create.
    #[arg(long)]
    out: PathBuf,
    /// Replace `--out` if it exists.
    #[arg(long)]
    force: bool,
}

/// Arguments of `ctiforge model inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A model folder or a Hugging Face id (`org/name[@revision]`) in the hub cache.
    model: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Arguments of `ctiforge model logits`.
#[derive(Debug, Args)]
pub struct LogitsArgs {
    /// A model folder or a Hugging Face id in the hub cache.
    #[arg(long)]
    model: String,
    /// A training run (or PEFT adapter folder) merged into the model first.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Comma-separated token ids, e.g. `1,2,3`.
    #[arg(long)]
    tokens: String,
    /// Device: cpu, cuda:N, rocm:N, wgpu (those compiled in).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print `{"tokens": [...], "logits": [[...], ...]}`.
    #[arg(long)]
    json: bool,
}

/// Arguments of `ctiforge generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A model folder or a Hugging Face id (`org/name[@revision]`) in the hub cache
    /// (default: the config file's `generate.model`).
    #[arg(long)]
    model: Option<String>,
    /// A training run (or PEFT adapter folder) merged into the model first.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// The prompt; repeat for a batch. An empty prompt starts from BOS.
    #[arg(long)]
    prompt: Vec<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// Decoding flags shared by `generate` and `demo`; unset flags fall back to the config
/// file, then to generation_config.json (max_new_tokens), then to the defaults shown.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// A TOML file with a `[generate]` table (see configs/generate/).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config key, e.g. `--set generate.temperature=0.7` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Render the prompt as a user message through the model's chat template.
    #[arg(long)]
    chat: bool,
    /// A system message for chat prompts.
    #[arg(long)]
    system: Option<String>,
    /// Most new tokens per prompt [default: generation_config.json's, else 64].
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Sampling temperature; 0 is greedy [default: 0].
    #[arg(long)]
    temperature: Option<f32>,
    /// Keep only the K most likely tokens when sampling.
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus sampling mass.
    #[arg(long)]
    top_p: Option<f32>,
    /// Penalty on tokens already seen; 1 is off [default: 1].
    #[arg(long)]
    repetition_penalty: Option<f32>,
    /// Sampling seed [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Stop when this string appears (repeatable).
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Device: cpu, cuda:N, rocm:N, wgpu (those compiled in) [default: cpu].
    #[arg(long)]
    device: Option<String>,
    /// Print one JSON object per prompt (`text`, `generated_ids`, `finish_reason`).
    #[arg(long)]
    json: bool,
}

impl SamplingArgs {
    /// Flags merged over the config file and `--set` overrides.
    fn resolve(&self) -> Result<GenerateSettings> {
        let file: GenerateFile = settings::load(self.config.as_deref(), &self.overrides)?;
        let f = file.generate;
        Ok(GenerateSettings {
            model: f.model,
            device: self.device.clone().or(f.device),
            max_new_tokens: self.max_new_tokens.or(f.max_new_tokens),
            temperature: self.temperature.or(f.temperature),
            top_k: self.top_k.or(f.top_k),
            top_p: self.top_p.or(f.top_p),
            repetition_penalty: self.repetition_penalty.or(f.repetition_penalty),
            seed: self.seed.or(f.seed),
            stop: if self.stop.is_empty() {
                f.stop
            } else {
                Some(self.stop.clone())
            },
            chat: Some(self.chat || f.chat.unwrap_or(false)),
            system: self.system.clone().or(f.system),
        })
    }
}

/// Arguments of `ctiforge demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The model to use [default: the bundled aidreams260K Llama].
    #[arg(long)]
    model: Option<String>,
    /// The prompt; empty starts from BOS.
    #[arg(long, default_value = "")]
    prompt: String,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// Runs `ctiforge model ...`.
pub fn model(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Init(args) => init(&args),
        ModelCommand::Inspect(args) => inspect(&args),
        ModelCommand::Logits(args) => logits(&args),
        ModelCommand::Bench(args) => bench(&args),
    }
}

fn bench(args: &BenchArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    let loaded = LoadedModel::resolve(&args.model, &device)?;
    let r = ctiforge_model::throughput::measure(
        &loaded.model,
        args.prompt_tokens,
        args.new_tokens,
        args.repeats,
    )?;
    if args.json {
        let mut v = serde_json::to_value(&r)?;
        v["implementation"] = "ctiforge".into();
        v["parameters"] = loaded.model.config.parameter_count().into();
        v["device"] = args.device.clone().into();
        println!("{v}");
    } else {
        println!(
            "prompt {:.1} tok/s ({} tokens), generation {:.1} tok/s ({} tokens), median of {}",
            r.prompt_tokens_per_sec,
            r.prompt_tokens,
            r.generation_tokens_per_sec,
            r.new_tokens,
            r.repeats
        );
    }
    Ok(())
}

fn init(args: &InitArgs) -> Result<()> {
    let arch: Architecture = args.arch.parse()?;
    let preset: Preset = args.preset.parse()?;
    let dtype = match args.dtype.as_str() {
        "f32" => SaveDtype::F32,
        "f16" => SaveDtype::F16,
        "bf16" => SaveDtype::Bf16,
        other => bail!("--dtype {other:?}: expected f32, f16 or bf16"),
    };
    let overrides = args
        .overrides
        .iter()
        .map(|s| parse_override(s))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = InitSpec {
        arch,
        preset,
        vocab_size: args.vocab_size,
        tokenizer_corpus: args.tokenizer_corpus.clone(),
        seed: args.seed,
        overrides,
        dtype,
        out: args.out.clone(),
        force: args.force,
    };
    let config = init_model(&spec).with_context(|| format!("creating {}", args.out.display()))?;
    eprintln!(
        "created {} ({} {}, {} parameters)",
        args.out.display(),
        config.architecture,
        args.preset,
        human_count(config.parameter_count())
    );
    Ok(())
}

fn inspect(args: &InspectArgs) -> Result<()> {
    let dir = ctiforge_model::hub::resolve(&args.model)?;
    let config = ctiforge_model::ModelConfig::from_file(&dir.join("config.json"))?;
    let checkpoint = ctiforge_model::weights::Checkpoint::open(&dir)?;
    let mut dtypes: Vec<String> = checkpoint
        .names()
        .iter()
        .filter_map(|n| checkpoint.info(n).map(|(_, d)| format!("{d:?}")))
        .collect();
    dtypes.sort();
    dtypes.dedup();
    let params = config.parameter_count();
    let f32_bytes = params * 4;
    let kv_bytes = config.kv_bytes_per_token() * config.max_seq_len;
    let c = &config;
    let report = json!({
        "path": dir,
        "architecture": c.architecture.to_string(),
        "parameters": params,
        "storage_dtypes": dtypes,
        "vocab_size": c.vocab_size,
        "d_model": c.d_model,
        "d_ff": c.d_ff,
        "n_layers": c.n_layers,
        "n_heads": c.n_heads,
        "n_kv_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "max_seq_len": c.max_seq_len,
        "rope_theta": c.rope_theta,
        "rope_scaling": format!("{:?}", c.rope_scaling),
        "sliding_window": c.sliding_window,
        "tie_embeddings": c.tie_embeddings,
        "weights_f32_bytes": f32_bytes,
        "kv_cache_bytes_at_max_seq_len": kv_bytes,
    });
    if args.json {
        println!("{report:#}");
        return Ok(());
    }
    println!("{}", dir.display());
    println!("  architecture   {}", c.architecture);
    println!("  parameters     {} ({params})", human_count(params));
    println!("  stored as      {}", dtypes.join(", "));
    println!(
        "  layers         {} x d_model {} (d_ff {})",
        c.n_layers, c.d_model, c.d_ff
    );
    println!(
        "  attention      {} query heads, {} kv heads, head_dim {}{}",
        c.n_heads,
        c.n_kv_heads,
        c.head_dim,
        c.sliding_window
            .map(|w| format!(", sliding window {w}"))
            .unwrap_or_default()
    );
    println!(
        "  vocabulary     {} (tied embeddings: {})",
        c.vocab_size, c.tie_embeddings
    );
    println!(
        "  context        {} (rope theta {}, scaling {:?})",
        c.max_seq_len, c.rope_theta, c.rope_scaling
    );
    println!(
        "  memory (f32)   weights {}, kv cache at full context {} per sequence",
        human_bytes(f32_bytes),
        human_bytes(kv_bytes)
    );
    Ok(())
}

fn logits(args: &LogitsArgs) -> Result<()> {
    let tokens: Vec<u32> = args
        .tokens
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<u32>()
                .with_context(|| format!("--tokens: {s:?} is not a token id"))
        })
        .collect::<Result<_>>()?;
    if tokens.is_empty() {
        bail!("--tokens: give at least one token id, e.g. --tokens 1,2,3");
    }
    let device = parse_device(&args.device)?;
    let loaded = load_with_adapter(&args.model, args.adapter.as_deref(), &device)?;
    let rows = loaded.model.logits(&tokens)?;
    if args.json {
        println!("{}", json!({ "tokens": tokens, "logits": rows }));
    } else {
        for (pos, (token, row)) in tokens.iter().zip(&rows).enumerate() {
            let best = ctiforge_model::generate::argmax(row);
            println!(
                "{pos}\ttoken {token}\targmax {best}\tlogit {:.5}",
                row[best as usize]
            );
        }
    }
    Ok(())
}

/// Runs `ctiforge generate`.
pub fn generate(args: &GenerateArgs) -> Result<()> {
    let settings = args.sampling.resolve()?;
    let model = match args.model.clone().or_else(|| settings.model.clone()) {
        Some(m) => m,
        None => bail!("no model given: pass --model or set generate.model in the --config file"),
    };
    let prompts = if args.prompt.is_empty() {
        vec![String::new()]
    } else {
        args.prompt.clone()
    };
    run_generation(
        &model,
        args.adapter.as_deref(),
        &prompts,
        &settings,
        args.sampling.json,
    )
}

/// Loads `model` and, when given, merges the adapter of a training run into it.
fn load_with_adapter(
    model: &str,
    adapter: Option<&std::path::Path>,
    device: &ctiforge_model::Device,
) -> Result<LoadedModel> {
    let mut loaded = LoadedModel::resolve(model, device)?;
    if let Some(dir) = adapter {
        loaded.model = ctiforge_model::adapter::apply_adapter(loaded.model, dir)
            .with_context(|| format!("adapter {}", dir.display()))?;
        tracing::info!(adapter = %dir.display(), "adapter merged");
    }
    Ok(loaded)
}

/// Runs `ctiforge demo`.
pub fn demo(args: &DemoArgs) -> Result<()> {
    let settings = args.sampling.resolve()?;
    let model = args.model.clone().or_else(|| settings.model.clone());
    let model = model.unwrap_or_else(|| BUNDLED_MODEL.to_owned());
    if model == BUNDLED_MODEL && !std::path::Path::new(BUNDLED_MODEL).exists() {
        bail!("the bundled model is not at {BUNDLED_MODEL}; pass --model FOLDER");
    }
    run_generation(
        &model,
        None,
        std::slice::from_ref(&args.prompt),
        &settings,
        args.sampling.json,
    )
}

fn run_generation(
    model: &str,
    adapter: Option<&std::path::Path>,
    prompts: &[String],
    s: &GenerateSettings,
    json: bool,
) -> Result<()> {
    let device = parse_device(s.device.as_deref().unwrap_or("cpu"))?;
    let loaded = load_with_adapter(model, adapter, &device)?;
    let tokenizer = loaded.tokenizer()?;
    let mut encoded = Vec::with_capacity(prompts.len());
    for prompt in prompts {
        encoded.push(encode_prompt(&loaded, prompt, s)?);
    }
    let defaults = loaded.generation.clone().unwrap_or_default();
    let config = SamplingConfig {
        max_new_tokens: s.max_new_tokens.or(defaults.max_new_tokens).unwrap_or(64),
        temperature: s.temperature.unwrap_or(0.0),
        top_k: s.top_k,
        top_p: s.top_p,
        repetition_penalty: s.repetition_penalty.unwrap_or(1.0),
        seed: s.seed.unwrap_or(0),
        stop_token_ids: loaded.stop_token_ids(),
        stop_strings: s.stop.clone().unwrap_or_default(),
        use_cache: true,
    };
    let started = std::time::Instant::now();
    let outputs = ctiforge_model::generate(&loaded.model, &encoded, &config, Some(tokenizer))?;
    let secs = started.elapsed().as_secs_f64();
    let new_tokens: usize = outputs.iter().map(|o| o.ids.len()).sum();
    tracing::info!(
        new_tokens,
        secs = format!("{secs:.2}"),
        tokens_per_sec = format!("{:.1}", new_tokens as f64 / secs.max(1e-9)),
        "generated"
    );
    print_outputs(&outputs, json);
    Ok(())
}

/// Token ids of one prompt: raw text with BOS (empty: BOS alone), or a chat rendering.
fn encode_prompt(loaded: &LoadedModel, prompt: &str, s: &GenerateSettings) -> Result<Vec<u32>> {
    let tokenizer = loaded.tokenizer()?;
    if s.chat.unwrap_or(false) {
        let arch = loaded.model.config.architecture.hf_class();
        let template = select_template(Some(tokenizer.config()), arch)?;
        let mut messages = Vec::new();
        if let Some(system) = &s.system {
            messages.push(ChatMessage::system(system.clone()));
        }
        messages.push(ChatMessage::user(prompt));
        let token = |id: Option<u32>| {
            id.and_then(|i| tokenizer.inner().id_to_token(i))
                .unwrap_or_default()
        };
        let text = template.render(
            &messages,
            true,
            &token(tokenizer.bos_token_id()),
            &token(tokenizer.eos_token_id()),
        )?;
        return Ok(tokenizer.encode(&text, false)?);
    }
    if prompt.is_empty() {
        let bos = loaded.bos_token_id().context(
            "an empty prompt starts from BOS, but neither the tokenizer nor config.json names one",
        )?;
        return Ok(vec![bos]);
    }
    Ok(tokenizer.encode(prompt, true)?)
}

fn print_outputs(outputs: &[Generated], as_json: bool) {
    for out in outputs {
        if as_json {
            println!(
                "{}",
                json!({ "text": out.text, "generated_ids": out.ids, "finish_reason": out.finish })
            );
        } else {
            println!("{}", out.text);
        }
    }
}

fn human_count(n: usize) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn human_bytes(n: usize) -> String {
    let n = n as f64;
    match n {
        n if n >= 1024.0 * 1024.0 * 1024.0 => format!("{:.2} GiB", n / (1024.0 * 1024.0 * 1024.0)),
        n if n >= 1024.0 * 1024.0 => format!("{:.1} MiB", n / (1024.0 * 1024.0)),
        n => format!("{:.1} KiB", n / 1024.0),
    }
}
