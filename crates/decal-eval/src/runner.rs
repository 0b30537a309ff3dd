//! `decal run`: plan the experiment, decide freshness, execute the dirty units (serially, `--jobs N`
//! processes, or Slurm), publish the report. Every step is a short function over the plan's data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::experiment::{ExperimentConfig, MARKER};
use crate::plan::build::{build, device_kind};
use crate::plan::exec::{ExecReport, Execution};
use crate::plan::store::{Freshness, Store};
use crate::plan::{short, Plan, PlanError, Resource, UnitId};
use crate::units::{ExecOptions, UnitError, UnitSpec};

/// Where the dirty units run.
#[derive(Debug, Clone)]
pub enum Executor {
    /// In this process, one after another.
    Serial,
    /// `decal unit run` processes, this many at a time.
    Jobs(usize),
    /// Slurm job arrays; with `wait`, block until they end and then report.
    Slurm {
        /// Partition, GPUs per unit, time limit, CPUs per task.
        options: crate::slurm::SlurmOptions,
        /// Wait for the jobs, then report.
        wait: bool,
    },
}

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Recompute every unit.
    pub force: bool,
    /// Device and threads.
    pub exec: ExecOptions,
    /// The `decal` executable for unit processes.
    pub exe: PathBuf,
    /// Arguments every `decal unit run` gets (device, threads).
    pub unit_args: Vec<String>,
    /// Where units run.
    pub executor: Executor,
    /// Go on past a failed unit.
    pub keep_going: bool,
}

/// Errors of a run: typed, each with its source.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config does not plan.
    #[error("{config}: {source}")]
    Plan {
        /// The config file.
        config: PathBuf,
        /// Why.
        #[source]
        source: PlanError,
    },
    /// The output directory cannot be used.
    #[error("output directory {dir}: {problem}")]
    Output {
        /// The directory.
        dir: PathBuf,
        /// Why.
        problem: String,
    },
    /// A unit failed.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// Slurm refused or failed.
    #[error(transparent)]
    Slurm(#[from] crate::slurm::SlurmError),
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The comparison table (Markdown); empty when the report did not run.
    pub table_markdown: String,
    /// `metrics.jsonl`.
    pub metrics: PathBuf,
    /// The report's `index.html`.
    pub report: PathBuf,
    /// Warnings (skipped units, missing inputs).
    pub warnings: Vec<String>,
    /// What the executor did.
    pub exec: ExecReport,
    /// Slurm jobs submitted and not waited for (label, job id).
    pub submitted: Vec<(String, String)>,
}

/// Plans `config` for `device` (nothing is read beyond the config's inputs, nothing written).
pub fn plan(
    config: &ExperimentConfig,
    config_path: &Path,
    device: tch::Device,
) -> Result<Plan, RunError> {
    build(config, device_kind(device)).map_err(|source| RunError::Plan {
        config: config_path.to_path_buf(),
        source,
    })
}

/// The plan with each unit's freshness in `out` (`--force`: everything dirty).
pub fn freshness(plan: &Plan, out: &Path, force: bool) -> BTreeMap<UnitId, Freshness> {
    let store = Store::new(out);
    if force {
        return plan
            .units
            .iter()
            .map(|u| (u.id.clone(), Freshness::Dirty("--force".into())))
            .collect();
    }
    store.freshness(plan)
}

/// Runs the experiment into `out`.
pub fn run(
    config: &ExperimentConfig,
    config_path: &Path,
    out: &Path,
    options: &RunnerOptions,
    log: &mut dyn FnMut(&str),
) -> Result<RunSummary, RunError> {
    let plan = plan(config, config_path, options.exec.device)?;
    prepare_run_dir(config, out, options.force, log)?;
    let store = Store::new(out);
    let fresh = freshness(&plan, out, options.force);
    store.write_plan(&plan).map_err(UnitError::from)?;
    let dirty = fresh.values().filter(|f| !f.is_fresh()).count();
    log(&format!(
        "plan: {} units, {} fresh, {dirty} to run ({})",
        plan.units.len(),
        plan.units.len() - dirty,
        describe(&options.executor)
    ));
    let execution = Execution {
        plan: &plan,
        store: &store,
        freshness: &fresh,
        keep_going: options.keep_going,
    };
    let (exec, submitted) = execute(&execution, options, log)?;
    if !submitted.is_empty() {
        return Ok(summary_without_report(out, exec, submitted));
    }
    finish(&plan, &store, out, exec, log)
}

fn describe(executor: &Executor) -> String {
    match executor {
        Executor::Serial => "in this process".into(),
        Executor::Jobs(n) => format!("{n} unit processes at a time"),
        Executor::Slurm { wait, .. } => {
            format!("on Slurm{}", if *wait { ", waiting" } else { "" })
        }
    }
}

/// New, empty, or an earlier run of an experiment by this decal version (resume); records the config.
fn prepare_run_dir(
    config: &ExperimentConfig,
    out: &Path,
    force: bool,
    log: &mut dyn FnMut(&str),
) -> Result<(), RunError> {
    let fail = |problem: String| RunError::Output {
        dir: out.to_path_buf(),
        problem,
    };
    if out.join(MARKER).exists() {
        if !force {
            decal_core::run_version::check_file(&out.join(MARKER), "/provenance/decal_version")
                .map_err(fail)?;
        }
        log(&format!(
            "resuming in {} (fresh units are reused; --force recomputes them)",
            out.display()
        ));
    } else {
        decal_core::prepare_output_dir(out, force).map_err(|e| fail(e.to_string()))?;
    }
    let config_hash = decal_core::sha256_bytes(
        serde_json::to_string(config)
            .map_err(|e| fail(e.to_string()))?
            .as_bytes(),
    );
    decal_core::write_json_atomic(
        &out.join(MARKER),
        &json!({"config": config, "config_hash": config_hash, "provenance": decal_core::Provenance::capture()}),
    )
    .map_err(|e| fail(e.to_string()))
}

type Submitted = Vec<(String, String)>;

fn execute(
    execution: &Execution<'_>,
    options: &RunnerOptions,
    log: &mut dyn FnMut(&str),
) -> Result<(ExecReport, Submitted), RunError> {
    match &options.executor {
        Executor::Serial => Ok((execution.serial(&options.exec, log)?, Vec::new())),
        Executor::Jobs(n) => {
            let one_device = !matches!(options.exec.device, tch::Device::Cpu);
            let report =
                execution.processes(&options.exe, &options.unit_args, *n, one_device, log)?;
            Ok((report, Vec::new()))
        }
        Executor::Slurm {
            options: slurm,
            wait,
        } => {
            let groups = slurm_groups(execution, slurm.gpus_per_unit > 0);
            if groups.is_empty() {
                return Ok((ExecReport::default(), Vec::new()));
            }
            let submitted = crate::slurm::submit(&groups, slurm)?;
            for (label, id) in &submitted.job_ids {
                log(&format!("slurm: submitted {label} as job {id}"));
            }
            if !*wait {
                return Ok((ExecReport::default(), submitted.job_ids));
            }
            crate::slurm::wait(&submitted, Duration::from_secs(2), log)?;
            Ok((after_slurm(execution), Vec::new()))
        }
    }
}

/// The dirty units as Slurm job arrays: one per level and resource class, in level order.
fn slurm_groups(execution: &Execution<'_>, gpu: bool) -> Vec<crate::slurm::SlurmGroup> {
    let levels = execution.plan.levels();
    let mut groups: BTreeMap<(usize, bool), Vec<UnitId>> = BTreeMap::new();
    for u in &execution.plan.units {
        if execution
            .freshness
            .get(&u.id)
            .is_some_and(Freshness::is_fresh)
        {
            continue;
        }
        let on_gpu = gpu && u.resource == Resource::Device;
        groups
            .entry((levels[&u.id], on_gpu))
            .or_default()
            .push(u.id.clone());
    }
    groups
        .into_iter()
        .map(|((level, gpu), unit_ids)| crate::slurm::SlurmGroup {
            level,
            gpu,
            label: format!("l{level}-{}", if gpu { "gpu" } else { "cpu" }),
            unit_ids,
        })
        .collect()
}

/// After Slurm: which units completed (their records), which did not.
fn after_slurm(execution: &Execution<'_>) -> ExecReport {
    let mut report = ExecReport::default();
    for u in &execution.plan.units {
        let was_fresh = execution
            .freshness
            .get(&u.id)
            .is_some_and(Freshness::is_fresh);
        match (was_fresh, execution.store.record(&u.id).is_some()) {
            (true, _) => report.reused += 1,
            (false, true) => report.computed += 1,
            (false, false) => report.failed.push((
                u.id.clone(),
                "its Slurm task did not complete (see <run>/slurm/logs)".into(),
            )),
        }
    }
    report
}

fn summary_without_report(out: &Path, exec: ExecReport, submitted: Submitted) -> RunSummary {
    RunSummary {
        table_markdown: String::new(),
        metrics: out.join("metrics.jsonl"),
        report: out.join("report").join("index.html"),
        warnings: Vec::new(),
        exec,
        submitted,
    }
}

/// Publishes the report unit's outputs to the run directory and summarises.
fn finish(
    plan: &Plan,
    store: &Store,
    out: &Path,
    exec: ExecReport,
    log: &mut dyn FnMut(&str),
) -> Result<RunSummary, RunError> {
    let mut warnings: Vec<String> = Vec::new();
    for (id, error) in &exec.failed {
        let name = plan.find(id).map_or("?", |u| u.name.as_str());
        warnings.push(format!("unit {name} ({}) failed: {error}", short(id)));
    }
    if !exec.blocked.is_empty() {
        warnings.push(format!(
            "{} unit(s) did not run because an input failed",
            exec.blocked.len()
        ));
    }
    let report_unit = plan
        .units
        .iter()
        .find(|u| matches!(u.spec, UnitSpec::Report(_)));
    let mut table = String::new();
    if let Some(unit) = report_unit.filter(|u| store.record(&u.id).is_some()) {
        let dir = store.unit_dir(&unit.id);
        crate::units::report::publish(&dir, out)?;
        let (t, w) = crate::units::report::summary(&dir)?;
        table = t;
        warnings.extend(w);
    }
    log(&format!(
        "done: {} units computed, {} reused{}",
        exec.computed,
        exec.reused,
        if exec.complete() {
            String::new()
        } else {
            format!(
                ", {} failed, {} blocked",
                exec.failed.len(),
                exec.blocked.len()
            )
        }
    ));
    Ok(RunSummary {
        table_markdown: table,
        metrics: out.join("metrics.jsonl"),
        report: out.join("report").join("index.html"),
        warnings,
        exec,
        submitted: Vec::new(),
    })
}
