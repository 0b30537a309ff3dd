//! The `eval` unit: one method row × seed on the test split (the old run's per-unit evaluation).

use std::path::Path;

use decal_metrics::bootstrap::BootstrapConfig;
use decal_metrics::profile::Profile;
use serde_json::{json, Value};

use super::{files, record_context, row_label, EvalSettingsSpec, EvalSpec};
use crate::plan::Unit;
use crate::predict::Predictions;
use crate::suite::{self, EvalSettings};
use crate::units::{UnitContext, UnitError, UnitResult};

/// The eval unit's result file.
pub const EVAL_FILE: &str = "eval.json";
/// Stem of its exact test predictions (`test_logits.npy`, …; see [`files::save_predictions`]).
pub const TEST_STEM: &str = "test";
/// Directory of the `[eval] save_predictions` export inside the unit.
pub const EXPORT_DIR: &str = "predictions";

fn settings(s: &EvalSettingsSpec, unit: &Unit) -> Result<EvalSettings, UnitError> {
    let profiles = s
        .profiles
        .iter()
        .map(|p| {
            Profile::by_name(p).ok_or_else(|| UnitError::Input {
                unit: unit.name.clone(),
                problem: format!("unknown metric profile {p:?} (eval.profiles)"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EvalSettings {
        profiles,
        bootstrap: (s.bootstrap > 0).then_some(BootstrapConfig {
            resamples: s.bootstrap,
            seed: s.eval_seed,
            confidence: 0.95,
        }),
    })
}

pub(super) fn run(
    s: &EvalSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let started = std::time::Instant::now();
    let label = row_label(&s.row);
    let temperature = match super::temperature(ctx, unit)? {
        Ok(t) => t,
        Err(reason) => {
            return Ok(UnitResult::skipped(format!(
                "{label} is not evaluated: its temperature fit was skipped: {reason}"
            )))
        }
    };
    let settings = settings(&s.settings, unit)?;
    let rc = record_context(&s.row);
    let model = match super::RowPredictor::load(ctx, unit, &s.row, temperature)? {
        Ok(m) => m,
        Err(reason) => {
            return Ok(UnitResult::skipped(format!(
                "{label} is not evaluated: its calibrator fit was skipped: {reason}"
            )))
        }
    };
    let test_p = model.predict(ctx, unit, "test", 1)?;
    let indist = suite::in_distribution(&rc, &test_p, "test", &s.row.dataset, &settings)
        .map_err(UnitError::failed(unit, format!("evaluating {label}")))?;
    let mut records = indist.records.clone();
    let mut results = serde_json::Map::new();
    results.insert("test".into(), indist.json.clone());
    if s.settings.train_nll {
        let train = model.predict(ctx, unit, "train", 2)?;
        let val = model.predict(ctx, unit, "val", 3)?;
        let all =
            Predictions::concat(&[&train, &val]).map_err(UnitError::failed(unit, "train NLL"))?;
        let (r, j) = suite::train_nll(&rc, &all, &s.row.dataset, &settings)
            .map_err(UnitError::failed(unit, "train NLL"))?;
        records.extend(r);
        results.insert("train".into(), j);
    }
    files::save_predictions(dir, TEST_STEM, &test_p)
        .map_err(UnitError::failed(unit, "saving the test predictions"))?;
    if s.settings.save_predictions {
        files::export_test_probabilities(&dir.join(EXPORT_DIR), &test_p)
            .map_err(UnitError::failed(unit, "exporting the test probabilities"))?;
    }
    let value = json!({
        "method": s.row.method, "seed": s.row.seed, "num_samples": s.row.num_samples,
        "temperature": temperature, "head": s.row.head,
        "records": records, "results": Value::Object(results),
        "reliability": indist.primary.reliability,
    });
    let path = dir.join(EVAL_FILE);
    decal_core::write_json_atomic(&path, &value).map_err(UnitError::failed(
        unit,
        format!("writing {}", path.display()),
    ))?;
    let p = &indist.primary;
    (ctx.log)(&format!(
        "eval {label}: acc {:.2}%, ECE {:.2}%, NLL {:.4} [{:.1}s]",
        100.0 * p.accuracy,
        100.0 * p.ece,
        p.nll,
        started.elapsed().as_secs_f64()
    ));
    Ok(UnitResult::done(json!({
        "accuracy": p.accuracy, "ece": p.ece, "nll": p.nll, "temperature": temperature,
        "test_images": test_p.len(),
    })))
}
