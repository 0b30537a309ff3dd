//! `decal report`: aggregate finished runs into tables, plots and an HTML report.
//!
//! Thin wrapper over [`decal_report::generate::generate_report`]: the flags map one to one onto
//! [`decal_report::generate::ReportOptions`]; the library does the work and this prints the main table
//! and where the report went.

use std::path::PathBuf;

use anyhow::Context;
use decal_report::generate::{generate_report, Formats, ReportOptions};
use decal_report::table::Spread;

/// Arguments of `decal report`.
#[derive(clap::Args, Debug)]
#[command(after_long_help = "\
Each RUN is a run directory, searched recursively for files named metrics.jsonl, or a direct path to a \
.jsonl or .csv file of metric records. Records are grouped by (method, split, dataset, corruption, \
severity, metric) and summarised over runs/seeds as mean ± sample std (ddof = 1) or ± standard error, \
always with the true n. Next to each metrics.jsonl, reliability/*.csv (reliability bins) and \
ood_histograms/*.csv (OOD score histograms) are drawn, and *.json / *.toml files are shown as provenance.\n\n\
Writes into --out: tables/main.{md,tex,csv}, tables/aggregates.csv, tables/records.csv, \
plots/*.{svg,png,csv}, index.html and report.json (the manifest: inputs and files with SHA-256); prints the Markdown table and the report's path. An existing report in --out is regenerated when its report.json shows decal report wrote every file there; any other non-empty directory needs --force.")]
pub struct Args {
    /// Run directories (searched recursively for metrics.jsonl) or record files (.jsonl or .csv).
    #[arg(required_unless_present = "seed_results", value_name = "RUN")]
    pub runs: Vec<PathBuf>,

    /// Also tabulate a result file of the seed repository (experiment_results/table_metrics/<file>,
    /// one JSON object of models → metrics); its models become the row METHOD, e.g.
    /// `--seed-results WRN_CIFAR10_TST.txt "TST (seed repo)"`. Repeatable. ECE/MCE are converted from
    /// the seed's percent to fractions; its Brier is recorded as brier_div_k.
    #[arg(long, num_args = 2, value_names = ["FILE", "METHOD"], action = clap::ArgAction::Append)]
    pub seed_results: Vec<String>,

    /// Output directory [default: <first RUN>/report, or <directory of the first file>/report].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Comma-separated output formats for the tables and report: md, tex, csv, html.
    /// Figures (SVG, PNG, CSV) and tables/aggregates.csv are always written.
    #[arg(long, value_name = "LIST", default_value = "md,tex,csv,html")]
    pub format: String,

    /// What follows "±" in table cells and error bars: `std` (sample standard deviation, ddof = 1)
    /// or `se` (standard error of the mean = std / sqrt(n)).
    #[arg(long, value_name = "KIND", default_value = "std")]
    pub spread: String,

    /// Title of the report and of the main table.
    #[arg(long, default_value = "decal results")]
    pub title: String,

    /// Comma-separated methods to list first, in this order, e.g. "Baseline,TS,TST,V-TST m=1,V-TST m=10";
    /// other methods follow in order of first appearance. With more than four methods that have
    /// reliability data, the first four listed here are also overlaid in one reliability diagram
    /// (unless --overlay chooses them).
    #[arg(long, value_name = "LIST")]
    pub method_order: Option<String>,

    /// Comma-separated methods to overlay in one reliability diagram when more than four methods have
    /// reliability data (the first four of them that have it), e.g. "Baseline,TS,TST,V-TST m=10";
    /// without it, the first four of --method-order.
    #[arg(long, value_name = "LIST")]
    pub overlay: Option<String>,

    /// Write into an output directory that holds other files than a report written by decal report
    /// (same-named files are overwritten, the others kept). Not needed to regenerate a report: a
    /// directory with decal report's report.json manifest, none of its files changed and no other
    /// file added, is replaced with a notice.
    #[arg(long)]
    pub force: bool,

    /// A note for the report's "Warnings" section (index.html and tables/main.md), e.g. a caveat
    /// about how the runs were made. Repeatable; shown in the order given.
    #[arg(long, value_name = "TEXT")]
    pub note: Vec<String>,

    /// One line saying what the runs are, shown first in the report's summary.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,
}

/// Runs `decal report`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let formats = Formats::parse(&args.format)?;
    let spread = Spread::parse(&args.spread).with_context(|| {
        format!(
            "--spread {:?}: expected `std`, `se` or `seed-se`",
            args.spread
        )
    })?;
    let seed_results: Vec<(PathBuf, String)> = args
        .seed_results
        .chunks(2)
        .map(|pair| (PathBuf::from(&pair[0]), pair[1].clone()))
        .collect();
    let first = args
        .runs
        .first()
        .or(seed_results.first().map(|(p, _)| p))
        .context("no RUN given")?;
    let out_dir = match args.out {
        Some(dir) => dir,
        None if first.is_file() => first
            .parent()
            .map(|p| p.join("report"))
            .unwrap_or_else(|| PathBuf::from("report")),
        None => first.join("report"),
    };
    let list = |text: &Option<String>| -> Vec<String> {
        text.as_deref()
            .map(|list| {
                list.split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let overlay = list(&args.overlay);
    let method_order = list(&args.method_order);
    let options = ReportOptions {
        out_dir,
        formats,
        spread,
        title: args.title,
        method_order,
        overlay,
        force: args.force,
        provenance: Some(decal_core::Provenance::capture()),
        seed_results,
        notes: args.note,
        extra_files: Vec::new(),
        description: args.description,
    };
    // Run directories from another decal version are refused (their records may mean something else).
    for run in &args.runs {
        for (file, pointer) in [
            ("experiment.json", "/provenance/decal_version"),
            ("provenance.json", "/decal_version"),
        ] {
            let path = run.join(file);
            if run.is_dir() && path.is_file() {
                decal_core::run_version::check_file(&path, pointer).map_err(anyhow::Error::msg)?;
            }
        }
    }
    let outcome = generate_report(&args.runs, &options)?;
    for n in &outcome.notices {
        eprintln!("note: {n}");
    }
    for w in &outcome.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", outcome.markdown);
    println!();
    println!(
        "read {} records from {} file(s)",
        outcome.num_records,
        outcome.inputs.len()
    );
    match &outcome.index_html {
        Some(index) => println!("report: {}", index.display()),
        None => println!("report: {}", options.out_dir.display()),
    }
    Ok(())
}
