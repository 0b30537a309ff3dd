//! Reading the report's inputs: each row's `eval` and `ood` outputs (merged in the old run's order by
//! [`crate::units::scores::files::merge_row`]), the temperature fits, the shift reduction, and what skipped
//! or is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use decal_metrics::calibration::ReliabilityBins;
use decal_report::MetricRecord;
use serde_json::{Map, Value};

use super::ReportSpec;
use crate::plan::store::Outcome;
use crate::plan::Unit;
use crate::units::{data, UnitContext, UnitError, UnitSpec};

/// Everything the report's inputs hold, in table order.
#[derive(Debug, Default)]
pub(super) struct Collected {
    /// Every record: rows in table order (test, train, OOD, paper OOD), then the shift sweep's.
    pub records: Vec<MetricRecord>,
    /// `results.json` `results`: `<method>[ seed <s>]` → the row's entry, `shift` → the sweep's.
    pub results: Map<String, Value>,
    /// `results.json` `calibration`: every fitted temperature.
    pub calibration: Map<String, Value>,
    /// Reliability bins of each method, one per seed.
    pub reliability: BTreeMap<String, Vec<ReliabilityBins>>,
    /// Methods with results, table order.
    pub method_order: Vec<String>,
    /// Skipped and missing inputs, and the inputs' own warnings.
    pub warnings: Vec<String>,
}

/// What one input left.
pub(super) enum State {
    /// Done (or partial): its directory.
    Done(PathBuf),
    /// It decided not to produce output: why.
    Skipped(String),
    /// No completion record (it, or one of its inputs, failed).
    Missing,
}

/// The state of the input in `role` and its unit's name.
pub(super) fn state(
    ctx: &UnitContext<'_>,
    unit: &Unit,
    role: &str,
) -> Result<(String, State), UnitError> {
    let id = unit.dep(role)?;
    let name = ctx
        .plan
        .find(id)
        .map_or(role.to_string(), |u| u.name.clone());
    let state = match ctx.store.record(id) {
        None => State::Missing,
        Some(r) => match r.outcome {
            Outcome::Skipped { reason } => State::Skipped(reason),
            Outcome::Done | Outcome::Partial { .. } => State::Done(ctx.store.unit_dir(id)),
        },
    };
    Ok((name, state))
}

pub(super) fn missing_line(name: &str) -> String {
    format!("{name}: missing — the unit did not complete (it or one of its inputs failed); its results are not in this report")
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The key of a row × seed in `results.json` and `calibration`.
pub(super) fn row_key(method: &str, seed: Option<u64>) -> String {
    format!(
        "{method}{}",
        seed.map(|s| format!(" seed {s}")).unwrap_or_default()
    )
}

/// Reads every input (see the module doc); copies the rows' prediction exports and OOD histograms into
/// `dir`.
pub(super) fn collect(
    s: &ReportSpec,
    unit: &Unit,
    ctx: &UnitContext<'_>,
    dir: &Path,
) -> Result<Collected, UnitError> {
    let mut c = Collected::default();
    // Rows whose temperature fit skipped: their scoring units skip for the same reason (said once).
    let skipped_rows = temperatures(s, unit, ctx, &mut c)?;
    for row in &s.rows {
        if skipped_rows.contains(&row.name) {
            continue;
        }
        collect_row(row, unit, ctx, dir, &mut c)?;
    }
    if unit.deps.contains_key("shift") {
        match state(ctx, unit, "shift")? {
            (_, State::Done(d)) => {
                let v = read_json(&d.join(crate::units::shift::SHIFT_FILE))
                    .map_err(UnitError::failed(unit, "reading the shift sweep"))?;
                if let Some(w) = v.get("warning").and_then(Value::as_str) {
                    c.warnings.push(w.to_string());
                }
                let recs: Vec<MetricRecord> = serde_json::from_value(v["records"].clone())
                    .map_err(UnitError::failed(unit, "reading the shift sweep's records"))?;
                c.records.extend(recs);
                c.results.insert("shift".into(), v["results"].clone());
            }
            (name, State::Skipped(why)) => c.warnings.push(format!("{name}: skipped: {why}")),
            (name, State::Missing) => c.warnings.push(missing_line(&name)),
        }
    }
    // The inputs' own warnings (e.g. the split's contaminated validation source).
    for id in unit.deps.values() {
        if let Some(r) = ctx.store.record(id) {
            c.warnings.extend(r.warnings);
        }
    }
    Ok(c)
}

/// The temperature fits and other post-hoc calibrators: `calibration` entries, and the rows (by name) whose
/// fit skipped.
fn temperatures(
    s: &ReportSpec,
    unit: &Unit,
    ctx: &UnitContext<'_>,
    c: &mut Collected,
) -> Result<Vec<String>, UnitError> {
    let mut skipped = Vec::new();
    let mut seen = Vec::new();
    for (role, id) in &unit.deps {
        // Temperature fits and the other post-hoc calibrators: (row, seed, file, what is fitted).
        let (method, seed, file, what) = match ctx.plan.find(id).map(|u| &u.spec) {
            Some(UnitSpec::Temperature(t)) => (
                &t.method,
                t.seed,
                crate::units::heads::SCALER_FILE,
                "temperature",
            ),
            Some(UnitSpec::Calibrator(k)) => (
                &k.method,
                None,
                crate::units::heads::CALIBRATOR_FILE,
                "calibrator",
            ),
            _ => continue,
        };
        if seen.contains(id) {
            continue;
        }
        seen.push(id.clone());
        let key = row_key(method, seed);
        let rows: Vec<&super::ReportRow> = s
            .rows
            .iter()
            .filter(|r| &r.method == method && r.seed == seed)
            .collect();
        match state(ctx, unit, role)? {
            (_, State::Done(d)) => {
                let v = read_json(&d.join(file)).map_err(UnitError::failed(
                    unit,
                    format!("reading the {what} of {key}"),
                ))?;
                c.calibration.insert(key, v);
            }
            // The unit's reason is already the whole sentence ("method … skipped: its … fit … failed: …").
            (_, State::Skipped(why)) => {
                c.warnings.push(why);
                skipped.extend(rows.iter().map(|r| r.name.clone()));
            }
            (name, State::Missing) => c.warnings.push(missing_line(&name)),
        }
    }
    Ok(skipped)
}

/// The `ood.json` of each of a row's OOD units in plan order (the sets in `[[ood]]` order, then the
/// pooled one); its OOD histogram copied to `ood_histograms/<method>.csv`.
fn row_oods(
    row: &super::ReportRow,
    unit: &Unit,
    ctx: &UnitContext<'_>,
    dir: &Path,
    c: &mut Collected,
) -> Result<Vec<Value>, UnitError> {
    let what = |f: &str| format!("reading {f} of {}", row_key(&row.method, row.seed));
    let prefix = format!("ood/{}/", row.name);
    let mut roles: Vec<(usize, &String)> = unit
        .deps
        .iter()
        .filter(|(r, _)| r.starts_with(&prefix))
        .map(|(r, id)| {
            (
                ctx.plan
                    .units
                    .iter()
                    .position(|u| &u.id == id)
                    .unwrap_or(usize::MAX),
                r,
            )
        })
        .collect();
    roles.sort();
    let mut oods = Vec::new();
    for (_, role) in roles {
        match state(ctx, unit, role)? {
            (_, State::Done(d)) => {
                oods.push(
                    read_json(&d.join("ood.json"))
                        .map_err(UnitError::failed(unit, what("ood.json")))?,
                );
                let hist = d.join("ood_histogram.csv");
                if hist.is_file() {
                    let to = dir
                        .join("ood_histograms")
                        .join(format!("{}.csv", decal_report::slug(&row.method)));
                    copy_file(&hist, &to)
                        .map_err(UnitError::failed(unit, what("ood_histogram.csv")))?;
                }
            }
            (name, State::Skipped(why)) => c.warnings.push(format!("{name}: skipped: {why}")),
            (name, State::Missing) => c.warnings.push(missing_line(&name)),
        }
    }
    Ok(oods)
}

fn collect_row(
    row: &super::ReportRow,
    unit: &Unit,
    ctx: &UnitContext<'_>,
    dir: &Path,
    c: &mut Collected,
) -> Result<(), UnitError> {
    let eval_role = format!("eval/{}", row.name);
    if !unit.deps.contains_key(&eval_role) {
        return Ok(());
    }
    let edir = match state(ctx, unit, &eval_role)? {
        (_, State::Done(d)) => d,
        (name, State::Skipped(why)) => {
            c.warnings.push(format!("{name}: skipped: {why}"));
            return Ok(());
        }
        (name, State::Missing) => {
            c.warnings.push(missing_line(&name));
            return Ok(());
        }
    };
    let what = |f: &str| format!("reading {f} of {}", row_key(&row.method, row.seed));
    let eval =
        read_json(&edir.join("eval.json")).map_err(UnitError::failed(unit, what("eval.json")))?;
    let oods = row_oods(row, unit, ctx, dir, c)?;
    let refs: Vec<&Value> = oods.iter().collect();
    let (records, entry) = crate::units::scores::files::merge_row(&eval, &refs)
        .map_err(|e| UnitError::failed(unit, what("eval.json"))(e))?;
    c.records.extend(records);
    c.results.insert(row_key(&row.method, row.seed), entry);
    if let Ok(rb) = serde_json::from_value::<ReliabilityBins>(eval["reliability"].clone()) {
        c.reliability
            .entry(row.method.clone())
            .or_default()
            .push(rb);
    }
    if !c.method_order.contains(&row.method) {
        c.method_order.push(row.method.clone());
    }
    let pred = edir.join("predictions");
    if pred.is_dir() {
        let seed_tag = row.seed.map(|s| format!("-seed{s}")).unwrap_or_default();
        let to = dir
            .join("predictions")
            .join(format!("{}{seed_tag}", decal_report::slug(&row.method)));
        copy_tree(&pred, &to).map_err(UnitError::failed(unit, what("predictions")))?;
    }
    Ok(())
}

/// Copies a file (atomically, through [`decal_core::write_atomic`]).
pub(super) fn copy_file(from: &Path, to: &Path) -> Result<(), String> {
    let bytes = std::fs::read(from).map_err(|e| format!("{}: {e}", from.display()))?;
    decal_core::write_atomic(to, &bytes).map_err(|e| e.to_string())
}

/// Copies every file under `from` to the same place under `to`.
pub(super) fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("{}: {e}", from.display()))?
            .path();
        let target = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else {
            copy_file(&path, &target)?;
        }
    }
    Ok(())
}

/// What `results.json` says about the backbone, the features and the validation source, and the run's
/// notes (stage 2, the validation source, the departures from the seed's recipe).
#[derive(Debug, Default)]
pub(super) struct Facts {
    /// `results.json` `backbone`.
    pub backbone: Value,
    /// `results.json` `features`.
    pub features: Value,
    /// `results.json` `validation`.
    pub validation: Value,
    /// Notes for the report, after the warnings.
    pub run_notes: Vec<String>,
    /// Warnings about the facts (a contaminated validation source; a missing backbone or split).
    pub warnings: Vec<String>,
}

/// `results.json` `features.views` of the augmented mode (A, storage, seed, the crop + flip augmentation).
fn views_fact(s: &ReportSpec, unit: &Unit, ctx: &UnitContext<'_>, b: &data::Backbone) -> Value {
    let views = unit
        .deps
        .get("views")
        .and_then(|v| ctx.plan.find(v))
        .and_then(|u| match &u.spec {
            UnitSpec::Views(v) => Some(v.clone()),
            _ => None,
        });
    let augmentation = views.as_ref().map(|v| {
        decal_train::views::Augmentation::crop_flip(v.crop_padding, b.mean.clone(), b.std.clone())
    });
    serde_json::json!({
        "views": views.as_ref().map(|v| v.views), "storage": s.config.features.storage,
        "seed": s.config.features.views_seed, "augmentation": augmentation,
        "body_precision": s.config.features.views_precision,
    })
}

/// The facts of the backbone, split, features and views inputs (each fact null when its input is
/// missing, which is then named in the warnings).
pub(super) fn facts(
    s: &ReportSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
) -> Result<Facts, UnitError> {
    let mut f = Facts::default();
    let ready = |role: &str, f: &mut Facts| -> Result<Option<String>, UnitError> {
        if !unit.deps.contains_key(role) {
            return Ok(None);
        }
        Ok(match state(ctx, unit, role)? {
            (_, State::Done(_)) => Some(unit.dep(role)?.clone()),
            (name, State::Skipped(why)) => {
                f.warnings.push(format!("{name}: skipped: {why}"));
                None
            }
            (name, State::Missing) => {
                f.warnings.push(missing_line(&name));
                None
            }
        })
    };
    if let Some(files) = &s.config.backbone.features {
        return files_facts(s, files, unit, ctx, f);
    }
    let backbone = ready("backbone", &mut f)?;
    let split = ready("split", &mut f)?;
    let mut keys = serde_json::Map::new();
    for set in ["train", "val", "test", "fit"] {
        if let Some(id) = ready(&format!("features:{set}"), &mut f)? {
            keys.insert(
                set.into(),
                serde_json::to_value(data::features_key(ctx, &id)?).unwrap_or(Value::Null),
            );
        }
    }
    let config = &s.config;
    // "views" is null unless the mode is "augmented" (as before).
    let mut features = serde_json::json!({"mode": config.features.mode, "views": null});
    if let Some(m) = features.as_object_mut() {
        m.extend(keys);
    }
    let mut holdout = false;
    if let Some(id) = &split {
        let info = data::load_split(ctx, id)?;
        holdout = info.test_holdout;
        let fit_images = if holdout {
            info.calibration_original.len()
        } else {
            info.val_indices.len()
        };
        f.validation = serde_json::json!({
            "choice": config.data.validation, "resolved": info.validation_source, "note": info.validation_note,
            "backbone_training_images": info.known, "fit_images": fit_images, "test_images": info.test_original.len(),
        });
        f.run_notes.push(crate::recipe::stage2_line(config));
        f.run_notes.push(info.validation_note.clone());
    } else {
        f.run_notes.push(crate::recipe::stage2_line(config));
        f.run_notes
            .push("validation source: unknown (the split unit did not complete)".into());
    }
    f.run_notes
        .extend(crate::recipe::departures(config, holdout));
    if let Some(id) = &backbone {
        let b = data::load_backbone(ctx, id)?;
        f.backbone = serde_json::json!({"arch": b.arch, "weights_sha256": b.hash});
        if config.features.mode == "augmented" {
            features["views"] = views_fact(s, unit, ctx, &b);
        }
    }
    f.features = features;
    Ok(f)
}

/// The facts of an experiment on feature files: the files (with the widths found at plan time), the
/// content keys of every features input, the given training views, and the given validation set as the
/// source of every fit.
fn files_facts(
    s: &ReportSpec,
    files: &crate::feature_files::FeatureFiles,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    mut f: Facts,
) -> Result<Facts, UnitError> {
    let config = &s.config;
    let mut keys = serde_json::Map::new();
    let mut ood = serde_json::Map::new();
    for (role, id) in &unit.deps {
        let Some(set) = role.strip_prefix("features:") else {
            continue;
        };
        match state(ctx, unit, role)? {
            (_, State::Done(_)) => {}
            (name, State::Skipped(why)) => {
                f.warnings.push(format!("{name}: skipped: {why}"));
                continue;
            }
            (name, State::Missing) => {
                f.warnings.push(missing_line(&name));
                continue;
            }
        }
        let key = serde_json::to_value(data::features_key(ctx, id)?).unwrap_or(Value::Null);
        match set.strip_prefix("ood:") {
            Some(name) => ood.insert(name.to_string(), key),
            None => keys.insert(set.to_string(), key),
        };
    }
    let views = unit.deps.get("views").and_then(|id| {
        let record = ctx.store.record(id)?;
        let summary = record.summary.clone();
        Some(serde_json::json!({"views": summary.get("views"), "sha256": summary.get("sha256")}))
    });
    let mut features = serde_json::json!({
        "mode": "feature files", "ood": ood, "train_views": views,
    });
    if let Some(m) = features.as_object_mut() {
        m.extend(keys);
    }
    f.features = features;
    f.backbone = serde_json::json!({
        "features": files, "feature_dim": s.feature_dim, "num_classes": s.num_classes,
    });
    f.validation = serde_json::json!({
        "choice": "given", "resolved": "the given validation features (backbone.features.val)",
    });
    f.run_notes.push(crate::recipe::stage2_line(config));
    f.run_notes.push(format!(
        "validation source: the given validation features ({}): every head's checkpoint selection and every temperature fit",
        files.val.display()
    ));
    f.run_notes.extend(crate::recipe::departures(config, false));
    Ok(f)
}
