//! `decal`: calibrated classifiers through decoupled two-stage training (TST / V-TST).
//!
//! The only crate that reads argv, chooses a device, or uses `anyhow`. Each subcommand lives in
//! `commands/<name>.rs` and turns its arguments into a call to a library crate.

mod commands;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// decal — make neural-network classifiers honest about their confidence.
#[derive(Parser, Debug)]
#[command(name = "decal", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the offline end-to-end demo on bundled real data (the README's main job).
    Quickstart(commands::quickstart::Args),
    /// Compute calibration / proper-score / OOD metrics from saved logits or probabilities.
    Metrics(commands::metrics::Args),
    /// Fit a post-hoc calibrator on validation predictions and apply it to test predictions.
    Calibrate(commands::calibrate::Args),
    /// Datasets: inspect, verify, download, generate corruptions.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Stage 1: train a classifier (backbone + linear head).
    Train(Box<commands::train::Args>),
    /// Evaluate a trained or imported classifier (or a run's heads) on a dataset.
    Eval(commands::eval::Args),
    /// Convert a PyTorch state_dict or Lightning checkpoint into a decal checkpoint.
    Import(commands::import::Args),
    /// Run an experiment config end to end (stage 1, features, heads, evaluation, report); resumable.
    Run(commands::run::Args),
    /// Aggregate finished runs into tables, plots and an HTML report.
    Report(commands::report::Args),
}

fn main() -> ExitCode {
    restore_default_sigpipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Quickstart(a) => commands::quickstart::run(a),
        Command::Metrics(a) => commands::metrics::run(a),
        Command::Calibrate(a) => commands::calibrate::run(a),
        Command::Data(a) => commands::data::run(a),
        Command::Train(a) => commands::train::run(*a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Import(a) => commands::import::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Report(a) => commands::report::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE, so `println!` panics when stdout is closed early (`decal report … | head`).
/// A command-line tool should instead end quietly like any other Unix filter.
#[cfg(unix)]
#[allow(unsafe_code)]
fn restore_default_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is always a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_default_sigpipe() {}
