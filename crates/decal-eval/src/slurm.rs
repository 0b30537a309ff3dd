//! The Slurm executor: submits a plan's dirty units to a Slurm cluster as job arrays and waits for them.
//!
//! The planner hands over [`SlurmGroup`]s in level order (level 0 first): every unit of a group has the
//! same level in the DAG and the same resource class (GPU or not). [`submit`] writes, per group, a list
//! file of unit ids (one a line) and an sbatch script into a fresh submission directory
//! `<store>/slurm/<stamp>/`; array task `$SLURM_ARRAY_TASK_ID` runs line `N + 1` of the list as
//! `"<decal_exe>" unit run --store "<store>" <ID> <extra_args…>` and exits with its status. A group depends
//! (`--dependency=afterok:…`) on every job of all lower levels, so a failed unit stops everything that could
//! depend on it and nothing else of its level (with `keep_going`, `afterany`: later levels run anyway, a unit
//! whose input failed fails at once naming it, and the report runs with what completed). Jobs are `--requeue`able (a preempted task simply runs again;
//! the unit's completion record decides whether its work is done) and `--kill-on-invalid-dep=yes` (a job
//! whose dependency failed is cancelled by Slurm itself, even when nobody waits).
//!
//! [`wait`] polls `squeue` (never `sacct`: clusters without an accounting database work too) until none of
//! the jobs is pending or running, cancels jobs that wait on a dependency that can never be satisfied (in
//! case the cluster kept them), and reports which array tasks failed — from `squeue`'s view of finished
//! jobs (kept for the cluster's `MinJobAge`) and, once Slurm has forgotten a job, from the exit line every
//! task writes to its log `<store>/slurm/logs/<job>_<task>.out`. Which units completed is not decided here:
//! the caller re-plans, and a unit is complete exactly when its completion record exists.
//!
//! See docs/slurm.md for the command line and the single-node test cluster (scripts/slurm-single-node.sh).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One job array: units of the same DAG level and resource class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmGroup {
    /// DAG level (0 = no dependencies); groups are passed in non-decreasing level order.
    pub level: usize,
    /// Whether the units need a GPU (then `--gres=gpu:<gpus_per_unit>`).
    pub gpu: bool,
    /// The units, by id (letters, digits, `.`, `_`, `-`); array task N runs the N-th.
    pub unit_ids: Vec<String>,
    /// A short name (letters, digits, `.`, `_`, `-`): the job is named `decal-<label>`, its files `<label>.*`.
    pub label: String,
}

/// How to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmOptions {
    /// `--partition`; the cluster's default when `None`.
    pub partition: Option<String>,
    /// GPUs per task of a GPU group (`--gres=gpu:N`; none asked when 0).
    pub gpus_per_unit: u32,
    /// `--time` (any format sbatch accepts, e.g. `2:00:00`); the partition's default when `None`.
    pub time: Option<String>,
    /// `--cpus-per-task` (omitted when 0).
    pub cpus_per_task: u32,
    /// The `decal` executable the tasks run (made absolute; must exist and be visible to the compute nodes).
    pub decal_exe: PathBuf,
    /// The run's output directory (the unit store; made absolute; shared with the compute nodes).
    pub store: PathBuf,
    /// Appended to every `decal unit run` (e.g. `--device cuda`).
    pub extra_args: Vec<String>,
    /// `--keep-going`: every level waits for the lower ones to end however they ended (`afterany`), a unit
    /// whose input failed fails at once naming it, and the report runs with what completed
    /// (`--allow-missing`).
    pub keep_going: bool,
}

/// What [`submit`] submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// `(label, Slurm job id)` per submitted group, in submission order.
    pub job_ids: Vec<(String, String)>,
    /// The unit ids of each submitted job (same order as `job_ids`; array task N ran `units[j][N]`).
    pub units: Vec<Vec<String>>,
    /// This submission's directory (`<store>/slurm/<stamp>/`: list files and sbatch scripts).
    pub dir: PathBuf,
    /// Where the tasks' logs go (`<store>/slurm/logs/`, `<job>_<task>.out`).
    pub log_dir: PathBuf,
}

/// An array task that ran and did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// The group's label.
    pub label: String,
    /// The array's job id.
    pub job_id: String,
    /// The array task index.
    pub task: usize,
    /// The unit it ran, when the index is in range.
    pub unit_id: Option<String>,
    /// What is known: Slurm's state and reason (`FAILED (NonZeroExitCode)`), or the exit line of the log.
    pub state: String,
    /// The task's log file.
    pub log: PathBuf,
}

/// A job (whole array) that never ran because a dependency failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeverRan {
    /// The group's label.
    pub label: String,
    /// The array's job id.
    pub job_id: String,
    /// Slurm's reason (`DependencyNeverSatisfied`).
    pub reason: String,
    /// Whether [`wait`] cancelled it (otherwise Slurm already had).
    pub cancelled_by_wait: bool,
}

/// What [`wait`] saw once no job was pending or running any more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitReport {
    /// Array tasks that completed successfully.
    pub completed: usize,
    /// Array tasks that ran and failed (or were cancelled, timed out, ran out of memory…).
    pub failed: Vec<TaskFailure>,
    /// Jobs that never ran because a job they depend on failed.
    pub never_ran: Vec<NeverRan>,
    /// Array tasks whose outcome could not be told (Slurm forgot the job and the log has no exit line).
    pub unknown: Vec<TaskFailure>,
}

/// Errors of the Slurm executor.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// A Slurm command could not be started at all.
    #[error("cannot run `{command}`: {source} (is Slurm installed and on PATH?)")]
    Missing {
        /// The command.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A Slurm command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error (trimmed).
        stderr: String,
    },
    /// A Slurm command printed something this module does not understand.
    #[error("`{command}` printed unexpected output: {output:?}")]
    BadOutput {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
    },
    /// A group or option cannot be submitted.
    #[error("slurm executor: {0}")]
    Invalid(String),
    /// A file could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a script or list atomically failed.
    #[error(transparent)]
    Core(#[from] decal_core::CoreError),
    /// A later sbatch failed; the jobs already submitted were cancelled (or the cancel failed, said here).
    #[error("submitting group {label:?} failed: {source}; {cancelled}")]
    PartialSubmit {
        /// The group whose submission failed.
        label: String,
        /// Why.
        #[source]
        source: Box<SlurmError>,
        /// What happened to the jobs already submitted.
        cancelled: String,
    },
}

/// Submits `groups` (in non-decreasing level order) as job arrays chained by `afterok` on all lower levels.
/// Groups without units are skipped. If an sbatch fails, the jobs already submitted are cancelled and
/// [`SlurmError::PartialSubmit`] says so.
pub fn submit(groups: &[SlurmGroup], opts: &SlurmOptions) -> Result<Submitted, SlurmError> {
    validate(groups, opts)?;
    let exe = absolute(&opts.decal_exe)?;
    if !exe.is_file() {
        return Err(SlurmError::Invalid(format!(
            "decal executable {} is not a file",
            exe.display()
        )));
    }
    std::fs::create_dir_all(&opts.store).map_err(|source| SlurmError::Io {
        path: opts.store.clone(),
        source,
    })?;
    let store = absolute(&opts.store)?;
    let log_dir = store.join("slurm").join("logs");
    std::fs::create_dir_all(&log_dir).map_err(|source| SlurmError::Io {
        path: log_dir.clone(),
        source,
    })?;
    let dir = fresh_submission_dir(&store.join("slurm"))?;
    let mut sub = Submitted {
        job_ids: Vec::new(),
        units: Vec::new(),
        dir,
        log_dir,
    };
    // (level, job id) of everything submitted so far.
    let mut by_level: Vec<(usize, String)> = Vec::new();
    for group in groups.iter().filter(|g| !g.unit_ids.is_empty()) {
        let deps: Vec<&str> = by_level
            .iter()
            .filter(|(level, _)| *level < group.level)
            .map(|(_, id)| id.as_str())
            .collect();
        match submit_group(group, opts, &exe, &store, &sub, &deps) {
            Ok(job) => {
                by_level.push((group.level, job.clone()));
                sub.job_ids.push((group.label.clone(), job));
                sub.units.push(group.unit_ids.clone());
            }
            Err(err) => return Err(cancel_after_failure(&group.label, err, &sub)),
        }
    }
    Ok(sub)
}

fn validate(groups: &[SlurmGroup], opts: &SlurmOptions) -> Result<(), SlurmError> {
    let mut labels = BTreeSet::new();
    let mut last_level = 0;
    for g in groups {
        if g.label.is_empty() || !g.label.chars().all(name_char) {
            return Err(SlurmError::Invalid(format!(
                "group label {:?} must be non-empty letters, digits, '.', '_' or '-'",
                g.label
            )));
        }
        if !labels.insert(g.label.as_str()) {
            return Err(SlurmError::Invalid(format!(
                "group label {:?} used twice",
                g.label
            )));
        }
        if g.level < last_level {
            return Err(SlurmError::Invalid(format!(
                "groups must come in level order: {:?} (level {}) after level {last_level}",
                g.label, g.level
            )));
        }
        last_level = g.level;
        if let Some(bad) = g
            .unit_ids
            .iter()
            .find(|id| id.is_empty() || !id.chars().all(name_char))
        {
            return Err(SlurmError::Invalid(format!(
                "group {:?}: unit id {bad:?} must be non-empty letters, digits, '.', '_' or '-'",
                g.label
            )));
        }
    }
    if let Some(p) = &opts.partition {
        if p.is_empty() || p.chars().any(|c| c.is_whitespace()) {
            return Err(SlurmError::Invalid(format!(
                "partition {p:?} is not a partition name"
            )));
        }
    }
    if let Some(t) = &opts.time {
        if t.is_empty() || t.chars().any(|c| c.is_whitespace()) {
            return Err(SlurmError::Invalid(format!(
                "time limit {t:?} is not a Slurm time"
            )));
        }
    }
    Ok(())
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn absolute(p: &Path) -> Result<PathBuf, SlurmError> {
    std::path::absolute(p).map_err(|source| SlurmError::Io {
        path: p.to_path_buf(),
        source,
    })
}

/// Claims a new directory `<slurm>/<unix seconds>-<pid>[-n]` (never reuses one: jobs of an earlier
/// submission may still read their list files).
fn fresh_submission_dir(slurm: &Path) -> Result<PathBuf, SlurmError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("{secs}-{}", std::process::id());
    for n in 0..1000 {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = slurm.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(SlurmError::Io { path: dir, source }),
        }
    }
    Err(SlurmError::Invalid(format!(
        "no free submission directory under {}",
        slurm.display()
    )))
}

/// Single-quotes `s` for bash.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn task_script(
    group: &SlurmGroup,
    list: &Path,
    exe: &Path,
    store: &Path,
    extra: &[String],
) -> String {
    let list_q = sh_quote(&list.to_string_lossy());
    let mut run = format!(
        "{} unit run --store {} \"$id\"",
        sh_quote(&exe.to_string_lossy()),
        sh_quote(&store.to_string_lossy())
    );
    for a in extra {
        run.push(' ');
        run.push_str(&sh_quote(a));
    }
    format!(
        "#!/bin/bash\n\
         # decal Slurm executor: group {label} (level {level}, {n} units, gpu: {gpu}); task N runs line N+1 of\n\
         # {list}\n\
         set -u\n\
         line=$((SLURM_ARRAY_TASK_ID + 1))\n\
         id=$(sed -n \"${{line}}p\" {list_q})\n\
         if [ -z \"$id\" ]; then\n\
         \x20 echo \"decal-slurm: task $SLURM_ARRAY_TASK_ID: no unit on line $line of \"{list_q} >&2\n\
         \x20 exit 2\n\
         fi\n\
         echo \"decal-slurm: unit $id start $(date -u +%Y-%m-%dT%H:%M:%SZ) host $(hostname) restart ${{SLURM_RESTART_COUNT:-0}}\"\n\
         {run}\n\
         rc=$?\n\
         echo \"decal-slurm: unit $id exit $rc $(date -u +%Y-%m-%dT%H:%M:%SZ)\"\n\
         exit $rc\n",
        label = group.label,
        level = group.level,
        n = group.unit_ids.len(),
        gpu = group.gpu,
        list = list.display(),
    )
}

/// The arguments appended to a group's `decal unit run`: `extra_args`, with `--device` set to `cpu` for a
/// group without a GPU allocation when the run asks GPUs for its device units (the node of such a task
/// may have no GPU: heads on cached features, evaluations and reductions then run on its CPU), and
/// `--allow-missing` with `keep_going`.
fn task_args(group: &SlurmGroup, opts: &SlurmOptions) -> Vec<String> {
    let mut extra = opts.extra_args.clone();
    if opts.gpus_per_unit > 0 && !group.gpu {
        let mut i = 0;
        while i < extra.len() {
            if extra[i] == "--device" && i + 1 < extra.len() {
                extra[i + 1] = "cpu".into();
                i += 1;
            } else if extra[i].starts_with("--device=") {
                extra[i] = "--device=cpu".into();
            }
            i += 1;
        }
    }
    if opts.keep_going {
        extra.push("--allow-missing".into());
    }
    extra
}

fn submit_group(
    group: &SlurmGroup,
    opts: &SlurmOptions,
    exe: &Path,
    store: &Path,
    sub: &Submitted,
    deps: &[&str],
) -> Result<String, SlurmError> {
    let list = sub.dir.join(format!("{}.units", group.label));
    let mut text = group.unit_ids.join("\n");
    text.push('\n');
    decal_core::write_atomic(&list, text.as_bytes())?;
    let script = sub.dir.join(format!("{}.sbatch", group.label));
    let extra = task_args(group, opts);
    let body = task_script(group, &list, exe, store, &extra);
    decal_core::write_atomic(&script, body.as_bytes())?;

    let mut args: Vec<String> = vec![
        "--parsable".into(),
        format!("--array=0-{}", group.unit_ids.len() - 1),
        "--job-name".into(),
        format!("decal-{}", group.label),
        "--output".into(),
        sub.log_dir.join("%A_%a.out").to_string_lossy().into_owned(),
        "--open-mode=append".into(),
        "--requeue".into(),
        "--kill-on-invalid-dep=yes".into(),
    ];
    if let Some(p) = &opts.partition {
        args.push(format!("--partition={p}"));
    }
    if group.gpu && opts.gpus_per_unit > 0 {
        args.push(format!("--gres=gpu:{}", opts.gpus_per_unit));
    }
    if let Some(t) = &opts.time {
        args.push(format!("--time={t}"));
    }
    if opts.cpus_per_task > 0 {
        args.push(format!("--cpus-per-task={}", opts.cpus_per_task));
    }
    if !deps.is_empty() {
        let kind = if opts.keep_going {
            "afterany"
        } else {
            "afterok"
        };
        args.push(format!("--dependency={kind}:{}", deps.join(":")));
    }
    args.push(script.to_string_lossy().into_owned());
    let out = run("sbatch", &args)?;
    // --parsable prints "<job id>" or "<job id>;<cluster>".
    let job = out.trim().split(';').next().unwrap_or("").to_string();
    if job.is_empty() || !job.chars().all(|c| c.is_ascii_digit()) {
        return Err(SlurmError::BadOutput {
            command: command_line("sbatch", &args),
            output: out,
        });
    }
    Ok(job)
}

fn cancel_after_failure(label: &str, err: SlurmError, sub: &Submitted) -> SlurmError {
    let ids: Vec<String> = sub.job_ids.iter().map(|(_, id)| id.clone()).collect();
    let cancelled = if ids.is_empty() {
        "nothing had been submitted".to_string()
    } else {
        match run("scancel", &ids) {
            Ok(_) => format!("cancelled the jobs already submitted: {}", ids.join(", ")),
            Err(e) => format!(
                "could NOT cancel the jobs already submitted ({}): {e}",
                ids.join(", ")
            ),
        }
    };
    SlurmError::PartialSubmit {
        label: label.to_string(),
        source: Box::new(err),
        cancelled,
    }
}

fn command_line(program: &str, args: &[String]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Runs a Slurm command; its stdout on success.
fn run(program: &str, args: &[String]) -> Result<String, SlurmError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| SlurmError::Missing {
            command: program.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(SlurmError::Failed {
            command: command_line(program, args),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One line of `squeue -r -t all -o %i|%T|%r`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    job: String,
    task: Option<usize>,
    state: String,
    reason: String,
}

fn parse_rows(text: &str) -> Vec<Row> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().splitn(3, '|');
            let id = f.next()?;
            let state = f.next()?.trim().to_string();
            let reason = f.next().unwrap_or("").trim().to_string();
            let (job, task) = match id.split_once('_') {
                // "12_3": one task; "12_[4-9]" (not expanded) counts as the array's pending rest.
                Some((job, task)) => (job.to_string(), task.parse().ok()),
                None => (id.to_string(), None),
            };
            Some(Row {
                job,
                task,
                state,
                reason,
            })
        })
        .collect()
}

const ACTIVE: &[&str] = &[
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
    "RESV_DEL_HOLD",
];

/// The rows of `jobs` Slurm still knows (finished ones for its `MinJobAge`). Transient failures are retried.
fn squeue(jobs: &[String]) -> Result<Vec<Row>, SlurmError> {
    let args = vec![
        "-h".to_string(),
        "-r".to_string(),
        "-t".to_string(),
        "all".to_string(),
        "-j".to_string(),
        jobs.join(","),
        "-o".to_string(),
        "%i|%T|%r".to_string(),
    ];
    let mut tries = 0;
    loop {
        match run("squeue", &args) {
            Ok(out) => return Ok(parse_rows(&out)),
            // Every job already purged (older than MinJobAge).
            Err(SlurmError::Failed { stderr, .. }) if stderr.contains("Invalid job id") => {
                return Ok(Vec::new())
            }
            Err(SlurmError::Failed { .. }) if tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits until none of the submitted jobs is pending or running, calling `log` with a progress line whenever
/// the picture changes. A job waiting on a dependency that can never be satisfied is cancelled (and named
/// in the report). Failed array tasks are reported from squeue's state or, once Slurm has forgotten them,
/// from the exit line in their log.
pub fn wait(
    sub: &Submitted,
    poll: Duration,
    log: &mut dyn FnMut(&str),
) -> Result<WaitReport, SlurmError> {
    let jobs: Vec<String> = sub.job_ids.iter().map(|(_, id)| id.clone()).collect();
    if jobs.is_empty() {
        return Ok(WaitReport::default());
    }
    let (last, cancelled) = poll_until_done(sub, &jobs, poll, log)?;
    Ok(classify(sub, &last, &cancelled))
}

/// Last state and reason seen per (job, array task).
type TaskStates = BTreeMap<(String, usize), (String, String)>;

/// Polls `squeue` until none of `jobs` is pending or running, cancelling jobs held by a dependency that
/// can never be satisfied; returns the last state seen per task and the jobs it cancelled.
fn poll_until_done(
    sub: &Submitted,
    jobs: &[String],
    poll: Duration,
    log: &mut dyn FnMut(&str),
) -> Result<(TaskStates, BTreeSet<String>), SlurmError> {
    let label_of: BTreeMap<&str, &str> = sub
        .job_ids
        .iter()
        .map(|(l, j)| (j.as_str(), l.as_str()))
        .collect();
    // Last state seen per (job, task).
    let mut last: TaskStates = BTreeMap::new();
    let mut cancelled: BTreeSet<String> = BTreeSet::new();
    let mut previous = String::new();
    loop {
        let rows = squeue(jobs)?;
        for r in &rows {
            if let Some(t) = r.task {
                last.insert((r.job.clone(), t), (r.state.clone(), r.reason.clone()));
            }
        }
        let stuck: BTreeSet<String> = rows
            .iter()
            .filter(|r| r.state == "PENDING" && r.reason == "DependencyNeverSatisfied")
            .map(|r| r.job.clone())
            .filter(|j| !cancelled.contains(j))
            .collect();
        if !stuck.is_empty() {
            let ids: Vec<String> = stuck.iter().cloned().collect();
            run("scancel", &ids)?;
            for j in ids {
                log(&format!(
                    "slurm: job {j} ({}) can never start (a job it depends on failed): cancelled",
                    label_of.get(j.as_str()).unwrap_or(&"?")
                ));
                cancelled.insert(j);
            }
            continue;
        }
        let line = progress(sub, &rows);
        if line != previous {
            log(&line);
            previous = line;
        }
        if !rows.iter().any(|r| ACTIVE.contains(&r.state.as_str())) {
            break;
        }
        std::thread::sleep(poll);
    }
    Ok((last, cancelled))
}

/// What became of every array task, from the states seen and the tasks' logs.
fn classify(sub: &Submitted, last: &TaskStates, cancelled: &BTreeSet<String>) -> WaitReport {
    let mut report = WaitReport::default();
    for (j, (label, job)) in sub.job_ids.iter().enumerate() {
        let units = &sub.units[j];
        let mut never = None;
        for (task, unit) in units.iter().enumerate() {
            let log_path = sub.log_dir.join(format!("{job}_{task}.out"));
            let failure = |state: String| TaskFailure {
                label: label.clone(),
                job_id: job.clone(),
                task,
                unit_id: Some(unit.clone()),
                state,
                log: log_path.clone(),
            };
            match last.get(&(job.clone(), task)) {
                Some((state, _)) if state == "COMPLETED" => report.completed += 1,
                Some((state, reason))
                    if (reason.contains("Dependency") || cancelled.contains(job))
                        && state != "COMPLETED"
                        && !log_path.exists() =>
                {
                    never.get_or_insert_with(|| (state.clone(), reason.clone()));
                }
                Some((state, reason)) => report.failed.push(failure(format!("{state} ({reason})"))),
                None => match log_exit(&log_path) {
                    Some(0) => report.completed += 1,
                    Some(rc) => report
                        .failed
                        .push(failure(format!("exit {rc} (from the log)"))),
                    None => report.unknown.push(failure(
                        "unknown: Slurm no longer knows the task and its log has no exit line"
                            .into(),
                    )),
                },
            }
        }
        if let Some((_, reason)) = never {
            report.never_ran.push(NeverRan {
                label: label.clone(),
                job_id: job.clone(),
                reason,
                cancelled_by_wait: cancelled.contains(job),
            });
        }
    }
    report
}

/// "slurm: decal-L0 (12): 2 running, 1 pending; decal-L1 (13): 2 pending (Dependency)".
fn progress(sub: &Submitted, rows: &[Row]) -> String {
    let mut parts = Vec::new();
    for (label, job) in &sub.job_ids {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in rows.iter().filter(|r| &r.job == job) {
            let key = if r.state == "PENDING" && r.reason != "None" && !r.reason.is_empty() {
                format!("pending ({})", r.reason)
            } else {
                r.state.to_lowercase()
            };
            *counts.entry(key).or_default() += 1;
        }
        let what = if counts.is_empty() {
            "no longer in squeue".to_string()
        } else {
            counts
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        parts.push(format!("{label} ({job}): {what}"));
    }
    format!("slurm: {}", parts.join("; "))
}

/// The exit status in the last "decal-slurm: unit ID exit RC" line of a task log.
fn log_exit(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find_map(|l| {
        let rest = l.strip_prefix("decal-slurm: unit ")?;
        let mut w = rest.split_whitespace();
        let _id = w.next()?;
        (w.next()? == "exit").then_some(())?;
        w.next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_squeue_rows() {
        let rows = parse_rows("5_2|COMPLETED|None\n6_[0-3]|PENDING|Dependency\n7|RUNNING|None\n");
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].job.as_str(), rows[0].task), ("5", Some(2)));
        assert_eq!((rows[1].job.as_str(), rows[1].task), ("6", None));
        assert_eq!(rows[1].reason, "Dependency");
        assert_eq!((rows[2].job.as_str(), rows[2].task), ("7", None));
    }

    #[test]
    fn quotes_for_bash() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn rejects_bad_groups() {
        let opts = SlurmOptions {
            partition: None,
            gpus_per_unit: 0,
            time: None,
            cpus_per_task: 1,
            decal_exe: PathBuf::from("/bin/true"),
            store: PathBuf::from("/tmp"),
            extra_args: vec![],
            keep_going: false,
        };
        let g = |level, label: &str, ids: &[&str]| SlurmGroup {
            level,
            gpu: false,
            unit_ids: ids.iter().map(|s| s.to_string()).collect(),
            label: label.into(),
        };
        let e = validate(&[g(1, "a", &["x"]), g(0, "b", &["y"])], &opts).unwrap_err();
        assert!(e.to_string().contains("level order"), "{e}");
        let e = validate(&[g(0, "a b", &["x"])], &opts).unwrap_err();
        assert!(e.to_string().contains("label"), "{e}");
        let e = validate(&[g(0, "a", &["x;rm"])], &opts).unwrap_err();
        assert!(e.to_string().contains("unit id"), "{e}");
        let e = validate(&[g(0, "a", &["x"]), g(0, "a", &["y"])], &opts).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        assert!(validate(&[g(0, "a", &["x"]), g(2, "b", &["y"])], &opts).is_ok());
    }

    #[test]
    fn tasks_without_a_gpu_run_on_the_cpu() {
        let opts = |gpus, extra: &[&str], keep_going| SlurmOptions {
            partition: None,
            gpus_per_unit: gpus,
            time: None,
            cpus_per_task: 1,
            decal_exe: PathBuf::from("/bin/true"),
            store: PathBuf::from("/tmp"),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            keep_going,
        };
        let g = |gpu| SlurmGroup {
            level: 0,
            gpu,
            unit_ids: vec!["x".into()],
            label: "l".into(),
        };
        let args = [
            "--threads",
            "2",
            "--device",
            "cuda:1",
            "--head-threads",
            "1",
        ];
        // A GPU run: device units keep the device, the others (no GPU allocated) use the CPU.
        assert_eq!(task_args(&g(true), &opts(1, &args, false)), args);
        assert_eq!(
            task_args(&g(false), &opts(1, &args, false)),
            ["--threads", "2", "--device", "cpu", "--head-threads", "1"]
        );
        assert_eq!(
            task_args(&g(false), &opts(2, &["--device=cuda"], true)),
            ["--device=cpu", "--allow-missing"]
        );
        // No GPUs asked: the user's device everywhere (a CPU cluster, or GPUs the nodes give every task).
        assert_eq!(task_args(&g(false), &opts(0, &args, false)), args);
    }

    #[test]
    fn reads_the_exit_line_of_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("1_0.out");
        std::fs::write(
            &p,
            "decal-slurm: unit ab start x\nboom\ndecal-slurm: unit ab exit 3 2026\n",
        )
        .unwrap();
        assert_eq!(log_exit(&p), Some(3));
        std::fs::write(&p, "decal-slurm: unit ab start x\n").unwrap();
        assert_eq!(log_exit(&p), None);
    }

    #[test]
    fn the_task_script_runs_the_listed_unit_with_its_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("g.units");
        std::fs::write(&list, "u0\nu1\n").unwrap();
        let exe = dir.path().join("fake exe");
        std::fs::write(
            &exe,
            "#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\nexit 4\n",
        )
        .unwrap();
        let status = Command::new("chmod").arg("+x").arg(&exe).status().unwrap();
        assert!(status.success());
        let group = SlurmGroup {
            level: 0,
            gpu: false,
            unit_ids: vec!["u0".into(), "u1".into()],
            label: "g".into(),
        };
        let script = task_script(
            &group,
            &list,
            &exe,
            Path::new("/st ore"),
            &["--device".into(), "it's".into()],
        );
        let sh = dir.path().join("g.sbatch");
        std::fs::write(&sh, script).unwrap();
        let out = Command::new("bash")
            .arg(&sh)
            .env("SLURM_ARRAY_TASK_ID", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{out:?}");
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        assert_eq!(args.trim(), "unit run --store /st ore u1 --device it's");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("decal-slurm: unit u1 exit 4"), "{stdout}");
        let out = Command::new("bash")
            .arg(&sh)
            .env("SLURM_ARRAY_TASK_ID", "2")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
    }
}
