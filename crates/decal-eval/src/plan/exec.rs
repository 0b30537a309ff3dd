//! Executors: run a plan's dirty units in dependency order — in this process one by one, or as one
//! `decal unit run --store DIR ID` process per unit with `--jobs N` of them at a time (libtorch's
//! process-global state never mixes), at most one device unit per device at a time. Slurm is
//! [`crate::slurm`]. A unit that fails makes only its dependents fail (`--keep-going`); the report still runs
//! and says what is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::store::{CompletionRecord, Freshness, Outcome, Store};
use super::{short, Plan, Resource, Unit, UnitId};
use crate::units::{self, ExecOptions, Resources, UnitContext, UnitError};

/// How a plan's execution ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecReport {
    /// Units run now.
    pub computed: usize,
    /// Units found fresh.
    pub reused: usize,
    /// Units that failed, with the error.
    pub failed: Vec<(UnitId, String)>,
    /// Units not run because an input failed.
    pub blocked: Vec<UnitId>,
}

impl ExecReport {
    /// True when every unit completed.
    pub fn complete(&self) -> bool {
        self.failed.is_empty() && self.blocked.is_empty()
    }
}

/// Checks `unit`'s inputs, runs it in this process and writes its completion record. With `allow_missing`
/// (only for kinds that tolerate it), inputs without a completed record are passed over and listed.
pub fn run_one(
    plan: &Plan,
    store: &Store,
    unit: &Unit,
    options: &ExecOptions,
    allow_missing: bool,
    resources: &mut Resources,
    log: &mut dyn FnMut(&str),
) -> Result<CompletionRecord, UnitError> {
    let mut missing = Vec::new();
    for (role, dep) in &unit.deps {
        if store.record(dep).is_none() {
            if allow_missing && unit.spec.tolerates_missing_inputs() {
                missing.push(dep.clone());
            } else {
                let name = plan.find(dep).map_or(role.as_str(), |u| u.name.as_str());
                return Err(UnitError::Input {
                    unit: unit.name.clone(),
                    problem: format!("its input {name} ({}) has not completed", short(dep)),
                });
            }
        }
    }
    let threads = match unit.resource {
        Resource::Device => options.threads,
        Resource::Cpu => options.head_threads.or(options.threads),
    };
    if let Some(n) = threads {
        tch::set_num_threads(n.max(1) as i32);
    }
    store.begin(unit, unit.spec.resumes())?;
    let started = Instant::now();
    let mut ctx = UnitContext {
        store,
        plan,
        options,
        resources,
        log,
    };
    let result = units::run_unit(unit, &mut ctx)?;
    let outcome = match result.outcome {
        Outcome::Done if !missing.is_empty() => Outcome::Partial { missing },
        o => o,
    };
    let record = store.finish(
        unit,
        outcome,
        result.warnings,
        result.summary,
        started.elapsed().as_secs_f64(),
    )?;
    Ok(record)
}

/// What to do with the dirty units.
pub struct Execution<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// Its store.
    pub store: &'a Store,
    /// Freshness of every unit (from [`Store::freshness`]); `--force` passes everything dirty.
    pub freshness: &'a BTreeMap<UnitId, Freshness>,
    /// Go on past a failed unit (only its dependents fail).
    pub keep_going: bool,
}

impl Execution<'_> {
    fn dirty(&self) -> Vec<&Unit> {
        self.plan
            .units
            .iter()
            .filter(|u| !self.freshness.get(&u.id).is_some_and(Freshness::is_fresh))
            .collect()
    }

    /// Runs the dirty units one by one in this process.
    pub fn serial(
        &self,
        options: &ExecOptions,
        log: &mut dyn FnMut(&str),
    ) -> Result<ExecReport, UnitError> {
        let mut report = ExecReport {
            reused: self.plan.units.len() - self.dirty().len(),
            ..ExecReport::default()
        };
        let mut resources = Resources::default();
        let mut bad: BTreeSet<UnitId> = BTreeSet::new();
        for unit in self.dirty() {
            let blocked = unit.deps.values().any(|d| bad.contains(d));
            if blocked && !unit.spec.tolerates_missing_inputs() {
                report.blocked.push(unit.id.clone());
                bad.insert(unit.id.clone());
                continue;
            }
            log(&format!(
                "unit {} {} ({})",
                short(&unit.id),
                unit.name,
                unit.kind()
            ));
            match run_one(
                self.plan,
                self.store,
                unit,
                options,
                blocked,
                &mut resources,
                log,
            ) {
                Ok(record) => {
                    report.computed += 1;
                    log_record(&record, log);
                }
                Err(e) if self.keep_going => {
                    log(&format!("error: {e}"));
                    report.failed.push((unit.id.clone(), e.to_string()));
                    bad.insert(unit.id.clone());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Runs the dirty units as `exe unit run --store DIR ID extra_args…` processes, `jobs` at a time and at
    /// most one [`Resource::Device`] unit at a time when `one_device_unit`; each process's output goes to
    /// `<run>/logs/<id>.log`.
    pub fn processes(
        &self,
        exe: &Path,
        extra_args: &[String],
        jobs: usize,
        one_device_unit: bool,
        log: &mut dyn FnMut(&str),
    ) -> Result<ExecReport, UnitError> {
        let logs = self.store.root().join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| UnitError::Input {
            unit: "executor".into(),
            problem: format!("{}: {e}", logs.display()),
        })?;
        let dirty = self.dirty();
        let mut report = ExecReport {
            reused: self.plan.units.len() - dirty.len(),
            ..ExecReport::default()
        };
        let mut pending: Vec<&Unit> = dirty;
        let mut done: BTreeSet<UnitId> = BTreeSet::new();
        let mut bad: BTreeSet<UnitId> = BTreeSet::new();
        let mut running: Vec<(&Unit, Child, PathBuf)> = Vec::new();
        let mut stop = false;
        while !pending.is_empty() || !running.is_empty() {
            if !stop {
                self.launch_ready(
                    &mut pending,
                    &mut running,
                    (&done, &bad),
                    (exe, extra_args, &logs),
                    (jobs.max(1), one_device_unit),
                    &mut report,
                    log,
                )?;
            }
            let finished = wait_any(&mut running);
            for (unit, ok, log_path) in finished {
                if ok {
                    report.computed += 1;
                    done.insert(unit.id.clone());
                    if let Some(record) = self.store.record(&unit.id) {
                        log_record(&record, log);
                    }
                } else {
                    let tail = log_tail(&log_path);
                    log(&format!("error: unit {} failed:\n{tail}", unit.name));
                    report.failed.push((unit.id.clone(), tail));
                    bad.insert(unit.id.clone());
                    stop |= !self.keep_going;
                }
            }
            if stop && running.is_empty() {
                break;
            }
        }
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_ready<'p>(
        &self,
        pending: &mut Vec<&'p Unit>,
        running: &mut Vec<(&'p Unit, Child, PathBuf)>,
        (done, bad): (&BTreeSet<UnitId>, &BTreeSet<UnitId>),
        (exe, extra_args, logs): (&Path, &[String], &Path),
        (jobs, one_device_unit): (usize, bool),
        report: &mut ExecReport,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), UnitError> {
        let settled = |d: &UnitId| -> bool {
            done.contains(d)
                || bad.contains(d)
                || self.freshness.get(d).is_some_and(Freshness::is_fresh)
        };
        let mut i = 0;
        while i < pending.len() && running.len() < jobs {
            let unit = pending[i];
            let has_bad = unit
                .deps
                .values()
                .any(|d| bad.contains(d) || report.blocked.contains(d));
            if has_bad && !unit.spec.tolerates_missing_inputs() {
                report.blocked.push(unit.id.clone());
                pending.remove(i);
                continue;
            }
            let device_busy = one_device_unit
                && unit.resource == Resource::Device
                && running
                    .iter()
                    .any(|(u, _, _)| u.resource == Resource::Device);
            if !unit.deps.values().all(settled) || device_busy {
                i += 1;
                continue;
            }
            let log_path = logs.join(format!("{}.log", unit.id));
            let child = spawn_unit(exe, self.store.root(), unit, extra_args, has_bad, &log_path)?;
            log(&format!(
                "unit {} {} ({}): started",
                short(&unit.id),
                unit.name,
                unit.kind()
            ));
            running.push((unit, child, log_path));
            pending.remove(i);
        }
        Ok(())
    }
}

fn spawn_unit(
    exe: &Path,
    root: &Path,
    unit: &Unit,
    extra_args: &[String],
    allow_missing: bool,
    log_path: &Path,
) -> Result<Child, UnitError> {
    let fail = |e: std::io::Error| UnitError::Input {
        unit: unit.name.clone(),
        problem: format!("cannot start {}: {e}", exe.display()),
    };
    let file = std::fs::File::create(log_path).map_err(fail)?;
    let err = file.try_clone().map_err(fail)?;
    let mut cmd = Command::new(exe);
    cmd.arg("unit")
        .arg("run")
        .arg("--store")
        .arg(root)
        .arg(&unit.id)
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err);
    if allow_missing {
        cmd.arg("--allow-missing");
    }
    cmd.spawn().map_err(fail)
}

/// Waits until at least one running process ends; returns the ended ones with their success.
fn wait_any<'p>(running: &mut Vec<(&'p Unit, Child, PathBuf)>) -> Vec<(&'p Unit, bool, PathBuf)> {
    let mut ended = Vec::new();
    while !running.is_empty() {
        let mut i = 0;
        while i < running.len() {
            match running[i].1.try_wait() {
                Ok(Some(status)) => {
                    let (u, _, p) = running.remove(i);
                    ended.push((u, status.success(), p));
                }
                Ok(None) => i += 1,
                Err(_) => {
                    let (u, _, p) = running.remove(i);
                    ended.push((u, false, p));
                }
            }
        }
        if !ended.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ended
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(8);
    format!("{} (log: {})", lines[from..].join("\n"), path.display())
}

fn log_record(record: &CompletionRecord, log: &mut dyn FnMut(&str)) {
    let what = match &record.outcome {
        Outcome::Done => "done".to_string(),
        Outcome::Skipped { reason } => format!("skipped: {reason}"),
        Outcome::Partial { missing } => format!("done without {} input(s)", missing.len()),
    };
    log(&format!(
        "unit {} {}: {what} in {:.1}s",
        short(&record.id),
        record.name,
        record.seconds
    ));
    for w in &record.warnings {
        log(&format!("warning: {w}"));
    }
}
