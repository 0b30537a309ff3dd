//! `[features] mode = "exact"`: the seed's stage-2 loop — every epoch the training images, in the epoch's
//! order and freshly augmented, go through the body (frozen, or in train mode with `seed-bn-drift`, whose
//! BatchNorm statistics drift with every batch; crate::drift).
//!
//! Validation (the epoch selection) follows the seed (seed-system.md §8.3) where the seed's validation
//! images change from epoch to epoch: with `seed-bn-drift` they go through the drifted body (in eval mode,
//! with the BatchNorm statistics the epoch's training batches left), and with `[features] augment_val`
//! (BUG-6) they are freshly augmented every epoch; otherwise the fixed `fit` features are used.
//!
//! The backbone is the process-wide cached one ([`data::load_backbone`]): a drifting head starts from the
//! stage-1 (undrifted) statistics and the undrifted statistics are restored when it ends, whether training
//! succeeded or not, so no other unit ever sees a drifted body.

use decal_train::features::{self, BodyMode, FeatureSet};
use decal_train::stage1::SplitMix64;
use decal_train::stage2::{
    self, EpochFeatures, Stage2Config, Stage2Error, TrainSource, TrainedHead,
};

use super::super::data;
use super::super::{UnitContext, UnitError};
use crate::drift::BodyState;
use crate::plan::Unit;

/// Stream constants of the exact loop's order and augmentation (as the old run).
const ORDER_STREAM: u64 = 0x5348_5546;
const AUGMENT_STREAM: u64 = 0x4155_4730;
/// Stream of the validation images' augmentation (`augment_val`).
const VAL_AUGMENT_STREAM: u64 = 0x5641_4c41;

/// Trains one seed in exact mode; returns the head and, with `seed-bn-drift`, the selected epoch's body
/// state (to be saved beside the head).
pub(super) fn train(
    config: &Stage2Config,
    body: BodyMode,
    (augment, augment_val): (bool, bool),
    fit: &FeatureSet,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
) -> Result<(TrainedHead, Option<BodyState>), UnitError> {
    let backbone_id = unit.dep("backbone")?.clone();
    let split_id = unit.dep("split")?.clone();
    let split = data::load_split(ctx, &split_id)?;
    let images = data::device_images(ctx, &split_id, &backbone_id, data::Images::Train)?;
    let backbone = data::load_backbone(ctx, &backbone_id)?;
    let drift = body == BodyMode::SeedBnDrift;
    // The validation images of the fits: the held-out calibration images, or the split's validation part.
    let per_epoch_val = drift || (augment && augment_val);
    let (val_images, val_order) = if !per_epoch_val {
        (None, Vec::new())
    } else if split.calibration_original.is_empty() {
        (Some(images.clone()), split.val_indices.clone())
    } else {
        let cal = data::device_images(ctx, &split_id, &backbone_id, data::Images::Calibration)?;
        (Some(cal), (0..split.calibration_original.len()).collect())
    };
    if val_images.is_some() && val_order.len() != fit.len() {
        return Err(UnitError::Input {
            unit: unit.name.clone(),
            problem: format!(
                "{} validation images for {} validation features (the split and the fit set disagree)",
                val_order.len(),
                fit.len()
            ),
        });
    }
    let restore = |what: &str| {
        backbone
            .undrifted
            .restore(&backbone.vs)
            .map_err(|e| UnitError::Failed {
                unit: unit.name.clone(),
                what: what.to_string(),
                source: e.into(),
            })
    };
    if drift {
        // Every head starts from the stage-1 body, as every seed run of the seed does.
        restore("restoring the undrifted body")?;
    }
    let seed = config.seed;
    let mut epoch_states: Vec<BodyState> = Vec::new();
    let mut per_epoch = |epoch: usize| -> Result<EpochFeatures, Stage2Error> {
        // The seed's loader: a fixed or shuffled order, augmented images, the body as configured.
        let mut order = split.train_indices.clone();
        if config.shuffle {
            SplitMix64::for_epoch(seed, epoch, ORDER_STREAM).shuffle(&mut order);
        }
        let mut rng = SplitMix64::for_epoch(seed, epoch, AUGMENT_STREAM);
        let fs = features::extract(
            backbone.classifier.body.as_ref(),
            &images,
            &order,
            config.batch_size,
            body,
            augment.then_some(&mut rng),
        )
        .map_err(|e| Stage2Error::Features(e.to_string()))?;
        if drift {
            epoch_states.push(BodyState::capture(&backbone.vs));
        }
        // After the epoch's training batches, as the seed validates: the body in eval mode (its drifted
        // statistics, if any), the images augmented with `augment_val`.
        let val = match &val_images {
            Some(v) => {
                let mut rng = SplitMix64::for_epoch(seed, epoch, VAL_AUGMENT_STREAM);
                let vs = features::extract(
                    backbone.classifier.body.as_ref(),
                    v,
                    &val_order,
                    config.batch_size,
                    BodyMode::Frozen,
                    (augment && augment_val).then_some(&mut rng),
                )
                .map_err(|e| Stage2Error::Features(e.to_string()))?;
                Some(vs)
            }
            None => None,
        };
        Ok(EpochFeatures { train: fs, val })
    };
    let device = ctx.options.device;
    let result = stage2::train(
        config,
        TrainSource::PerEpoch(&mut per_epoch),
        fit,
        device,
        &mut |_| {},
    );
    // The cached backbone goes back to its undrifted state before anything else can use it.
    if drift {
        restore("restoring the undrifted body")?;
    }
    let what = format!("stage 2 (exact mode), seed {seed}");
    let trained = result.map_err(UnitError::failed(unit, what))?;
    let state = if drift {
        let best = trained.best_epoch;
        let state = epoch_states
            .into_iter()
            .nth(best)
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
