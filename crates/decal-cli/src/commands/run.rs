//! `decal run`: run an experiment config end to end (stage 1 or import, feature cache, every head × seed,
//! evaluation, table, report); resumable — finished units are reused (see `decal_eval::experiment`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use decal_eval::experiment::{self, ExperimentConfig, RunOptions};

/// Arguments of `decal run`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  decal run configs/experiments/cifar10-cnn-cpu.toml\n  \
decal run configs/experiments/cifar10-cnn-cpu.toml --out runs/c10 --device cuda\n  \
decal run configs/experiments/cpu/cnn-cifar10.toml --smoke    (checks every stage in seconds; runs/cnn-cifar10-cpu-smoke)\n\n\
The output directory receives backbone-<hash>/ (stage 1), features/ (the feature cache), heads/<head>/seed-<s>-<hash>/ \
(head checkpoints), eval/ (one result file per method and seed, and each head temperature fit), metrics.jsonl + metrics.csv (tidy records), \
results.json (nested, with metric definitions and every fitted temperature), reliability/<method>.csv, \
ood_histograms/<method>.csv, predictions/<method>/test_probs.npy and report/ (regenerated on every run by the \
same code as `decal report <run>`: index.html, tables/, plots/ with reliability, ECE-vs-severity and OOD score \
figures, report.json; warnings about skipped inputs in its Warnings section; results.md is the printed table). \
Running the same command again reuses every finished unit; after a kill it continues where it stopped. \
Changing the config adds new units next to the old ones.\n\n\
Temperature scaling: top-level `temperature_scaling = true` adds the baseline rows TS and TS (seed LBFGS); \
`temperature_scaling = true` in a [[heads]] table adds a row \"TS + <row>\" per row of that head, T fitted per \
seed on the validation split's predictive of the row (V-TST: the m-sample predictive (1/m) sum_s softmax(z_s/T) \
with the row's m and draws); `temperature_scaling_seed_lbfgs = true` adds the seed's single-sample LBFGS fit \
as \"TS (seed LBFGS) + <row>\" for TST and V-TST m=1."
)]
pub struct Args {
    /// Experiment file (TOML): [data], [backbone], [[heads]], [[ood]], [shift], [eval]; see configs/experiments/.
    #[arg(value_name = "EXPERIMENT.toml")]
    pub config: PathBuf,
    /// Output directory [default: runs/<experiment name>]; with --smoke, DIR-smoke (runs/<name>-smoke).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Device: cpu, cuda, cuda:<index>, mps or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// libtorch CPU threads for stage 1 and feature extraction [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// libtorch CPU threads for head training and evaluation (small matrices: 1 is usually fastest on a CPU).
    #[arg(long, default_value_t = 1)]
    pub head_threads: usize,
    /// Recompute every unit, overwriting earlier results; also allows a non-empty directory that is not a decal run.
    #[arg(long)]
    pub force: bool,
    /// Only print the resolved experiment config and exit (with --smoke: the smoke version).
    #[arg(long)]
    pub print_config: bool,
    /// Smoke run: the same experiment shrunk to check in well under a minute on a CPU that every stage,
    /// method, head, OOD set and corruption runs (1 stage-1 epoch, at most 320/128/256 train/val/test
    /// images, the first seed only, 1 head epoch, V-TST S and validation samples capped at 2, eval m kept,
    /// 128 images per OOD set, 16 per corruption cell, 20 bootstrap resamples). Output goes to
    /// <out>-smoke (default runs/<name>-smoke), never into a real run; the report and results.json say
    /// that its numbers are not results.
    #[arg(long)]
    pub smoke: bool,
}

/// Runs `decal run`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut config = ExperimentConfig::read(&args.config)?;
    if args.smoke {
        config = experiment::smoke_config(&config);
    }
    if args.print_config {
        print!(
            "{}",
            toml::to_string_pretty(&config).context("serialising the config")?
        );
        return Ok(());
    }
    // Fail before working: the data directory, the backbone checkpoint and the head widths it implies are
    // checked (naming the config file and key) before any directory is created or data loaded.
    decal_eval::config_check::check_inputs(&config)
        .map_err(|problem| anyhow::anyhow!("{}: {problem}", args.config.display()))?;
    let device = decal_models::device::parse(&args.device)?;
    decal_models::device::set_threads(args.threads);
    // The smoke config's name already ends in -smoke; an explicit --out gets the suffix so that a smoke run
    // never writes into (or resumes) a real run's directory.
    let out = match args.out {
        Some(out) if args.smoke => smoke_dir(&out),
        Some(out) => out,
        None => PathBuf::from("runs").join(&config.name),
    };
    let options = RunOptions {
        force: args.force,
        device,
        device_spec: args.device.clone(),
        head_threads: Some(args.head_threads),
    };
    let started = std::time::Instant::now();
    let mut log = |line: &str| eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
    if args.smoke {
        eprintln!(
            "decal run --smoke: {} into {} ({})",
            args.config.display(),
            out.display(),
            experiment::SMOKE_NOTE
        );
    }
    let summary = experiment::run(&config, &out, &options, &mut log)?;
    println!("{}", summary.table_markdown);
    for w in &summary.warnings {
        println!("warning: {w}");
    }
    println!("records: {}", summary.metrics.display());
    println!("report:  {}", summary.report.display());
    if args.smoke {
        println!("SMOKE RUN: every stage ran; these numbers are not results.");
    }
    Ok(())
}

/// `DIR` → `DIR-smoke` (the last path component gets the suffix; `runs/c10/` → `runs/c10-smoke`).
pub fn smoke_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    out.with_file_name(format!("{name}-smoke"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_dir_appends_the_suffix_to_the_last_component() {
        assert_eq!(
            smoke_dir(Path::new("runs/c10")),
            PathBuf::from("runs/c10-smoke")
        );
        assert_eq!(
            smoke_dir(Path::new("runs/c10/")),
            PathBuf::from("runs/c10-smoke")
        );
        assert_eq!(smoke_dir(Path::new("out")), PathBuf::from("out-smoke"));
    }
}
