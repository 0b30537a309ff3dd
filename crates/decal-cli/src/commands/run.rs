//! `decal run`: run an experiment config end to end (stage 1 or import, feature cache, every head × seed,
//! evaluation, table, report); resumable — finished units are reused (see `decal_eval::experiment`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use decal_eval::experiment::{self, ExperimentConfig};
use decal_eval::runner::{self, Executor, RunSummary, RunnerOptions};
use decal_eval::units::ExecOptions;

/// Arguments of `decal run`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  decal run configs/experiments/cifar10-cnn-cpu.toml\n  \
decal run configs/experiments/cifar10-cnn-cpu.toml --out runs/c10 --device cuda\n  \
decal run configs/experiments/cpu/cnn-cifar10.toml --smoke    (checks every stage in seconds; runs/cnn-cifar10-cpu-smoke)\n\n\
The experiment is planned as units (split, backbone, features, views, exact-epochs, head × seed, temperature, \
calibrator, eval, ood, shift-cell, shift-score, shift, report; with [backbone] features, features-file and views-file units read the \
given files) whose ids are known before anything runs: --plan lists them, fresh or dirty and why. \
The output directory receives plan.json, units/<id>/ (one directory per unit with its completion record done.json), \
and, published from the report unit, metrics.jsonl + metrics.csv (tidy records), results.json (nested, with metric \
definitions and every fitted temperature), reliability/<method>.csv, ood_histograms/<method>.csv, \
predictions/<method>/test_probs.npy and report/ (the same report as `decal report <run>`). \
Running the same command again reuses every fresh unit; after a kill it continues where it stopped; a damaged \
unit is recomputed. --jobs N runs independent units in parallel processes, --executor slurm submits job arrays.\n\n\
Temperature scaling: top-level `temperature_scaling = true` adds the baseline rows TS and TS (seed LBFGS); \
`temperature_scaling = true` in a [[heads]] table adds a row \"TS + <row>\" per row of that head, T fitted per \
seed on the validation split's predictive of the row (V-TST: the m-sample predictive (1/m) sum_s softmax(z_s/T) \
with the row's m and draws); `temperature_scaling_seed_lbfgs = true` adds the seed's single-sample LBFGS fit \
as \"TS (seed LBFGS) + <row>\" for TST and V-TST m=1. `calibrators = [\"vector\", \"histogram\", \"isotonic\"]` \
adds the baseline rows VS, Histogram binning and Isotonic (fitted where TS is; they predict probabilities)."
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
    /// Print the plan — every unit with its kind, short id, inputs, and fresh or dirty and why — and exit
    /// without running or writing anything.
    #[arg(long)]
    pub plan: bool,
    /// With --plan: print it as JSON ({"version": 1, "units": [{"id", "kind", "name", "deps", "status", "reason"}]}).
    #[arg(long, requires = "plan")]
    pub json: bool,
    /// Run up to N independent units at a time, each in its own `decal unit run` process (device units one
    /// at a time per device); results are identical to the default serial run.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Go on past a failed unit: only the units that depend on it fail; the report says what is missing
    /// and decal exits with an error (on Slurm: levels chained with afterany, see docs/slurm.md).
    #[arg(long)]
    pub keep_going: bool,
    /// Where units run: local (this machine) or slurm (job arrays per level, chained with afterok, each task
    /// a `decal unit run`; see docs/slurm.md).
    #[arg(long, value_enum, default_value = "local")]
    pub executor: ExecutorKind,
    /// Slurm partition (--executor slurm).
    #[arg(long)]
    pub partition: Option<String>,
    /// GPUs per device unit (--executor slurm; 0 = CPU-only jobs).
    #[arg(long, default_value_t = 0)]
    pub gpus_per_unit: u32,
    /// Slurm time limit per task, e.g. 04:00:00 (--executor slurm).
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per Slurm task (--executor slurm).
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: u32,
    /// Wait for the Slurm jobs to end, then report (without it, run the same command again later).
    #[arg(long)]
    pub wait: bool,
}

/// `--executor`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutorKind {
    /// This machine (serially, or `--jobs N` processes).
    Local,
    /// A Slurm cluster.
    Slurm,
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
    let device = decal_models::device::parse(&args.device)?;
    // The smoke config's name already ends in -smoke; an explicit --out gets the suffix so that a smoke run
    // never writes into (or resumes) a real run's directory.
    let out = match &args.out {
        Some(out) if args.smoke => smoke_dir(out),
        Some(out) => out.clone(),
        None => PathBuf::from("runs").join(&config.name),
    };
    // Fail before working: the whole config is planned (and validated, naming the file and key) first.
    let plan = runner::plan(&config, &args.config, device)?;
    if args.plan {
        let fresh = runner::freshness(&plan, &out, args.force);
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&decal_eval::plan::plan_json(&plan, &fresh))?
            );
        } else {
            print!("{}", decal_eval::plan::plan_text(&plan, &fresh));
        }
        return Ok(());
    }
    let threads = decal_models::device::set_threads(args.threads);
    let options = runner_options(&args, device, &out, threads)?;
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
    let summary = runner::run(&config, &args.config, &out, &options, &mut log)?;
    print_summary(&summary, &args, &out)
}

fn runner_options(
    args: &Args,
    device: tch::Device,
    out: &Path,
    threads: usize,
) -> anyhow::Result<RunnerOptions> {
    let exe = std::env::current_exe().context("locating the decal executable")?;
    let mut unit_args = vec!["--device".to_string(), args.device.clone()];
    if let Some(t) = args.threads {
        unit_args.extend(["--threads".to_string(), t.to_string()]);
    }
    unit_args.extend(["--head-threads".to_string(), args.head_threads.to_string()]);
    let executor = match (args.executor, args.jobs) {
        (ExecutorKind::Slurm, _) => Executor::Slurm {
            options: decal_eval::slurm::SlurmOptions {
                partition: args.partition.clone(),
                gpus_per_unit: args.gpus_per_unit,
                time: args.time.clone(),
                cpus_per_task: args.cpus_per_task,
                decal_exe: exe.clone(),
                store: std::path::absolute(out)
                    .with_context(|| format!("resolving {}", out.display()))?,
                extra_args: unit_args.clone(),
                keep_going: args.keep_going,
            },
            wait: args.wait,
        },
        (ExecutorKind::Local, Some(n)) if n > 1 => Executor::Jobs(n),
        (ExecutorKind::Local, _) => Executor::Serial,
    };
    Ok(RunnerOptions {
        force: args.force,
        exec: ExecOptions {
            device,
            threads: Some(threads),
            head_threads: Some(args.head_threads),
            batch_siblings: true,
        },
        exe,
        unit_args,
        executor,
        keep_going: args.keep_going,
    })
}

fn print_summary(summary: &RunSummary, args: &Args, out: &Path) -> anyhow::Result<()> {
    if !summary.submitted.is_empty() {
        println!(
            "submitted {} Slurm job array(s); when they have ended, `decal run {}` again reports (everything fresh is reused)",
            summary.submitted.len(),
            args.config.display()
        );
        return Ok(());
    }
    println!("{}", summary.table_markdown);
    for w in &summary.warnings {
        println!("warning: {w}");
    }
    println!("records: {}", summary.metrics.display());
    println!("report:  {}", summary.report.display());
    if args.smoke {
        println!("SMOKE RUN: every stage ran; these numbers are not results.");
    }
    if !summary.exec.complete() {
        anyhow::bail!(
            "{} unit(s) failed and {} did not run (logs: {}); the report lists what is missing",
            summary.exec.failed.len(),
            summary.exec.blocked.len(),
            out.join("logs").display()
        );
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
