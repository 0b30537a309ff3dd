//! Corruption-sweep units: `shift-cell` (features of one corruption × severity), `shift-score` (one method
//! row × seed on one corruption's cells) and `shift` (the sweep's reductions).
//!
//! What `shift.dir` holds is resolved at plan time: the corruptions (`[shift] corruptions`, or every
//! `<corruption>.npy` next to `labels.npy`), the severities (`manifest.json`, [`decal_data::corrupted`]) and
//! the SHA-256 of every file a cell reads, so a missing or empty directory is a plan error naming
//! `shift.dir`, and a file changed after planning gives new unit ids.
//!
//! - `shift-cell/<corruption>/s<severity>` (device): the cell's images — every `every`-th image of the
//!   severity block (widened so that at most `limit` remain), without the corrupted copies of the held-out
//!   calibration images when the file follows the full test split's order — through the frozen body;
//!   writes `cell.features.npy`, `cell.labels.npy`, `cell.json` ([`decal_train::features::save`]) and
//!   `info.json` ([`CellInfo`]). A head trained with `[features] body = "seed-bn-drift"` has its own cells,
//!   `shift-cell/<head-slug>/seed-<s>/<corruption>/s<severity>`, through its drifted body.
//! - `shift-score/<method-slug>[/seed-<s>]/<corruption>`: the row's predictions on each cell — f64
//!   logits `s<severity>.logits.npy` and labels `s<severity>.labels.npy`, bit for bit what the old streaming
//!   sweep fed its accumulators (ε seed `eval_seed ^ (1000 + severity index) ^ seed·φ`) — and `score.json`
//!   with the per-cell records of the primary and the paper profile.
//! - `shift`: replays every row's cells in sweep order (corruptions, then severities) through
//!   [`ShiftSweep`] for the primary and the paper profile, so per-cell, per-severity and pooled SHIFT
//!   figures equal the old `shift-*.json`; writes `shift.json` (`records`, `results`, `kind`, `dir`,
//!   `held_out_calibration_images_excluded`, `warning`).
//!
//! Adding a corruption adds its cells and scores (and re-runs `shift` and the report); adding a head seed
//! adds its scores only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use decal_data::corrupted;
use decal_metrics::profile::Profile;
use decal_report::MetricRecord;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{UnitContext, UnitError, UnitResult, UnitSpec};
use crate::plan::build::{MethodRow, PlanCtx};
use crate::plan::{PlanError, Resource, Unit, UnitId};
use crate::predict::{LogitKind, Predictions};
use crate::suite::{RecordContext, ShiftCompat, ShiftSweep};

mod cell;
mod score;

/// Features of one corruption × severity cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftCellSpec {
    /// The corruption (file stem).
    pub corruption: String,
    /// `<shift.dir>/<corruption>.npy`.
    pub file: PathBuf,
    /// SHA-256 of `file` at plan time.
    pub sha256: String,
    /// SHA-256 of `labels.npy`.
    pub labels_sha256: String,
    /// SHA-256 of `manifest.json` (None: no manifest, severities 1..=5).
    pub manifest_sha256: Option<String>,
    /// The cell's severity.
    pub severity: u8,
    /// `[shift] every`.
    pub every: usize,
    /// `[shift] limit` (0 = all).
    pub limit: usize,
    /// `[features] batch_size`.
    pub batch_size: usize,
    /// Device kind the features are computed on.
    pub device_kind: String,
    /// Through the drifted body of the `head` input (seed-bn-drift) instead of the frozen one.
    pub drifted: bool,
}

/// One method row × seed on one corruption's cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftScoreSpec {
    /// Run name (records' `run`).
    pub run: String,
    /// Table row.
    pub method: String,
    /// Stage-2 seed.
    pub seed: Option<u64>,
    /// Monte-Carlo samples (V-TST).
    pub num_samples: usize,
    /// `[eval] eval_seed`.
    pub eval_seed: u64,
    /// The corruption.
    pub corruption: String,
    /// Every severity of the directory, in block order (the index salts the ε stream).
    pub severities: Vec<u8>,
    /// Records' dataset name.
    pub dataset: String,
    /// Primary metric profile.
    pub profile: String,
}

/// The sweep's reductions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftReduceSpec {
    /// Run name (records' `run`).
    pub run: String,
    /// Records' dataset name.
    pub dataset: String,
    /// Primary metric profile (the paper profile is always added, `_paper` keys).
    pub profile: String,
    /// Seed compat (BUG-1).
    pub severity_divisor: Option<usize>,
    /// `shift.dir` (reported in `shift.json`).
    pub dir: PathBuf,
    /// Corruptions in sweep order.
    pub corruptions: Vec<String>,
    /// Severities in block order.
    pub severities: Vec<u8>,
    /// Rows × seeds in table order: (method, seed).
    pub rows: Vec<(String, Option<u64>)>,
    /// Named subsets of `corruptions` whose pooled figures are reported as well, as `<metric>_<name>` (and
    /// `<metric>_<name>_paper`): `seed13`, the seed's 13 CIFAR-10-C corruptions, when the sweep has
    /// them and more. Empty (and then absent from the spec, so older plans keep their ids) otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pooled_subsets: Vec<(String, Vec<String>)>,
}

/// The named corruption subsets a sweep over `corruptions` reports pooled figures for (see
/// [`ShiftReduceSpec::pooled_subsets`]).
pub fn pooled_subsets(corruptions: &[String]) -> Vec<(String, Vec<String>)> {
    let seed13 = corrupted::SEED_CIFAR10_C;
    let has_all = seed13.iter().all(|c| corruptions.iter().any(|x| x == c));
    if has_all && corruptions.len() > seed13.len() {
        vec![(
            "seed13".into(),
            seed13.iter().map(|c| c.to_string()).collect(),
        )]
    } else {
        Vec::new()
    }
}

/// What a cell unit writes to `info.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellInfo {
    /// The corruption.
    pub corruption: String,
    /// Its severity.
    pub severity: u8,
    /// Images in the cell.
    pub images: usize,
    /// Images per severity block in the file.
    pub per_severity: usize,
    /// The stride used.
    pub every: usize,
    /// Held-out calibration images of the split.
    pub held_out: usize,
    /// Whether their corrupted copies were left out.
    pub held_out_excluded: bool,
    /// Why they could not be (the file does not follow the test split's order).
    pub warning: Option<String>,
}

// ---- plan -------------------------------------------------------------------------------------------

fn cfg(key: impl Into<String>, problem: impl Into<String>) -> PlanError {
    PlanError::Config {
        key: key.into(),
        problem: problem.into(),
    }
}

/// SHA-256 of a file (a corruption file is ~150 MB and every plan and every cell hashes it), cached across
/// processes by size and modification time (`units/data/fingerprint.rs`).
pub(crate) fn file_sha256(path: &Path) -> Result<String, String> {
    crate::units::data::sha256_cached(path)
}

/// The corruption directory as resolved at plan time.
struct Resolved {
    names: Vec<String>,
    files: Vec<(PathBuf, String)>,
    severities: Vec<u8>,
    labels_sha256: String,
    manifest_sha256: Option<String>,
}

fn resolve(shift: &crate::experiment::ShiftSpec) -> Result<Resolved, PlanError> {
    let dir = &shift.dir;
    if !dir.is_dir() {
        return Err(cfg(
            "shift.dir",
            format!("{} does not exist or is not a directory", dir.display()),
        ));
    }
    let severities = corrupted::severities(dir).map_err(|e| cfg("shift.dir", e.to_string()))?;
    let labels = dir.join("labels.npy");
    if !labels.is_file() {
        return Err(cfg(
            "shift.dir",
            format!("{} has no labels.npy", dir.display()),
        ));
    }
    let mut names: Vec<String> = Vec::new();
    if shift.corruptions.is_empty() {
        names = corrupted::available(dir);
        if names.is_empty() {
            return Err(cfg(
                "shift.dir",
                format!("no <corruption>.npy files in {}", dir.display()),
            ));
        }
    } else {
        for (i, n) in shift.corruptions.iter().enumerate() {
            let key = format!("shift.corruptions[{i}]");
            if names.last() == Some(n) {
                continue; // as before: a repeated name evaluates once
            }
            if names.contains(n) {
                return Err(cfg(key, format!("{n:?} is listed twice")));
            }
            if n.is_empty() || n.contains(['/', '\\']) || n == "labels" {
                return Err(cfg(key, format!("{n:?} is not a corruption name")));
            }
            if !dir.join(format!("{n}.npy")).is_file() {
                return Err(cfg(
                    key,
                    format!(
                        "{} does not exist (available: {:?})",
                        dir.join(format!("{n}.npy")).display(),
                        corrupted::available(dir)
                    ),
                ));
            }
            names.push(n.clone());
        }
    }
    let mut files = Vec::new();
    for n in &names {
        let f = dir.join(format!("{n}.npy"));
        let sha = file_sha256(&f).map_err(|e| cfg("shift.dir", e))?;
        files.push((f, sha));
    }
    let manifest = dir.join("manifest.json");
    Ok(Resolved {
        labels_sha256: file_sha256(&labels).map_err(|e| cfg("shift.dir", e))?,
        manifest_sha256: manifest
            .is_file()
            .then(|| file_sha256(&manifest))
            .transpose()
            .map_err(|e| cfg("shift.dir", e))?,
        names,
        files,
        severities,
    })
}

/// The unit-name part of a row: `<method-slug>[/seed-<s>]`.
pub fn row_name(method: &str, seed: Option<u64>) -> String {
    match seed {
        Some(s) => format!("{}/seed-{s}", decal_report::slug(method)),
        None => decal_report::slug(method),
    }
}

/// Whether a row is scored through its head's own drifted body (its features are not the shared ones).
fn drifted(ctx: &PlanCtx<'_>, row: &MethodRow) -> bool {
    row.head.is_some()
        && row
            .features
            .get("test")
            .is_some_and(|t| ctx.features.get("test") != Some(t))
}

/// Plans the cells, the scores and the reduction of `[shift]` (nothing without it).
pub fn plan(ctx: &mut PlanCtx<'_>) -> Result<(), PlanError> {
    let Some(shift) = ctx.config.shift.clone() else {
        return Ok(());
    };
    let (Some(backbone), Some(split)) = (ctx.backbone.clone(), ctx.split.clone()) else {
        return Err(cfg(
            "shift",
            "a corruption sweep needs images and a backbone, not [backbone] features",
        ));
    };
    let r = resolve(&shift)?;
    let base =
        |corruption: &str, file: &(PathBuf, String), severity: u8, drifted: bool| ShiftCellSpec {
            corruption: corruption.to_string(),
            file: file.0.clone(),
            sha256: file.1.clone(),
            labels_sha256: r.labels_sha256.clone(),
            manifest_sha256: r.manifest_sha256.clone(),
            severity,
            every: shift.every,
            limit: shift.limit,
            batch_size: ctx.config.features.batch_size,
            device_kind: ctx.device_kind.clone(),
            drifted,
        };
    // Cells: the frozen body's, then each drifted head's own.
    let mut cells: BTreeMap<(Option<UnitId>, String, u8), UnitId> = BTreeMap::new();
    let mut bodies: Vec<(UnitId, String)> = Vec::new();
    for row in &ctx.rows {
        if drifted(ctx, row) && !bodies.iter().any(|(m, _)| m == &row.model) {
            let head = row.head.clone().unwrap_or_default();
            let name = format!(
                "{}/seed-{}",
                decal_report::slug(&head),
                row.seed.unwrap_or(0)
            );
            bodies.push((row.model.clone(), name));
        }
    }
    for (name, file) in r.names.iter().zip(&r.files) {
        for &s in &r.severities {
            let deps = BTreeMap::from([
                ("backbone".to_string(), backbone.clone()),
                ("split".to_string(), split.clone()),
            ]);
            let id = ctx.plan.add(
                format!("shift-cell/{name}/s{s}"),
                UnitSpec::ShiftCell(base(name, file, s, false)),
                deps.clone(),
                Resource::Device,
            )?;
            cells.insert((None, name.clone(), s), id);
            for (head, prefix) in &bodies {
                let mut deps = deps.clone();
                deps.insert("body".into(), head.clone());
                let id = ctx.plan.add(
                    format!("shift-cell/{prefix}/{name}/s{s}"),
                    UnitSpec::ShiftCell(base(name, file, s, true)),
                    deps,
                    Resource::Device,
                )?;
                cells.insert((Some(head.clone()), name.clone(), s), id);
            }
        }
    }
    plan_scores(ctx, &shift, &r, &cells)
}

fn dataset_name(ctx: &PlanCtx<'_>, shift: &crate::experiment::ShiftSpec) -> String {
    shift.name.clone().unwrap_or_else(|| {
        format!(
            "{}-c-generated",
            decal_report::slug(&ctx.config.data.dataset)
        )
    })
}

fn plan_scores(
    ctx: &mut PlanCtx<'_>,
    shift: &crate::experiment::ShiftSpec,
    r: &Resolved,
    cells: &BTreeMap<(Option<UnitId>, String, u8), UnitId>,
) -> Result<(), PlanError> {
    let dataset = dataset_name(ctx, shift);
    let profile = ctx
        .config
        .eval
        .profiles
        .first()
        .cloned()
        .unwrap_or_default();
    let mut reduce_deps: BTreeMap<String, UnitId> = BTreeMap::new();
    for name in &r.names {
        for row in ctx.rows.clone() {
            let body = drifted(ctx, &row).then(|| row.model.clone());
            let mut deps = BTreeMap::from([("model".to_string(), row.model.clone())]);
            if let Some(t) = &row.temperature {
                deps.insert("temperature".into(), t.clone());
            }
            if let Some(c) = &row.calibrator {
                deps.insert("calibrator".into(), c.clone());
            }
            for &s in &r.severities {
                deps.insert(
                    format!("cell:s{s}"),
                    cells[&(body.clone(), name.clone(), s)].clone(),
                );
            }
            let spec = ShiftScoreSpec {
                run: ctx.config.name.clone(),
                method: row.method.clone(),
                seed: row.seed,
                num_samples: row.num_samples,
                eval_seed: ctx.config.eval.eval_seed,
                corruption: name.clone(),
                severities: r.severities.clone(),
                dataset: dataset.clone(),
                profile: profile.clone(),
            };
            let unit_name = format!("{}/{name}", row_name(&row.method, row.seed));
            let id = ctx.plan.add(
                format!("shift-score/{unit_name}"),
                UnitSpec::ShiftScore(spec),
                deps,
                Resource::Cpu,
            )?;
            reduce_deps.insert(format!("score/{unit_name}"), id);
        }
        for &s in &r.severities {
            reduce_deps.insert(
                format!("cell/{name}/s{s}"),
                cells[&(None, name.clone(), s)].clone(),
            );
        }
    }
    let spec = ShiftReduceSpec {
        run: ctx.config.name.clone(),
        dataset,
        profile,
        severity_divisor: shift.severity_divisor,
        dir: shift.dir.clone(),
        corruptions: r.names.clone(),
        pooled_subsets: pooled_subsets(&r.names),
        severities: r.severities.clone(),
        rows: ctx
            .rows
            .iter()
            .map(|row| (row.method.clone(), row.seed))
            .collect(),
    };
    let id = ctx
        .plan
        .add("shift", UnitSpec::Shift(spec), reduce_deps, Resource::Cpu)?;
    ctx.report_inputs.insert("shift".into(), id);
    Ok(())
}

// ---- shift-cell -------------------------------------------------------------------------------------

/// Runs a `shift-cell` unit.
pub fn run_cell(
    s: &ShiftCellSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    cell::run(s, unit, ctx, dir)
}

// ---- shift-score ------------------------------------------------------------------------------------

/// File names of one cell's predictions in a score unit.
fn pred_files(severity: u8) -> (String, String) {
    (
        format!("s{severity}.logits.npy"),
        format!("s{severity}.labels.npy"),
    )
}

/// What a score unit writes to `score.json` (besides the per-cell records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ScoreFile {
    method: String,
    seed: Option<u64>,
    corruption: String,
    /// `logits` or `log-probs` (sampled V-TST).
    kind: String,
    num_classes: usize,
    cells: Vec<(u8, usize)>,
    records: Vec<MetricRecord>,
}

fn write_predictions(dir: &Path, severity: u8, p: &Predictions) -> Result<(), String> {
    let (lf, yf) = pred_files(severity);
    let arr = decal_io::NpyArray::from_f64(vec![p.len(), p.num_classes], p.logits.clone());
    decal_io::npy::write(&dir.join(&lf), &arr).map_err(|e| e.to_string())?;
    let arr = decal_io::NpyArray::from_i64(vec![p.len()], p.labels.clone());
    decal_io::npy::write(&dir.join(&yf), &arr).map_err(|e| e.to_string())
}

fn read_predictions(dir: &Path, severity: u8, kind: LogitKind) -> Result<Predictions, String> {
    let (lf, yf) = pred_files(severity);
    let (lp, yp) = (dir.join(lf), dir.join(yf));
    let a = decal_io::npy::read(&lp).map_err(|e| e.to_string())?;
    let logits = match (&a.data, a.shape.as_slice()) {
        (decal_io::NpyData::F64(v), [_, _]) => v.clone(),
        _ => return Err(format!("{}: expected float64 [N, K]", lp.display())),
    };
    let labels = decal_io::npy::read(&yp)
        .and_then(|a| a.to_labels())
        .map_err(|e| e.to_string())?;
    if a.shape[0] != labels.len() {
        return Err(format!(
            "{}: {} labels for {} rows",
            yp.display(),
            labels.len(),
            a.shape[0]
        ));
    }
    Ok(Predictions {
        num_classes: a.shape[1],
        logits,
        kind,
        labels,
        neg_mutual_information: None,
    })
}

/// The ε seed of a row's predictions on severity block `si` (the old sweep's salt).
pub fn cell_eval_seed(eval_seed: u64, si: usize, seed: Option<u64>) -> u64 {
    eval_seed ^ (1000 + si as u64) ^ seed.unwrap_or(0).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Runs a `shift-score` unit.
pub fn run_score(
    s: &ShiftScoreSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let primary = profile(unit, &s.profile)?;
    let rctx = RecordContext {
        run: s.run.clone(),
        seed: s.seed,
        method: s.method.clone(),
    };
    let compat = ShiftCompat::default();
    let mut sweeps = [
        ShiftSweep::new(rctx.clone(), &s.dataset, primary, compat),
        ShiftSweep::new(rctx, &s.dataset, Profile::paper(), compat),
    ];
    let (model, temperature) = match score::model(unit, ctx)? {
        score::Model::Ready(m, t) => (m, t),
        score::Model::Skipped(why) => return Ok(UnitResult::skipped(why)),
    };
    let mut cells = Vec::new();
    let mut kind = LogitKind::Logits;
    let mut num_classes = 0;
    for (si, &severity) in s.severities.iter().enumerate() {
        let role = format!("cell:s{severity}");
        let seed = cell_eval_seed(s.eval_seed, si, s.seed);
        let p = score::predict_cell((&model, temperature), s, unit, ctx, &role, seed)?;
        for sweep in &mut sweeps {
            sweep
                .add_cell(&s.corruption, severity, &p)
                .map_err(UnitError::failed(unit, format!("scoring {role}")))?;
        }
        write_predictions(dir, severity, &p)
            .map_err(UnitError::failed(unit, "writing predictions"))?;
        cells.push((severity, p.len()));
        (kind, num_classes) = (p.kind, p.num_classes);
    }
    let [a, b] = sweeps;
    let records: Vec<MetricRecord> = cell_records(a)
        .chain(cell_records(b).map(paper_key))
        .collect();
    let summary = json!({
        "corruption": s.corruption, "cells": cells.len(),
        "ece": records.iter().filter(|r| r.metric == "ece").map(|r| r.value).collect::<Vec<_>>(),
    });
    let file = ScoreFile {
        method: s.method.clone(),
        seed: s.seed,
        corruption: s.corruption.clone(),
        kind: kind.name().into(),
        num_classes,
        cells,
        records,
    };
    decal_core::write_json_atomic(&dir.join("score.json"), &file)
        .map_err(UnitError::failed(unit, "writing score.json"))?;
    Ok(UnitResult::done(summary))
}

fn profile(unit: &Unit, name: &str) -> Result<Profile, UnitError> {
    Profile::by_name(name).ok_or_else(|| UnitError::Input {
        unit: unit.name.clone(),
        problem: format!("unknown metric profile {name:?}"),
    })
}

/// The per-cell records of a sweep (those naming a corruption).
fn cell_records(sweep: ShiftSweep) -> impl Iterator<Item = MetricRecord> {
    sweep
        .finish()
        .0
        .into_iter()
        .filter(|r| r.corruption.is_some())
}

/// Paper-profile shift metrics get the `_paper` suffix (the primary profile keeps plain keys).
fn paper_key(mut r: MetricRecord) -> MetricRecord {
    r.metric = format!("{}_paper", r.metric);
    r
}

// ---- shift (reduction) --------------------------------------------------------------------------------

/// Runs the `shift` reduction.
pub fn run_reduce(
    s: &ShiftReduceSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let primary = profile(unit, &s.profile)?;
    let compat = ShiftCompat {
        severity_divisor: s.severity_divisor,
    };
    let mut records = Vec::new();
    let mut results = serde_json::Map::new();
    for (method, seed) in &s.rows {
        if row_skipped(s, unit, ctx, method, *seed)? {
            continue;
        }
        let rctx = RecordContext {
            run: s.run.clone(),
            seed: *seed,
            method: method.clone(),
        };
        let sweep = || {
            [
                ShiftSweep::new(rctx.clone(), &s.dataset, primary.clone(), compat),
                ShiftSweep::new(rctx.clone(), &s.dataset, Profile::paper(), compat),
            ]
        };
        let mut all = sweep();
        let mut subsets: Vec<_> = s.pooled_subsets.iter().map(|_| sweep()).collect();
        for corruption in &s.corruptions {
            let role = format!("score/{}/{corruption}", row_name(method, *seed));
            let sdir = ctx.input_dir(unit, &role)?;
            let kind = read_score_kind(&sdir)
                .map_err(UnitError::failed(unit, format!("reading {role}")))?;
            let mut targets: Vec<&mut [ShiftSweep; 2]> = vec![&mut all];
            for (sw, (_, names)) in subsets.iter_mut().zip(&s.pooled_subsets) {
                if names.contains(corruption) {
                    targets.push(sw);
                }
            }
            for &severity in &s.severities {
                let p = read_predictions(&sdir, severity, kind)
                    .map_err(UnitError::failed(unit, format!("reading {role}")))?;
                for sw in targets.iter_mut().flat_map(|t| t.iter_mut()) {
                    sw.add_cell(corruption, severity, &p)
                        .map_err(UnitError::failed(
                            unit,
                            format!("{role}, severity {severity}"),
                        ))?;
                }
            }
        }
        let key = format!(
            "{method}{}",
            seed.map(|s| format!(" seed {s}")).unwrap_or_default()
        );
        let [sweep, paper] = all;
        let (r, j) = sweep.finish();
        records.extend(r);
        let (rp, jp) = paper.finish();
        records.extend(rp.into_iter().map(paper_key));
        let mut row = json!({"primary": j, "paper": jp});
        for ([a, b], (name, names)) in subsets.into_iter().zip(&s.pooled_subsets) {
            let (ra, ja) = a.finish();
            let (rb, jb) = b.finish();
            records.extend(subset_pooled(ra, name, names.len()));
            records.extend(subset_pooled(rb, name, names.len()).map(paper_key));
            row[name.as_str()] = json!({"primary": ja, "paper": jb});
        }
        results.insert(key, row);
    }
    let (excluded, warning) = held_out_note(s, unit, ctx)?;
    let value = json!({
        "records": records, "results": results, "kind": "generated corruptions", "dir": s.dir,
        "held_out_calibration_images_excluded": excluded, "warning": warning,
    });
    decal_core::write_json_atomic(&dir.join(SHIFT_FILE), &value)
        .map_err(UnitError::failed(unit, "writing shift.json"))?;
    let mut result = UnitResult::done(json!({
        "rows": s.rows.len(), "corruptions": s.corruptions.len(), "severities": s.severities,
    }));
    result.warnings.extend(warning);
    Ok(result)
}

/// The pooled (all-cells) records of a subset's sweep, renamed `<metric>_<name>`, their definitions saying
/// which corruptions they pool.
fn subset_pooled(
    records: Vec<MetricRecord>,
    name: &str,
    corruptions: usize,
) -> impl Iterator<Item = MetricRecord> + '_ {
    records
        .into_iter()
        .filter(|r| r.corruption.is_none() && r.severity.is_none())
        .map(move |mut r| {
            r.metric = format!("{}_{name}", r.metric);
            r.definition = format!(
                "{}; subset {name}: the {corruptions} corruptions of the seed's CIFAR-10-C evaluation (Q-4) only",
                r.definition
            );
            r
        })
}

/// Whether a row's score units skipped (its temperature fit did): the row has no sweep, as before.
fn row_skipped(
    s: &ShiftReduceSpec,
    unit: &Unit,
    ctx: &UnitContext<'_>,
    method: &str,
    seed: Option<u64>,
) -> Result<bool, UnitError> {
    for corruption in &s.corruptions {
        let role = format!("score/{}/{corruption}", row_name(method, seed));
        let record = ctx.store.record(unit.dep(&role)?);
        if let Some(crate::plan::store::CompletionRecord {
            outcome: crate::plan::store::Outcome::Skipped { .. },
            ..
        }) = record
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The reduction's output file.
pub const SHIFT_FILE: &str = "shift.json";

fn read_score_kind(dir: &Path) -> Result<LogitKind, String> {
    let path = dir.join("score.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: ScoreFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    LogitKind::by_name(&file.kind)
        .ok_or_else(|| format!("{}: unknown kind {:?}", path.display(), file.kind))
}

/// Whether the held-out calibration images were left out of every cell, and the first cell's reason
/// when they could not be (as the old sweep: the first file that does not follow the test split's order).
fn held_out_note(
    s: &ShiftReduceSpec,
    unit: &Unit,
    ctx: &UnitContext<'_>,
) -> Result<(bool, Option<String>), UnitError> {
    let mut held_out = 0;
    for corruption in &s.corruptions {
        for &severity in &s.severities {
            let role = format!("cell/{corruption}/s{severity}");
            let info = read_cell_info(&ctx.input_dir(unit, &role)?)
                .map_err(UnitError::failed(unit, format!("reading {role}")))?;
            held_out = info.held_out;
            if info.warning.is_some() {
                return Ok((false, info.warning));
            }
        }
    }
    Ok((held_out > 0, None))
}

fn read_cell_info(dir: &Path) -> Result<CellInfo, String> {
    let path = dir.join("info.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests;
