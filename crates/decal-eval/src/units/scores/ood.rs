//! The `ood` unit: one row × seed against one OOD set, or the row's sets pooled plus its OOD histogram.
//!
//! The test predictions are the `eval` unit's (stored exactly), so the detection scores are those of the
//! old run, which scored every set against the same in-memory test predictions. The pooled records are
//! [`suite::ood`] on the concatenated set predictions, which is what the old run's pooled target was
//! (every score is per example).

use std::path::Path;

use serde_json::{json, Value};

use super::eval::TEST_STEM;
use super::{detect, files, row_label, OodScoreSpec, OodTarget, RowSpec, POOLED};
use crate::plan::Unit;
use crate::predict::Predictions;
use crate::units::{UnitContext, UnitError, UnitResult};

/// The ood unit's result file.
pub const OOD_FILE: &str = "ood.json";
/// Stem of a set unit's exact predictions of its set.
pub const OOD_STEM: &str = "ood";
/// The pooled unit's histogram (the report's `ood_histograms/<row>.csv`).
pub const HISTOGRAM_FILE: &str = "ood_histogram.csv";

fn load(
    ctx: &UnitContext<'_>,
    unit: &Unit,
    role: &str,
    stem: &str,
) -> Result<Predictions, UnitError> {
    let dir = ctx.input_dir(unit, role)?;
    files::load_predictions(&dir, stem).map_err(UnitError::failed(
        unit,
        format!("reading its {role} input's predictions"),
    ))
}

/// The first skipped input among `roles`, as a skip of this unit.
fn skipped(
    ctx: &UnitContext<'_>,
    unit: &Unit,
    row: &RowSpec,
    roles: &[String],
) -> Option<UnitResult> {
    roles.iter().find_map(|role| {
        super::skipped_input(ctx, unit, role).map(|reason| {
            UnitResult::skipped(format!(
                "{}: no OOD scores: its {role} input was skipped: {reason}",
                row_label(row)
            ))
        })
    })
}

pub(super) fn run(
    s: &OodScoreSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    match &s.target {
        OodTarget::Set { name, index } => run_set(s, name, *index, unit, ctx, dir),
        OodTarget::Pooled { sets, histogram } => run_pooled(s, sets, *histogram, unit, ctx, dir),
    }
}

fn run_set(
    s: &OodScoreSpec,
    name: &str,
    index: usize,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    if let Some(skip) = skipped(ctx, unit, &s.row, &["eval".into()]) {
        return Ok(skip);
    }
    let temperature = match super::temperature(ctx, unit)? {
        Ok(t) => t,
        Err(reason) => {
            return Ok(UnitResult::skipped(format!(
                "{}: no OOD scores: its temperature fit was skipped: {reason}",
                row_label(&s.row)
            )))
        }
    };
    let test = load(ctx, unit, "eval", TEST_STEM)?;
    let model = match super::RowPredictor::load(ctx, unit, &s.row, temperature)? {
        Ok(m) => m,
        Err(reason) => {
            return Ok(UnitResult::skipped(format!(
                "{}: no OOD scores: its calibrator fit was skipped: {reason}",
                row_label(&s.row)
            )))
        }
    };
    let preds = model.predict(ctx, unit, "features", 100 + index as u64)?;
    files::save_predictions(dir, OOD_STEM, &preds)
        .map_err(UnitError::failed(unit, "saving the OOD predictions"))?;
    let sets = [(name.to_string(), preds)];
    let mut value = detect::score(s, &test, &sets);
    value["set"] = json!(name);
    write(unit, dir, &value)?;
    Ok(UnitResult::done(summary(&value, name)))
}

fn run_pooled(
    s: &OodScoreSpec,
    names: &[String],
    histogram: bool,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let roles: Vec<String> = std::iter::once("eval".to_string())
        .chain(names.iter().map(|n| format!("ood:{n}")))
        .collect();
    if let Some(skip) = skipped(ctx, unit, &s.row, &roles) {
        return Ok(skip);
    }
    let test = load(ctx, unit, "eval", TEST_STEM)?;
    let mut sets = Vec::new();
    for n in names {
        sets.push((n.clone(), load(ctx, unit, &format!("ood:{n}"), OOD_STEM)?));
    }
    let mut value = json!({"records": [], "records_paper": [], "ood": {}});
    if sets.len() >= 2 {
        let parts: Vec<&Predictions> = sets.iter().map(|(_, p)| p).collect();
        let all = Predictions::concat(&parts)
            .map_err(UnitError::failed(unit, "pooling the OOD predictions"))?;
        value = detect::score(s, &test, &[(POOLED.to_string(), all)]);
    }
    value["set"] = json!(POOLED);
    if histogram {
        detect::write_histogram(&dir.join(HISTOGRAM_FILE), &s.row, &test, &sets).map_err(
            UnitError::failed(unit, format!("OOD histogram of {}", s.row.method)),
        )?;
    }
    write(unit, dir, &value)?;
    let mut summary = summary(&value, POOLED);
    summary["histogram"] = json!(histogram);
    Ok(UnitResult::done(summary))
}

fn write(unit: &Unit, dir: &Path, value: &Value) -> Result<(), UnitError> {
    let path = dir.join(OOD_FILE);
    decal_core::write_json_atomic(&path, value).map_err(UnitError::failed(
        unit,
        format!("writing {}", path.display()),
    ))
}

/// The MSP AUROC and FPR95 of `set`, when scored.
fn summary(value: &Value, set: &str) -> Value {
    match value["ood"].get(set).and_then(|v| v.get("msp")) {
        Some(msp) => json!({"set": set, "auroc": msp.get("auroc"), "fpr95": msp.get("fpr95")}),
        None => json!({"set": set}),
    }
}
