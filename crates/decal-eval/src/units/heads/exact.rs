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
//!
//! Every finished epoch is journaled (super::journal): an interrupted unit resumes at its first missing
//! epoch and trains the same head bit for bit. With `seed-bn-drift` each epoch's body passes run right after
//! `tch::manual_seed` of a seed derived from (seed, epoch), so a body whose train mode draws random numbers
//! (dropout) also recomputes an epoch exactly; a body without dropout draws none.

use std::cell::RefCell;
use std::path::Path;

use decal_train::features::{self, BodyMode, FeatureSet};
use decal_train::stage1::SplitMix64;
use decal_train::stage2::{
    self, EpochFeatures, Stage2Config, Stage2Error, TrainSource, TrainedHead,
};

use super::super::data;
use super::super::{UnitContext, UnitError};
use super::journal::{Journal, JOURNAL_DIR};
use crate::drift::BodyState;
use crate::plan::Unit;

/// Stream constants of the exact loop's order and augmentation (as the old run).
const ORDER_STREAM: u64 = 0x5348_5546;
const AUGMENT_STREAM: u64 = 0x4155_4730;
/// Stream of the validation images' augmentation (`augment_val`).
const VAL_AUGMENT_STREAM: u64 = 0x5641_4c41;
/// Stream of the global generator's seed for a drifting body's epoch (dropout in train mode).
const DRIFT_RNG_STREAM: u64 = 0x4452_4f50;

#[cfg(test)]
thread_local! {
    /// Tests: fail the unit right after this epoch (0-based) is journaled, as a kill would leave it.
    pub(super) static INTERRUPT_AFTER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Trains one seed in exact mode in the unit's directory `dir` (resuming its epoch journal); returns the
/// head, with `seed-bn-drift` the selected epoch's body state (to be saved beside the head), and the journal
/// (to be removed once the head is saved).
pub(super) fn train(
    config: &Stage2Config,
    body: BodyMode,
    (augment, augment_val): (bool, bool),
    fit: &FeatureSet,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<(TrainedHead, Option<BodyState>, Journal), UnitError> {
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
    let journal = Journal::new(dir, &unit.id, &backbone.hash, body);
    clear_all_but_journal(dir).map_err(|problem| UnitError::Input {
        unit: unit.name.clone(),
        problem,
    })?;
    let journaled = journal.count();
    if journaled > 0 {
        (ctx.log)(&format!(
            "{}: resuming: {journaled} of {} epochs journaled in {} (replayed on their saved features)",
            unit.name,
            config.epochs,
            dir.join(JOURNAL_DIR).display()
        ));
    }
    let seed = config.seed;
    let mut epoch_states: Vec<BodyState> = Vec::new();
    // What each epoch's features came from, for the progress line (and journal problems, reported there).
    let notes: RefCell<Vec<String>> = RefCell::new(Vec::new());
    let mut per_epoch = |epoch: usize| -> Result<EpochFeatures, Stage2Error> {
        match journal.read(epoch, &backbone.undrifted) {
            Ok(Some(j)) if j.val.is_some() == val_images.is_some() && j.body.is_some() == drift => {
                if let Some(state) = j.body {
                    epoch_states.push(state);
                }
                notes.borrow_mut().push("journaled".into());
                return Ok(EpochFeatures {
                    train: j.train,
                    val: j.val,
                });
            }
            Ok(None) => {}
            Ok(Some(_)) => {
                notes.borrow_mut().push(format!(
                    "journal {} does not fit this head's validation / body mode; recomputed",
                    journal.epoch_dir(epoch).display()
                ));
                journal.discard(epoch).map_err(Stage2Error::Features)?;
            }
            Err(problem) => {
                notes
                    .borrow_mut()
                    .push(format!("journal unusable ({problem}); recomputed"));
                journal.discard(epoch).map_err(Stage2Error::Features)?;
            }
        }
        if drift {
            // The statistics the previous epoch left (the same tensors in an uninterrupted run; the journaled
            // ones after a resume); the first epoch starts from the stage-1 body, as every seed run of the
            // seed does.
            match epoch.checked_sub(1) {
                Some(prev) => epoch_states[prev].restore(&backbone.vs),
                None => backbone.undrifted.restore(&backbone.vs),
            }
            .map_err(Stage2Error::Features)?;
        }
        // The seed's loader: a fixed or shuffled order, augmented images, the body as configured.
        let mut order = split.train_indices.clone();
        if config.shuffle {
            SplitMix64::for_epoch(seed, epoch, ORDER_STREAM).shuffle(&mut order);
        }
        let mut rng = SplitMix64::for_epoch(seed, epoch, AUGMENT_STREAM);
        let mut extract = || {
            features::extract(
                backbone.classifier.body.as_ref(),
                &images,
                &order,
                config.batch_size,
                body,
                augment.then_some(&mut rng),
            )
        };
        let fs = if drift {
            let rng_seed = SplitMix64::for_epoch(seed, epoch, DRIFT_RNG_STREAM).next_u64() >> 1;
            decal_models::seeded(rng_seed as i64, extract)
        } else {
            extract()
        }
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
        // Journaled before the head trains on it: a kill from here on loses none of the epoch's body passes.
        match journal.write(
            epoch,
            &fs,
            val.as_ref(),
            epoch_states.last().filter(|_| drift),
        ) {
            Ok(()) => notes.borrow_mut().push("computed".into()),
            Err(problem) => notes.borrow_mut().push(format!(
                "computed; journal not written ({problem}): a resumed run recomputes this epoch"
            )),
        }
        #[cfg(test)]
        if INTERRUPT_AFTER.with(|c| c.get()) == Some(epoch) {
            return Err(Stage2Error::Features(format!(
                "test interruption after epoch {}",
                epoch + 1
            )));
        }
        Ok(EpochFeatures { train: fs, val })
    };
    let device = ctx.options.device;
    let log = &mut *ctx.log;
    let name = &unit.name;
    let epochs = config.epochs;
    let result = stage2::train(
        config,
        TrainSource::PerEpoch(&mut per_epoch),
        fit,
        device,
        &mut |stats| {
            let source = notes.borrow_mut().drain(..).collect::<Vec<_>>().join("; ");
            log(&format!(
                "{name} epoch {}/{epochs}: train loss {:.4}, val NLL {:.4}, val acc {:.2}% ({source}, {:.1}s)",
                stats.epoch + 1,
                stats.train_loss,
                stats.val_nll,
                100.0 * stats.val_accuracy,
                stats.seconds
            ))
        },
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
    Ok((trained, state, journal))
}

/// Empties a resumed exact head's directory of everything but its journal (what an interrupted attempt
/// left, e.g. a temporary file, is never mistaken for an output).
fn clear_all_but_journal(dir: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        if entry.file_name() == JOURNAL_DIR {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
