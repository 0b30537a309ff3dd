//! Stage 1: train a classifier (backbone + linear head) end to end (seed-system.md §3, §7, §8).
//!
//! 1. **Plan** ([`Stage1Plan`]): every hyper-parameter explicit, serialised as the run's `config.toml`
//!    (unknown keys are errors). Defaults are the seed's recipe (Adam 1e-4 constant, batch 256, CE,
//!    80/20 split with generator seed 1) with the seed's bugs fixed; the seed's behaviour is one
//!    `compat` switch away ([`Compat`]).
//! 2. **Data** ([`Stage1Data`]): the training `ImageSet` split into train/validation indices exactly as
//!    the seed's `random_split` (§4.3). Images stay as `u8` on the device; each batch is converted,
//!    augmented and normalised there: `ToTensor → RandomCrop(32, padding 4, fill 0) → RandomHorizontalFlip
//!    → Normalize` for CIFAR (§4.2), vectorised over the batch.
//! 3. **Loop** ([`train`]): per epoch, a shuffled order (seed: fixed order, BUG-5), optimiser steps with the
//!    schedule's learning rate, then validation on the **un-augmented** validation split (seed: augmented,
//!    BUG-6) computing the criterion, NLL, accuracy and ECE. The checkpoint with the lowest validation
//!    **NLL** is kept as `best/` (seed: lowest validation loss, Q-8); optional early stopping.
//! 4. **Determinism and resume**: at the start of epoch `e` every RNG is reseeded from `(seed, e)`:
//!    libtorch's (dropout) and decal's own (shuffle order, crop offsets, flips). The state after an epoch is
//!    therefore a function of the weights, optimiser moments and counters only, which `last/` stores
//!    ([`crate::checkpoint`]); a run resumed after `kill -9` ends with the same weights as an
//!    uninterrupted one.
//! 5. **Failure**: a non-finite loss stops training before the optimiser step, names the epoch and step,
//!    and leaves the last good `last/` and `best/` in place. With fp16 loss scaling
//!    ([`crate::precision`]) non-finite steps are skipped instead, and
//!    [`crate::precision::MAX_CONSECUTIVE_SKIPS`] of them in a row is divergence; an epoch that ends inside
//!    such a streak does not replace `last/`.
//!
//! Modules: [`plan`] (the plan and its one resolution), [`input`] (data, split, device batches, RNG),
//! [`train_loop`] (the loop and validation) and [`artifacts`] (run-directory files and the `best/`
//! checkpoint). Every public item is re-exported here, so `decal_train::stage1::X` paths stay valid.
//!
//! Run directory: `config.toml`, `provenance.json`, `metrics.jsonl`, `metrics.csv`, `last/`, `best/`
//! (a `decal_models` checkpoint), and `summary.json` once finished.

pub mod artifacts;
pub mod input;
pub mod plan;
pub mod train_loop;

pub use artifacts::{files, save_classifier, BestMeta, Stage1Provenance, Stage1Summary};
pub use input::{DeviceImages, SplitMix64, Stage1Data, CROP_PADDING};
pub use plan::{
    canonical_dataset, default_train_fraction, normalization, Compat, DataSettings, Selection,
    Stage1Plan, RESUMABLE_KEYS,
};
pub use train_loop::{
    predict_logits, train, val_metrics, NoProgress, Progress, StepInfo, ValMetrics,
};

use crate::checkpoint::CheckpointError;
use crate::losses::LossError;
use crate::optim::OptimError;
use std::path::PathBuf;

/// Number of equal-width bins of the validation ECE printed per epoch (metrics.md §3.1 general default).
pub const VAL_ECE_BINS: usize = 15;

/// Errors of stage-1 training.
#[derive(Debug, thiserror::Error)]
pub enum Stage1Error {
    /// The plan is inconsistent or out of range.
    #[error("invalid stage-1 config: {0}")]
    Plan(String),
    /// Loss configuration or evaluation.
    #[error(transparent)]
    Loss(#[from] LossError),
    /// Optimiser configuration or state.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// Checkpoint I/O.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// File output.
    #[error(transparent)]
    Core(#[from] decal_core::CoreError),
    /// Model construction or checkpoint.
    #[error(transparent)]
    Model(#[from] decal_models::ModelError),
    /// Dataset loading.
    #[error(transparent)]
    Data(#[from] decal_data::DataError),
    /// The loss became NaN or infinite; nothing after the last good checkpoint was saved.
    #[error(
        "training diverged: loss is {value} at epoch {epoch}, step {step} (global step {global_step}); \
         the last good checkpoint is kept in {run_dir}/last"
    )]
    NonFinite {
        /// The loss value.
        value: f64,
        /// 0-based epoch.
        epoch: usize,
        /// 0-based step within the epoch.
        step: usize,
        /// 0-based step over the whole run.
        global_step: u64,
        /// The run directory.
        run_dir: String,
    },
    /// fp16 loss scaling skipped [`crate::precision::MAX_CONSECUTIVE_SKIPS`] steps in a row: the loss or
    /// the gradients are not finite at any scale.
    #[error(
        "training diverged: {skipped} fp16 steps in a row had a non-finite loss or gradients (loss scale now \
         {scale:e}), the last at epoch {epoch}, step {step} (global step {global_step}); {kept}"
    )]
    LossScaleCollapsed {
        /// Consecutive skipped steps.
        skipped: u64,
        /// The loss scale after the last back-off.
        scale: f64,
        /// 0-based epoch.
        epoch: usize,
        /// 0-based step within the epoch.
        step: usize,
        /// 0-based step over the whole run.
        global_step: u64,
        /// Which checkpoint is kept, in words.
        kept: String,
    },
    /// `config.toml` could not be parsed or written.
    #[error("{path}: {problem}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong (for unknown keys, serde names the key).
        problem: String,
    },
    /// A libtorch error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}
