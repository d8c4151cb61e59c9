//! `ctiforge prep`: run a data-prep recipe, and `ctiforge prep stats` to summarise a
//! dataset folder from its manifest.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ctiforge_data_prep::{Manifest, Options, PrepConfig, prepare};

use crate::settings;

/// Arguments of `ctiforge prep`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PrepArgs {
    #[command(subcommand)]
    command: Option<PrepCommand>,
    /// The recipe (see configs/prep/).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The dataset folder to write.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a recipe key, e.g. `--set split.test=0.2` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Replace `--out` if it exists.
    #[arg(long)]
    force: bool,
    /// Print the manifest as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// `ctiforge prep ...` subcommands.
#[derive(Debug, Subcommand)]
enum PrepCommand {
    /// Print a dataset's summary (counts, labels, lengths) from its manifest.
    Stats(StatsArgs),
}

/// Arguments of `ctiforge prep stats`.
#[derive(Debug, Args)]
struct StatsArgs {
    /// The dataset folder.
    dir: PathBuf,
    /// Print the manifest as JSON.
    #[arg(long)]
    json: bool,
    /// Labels to show per split (most frequent first).
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// Runs `ctiforge prep`.
pub fn run(args: &PrepArgs) -> Result<()> {
    if let Some(PrepCommand::Stats(s)) = &args.command {
        let manifest = Manifest::read(&s.dir)?;
        return print(&manifest, s.json, s.top);
    }
    let config = args
        .config
        .as_deref()
        .context("--config is required (see configs/prep/)")?;
    let out = args.out.as_deref().context("--out is required")?;
    let cfg: PrepConfig = settings::load(Some(config), &args.overrides)?;
    let opts = Options {
        base_dir: std::env::current_dir().context("cannot read the current directory")?,
        force: args.force,
    };
    let manifest =
        prepare(&cfg, out, &opts).with_context(|| format!("prep {} failed", config.display()))?;
    tracing::info!(out = %out.display(), fingerprint = %manifest.fingerprint, "dataset written");
    print(&manifest, args.json, 5)
}

fn print(m: &Manifest, json: bool, top: usize) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(());
    }
    print!("{}", table(m, top));
    Ok(())
}

/// The human summary of a manifest.
fn table(m: &Manifest, top: usize) -> String {
    let mut s = String::new();
    let c = &m.counts;
    let _ = writeln!(s, "dataset {} ({})", m.name, m.fingerprint);
    let _ = writeln!(
        s,
        "rows: {} read, {} rejected, {} exact + {} near duplicates removed \
         ({} label merges), {} kept",
        c.read, c.rejected, c.exact_duplicates, c.near_duplicates, c.labels_merged, c.kept
    );
    let _ = writeln!(
        s,
        "\n{:<24} {:>8} {:>8} {:>8}",
        "source", "read", "rejected", "kept"
    );
    for src in &m.sources {
        let _ = writeln!(
            s,
            "{:<24} {:>8} {:>8} {:>8}",
            src.name, src.rows_read, src.rows_rejected, src.rows_kept
        );
    }
    let _ = writeln!(
        s,
        "\n{:<11} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "split", "rows", "groups", "chars p50", "chars p95", "tok p50", "tok p95"
    );
    for (name, e) in &m.splits {
        let (t50, t95) = e.tokens.as_ref().map_or(("-".into(), "-".into()), |t| {
            (t.p50.to_string(), t.p95.to_string())
        });
        let _ = writeln!(
            s,
            "{:<11} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9}",
            name, e.rows, e.groups, e.text_chars.p50, e.text_chars.p95, t50, t95
        );
    }
    for (name, e) in &m.splits {
        let tasks: Vec<String> = e.tasks.iter().map(|(t, n)| format!("{t} {n}")).collect();
        let mut labels: Vec<(&String, &usize)> = e.labels.iter().collect();
        labels.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = labels
            .iter()
            .take(top)
            .map(|(l, n)| format!("{l} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "\n{name}: {}\n  {} labels; top: {}",
            tasks.join(", "),
            labels.len(),
            shown.join(", ")
        );
    }
    s
}
