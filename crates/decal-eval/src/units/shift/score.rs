//! A `shift-score` unit's inputs: the row's model and temperature, and its predictions on one cell.

use std::rc::Rc;

use decal_train::features::{self, FeatureSet};

use super::cell::CELL_NAME;
use super::ShiftScoreSpec;
use crate::plan::Unit;
use crate::predict::{predict, Predictions};
use crate::units::heads::{load_row_model, load_temperature, RowModel};
use crate::units::{UnitContext, UnitError};

/// The row's weights and temperature, or why the row is not scored (its temperature fit skipped).
pub(super) enum Model {
    /// Ready to predict.
    Ready(RowModel, Option<f64>),
    /// The temperature fit skipped: the row has no results, and neither has its sweep.
    Skipped(String),
}

/// Loads the row's model and temperature.
pub(super) fn model(unit: &Unit, ctx: &mut UnitContext<'_>) -> Result<Model, UnitError> {
    let temperature = match unit.deps.get("temperature") {
        Some(id) => match load_temperature(ctx, id)? {
            Some(t) => Some(t),
            None => {
                let name = ctx
                    .plan
                    .find(id)
                    .map_or("its temperature fit", |u| u.name.as_str());
                return Ok(Model::Skipped(format!(
                    "{name} skipped (no finite optimum), so the row is not scored"
                )));
            }
        },
        None => None,
    };
    let model = match load_row_model(ctx, unit)? {
        Ok(m) => m,
        Err(reason) => {
            return Ok(Model::Skipped(format!(
                "its calibrator fit skipped ({reason}), so the row is not scored"
            )))
        }
    };
    Ok(Model::Ready(model, temperature))
}

/// The features of the cell in input `role` (cached per process; the scores of one corruption run one
/// after the other, so earlier corruptions' cells are dropped).
fn cell_features(
    s: &ShiftScoreSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    role: &str,
) -> Result<Rc<FeatureSet>, UnitError> {
    let current = ctx
        .resources
        .cached("shift-corruption", || Ok(s.corruption.clone()))?;
    if *current != s.corruption {
        ctx.resources.forget("shift-c");
        ctx.resources
            .cached("shift-corruption", || Ok(s.corruption.clone()))?;
    }
    let id = unit.dep(role)?.clone();
    let dir = ctx.store.unit_dir(&id);
    ctx.resources.cached(&format!("shift-cell:{id}"), || {
        features::load(&dir, CELL_NAME)
            .map(|(fs, _)| fs)
            .map_err(UnitError::failed(
                unit,
                format!("reading the features of {role}"),
            ))
    })
}

/// The row's predictions on the cell in input `role`, with ε seed `eval_seed`.
pub(super) fn predict_cell(
    (model, temperature): (&RowModel, Option<f64>),
    s: &ShiftScoreSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    role: &str,
    eval_seed: u64,
) -> Result<Predictions, UnitError> {
    let fs = cell_features(s, unit, ctx, role)?;
    let predictor = model.predictor(temperature, s.num_samples, eval_seed);
    predict(&predictor, &fs, ctx.options.device)
        .map_err(UnitError::failed(unit, format!("predicting on {role}")))
}
