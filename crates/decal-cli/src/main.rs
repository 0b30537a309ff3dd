//! `decal-full`: the complete `decal` command line (calibrated classifiers through decoupled two-stage
//! training, TST / V-TST). Users type `decal` (`front.rs`), which runs `metrics` itself without loading
//! libtorch and `exec`s this binary for everything else.
//!
//! The only crate that reads argv, chooses a device, or uses `anyhow`. Each subcommand lives in
//! `commands/<name>.rs` and turns its arguments into a call to a library crate.

mod commands;
mod errors;

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
    /// Train and evaluate TST / V-TST / REINIT heads on features saved from any model; export them for PyTorch.
    Heads(Box<commands::heads::Args>),
    /// Aggregate finished runs into tables, plots and an HTML report.
    Report(commands::report::Args),
    /// One unit of a planned experiment (what `decal run --jobs N` and Slurm tasks run).
    #[command(subcommand)]
    Unit(commands::unit::UnitCommand),
}

fn main() -> ExitCode {
    errors::restore_default_sigpipe();
    let cli = Cli::parse();
    if let Err(err) = check_libtorch(decal_core::provenance::loaded_libtorch().as_ref()) {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Quickstart(a) => commands::quickstart::run(a),
        Command::Metrics(a) => commands::metrics::run(a),
        Command::Calibrate(a) => commands::calibrate::run(a),
        Command::Data(a) => commands::data::run(a),
        Command::Train(a) => commands::train::run(*a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Import(a) => commands::import::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Heads(a) => commands::heads::run(*a),
        Command::Report(a) => commands::report::run(a),
        Command::Unit(a) => commands::unit::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", errors::error_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// `scripts/versions.env`, the single place the libtorch version is pinned.
const VERSIONS_ENV: &str = include_str!("../../../scripts/versions.env");

/// The pinned libtorch release, e.g. `2.11.0`.
fn pinned_libtorch() -> &'static str {
    VERSIONS_ENV
        .lines()
        .find_map(|l| l.strip_prefix("TORCH_VERSION="))
        .map_or("", str::trim)
}

/// Refuses to run on a libtorch other than the pinned release (e.g. the venv was replaced after the build):
/// results would not be those of the tested engine, and a mismatched library can crash later.
fn check_libtorch(loaded: Option<&decal_core::provenance::LibtorchInfo>) -> Result<(), String> {
    let pinned = pinned_libtorch();
    match loaded {
        Some(info) if info.version != "unknown" => {
            let release = info.version.split('+').next().unwrap_or_default();
            if release == pinned {
                Ok(())
            } else {
                Err(format!(
                    "{}: libtorch {} is loaded, but decal is built and tested for libtorch {pinned} \
                     (scripts/versions.env); rebuild with scripts/cargo, which sets up the pinned venv",
                    info.library.display(),
                    info.version
                ))
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use decal_core::provenance::LibtorchInfo;

    #[test]
    fn libtorch_version_check() {
        assert_eq!(pinned_libtorch(), "2.11.0");
        let info = |v: &str| LibtorchInfo {
            version: v.into(),
            cuda: None,
            library: "/x/torch/lib/libtorch_cpu.so".into(),
        };
        assert!(check_libtorch(Some(&info("2.11.0+cu130"))).is_ok());
        assert!(check_libtorch(Some(&info("2.11.0"))).is_ok());
        assert!(check_libtorch(Some(&info("unknown"))).is_ok());
        assert!(check_libtorch(None).is_ok());
        let err = check_libtorch(Some(&info("2.10.1+cpu"))).unwrap_err();
        assert!(
            err.contains("2.10.1+cpu") && err.contains("2.11.0") && err.contains("libtorch_cpu.so"),
            "{err}"
        );
        // That the real binary loads the pinned libtorch is checked through provenance.json in
        // tests/train_cli.rs (this test binary need not map libtorch at all).
    }
}
