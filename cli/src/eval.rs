//! `ctiforge eval`: score a model (base, base + adapter, or merged) on a dataset split or a
//! labelled JSONL file into `eval.json`, `predictions.jsonl` and `report.html`; and
//! `ctiforge eval compare` for base-against-tuned deltas with confidence intervals and
//! `--require` checks (exit code 5 when one fails).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use ctiforge_data_prep::Task;
use ctiforge_eval::bootstrap::BootstrapConfig;
use ctiforge_eval::compare::compare;
use ctiforge_eval::example::RawSpec;
use ctiforge_eval::harness::GenSettings;
use ctiforge_eval::report::{EvalReport, read_predictions};
use ctiforge_eval::threshold::Requirement;
use ctiforge_eval::{DataSource, EvalOptions, Scorer, evaluate};

/// Exit code of a `--require` check that failed.
pub const REQUIREMENT_FAILED: i32 = 5;

/// Arguments of `ctiforge eval`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: Option<EvalCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum EvalCommand {
    /// Per-metric deltas of REPORT_B against REPORT_A on their common examples, with
    /// paired bootstrap confidence intervals.
    Compare(CompareArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScorerArg {
    /// The model writes each answer (greedy, KV-cached).
    Generate,
    /// Technique candidates ranked by log-likelihood (no sampling).
    Likelihood,
    /// The regex indicator extractor (no model).
    Regex,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The model: a Hugging Face folder or org/name in the local hub cache.
    #[arg(long)]
    model: Option<String>,
    /// A training run (or PEFT adapter folder) to apply to the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// A dataset folder written by `ctiforge prep`, or a labelled JSONL file (with --task,
    /// --text-field and --label-field).
    #[arg(long, required = true)]
    data: Option<PathBuf>,
    /// The split of a dataset folder.
    #[arg(long, default_value = "test")]
    split: String,
    /// The report folder (eval.json, predictions.jsonl, report.html).
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Evaluate only the first N examples.
    #[arg(long)]
    limit: Option<usize>,
    /// The task of every line of a JSONL file (technique_classification, ioc_extraction,
    /// entity_extraction, summarization).
    #[arg(long)]
    task: Option<String>,
    /// The JSONL field with the input text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// The JSONL field with the reference: technique IDs (list or comma-separated),
    /// indicators or entities (objects or "type: value" strings), or the summary.
    #[arg(long, default_value = "labels")]
    label_field: String,
    /// The JSONL field with a stable id (default: the line number).
    #[arg(long)]
    id_field: Option<String>,
    /// How answers are produced.
    #[arg(long, value_enum, default_value = "generate")]
    scorer: ScorerArg,
    /// Candidates of the likelihood scorer: the N most frequent training techniques, and
    /// `none`.
    #[arg(long, default_value_t = 50)]
    candidates: usize,
    /// Prompts per batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Most new tokens per answer (default: per task, 32 for techniques).
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Skip the reference completion's loss and perplexity.
    #[arg(long)]
    no_loss: bool,
    /// Context length in tokens, beyond config.json's max_position_embeddings (default:
    /// the adapter run's batch.max_seq_len when longer).
    #[arg(long)]
    context: Option<usize>,
    /// `cpu`, `auto`, `cuda[:N]`, `rocm[:N]`, `wgpu[:N]`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The ATT&CK technique table (default: the one the dataset's recipe names).
    #[arg(long)]
    attack: Option<PathBuf>,
    /// A report folder of another model on the same data: its comparison goes into this
    /// report.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// A check on the comparison with --baseline, e.g. 'technique.micro_f1 >= +0.05'
    /// (signed: a delta; unsigned: a floor). Repeatable; exit code 5 when one fails.
    #[arg(long)]
    require: Vec<String>,
    /// Start over instead of continuing an interrupted evaluation in --out.
    #[arg(long)]
    force: bool,
    /// Print eval.json to stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// The baseline report (folder with eval.json and predictions.jsonl).
    report_a: PathBuf,
    /// The candidate report.
    report_b: PathBuf,
    /// A check, e.g. 'technique.micro_f1 >= +0.05' (repeatable; exit code 5 if one fails).
    #[arg(long)]
    require: Vec<String>,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 1000)]
    resamples: usize,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// Seed of the resampling.
    #[arg(long, default_value_t = 12345)]
    seed: u64,
    /// Print the comparison as JSON.
    #[arg(long)]
    json: bool,
}

fn requirements(exprs: &[String]) -> Result<Vec<Requirement>> {
    exprs
        .iter()
        .map(|e| e.parse::<Requirement>().map_err(anyhow::Error::from))
        .collect()
}

/// Runs `ctiforge eval`; returns the process exit code.
pub fn run(a: &EvalArgs) -> Result<i32> {
    match &a.command {
        Some(EvalCommand::Compare(c)) => run_compare(c),
        None => run_eval(&a.run),
    }
}

fn run_eval(a: &RunArgs) -> Result<i32> {
    let (Some(data), Some(out)) = (&a.data, &a.out) else {
        bail!("--data and --out are required");
    };
    let source = if data.is_dir() {
        DataSource::Dataset {
            dir: data.clone(),
            split: a.split.clone(),
        }
    } else {
        let task_name = a.task.as_deref().with_context(|| {
            format!(
                "{} is a file: say what its lines are with --task (technique_classification, \
                 ioc_extraction, entity_extraction, summarization)",
                data.display()
            )
        })?;
        let task: Task = task_name
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--task: {e}"))?;
        DataSource::Jsonl {
            path: data.clone(),
            spec: RawSpec {
                task,
                text_field: a.text_field.clone(),
                label_field: a.label_field.clone(),
                id_field: a.id_field.clone(),
            },
        }
    };
    let require = requirements(&a.require)?;
    if !require.is_empty() && a.baseline.is_none() {
        bail!("--require checks a comparison: give the report to compare with as --baseline");
    }
    let opts = EvalOptions {
        model: a.model.clone(),
        adapter: a.adapter.clone(),
        data: source,
        out: out.clone(),
        limit: a.limit,
        scorer: match a.scorer {
            ScorerArg::Generate => Scorer::Generate,
            ScorerArg::Likelihood => Scorer::Likelihood {
                candidates: a.candidates,
            },
            ScorerArg::Regex => Scorer::Regex,
        },
        generation: GenSettings {
            batch_size: a.batch_size,
            max_new_tokens: a.max_new_tokens,
            measure_loss: !a.no_loss,
        },
        device: a.device.clone(),
        attack: a.attack.clone(),
        baseline: a.baseline.clone(),
        require,
        bootstrap: BootstrapConfig::default(),
        force: a.force,
        context: a.context,
    };
    let bar = progress_bar();
    let mut progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let report = evaluate(&opts, &mut progress)
        .with_context(|| format!("evaluating into {}", out.display()))?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
        println!("{}", out.join(ctiforge_eval::report::HTML_FILE).display());
    }
    Ok(match &report.comparison {
        Some(c) if !c.passed => REQUIREMENT_FAILED,
        _ => 0,
    })
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        None,
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} examples  {per_sec}  ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

fn print_summary(r: &EvalReport) {
    eprintln!(
        "{} examples in {:.1}s ({} truncated prompts)",
        r.counts.examples, r.duration_secs, r.counts.truncated_prompts
    );
    for (k, v) in r.flat_metrics() {
        let interesting = k.ends_with("micro_f1")
            || k.ends_with("macro_f1")
            || k.ends_with("exact_match")
            || k.ends_with("strict_f1")
            || k.ends_with("lenient_f1")
            || k.starts_with("summarization.rouge")
            || k.ends_with("bleu")
            || k.starts_with("lm.");
        if interesting && !k.contains(".parent.") {
            eprintln!("  {k:<32} {v:.4}");
        }
    }
    if let Some(c) = &r.comparison {
        eprint!("{}", c.table());
    }
}

fn run_compare(a: &CompareArgs) -> Result<i32> {
    let require = requirements(&a.require)?;
    for p in [&a.report_a, &a.report_b] {
        EvalReport::read(p).with_context(|| format!("reading {}", p.display()))?;
    }
    let base = read_predictions(&a.report_a)?;
    let cand = read_predictions(&a.report_b)?;
    let cfg = BootstrapConfig {
        resamples: a.resamples,
        seed: a.seed,
        confidence: a.confidence,
    };
    let labels = (
        a.report_a.display().to_string(),
        a.report_b.display().to_string(),
    );
    let mut c = compare(&base, &cand, (&labels.0, &labels.1), &cfg)?;
    c.check(&require)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", c.table());
    }
    Ok(if c.passed { 0 } else { REQUIREMENT_FAILED })
}
