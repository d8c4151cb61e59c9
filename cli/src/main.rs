//! `ctiforge`: the command-line tool. Parses arguments, sets up logging, calls one library
//! function per subcommand and maps errors to exit codes (0 ok, 1 failure, 2 usage, 3 a
//! promotion the gate refused, 4 a drift report that failed, 5 an eval requirement that
//! failed).
//!
//! People read stderr (logs, progress, errors); stdout carries results, and with `--json`
//! one machine-readable document.

mod commands;
mod drift;
mod eval;
mod export;
mod pipeline;
mod prep;
mod registry;
mod settings;
mod train;

use clap::{Parser, Subcommand};

/// Turn open language models into cyber-threat-intelligence specialists.
#[derive(Debug, Parser)]
#[command(name = "ctiforge", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, inspect and probe model folders.
    #[command(subcommand)]
    Model(commands::ModelCommand),
    /// Generate text with a model.
    Generate(commands::GenerateArgs),
    /// Prepare a dataset from CTI sources with a recipe (configs/prep/).
    Prep(prep::PrepArgs),
    /// The main job on bundled defaults: load the bundled tiny Llama and generate.
    Demo(commands::DemoArgs),
    /// Score a model on a dataset split or labelled file; compare two reports.
    Eval(Box<eval::EvalArgs>),
    /// Fine-tune a LoRA adapter with a recipe (configs/train/).
    Train(train::TrainArgs),
    /// Merge a LoRA adapter (a training run) into its base model, writing an HF folder.
    Merge(export::MergeArgs),
    /// Run prep → train → eval → export → drift → register → promote from one file
    /// (configs/pipeline/), skipping stages whose inputs have not changed.
    Pipeline(Box<pipeline::PipelineArgs>),
    /// Write GGUF files for llama.cpp and Ollama, and inspect them.
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Register, promote, pull and list model versions (embedded store or MLflow).
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
}

fn main() {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Model(cmd) => commands::model(cmd),
        Command::Generate(args) => commands::generate(&args),
        Command::Demo(args) => commands::demo(&args),
        Command::Prep(args) => prep::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Eval(args) => eval::run(&args).map(|code| {
            if code != 0 {
                std::process::exit(code);
            }
        }),
        Command::Pipeline(args) => pipeline::run(&args).map(|code| {
            if code != 0 {
                std::process::exit(code);
            }
        }),
        Command::Merge(args) => export::merge(&args),
        Command::Export(cmd) => export::run(&cmd),
        Command::Registry(cmd) => registry::run(&cmd).map(|code| {
            if code != 0 {
                std::process::exit(code);
            }
        }),
    };
    if let Err(err) = result {
        eprintln!("ctiforge: error: {err:#}");
        std::process::exit(1);
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default of info for ctiforge, warn for others.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "warn,ctiforge=info,ctiforge_model=info,ctiforge_data_prep=info,\
             ctiforge_export=info,ctiforge_registry=info,ctiforge_eval=info,\
             ctiforge_train=info",
        )
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}
