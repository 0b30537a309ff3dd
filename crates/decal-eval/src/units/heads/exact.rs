//! A `head` unit in `[features] mode = "exact"`: trains one seed on the body passes of its `exact-epochs`
//! input (super::epochs) — epoch `e` on the training features journaled for epoch `e` (and, where they
//! change per epoch, that epoch's validation features for the epoch selection; else the fixed `fit`
//! features). With `seed-bn-drift` it returns the selected epoch's journaled body state, saved beside the
//! head (its own evaluations run on that body).

use decal_train::features::{BodyMode, FeatureSet};
use decal_train::stage2::{
    self, EpochFeatures, Stage2Config, Stage2Error, TrainSource, TrainedHead,
};

use super::super::data;
use super::super::{UnitContext, UnitError};
use super::journal::Journal;
use crate::drift::BodyState;
use crate::plan::Unit;

/// Trains one seed in exact mode; returns the head and, with `seed-bn-drift`, the selected epoch's body
/// state.
pub(super) fn train(
    config: &Stage2Config,
    body: BodyMode,
    per_epoch_val: bool,
    fit: &FeatureSet,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
) -> Result<(TrainedHead, Option<BodyState>), UnitError> {
    let epochs_unit = ctx.input(unit, "epochs")?.clone();
    let dir = ctx.input_dir(unit, "epochs")?;
    let journal = Journal::reader(&dir, &epochs_unit.id, body);
    let drift = body == BodyMode::SeedBnDrift;
    // The undrifted body state: the names and shapes of the journaled ones (drift).
    let reference = if drift {
        Some(data::load_backbone(ctx, unit.dep("backbone")?)?)
    } else {
        None
    };
    let reference = reference.as_ref().map(|b| &b.undrifted);
    let unusable = |epoch: usize, problem: String| {
        Stage2Error::Features(format!(
            "epoch {} of input {} is unusable: {problem}; remove {} and run again to recompute it",
            epoch + 1,
            epochs_unit.name,
            dir.display()
        ))
    };
    let mut per_epoch = |epoch: usize| -> Result<EpochFeatures, Stage2Error> {
        match journal.read(epoch, reference) {
            Ok(Some(j)) if j.val.is_some() == per_epoch_val => Ok(EpochFeatures {
                train: j.train,
                val: j.val,
            }),
            Ok(Some(_)) => Err(unusable(
                epoch,
                "its validation features do not fit this head's mode".into(),
            )),
            Ok(None) => Err(unusable(epoch, "it was never journaled".into())),
            Err(problem) => Err(unusable(epoch, problem)),
        }
    };
    let what = format!("stage 2 (exact mode), seed {}", config.seed);
    let trained = stage2::train(
        config,
        TrainSource::PerEpoch(&mut per_epoch),
        fit,
        ctx.options.device,
        &mut |_| {},
    )
    .map_err(UnitError::failed(unit, what))?;
    let state = if drift {
        let best = trained.best_epoch;
        let state = journal
            .read(best, reference)
            .map_err(|problem| UnitError::Input {
                unit: unit.name.clone(),
                problem: unusable(best, problem).to_string(),
            })?
            .and_then(|j| j.body)
            .ok_or_else(|| UnitError::Input {
                unit: unit.name.clone(),
                problem: format!("no body state for the selected epoch {}", best + 1),
            })?;
        Some(state)
    } else {
        None
    };
    Ok((trained, state))
}
