//! The `exact-epochs` unit: the body passes of one stage-2 seed in `[features] mode = "exact"` — every
//! epoch, the training images in the epoch's order, freshly augmented, through the body (frozen, or in train
//! mode with `seed-bn-drift`, whose BatchNorm statistics drift with every batch; crate::drift) — stored as
//! one [`Journal`] epoch each, for every exact head of that seed to train on.
//!
//! What an epoch's body passes produce depends on the seed, the epoch, the order (shuffled or not), the
//! batch size, the body mode and the augmentation, never on the head trained on them (the head does not
//! backpropagate into the body, and a drifting body's statistics move with its forward passes only). So
//! every head of a seed with the same settings (TST and V-TST by default) shares one unit: their body passes
//! are computed once, which halves an exact run with two heads. This is a reuse of identical computations,
//! not a shortcut: a head trains on the same float32 features, bit for bit, as if it had run the passes
//! itself (unit test `units::heads::tests::exact_heads_of_a_seed_share_its_body_passes`).
//!
//! Validation (the heads' epoch selection) follows the seed (seed-system.md §8.3) where the seed's
//! validation images change from epoch to epoch: with `seed-bn-drift` they go through the drifted body (in
//! eval mode, with the BatchNorm statistics the epoch's training batches left), and with
//! `[features] augment_val` (BUG-6) they are freshly augmented every epoch; these per-epoch validation
//! features are journaled with the epoch. Otherwise the heads select on the fixed `fit` features.
//!
//! The backbone is the process-wide cached one ([`data::load_backbone`]): a drifting unit starts from the
//! stage-1 (undrifted) statistics and the undrifted statistics are restored when it ends, whether it
//! succeeded or not, so no other unit ever sees a drifted body.
//!
//! The unit resumes: an interrupted unit keeps its journaled epochs (each checked when read; a damaged one
//! is reported, removed and recomputed) and computes from the first missing one — with `seed-bn-drift` from
//! the previous epoch's journaled BatchNorm statistics, and right after `tch::manual_seed` of a seed derived
//! from (seed, epoch), so a body whose train mode draws random numbers (dropout) also recomputes an epoch
//! exactly; a body without dropout draws none. Its journal is its output and stays (≈ 41 MB per epoch for
//! 40,000 WRN-16-4 features: 1.6 GB for 40 epochs).

use std::path::Path;
use std::time::Instant;

use decal_train::features::{self, BodyMode};
use decal_train::stage1::DeviceImages;
use decal_train::stage1::SplitMix64;
use decal_train::views;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::super::data;
use super::super::{UnitContext, UnitError, UnitResult};
use super::journal::{Journal, JOURNAL_DIR};
use super::HeadFeatures;
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

/// One stage-2 seed's body passes in exact mode: everything that changes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExactEpochsSpec {
    /// The stage-2 seed (every epoch's order and augmentation derive from it).
    pub seed: u64,
    /// Epochs.
    pub epochs: usize,
    /// Batch size of the body passes: the heads' batch size (with `seed-bn-drift` the statistics drift per
    /// batch).
    pub batch_size: usize,
    /// Whether every epoch has its own shuffled order (else the split's order).
    pub shuffle: bool,
    /// Body mode and augmentation ([`HeadFeatures::Exact`]).
    pub features: HeadFeatures,
    /// Device kind the passes run on (`cpu`, `cuda`, `mps`).
    pub device: String,
}

/// The exact-mode settings of a spec: (body mode, augment, augment_val).
pub(super) fn exact_settings(features: &HeadFeatures) -> Option<(BodyMode, bool, bool)> {
    match features {
        HeadFeatures::Exact {
            body,
            augment,
            augment_val,
            ..
        } => Some((*body, *augment, *augment && *augment_val)),
        _ => None,
    }
}

/// Whether each epoch has its own validation features (journaled with it).
pub(super) fn per_epoch_validation(features: &HeadFeatures) -> bool {
    exact_settings(features)
        .is_some_and(|(body, _, augment_val)| body == BodyMode::SeedBnDrift || augment_val)
}

/// Runs an `exact-epochs` unit: journals every epoch's body passes in `dir` (resuming what is there).
pub fn run_exact_epochs(
    s: &ExactEpochsSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let started = Instant::now();
    let (body, _, _) = exact_settings(&s.features).ok_or_else(|| UnitError::Input {
        unit: unit.name.clone(),
        problem: "an exact-epochs unit needs exact-mode features".into(),
    })?;
    let fit = data::load_features(ctx, unit.dep("fit")?)?;
    let backbone_id = unit.dep("backbone")?.clone();
    let split_id = unit.dep("split")?.clone();
    let split = data::load_split(ctx, &split_id)?;
    let images = data::device_images(ctx, &split_id, &backbone_id, data::Images::Train)?;
    let backbone = data::load_backbone(ctx, &backbone_id)?;
    let drift = body == BodyMode::SeedBnDrift;
    // The validation images of the heads' fits: the held-out calibration images, or the split's validation
    // part.
    let (val_images, val_order) = if !per_epoch_validation(&s.features) {
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
    let journal = Journal::new(dir, &unit.id, &backbone.hash, body);
    clear_all_but_journal(dir).map_err(|problem| UnitError::Input {
        unit: unit.name.clone(),
        problem,
    })?;
    let journaled = (0..s.epochs).filter(|&e| journal.has(e)).count();
    if journaled > 0 {
        (ctx.log)(&format!(
            "{}: resuming: {journaled} of {} epochs journaled in {}",
            unit.name,
            s.epochs,
            dir.join(JOURNAL_DIR).display()
        ));
    }
    // The journal's size (float32 features and int64 labels per example) against the free disk, first.
    let examples = (split.train_indices.len() + val_order.len()) as u64;
    let per_example = 4 * backbone.classifier.body.feature_dim().max(0) as u64 + 8;
    let needed = (s.epochs - journaled) as u64 * examples * per_example;
    let free = views::free_bytes(dir).map_err(UnitError::failed(unit, "checking the free disk"))?;
    (ctx.log)(&format!(
        "{}: {} epochs of body passes to compute, ≈ {} of epoch journal ({} free)",
        unit.name,
        s.epochs - journaled,
        views::human_bytes(needed),
        views::human_bytes(free)
    ));
    if needed > free {
        return Err(UnitError::Input {
            unit: unit.name.clone(),
            problem: format!(
                "its epoch journal needs ≈ {} in {}, {} are free",
                views::human_bytes(needed),
                dir.display(),
                views::human_bytes(free)
            ),
        });
    }
    let result = journal_epochs(
        s,
        unit,
        ctx,
        &backbone,
        &journal,
        (&*images, split.train_indices.as_slice()),
        val_images.as_deref().map(|v| (v, val_order.as_slice())),
    );
    // The cached backbone goes back to its undrifted state before anything else can use it.
    if drift {
        backbone
            .undrifted
            .restore(&backbone.vs)
            .map_err(|e| UnitError::Failed {
                unit: unit.name.clone(),
                what: "restoring the undrifted body".into(),
                source: e.into(),
            })?;
    }
    let computed = result?;
    let bytes = dir_size(&dir.join(JOURNAL_DIR));
    (ctx.log)(&format!(
        "{}: {} epochs × {} training images through the body ({computed} computed now), {:.2} GB in {} [{:.1}s]",
        unit.name,
        s.epochs,
        split.train_indices.len(),
        bytes as f64 / 1e9,
        dir.join(JOURNAL_DIR).display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(UnitResult::done(json!({
        "epochs": s.epochs, "examples": split.train_indices.len(), "bytes": bytes,
        "computed_epochs": computed,
    })))
}

/// The epoch loop of [`run_exact_epochs`]: reads back (checks) every journaled epoch, computes the missing
/// ones; returns how many were computed.
fn journal_epochs(
    s: &ExactEpochsSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    backbone: &data::Backbone,
    journal: &Journal,
    (images, train_indices): (&DeviceImages, &[usize]),
    val: Option<(&DeviceImages, &[usize])>,
) -> Result<usize, UnitError> {
    let (body, augment, augment_val) =
        exact_settings(&s.features).expect("checked by run_exact_epochs");
    let drift = body == BodyMode::SeedBnDrift;
    let failed = |what: String| {
        let unit = unit.name.clone();
        move |e: String| UnitError::Failed {
            unit,
            what,
            source: e.into(),
        }
    };
    // The statistics the previous epoch left (drift).
    let mut previous: Option<BodyState> = None;
    let mut computed = 0;
    for epoch in 0..s.epochs {
        let started = Instant::now();
        let mut note = String::new();
        match journal.read(epoch, Some(&backbone.undrifted)) {
            Ok(Some(j)) if j.val.is_some() == val.is_some() && j.body.is_some() == drift => {
                previous = j.body;
                continue;
            }
            Ok(None) => {}
            Ok(Some(_)) => {
                note = format!(
                    "; journal {} did not fit this unit's validation / body mode",
                    journal.epoch_dir(epoch).display()
                );
                journal
                    .discard(epoch)
                    .map_err(failed("discarding a journaled epoch".into()))?;
            }
            Err(problem) => {
                note = format!("; journal unusable ({problem})");
                journal
                    .discard(epoch)
                    .map_err(failed("discarding a journaled epoch".into()))?;
            }
        }
        if drift {
            // The first epoch starts from the stage-1 body, as every seed run of the seed does.
            match &previous {
                Some(state) => state.restore(&backbone.vs),
                None => backbone.undrifted.restore(&backbone.vs),
            }
            .map_err(failed(format!(
                "restoring the body state before epoch {}",
                epoch + 1
            )))?;
        }
        // The seed's loader: a fixed or shuffled order, augmented images, the body as configured.
        let mut order = train_indices.to_vec();
        if s.shuffle {
            SplitMix64::for_epoch(s.seed, epoch, ORDER_STREAM).shuffle(&mut order);
        }
        let mut rng = SplitMix64::for_epoch(s.seed, epoch, AUGMENT_STREAM);
        let mut extract = || {
            features::extract(
                backbone.classifier.body.as_ref(),
                images,
                &order,
                s.batch_size,
                body,
                augment.then_some(&mut rng),
            )
        };
        let what = format!("body passes of epoch {}", epoch + 1);
        let train = if drift {
            let rng_seed = SplitMix64::for_epoch(s.seed, epoch, DRIFT_RNG_STREAM).next_u64() >> 1;
            decal_models::seeded(rng_seed as i64, extract)
        } else {
            extract()
        }
        .map_err(|e| failed(what.clone())(e.to_string()))?;
        let state = drift.then(|| BodyState::capture(&backbone.vs));
        // After the epoch's training batches, as the seed validates: the body in eval mode (its drifted
        // statistics, if any), the images augmented with `augment_val`.
        let val_features = match val {
            Some((v, val_order)) => {
                let mut rng = SplitMix64::for_epoch(s.seed, epoch, VAL_AUGMENT_STREAM);
                let fs = features::extract(
                    backbone.classifier.body.as_ref(),
                    v,
                    val_order,
                    s.batch_size,
                    BodyMode::Frozen,
                    augment_val.then_some(&mut rng),
                )
                .map_err(|e| {
                    failed(format!("validation passes of epoch {}", epoch + 1))(e.to_string())
                })?;
                Some(fs)
            }
            None => None,
        };
        journal
            .write(epoch, &train, val_features.as_ref(), state.as_ref())
            .map_err(failed(format!("journaling epoch {}", epoch + 1)))?;
        previous = state;
        computed += 1;
        let seconds = started.elapsed().as_secs_f64();
        // Epochs still to compute (a later journaled one is only read back).
        let left = (epoch + 1..s.epochs).filter(|&e| !journal.has(e)).count();
        (ctx.log)(&format!(
            "{} epoch {}/{}: {} training images through the body{} ({seconds:.1}s; about {:.0} min left)",
            unit.name,
            epoch + 1,
            s.epochs,
            train.len(),
            note,
            seconds * left as f64 / 60.0
        ));
        #[cfg(test)]
        if INTERRUPT_AFTER.with(|c| c.get()) == Some(epoch) {
            return Err(failed("the test".into())(format!(
                "test interruption after epoch {}",
                epoch + 1
            )));
        }
    }
    Ok(computed)
}

/// Empties a resumed unit's directory of everything but its journal (what an interrupted attempt left, e.g.
/// a temporary file, is never mistaken for an output).
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

/// Bytes of the files under `dir` (for the log; 0 where unreadable).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                dir_size(&path)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}
