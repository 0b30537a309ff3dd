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
//! Run directory: `config.toml`, `provenance.json`, `metrics.jsonl`, `metrics.csv`, `last/`, `best/`
//! (a `decal_models` checkpoint), and `summary.json` once finished.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::checkpoint::{self, CheckpointError, EpochRecord, TrainState};
use crate::losses::{self, AdaptiveMode, LossConfig, LossError};
use crate::optim::{named_trainable, OptimError, Optimizer, OptimizerConfig};
use crate::precision::{Autocast, GradScaler, GradScalerConfig, Precision};
use crate::schedule::{Schedule, ScheduleConfig};
use decal_data::ImageSet;
use decal_models::ArchConfig;

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

/// Which validation quantity selects the `best/` checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// Validation negative log-likelihood (the authors' README: "always early stop on validation NLL").
    #[default]
    ValNll,
    /// Validation value of the training criterion (the seed's `valid_loss_epoch`; focal units for FL).
    ValLoss,
}

/// Named switches that reproduce one seed behaviour each (seed-system.md §15, §16 "replicate" mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compat {
    /// BUG-5: the training order is the fixed split order every epoch (no shuffling).
    SeedUnshuffled,
    /// BUG-6: validation images get the training augmentation.
    SeedAugmentedVal,
    /// select the checkpoint on the validation loss (training criterion) instead of NLL.
    SeedValLoss,
    /// BUG-10: the adaptive focal loss errors where the seed crashes instead of using the last bin's γ.
    SeedFocal,
    /// All of the above.
    Seed,
}

impl Compat {
    /// Parses a comma-separated list (`seed-unshuffled,seed-augmented-val`).
    pub fn parse_list(list: &str) -> Result<Vec<Compat>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s {
                "seed-unshuffled" => Ok(Compat::SeedUnshuffled),
                "seed-augmented-val" => Ok(Compat::SeedAugmentedVal),
                "seed-val-loss" => Ok(Compat::SeedValLoss),
                "seed-focal" => Ok(Compat::SeedFocal),
                "seed" => Ok(Compat::Seed),
                other => Err(format!(
                    "unknown compat option {other:?}; known: seed-unshuffled, seed-augmented-val, seed-val-loss, \
                     seed-focal, seed (all)"
                )),
            })
            .collect()
    }
}

/// A resolved stage-1 training plan: the run's `config.toml`. Every field is explicit in the file;
/// `0` means "off" / "all" where documented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Stage1Plan {
    /// Run name (directory name under the output root).
    pub name: String,
    /// Architecture preset (`decal_models::ArchConfig::preset`): `cnn`, `wrn-28-10`, `wrn-16-4`, `resnet50`, …
    pub model: String,
    /// Dataset name (`cifar10`, `cifar100`, `svhn`, `mnist`, `fashion-mnist`, `tinyimagenet`, `imagefolder`).
    pub dataset: String,
    /// Directory holding the dataset in one of its official layouts.
    pub data_dir: PathBuf,
    /// Fraction of the training set used for training; the rest is validation (seed: 0.8, CIFAR-100 0.95).
    pub train_fraction: f64,
    /// Seed of the split's generator (seed: 1, independent of the training seed).
    pub split_seed: u64,
    /// Use only N images of the training part (0 = all): quick runs. N evenly spaced entries of the
    /// part's (random) order, as every `limit` ([`decal_data::split::evenly_spaced`]).
    pub limit_train: usize,
    /// Use only N images of the validation part (0 = all), chosen the same way.
    pub limit_val: usize,
    /// Number of epochs (seed: 600 for bases).
    pub epochs: usize,
    /// Training batch size (seed: 256).
    pub batch_size: usize,
    /// Batch size for validation (does not change results).
    pub eval_batch_size: usize,
    /// Peak learning rate (seed: 1e-4).
    pub lr: f64,
    /// Optimiser (seed: Adam, betas 0.9/0.999, eps 1e-8, no weight decay).
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule (seed: constant).
    pub schedule: ScheduleConfig,
    /// Linear warm-up length in epochs (0 = none), before the schedule.
    pub warmup_epochs: f64,
    /// Clip gradients to this global L2 norm (0 = off; the seed does not clip).
    pub clip_grad: f64,
    /// Explicit L2 penalty λ·Σθ² added to the training loss (0 = off; §7.4). Equivalent to coupled weight
    /// decay 2λ; independent of the optimiser's `weight_decay`.
    pub l2: f64,
    /// Training loss (seed: `ce`).
    pub loss: LossConfig,
    /// Training seed: weight init, shuffling, augmentation, dropout.
    pub seed: u64,
    /// Device: `cpu`, `cuda`, `cuda:<i>`, `auto`.
    pub device: String,
    /// libtorch CPU threads (0 = all cores).
    pub threads: usize,
    /// Shuffle the training order every epoch (seed: false, BUG-5).
    pub shuffle: bool,
    /// Random crop + horizontal flip on training images (CIFAR-10/100 in the seed; off for other datasets).
    pub augment: bool,
    /// Apply the training augmentation to validation images too (seed: true, BUG-6).
    pub augment_val: bool,
    /// Checkpoint-selection criterion (seed: `val-loss`).
    pub selection: Selection,
    /// Stop after this many epochs without improvement of the selection criterion (0 = never; seed: never).
    pub patience: usize,
    /// Training precision: `fp32` (seed), `bf16` (autocast, fast on AMX CPUs and recent GPUs) or `fp16`
    /// (autocast + dynamic loss scaling, CUDA). See [`crate::precision`].
    pub precision: Precision,
}

impl Default for Stage1Plan {
    fn default() -> Self {
        Stage1Plan {
            name: "stage1".into(),
            model: "cnn".into(),
            dataset: "cifar10".into(),
            data_dir: PathBuf::from("data"),
            train_fraction: 0.8,
            split_seed: 1,
            limit_train: 0,
            limit_val: 0,
            epochs: 10,
            batch_size: 256,
            eval_batch_size: 512,
            lr: 1e-4,
            optimizer: OptimizerConfig::seed_adam(),
            schedule: ScheduleConfig::Constant,
            warmup_epochs: 0.0,
            clip_grad: 0.0,
            l2: 0.0,
            loss: LossConfig::CrossEntropy,
            seed: 0,
            device: "cpu".into(),
            threads: 0,
            shuffle: true,
            augment: true,
            augment_val: false,
            selection: Selection::ValNll,
            patience: 0,
            precision: Precision::Fp32,
        }
    }
}

impl Stage1Plan {
    /// Parses a `config.toml` text; unknown keys are errors naming the key.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, Stage1Error> {
        toml::from_str(text).map_err(|e| Stage1Error::Config {
            path: path.to_path_buf(),
            problem: e.to_string().trim().replace('\n', " "),
        })
    }

    /// Reads a `config.toml` file.
    pub fn read(path: &Path) -> Result<Self, Stage1Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Stage1Error::Config {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        Self::from_toml(&text, path)
    }

    /// The TOML text of the resolved plan.
    pub fn to_toml(&self) -> Result<String, Stage1Error> {
        toml::to_string_pretty(self).map_err(|e| Stage1Error::Config {
            path: PathBuf::from("config.toml"),
            problem: e.to_string(),
        })
    }

    /// Applies compatibility switches by setting the fields they stand for.
    pub fn apply_compat(&mut self, compat: &[Compat]) {
        for c in compat {
            let all = *c == Compat::Seed;
            if all || *c == Compat::SeedUnshuffled {
                self.shuffle = false;
            }
            if all || *c == Compat::SeedAugmentedVal {
                self.augment_val = true;
            }
            if all || *c == Compat::SeedValLoss {
                self.selection = Selection::ValLoss;
            }
            if all || *c == Compat::SeedFocal {
                if let LossConfig::AdaptiveFocal { mode, .. } = &mut self.loss {
                    *mode = AdaptiveMode::Seed;
                }
            }
        }
    }

    /// Dataset-dependent defaults of the seed: CIFAR-100 trains on 95 % (§4.3); only CIFAR gets crop+flip
    /// (§4.2). Call after choosing the dataset and before applying explicit overrides.
    pub fn apply_dataset_defaults(&mut self) {
        let ds = canonical_dataset(&self.dataset);
        self.train_fraction = if ds == "cifar100" { 0.95 } else { 0.8 };
        self.augment = matches!(ds.as_str(), "cifar10" | "cifar100");
    }

    /// The plan of `table` (a `decal train` config file or an experiment's `[backbone.train]`), resolved as
    /// both commands do: the defaults, then the dataset's defaults ([`Stage1Plan::apply_dataset_defaults`]:
    /// e.g. no crop/flip for SVHN and MNIST), then every key of `table` (explicit keys win). `dataset`
    /// chooses the dataset defaults (a `dataset` key in `table` still sets the plan's dataset).
    pub fn resolve_table(
        dataset: &str,
        table: toml::Table,
        path: &Path,
    ) -> Result<Self, Stage1Error> {
        let mut plan = Stage1Plan {
            dataset: dataset.to_string(),
            ..Stage1Plan::default()
        };
        plan.apply_dataset_defaults();
        let mut base: toml::Table =
            toml::from_str(&plan.to_toml()?).map_err(|e| Stage1Error::Config {
                path: path.to_path_buf(),
                problem: e.to_string(),
            })?;
        base.extend(table);
        let merged = toml::to_string(&base).map_err(|e| Stage1Error::Config {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        Self::from_toml(&merged, path)
    }

    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<(), Stage1Error> {
        let bad = |m: String| Err(Stage1Error::Plan(m));
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return bad(format!(
                "run name {:?} must be a plain directory name",
                self.name
            ));
        }
        if self.epochs == 0 {
            return bad("epochs must be >= 1".into());
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("batch sizes must be >= 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("lr {} must be > 0", self.lr));
        }
        if !(self.train_fraction > 0.0 && self.train_fraction < 1.0) {
            return bad(format!(
                "train_fraction {} must be in (0, 1)",
                self.train_fraction
            ));
        }
        if [self.warmup_epochs, self.clip_grad, self.l2]
            .iter()
            .any(|v| v.is_nan() || *v < 0.0)
        {
            return bad("warmup_epochs, clip_grad and l2 must be >= 0".into());
        }
        self.optimizer.validate()?;
        self.loss.build()?;
        Ok(())
    }
}

/// `(mean, std)` per channel of [`decal_data::transforms::Normalize::for_dataset`], the one normalisation
/// rule (the seed's constants, else 0.5 / 0.5).
pub fn normalization(dataset: &str, channels: usize) -> (Vec<f32>, Vec<f32>) {
    let n = decal_data::transforms::Normalize::for_dataset(dataset, channels);
    (n.mean, n.std)
}

/// Lowercase alphanumerics of a dataset name (`CIFAR-10` → `cifar10`, `tiny-imagenet` → `tinyimagenet`).
pub fn canonical_dataset(name: &str) -> String {
    name.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// The data of a stage-1 run: the training `ImageSet` and the split indices into it.
#[derive(Debug, Clone)]
pub struct Stage1Data {
    /// The full training set (train + validation parts).
    pub set: ImageSet,
    /// Indices of the training part, in the split's order.
    pub train_indices: Vec<usize>,
    /// Indices of the validation part.
    pub val_indices: Vec<usize>,
    /// Per-channel mean for normalisation.
    pub mean: Vec<f32>,
    /// Per-channel std for normalisation.
    pub std: Vec<f32>,
    /// The full seed split (before `limit_train` / `limit_val`, which keep evenly spaced entries of its parts);
    /// written to the run directory as `split.json`.
    pub manifest: decal_data::split::SplitManifest,
}

impl Stage1Data {
    /// Splits `set` as the plan says (seed split, then `limit_train` / `limit_val` through
    /// [`decal_data::split::limit`]).
    pub fn from_set(set: ImageSet, plan: &Stage1Plan) -> Result<Self, Stage1Error> {
        if set.len() < 2 {
            return Err(Stage1Error::Plan(format!(
                "dataset {} has {} images; need at least 2",
                set.name,
                set.len()
            )));
        }
        let manifest = decal_data::split::SplitManifest::seed(
            &canonical_dataset(&plan.dataset),
            set.len(),
            plan.train_fraction,
            plan.split_seed,
        )?;
        let train_indices = decal_data::split::limit(&manifest.train_indices, plan.limit_train);
        let val_indices = decal_data::split::limit(&manifest.valid_indices, plan.limit_val);
        if train_indices.is_empty() || val_indices.is_empty() {
            return Err(Stage1Error::Plan(format!(
                "split of {} images with train_fraction {} leaves an empty train or validation part",
                set.len(),
                plan.train_fraction
            )));
        }
        let (mean, std) = normalization(&plan.dataset, set.channels);
        Ok(Stage1Data {
            set,
            train_indices,
            val_indices,
            mean,
            std,
            manifest,
        })
    }

    /// Loads the plan's dataset (training split) from `plan.data_dir` and splits it.
    pub fn load(plan: &Stage1Plan) -> Result<Self, Stage1Error> {
        let name = decal_data::DatasetName::parse(&plan.dataset)?;
        let set = decal_data::load(name, &plan.data_dir, decal_data::SplitName::Train)?;
        Self::from_set(set, plan)
    }

    /// SHA-256 of the full split (`decal_data::split::SplitManifest::sha256`: train then validation
    /// indices as little-endian u64s).
    pub fn split_hash(&self) -> String {
        self.manifest.sha256.clone()
    }

    /// SHA-256 over the pixels and labels of the whole set: identifies the data.
    pub fn data_hash(&self) -> String {
        let mut bytes = self.set.pixels.clone();
        for &l in &self.set.labels {
            bytes.extend_from_slice(&l.to_le_bytes());
        }
        decal_core::sha256_bytes(&bytes)
    }
}

/// SplitMix64: a small, fast, well-mixed generator for shuffling and augmentation draws. Seeded
/// per `(seed, epoch, stream)`, so every epoch's draws are reproducible on their own.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for `(seed, epoch, stream)`.
    pub fn for_epoch(seed: u64, epoch: usize, stream: u64) -> Self {
        let mut g = SplitMix64(seed ^ decal_core::rng::SPLITMIX64_GAMMA);
        let a = g.next_u64() ^ (epoch as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let mut g = SplitMix64(a);
        let b = g.next_u64() ^ stream.wrapping_mul(0x94D0_49BB_1331_11EB);
        SplitMix64(b)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let z = decal_core::rng::splitmix64(self.0);
        self.0 = self.0.wrapping_add(decal_core::rng::SPLITMIX64_GAMMA);
        z
    }

    /// Uniform integer in `0..n` (Lemire's multiply-shift; the bias is < n/2⁶⁴, negligible here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Images of one dataset as a `u8` `[N, H, W, C]` tensor on the training device, with the batch
/// transform (augmentation + normalisation) applied on the device.
pub struct DeviceImages {
    pixels: Tensor,
    labels: Tensor,
    mean: Tensor,
    std: Tensor,
    height: i64,
    width: i64,
}

impl std::fmt::Debug for DeviceImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceImages")
            .field("shape", &self.pixels.size())
            .finish()
    }
}

/// Zero padding of the seed's `RandomCrop(32, padding=4)` (pixels on each side).
pub const CROP_PADDING: i64 = 4;

impl DeviceImages {
    /// Uploads `set` to `device`.
    pub fn new(set: &ImageSet, mean: &[f32], std: &[f32], device: Device) -> Self {
        let (n, h, w, c) = (
            set.len() as i64,
            set.height as i64,
            set.width as i64,
            set.channels as i64,
        );
        let pixels = Tensor::from_slice(&set.pixels)
            .view([n, h, w, c])
            .to_device(device);
        let labels: Vec<i64> = set.labels.iter().map(|&l| l as i64).collect();
        let labels = Tensor::from_slice(&labels).to_device(device);
        let mean = Tensor::from_slice(mean)
            .view([1, c, 1, 1])
            .to_device(device);
        let std = Tensor::from_slice(std).view([1, c, 1, 1]).to_device(device);
        DeviceImages {
            pixels,
            labels,
            mean,
            std,
            height: h,
            width: w,
        }
    }

    /// The batch of images `indices` as normalised float `[B, C, H, W]` plus labels `[B]`. With `rng`,
    /// applies random crop (zero padding [`CROP_PADDING`], offsets uniform in `0..=2·padding`) and a
    /// horizontal flip with probability ½, in `[0, 1]` space before normalising, as the seed's transform.
    pub fn batch(&self, indices: &[usize], rng: Option<&mut SplitMix64>) -> (Tensor, Tensor) {
        let device = self.pixels.device();
        let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let idx = Tensor::from_slice(&idx).to_device(device);
        // ToTensor: uint8 HWC → float CHW in [0, 1].
        let mut x = self
            .pixels
            .index_select(0, &idx)
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float)
            / 255.0;
        if let Some(rng) = rng {
            x = self.augment(&x, rng);
        }
        let x = (x - &self.mean) / &self.std;
        (x, self.labels.index_select(0, &idx))
    }

    fn augment(&self, x: &Tensor, rng: &mut SplitMix64) -> Tensor {
        let b = x.size()[0];
        let (h, w, p) = (self.height, self.width, CROP_PADDING);
        let mut rows = Vec::with_capacity(b as usize);
        let mut cols = Vec::with_capacity(b as usize);
        let mut flips = Vec::with_capacity(b as usize);
        for _ in 0..b {
            rows.push(rng.below(2 * p as u64 + 1) as i64);
            cols.push(rng.below(2 * p as u64 + 1) as i64);
            flips.push(rng.below(2) == 1);
        }
        let device = x.device();
        let c = x.size()[1];
        let padded = x.constant_pad_nd([p, p, p, p]); // [B, C, H+2p, W+2p], zeros = black in [0, 1] space
                                                      // Row gather: out[b, c, i, :] = padded[b, c, rows[b] + i, :].
        let ar_h = Tensor::arange(h, (Kind::Int64, device));
        let ar_w = Tensor::arange(w, (Kind::Int64, device));
        let r = Tensor::from_slice(&rows)
            .to_device(device)
            .view([b, 1, 1, 1])
            + ar_h.view([1, 1, h, 1]);
        let r = r.expand([b, c, h, w + 2 * p], true);
        let x = padded.gather(2, &r, false);
        let cc = Tensor::from_slice(&cols)
            .to_device(device)
            .view([b, 1, 1, 1])
            + ar_w.view([1, 1, 1, w]);
        let cc = cc.expand([b, c, h, w], true);
        let x = x.gather(3, &cc, false);
        let flip = Tensor::from_slice(&flips)
            .to_device(device)
            .view([b, 1, 1, 1]);
        x.flip([3]).where_self(&flip, &x)
    }
}

/// Callbacks for progress display; the CLI renders a live bar or log lines from them.
pub trait Progress {
    /// A message (resume notice, device, dataset sizes).
    fn message(&mut self, _text: &str) {}
    /// An epoch starts with `steps` optimiser steps.
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    /// A training step finished.
    fn step(&mut self, _info: &StepInfo) {}
    /// An epoch finished (after validation).
    fn epoch_end(&mut self, _record: &EpochRecord) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// What [`Progress::step`] receives.
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// 0-based epoch.
    pub epoch: usize,
    /// Total epochs.
    pub epochs: usize,
    /// 0-based step in the epoch.
    pub step: usize,
    /// Steps in the epoch.
    pub steps: usize,
    /// Running mean training loss of the epoch.
    pub loss: f64,
    /// Running training accuracy of the epoch.
    pub accuracy: f64,
    /// Training images per second so far in the epoch.
    pub images_per_sec: f64,
    /// Current learning rate.
    pub lr: f64,
}

/// Result of [`train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage1Summary {
    /// Run name.
    pub name: String,
    /// Epochs actually run (may be fewer than planned with early stopping).
    pub epochs_run: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Epoch of the `best/` checkpoint.
    pub best_epoch: usize,
    /// Selection criterion (`val-nll` or `val-loss`).
    pub selection: Selection,
    /// Its value at `best_epoch`.
    pub best_value: f64,
    /// The best epoch's record.
    pub best: EpochRecord,
    /// Definition of `val_ece`.
    pub val_ece_definition: String,
    /// Training images, validation images.
    pub num_train: usize,
    /// Validation images.
    pub num_val: usize,
    /// Total wall-clock seconds of this invocation.
    pub seconds: f64,
}

/// Metadata of the `best/` checkpoint beyond the architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestMeta {
    /// Run name.
    pub run: String,
    /// Dataset.
    pub dataset: String,
    /// Training seed.
    pub seed: u64,
    /// 0-based epoch.
    pub epoch: usize,
    /// Selection criterion and its value.
    pub selection: Selection,
    /// Value of the criterion.
    pub value: f64,
    /// Normalisation mean used in training (inputs must be normalised the same way).
    pub mean: Vec<f32>,
    /// Normalisation std.
    pub std: Vec<f32>,
    /// Loss used in training (`ce`, `fl`, `fla`, `ls`).
    pub loss: String,
}

/// File names of the run directory.
pub mod files {
    /// Resolved plan.
    pub const CONFIG: &str = "config.toml";
    /// Provenance.
    pub const PROVENANCE: &str = "provenance.json";
    /// Per-epoch metrics, one JSON object per line.
    pub const METRICS_JSONL: &str = "metrics.jsonl";
    /// Per-epoch metrics as CSV.
    pub const METRICS_CSV: &str = "metrics.csv";
    /// The train/validation split (`decal_data::split::SplitManifest`).
    pub const SPLIT: &str = "split.json";
    /// Written when the run finished.
    pub const SUMMARY: &str = "summary.json";
    /// Best checkpoint directory.
    pub const BEST: &str = "best";
    /// Latest training state directory.
    pub const LAST: &str = "last";
}

/// Provenance of a stage-1 run (`provenance.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage1Provenance {
    /// Process provenance (version, git commit, command line, time, the loaded libtorch and its version).
    #[serde(flatten)]
    pub process: decal_core::Provenance,
    /// The device trained on.
    pub device: String,
    /// libtorch CPU threads.
    pub threads: usize,
    /// Training precision ([`Precision::describe`]).
    pub precision: String,
    /// SHA-256 of the training set's pixels and labels.
    pub data_sha256: String,
    /// SHA-256 of the full split's index lists (as in `split.json`); `limit_train` / `limit_val` in
    /// `config.toml` say which of their images were used.
    pub split_sha256: String,
    /// Number of training / validation images.
    pub num_train: usize,
    /// Validation images.
    pub num_val: usize,
}

fn write_metrics(run_dir: &Path, history: &[EpochRecord]) -> Result<(), Stage1Error> {
    let mut jsonl = String::new();
    let mut csv = String::from(
        "epoch,step,lr,train_loss,train_accuracy,val_loss,val_nll,val_accuracy,val_ece,seconds,train_images_per_sec,is_best,skipped_steps\n",
    );
    for r in history {
        jsonl.push_str(&serde_json::to_string(r).expect("epoch records serialise"));
        jsonl.push('\n');
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.epoch,
            r.step,
            r.lr,
            r.train_loss,
            r.train_accuracy,
            r.val_loss,
            r.val_nll,
            r.val_accuracy,
            r.val_ece,
            r.seconds,
            r.train_images_per_sec,
            r.is_best,
            r.skipped_steps
        ));
    }
    decal_core::write_atomic(&run_dir.join(files::METRICS_JSONL), jsonl.as_bytes())?;
    decal_core::write_atomic(&run_dir.join(files::METRICS_CSV), csv.as_bytes())?;
    Ok(())
}

/// Validation metrics of one pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValMetrics {
    /// Training criterion, example-weighted mean.
    pub loss: f64,
    /// NLL (nats).
    pub nll: f64,
    /// Accuracy (fraction).
    pub accuracy: f64,
    /// Top-label ECE ([`VAL_ECE_BINS`] bins, Guo `(lo, hi]` membership), fraction.
    pub ece: f64,
}

/// Logits `[N, K]` of `model` on `indices` (eval mode, no gradient), on the CPU as f32, with labels.
pub fn predict_logits(
    model: &decal_models::Classifier,
    images: &DeviceImages,
    indices: &[usize],
    batch_size: usize,
    augment: Option<&mut SplitMix64>,
) -> (Tensor, Tensor) {
    let mut rng = augment;
    let mut all_logits = Vec::new();
    let mut all_labels = Vec::new();
    tch::no_grad(|| {
        for chunk in indices.chunks(batch_size) {
            let (x, y) = images.batch(chunk, rng.as_deref_mut());
            all_logits.push(
                model
                    .forward_t(&x, false)
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Float),
            );
            all_labels.push(y.to_device(Device::Cpu));
        }
    });
    (Tensor::cat(&all_logits, 0), Tensor::cat(&all_labels, 0))
}

/// Criterion, NLL, accuracy and ECE of logits against labels (all in f64).
pub fn val_metrics(
    logits: &Tensor,
    labels: &Tensor,
    loss: &losses::Loss,
) -> Result<ValMetrics, Stage1Error> {
    let n = logits.size()[0] as f64;
    let crit = loss.compute_sum(logits, labels)?.double_value(&[]) / n;
    let logits64 = logits.to_kind(Kind::Double);
    let logp = logits64.log_softmax(1, Kind::Double);
    let nll = -logp
        .gather(1, &labels.view([-1, 1]), false)
        .mean(Kind::Double)
        .double_value(&[]);
    let probs = logp.exp();
    let (conf, pred) = probs.max_dim(1, false);
    let correct_t = pred.eq_tensor(labels);
    let accuracy = correct_t
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[]);
    let conf: Vec<f64> = Vec::<f64>::try_from(&conf).map_err(Stage1Error::Torch)?;
    let correct: Vec<bool> = Vec::<bool>::try_from(&correct_t).map_err(Stage1Error::Torch)?;
    let bins =
        decal_metrics::binning::Bins::new(VAL_ECE_BINS, decal_metrics::binning::Membership::Guo);
    let ece = decal_metrics::calibration::ece(&conf, &correct, &bins);
    Ok(ValMetrics {
        loss: crit,
        nll,
        accuracy,
        ece,
    })
}

/// Saves the `best/` checkpoint (a `decal_models` checkpoint directory plus `meta.json`), atomically.
fn save_best(
    run_dir: &Path,
    vs: &VarStore,
    arch: &ArchConfig,
    meta: &BestMeta,
) -> Result<(), Stage1Error> {
    checkpoint::replace_dir_atomically(run_dir, files::BEST, |dir| {
        std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        crate::model_io::save_classifier(dir, vs, arch, meta)
    })?;
    Ok(())
}

/// Seeds libtorch's generator for epoch `epoch` (dropout draws): a function of `(seed, epoch)` only.
fn seed_torch_for_epoch(seed: u64, epoch: usize) {
    let s = SplitMix64::for_epoch(seed, epoch, 0x70_72_63_68).next_u64() >> 1;
    tch::manual_seed(s as i64);
}

/// Trains a classifier as `plan` says, writing into `run_dir` (created by the caller with
/// `decal_core::prepare_output_dir`). With `resume`, continues from the newest complete `last/`.
///
/// Reproducibility needs one training at a time per process: weight initialisation and dropout draw from
/// libtorch's process-wide generator, which this function seeds.
pub fn train(
    plan: &Stage1Plan,
    data: &Stage1Data,
    run_dir: &Path,
    device: Device,
    resume: bool,
    progress: &mut dyn Progress,
) -> Result<Stage1Summary, Stage1Error> {
    plan.validate()?;
    let started = Instant::now();
    let num_classes = data.set.num_classes() as i64;
    let arch = ArchConfig::preset(&plan.model, num_classes)?;
    let loss_fn = plan.loss.build()?;

    // Weight init is a function of the seed alone (the resumed run rebuilds, then loads weights).
    tch::manual_seed(plan.seed as i64);
    let mut vs = VarStore::new(device);
    let model = decal_models::try_build_classifier(&vs.root(), &arch)?;
    let mut opt = Optimizer::new(plan.optimizer.clone(), named_trainable(&vs))?;
    let params: Vec<Tensor> = opt
        .params()
        .iter()
        .map(|(_, p)| p.shallow_clone())
        .collect();

    let steps_per_epoch = data.train_indices.len().div_ceil(plan.batch_size) as u64;
    let schedule = Schedule::new(
        plan.schedule.clone(),
        plan.lr,
        plan.epochs,
        steps_per_epoch,
        plan.warmup_epochs,
    );

    // Fails early (before writing anything) when autocast is unavailable on this device.
    if let Some(kind) = plan.precision.autocast_kind() {
        drop(Autocast::enter(device, kind).map_err(Stage1Error::Plan)?);
    }
    let scaler_config = GradScalerConfig::default();
    let mut scaler = plan
        .precision
        .uses_loss_scaling()
        .then(|| GradScaler::new(scaler_config.clone()));

    let mut state = TrainState {
        epochs_completed: 0,
        global_step: 0,
        best_value: None,
        best_epoch: None,
        epochs_without_improvement: 0,
        stopped_early: false,
        history: Vec::new(),
        model_sha256: String::new(),
        optimizer_sha256: String::new(),
        grad_scaler: None,
    };
    if resume {
        match checkpoint::find_latest(run_dir)? {
            Some((dir, saved)) => {
                checkpoint::load_into(&dir, &saved, &mut vs, &mut opt)?;
                if let Some(s) = &saved.grad_scaler {
                    scaler = scaler.map(|sc| GradScaler::from_state(sc.config, s.clone()));
                }
                progress.message(&format!(
                    "resuming {} after epoch {} (global step {}) from {}",
                    plan.name,
                    saved.epochs_completed,
                    saved.global_step,
                    dir.display()
                ));
                state = saved;
            }
            None => progress.message(&format!(
                "no checkpoint in {} yet: starting from epoch 0",
                run_dir.display()
            )),
        }
    } else {
        let prov = Stage1Provenance {
            process: decal_core::Provenance::capture(),
            device: format!("{device:?}"),
            threads: tch::get_num_threads().max(0) as usize,
            precision: plan.precision.describe(&scaler_config),
            data_sha256: data.data_hash(),
            split_sha256: data.split_hash(),
            num_train: data.train_indices.len(),
            num_val: data.val_indices.len(),
        };
        decal_core::write_atomic(&run_dir.join(files::CONFIG), plan.to_toml()?.as_bytes())?;
        decal_core::write_json_atomic(&run_dir.join(files::PROVENANCE), &prov)?;
        data.manifest.save(&run_dir.join(files::SPLIT))?;
    }

    let images = DeviceImages::new(&data.set, &data.mean, &data.std, device);
    let meta_for = |epoch: usize, value: f64| BestMeta {
        run: plan.name.clone(),
        dataset: plan.dataset.clone(),
        seed: plan.seed,
        epoch,
        selection: plan.selection,
        value,
        mean: data.mean.clone(),
        std: data.std.clone(),
        loss: plan.loss.short_name().to_string(),
    };

    // The epoch `last/` holds (fp16 runs may defer it, see below).
    let mut last_saved = state.epochs_completed.checked_sub(1);
    while state.epochs_completed < plan.epochs && !state.stopped_early {
        let epoch = state.epochs_completed;
        let epoch_start = Instant::now();
        seed_torch_for_epoch(plan.seed, epoch);
        let mut order = data.train_indices.clone();
        if plan.shuffle {
            SplitMix64::for_epoch(plan.seed, epoch, 1).shuffle(&mut order);
        }
        let mut aug_rng = SplitMix64::for_epoch(plan.seed, epoch, 2);
        let steps = order.len().div_ceil(plan.batch_size);
        progress.epoch_start(epoch, plan.epochs, steps);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0i64, 0usize);
        let skipped_before = scaler.as_ref().map_or(0, |s| s.state.skipped_steps);
        let mut lr = schedule.lr_at(state.global_step);
        for (step, chunk) in order.chunks(plan.batch_size).enumerate() {
            lr = schedule.lr_at(state.global_step);
            let (x, y) = images.batch(
                chunk,
                if plan.augment {
                    Some(&mut aug_rng)
                } else {
                    None
                },
            );
            opt.zero_grad();
            // Only the forward pass is autocast; the loss is computed in float32 (crate::precision).
            let logits = crate::precision::with_autocast(plan.precision, device, || {
                model.forward_t(&x, true)
            })
            .map_err(Stage1Error::Plan)?
            .to_kind(Kind::Float);
            let mut loss = loss_fn.compute(&logits, &y)?;
            if plan.l2 > 0.0 {
                loss += losses::l2_penalty(&params, plan.l2);
            }
            let value = loss.double_value(&[]);
            let diverged = |value: f64| Stage1Error::NonFinite {
                value,
                epoch,
                step,
                global_step: state.global_step,
                run_dir: run_dir.display().to_string(),
            };
            match scaler.as_mut() {
                None => {
                    if !value.is_finite() {
                        return Err(diverged(value));
                    }
                    loss.backward();
                    if plan.clip_grad > 0.0 {
                        opt.clip_grad_norm(plan.clip_grad);
                    }
                    opt.step(lr);
                }
                Some(scaler) => {
                    // fp16: an overflow in the forward pass shows as a non-finite loss and in the backward
                    // pass as non-finite gradients; both skip the step and lower the scale, as
                    // torch.amp.GradScaler does. Persistent failure at every scale is divergence.
                    let found_inf = if value.is_finite() {
                        scaler.scale(&loss).backward();
                        scaler.unscale(&params)
                    } else {
                        true
                    };
                    if !found_inf {
                        if plan.clip_grad > 0.0 {
                            opt.clip_grad_norm(plan.clip_grad);
                        }
                        opt.step(lr);
                    }
                    scaler.update(found_inf);
                    if scaler.gave_up() {
                        return Err(Stage1Error::LossScaleCollapsed {
                            skipped: scaler.state.consecutive_skips,
                            scale: scaler.state.scale,
                            epoch,
                            step,
                            global_step: state.global_step,
                            kept: match last_saved {
                                Some(e) => format!(
                                    "{}/last holds epoch {e}, from before the streak",
                                    run_dir.display()
                                ),
                                None => "no epoch was checkpointed before the streak".into(),
                            },
                        });
                    }
                }
            }
            state.global_step += 1;
            let b = chunk.len();
            // A non-finite loss reaches this point only as a skipped fp16 step; it is left out of the mean.
            loss_sum += if value.is_finite() {
                value * b as f64
            } else {
                0.0
            };
            correct += tch::no_grad(|| {
                logits
                    .argmax(1, false)
                    .eq_tensor(&y)
                    .sum(Kind::Int64)
                    .int64_value(&[])
            });
            seen += b;
            let secs = epoch_start.elapsed().as_secs_f64().max(1e-9);
            progress.step(&StepInfo {
                epoch,
                epochs: plan.epochs,
                step,
                steps,
                loss: loss_sum / seen as f64,
                accuracy: correct as f64 / seen as f64,
                images_per_sec: seen as f64 / secs,
                lr,
            });
        }
        let train_secs = epoch_start.elapsed().as_secs_f64().max(1e-9);

        let mut val_rng = SplitMix64::for_epoch(plan.seed, epoch, 3);
        let (logits, labels) = predict_logits(
            &model,
            &images,
            &data.val_indices,
            plan.eval_batch_size,
            if plan.augment_val && plan.augment {
                Some(&mut val_rng)
            } else {
                None
            },
        );
        let val = val_metrics(&logits, &labels, &loss_fn)?;
        let criterion = match plan.selection {
            Selection::ValNll => val.nll,
            Selection::ValLoss => val.loss,
        };
        // Strictly smaller replaces; ties keep the earlier epoch (Lightning ModelCheckpoint, §3.3).
        let improved = criterion.is_finite() && state.best_value.is_none_or(|b| criterion < b);
        if improved {
            save_best(run_dir, &vs, &arch, &meta_for(epoch, criterion))?;
            state.best_value = Some(criterion);
            state.best_epoch = Some(epoch);
            state.epochs_without_improvement = 0;
        } else {
            state.epochs_without_improvement += 1;
        }
        let record = EpochRecord {
            epoch,
            step: state.global_step,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_loss: val.loss,
            val_nll: val.nll,
            val_accuracy: val.accuracy,
            val_ece: val.ece,
            seconds: epoch_start.elapsed().as_secs_f64(),
            train_images_per_sec: seen as f64 / train_secs,
            is_best: improved,
            skipped_steps: scaler.as_ref().map_or(0, |s| s.state.skipped_steps) - skipped_before,
        };
        state.history.push(record.clone());
        state.epochs_completed += 1;
        state.grad_scaler = scaler.as_ref().map(|s| s.state.clone());
        if plan.patience > 0 && state.epochs_without_improvement >= plan.patience {
            state.stopped_early = true;
        }
        // fp16: an epoch that ends inside a run of skipped steps does not replace `last/` (unless it is the
        // final epoch): if the streak turns out to be divergence, `last/` still holds weights from before
        // it. A resumed run recomputes the unsaved epoch bit-identically.
        let finished = state.epochs_completed >= plan.epochs || state.stopped_early;
        if finished || !scaler.as_ref().is_some_and(GradScaler::in_skip_streak) {
            checkpoint::save_last(run_dir, &vs, &opt, &state)?;
            write_metrics(run_dir, &state.history)?;
            last_saved = Some(epoch);
        } else {
            progress.message(&format!(
                "epoch {epoch} ended in a run of {} skipped fp16 steps; last/ {}",
                scaler.as_ref().map_or(0, |s| s.state.consecutive_skips),
                match last_saved {
                    Some(e) => format!("keeps epoch {e}"),
                    None => "is not written yet".into(),
                }
            ));
        }
        progress.epoch_end(&record);
    }

    let best_epoch = state.best_epoch.ok_or_else(|| {
        Stage1Error::Plan(
            "no epoch produced a finite validation criterion; no best checkpoint".into(),
        )
    })?;
    let summary = Stage1Summary {
        name: plan.name.clone(),
        epochs_run: state.epochs_completed,
        stopped_early: state.stopped_early,
        best_epoch,
        selection: plan.selection,
        best_value: state.best_value.unwrap_or(f64::NAN),
        best: state.history[best_epoch].clone(),
        val_ece_definition: format!(
            "top-label ECE, {VAL_ECE_BINS} equal-width bins, (lo, hi] membership (Guo et al. 2017), fraction"
        ),
        num_train: data.train_indices.len(),
        num_val: data.val_indices.len(),
        seconds: started.elapsed().as_secs_f64(),
    };
    decal_core::write_json_atomic(&run_dir.join(files::SUMMARY), &summary)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_deterministic_and_uniform_enough() {
        let mut a = SplitMix64::for_epoch(7, 3, 1);
        let mut b = SplitMix64::for_epoch(7, 3, 1);
        assert_eq!(a.next_u64(), b.next_u64());
        let mut c = SplitMix64::for_epoch(7, 4, 1);
        assert_ne!(SplitMix64::for_epoch(7, 3, 1).next_u64(), c.next_u64());
        let mut counts = [0usize; 9];
        let mut g = SplitMix64::for_epoch(1, 0, 0);
        for _ in 0..90_000 {
            counts[g.below(9) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        let mut v: Vec<usize> = (0..100).collect();
        g.shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn data_seed_split_matches_torch_randperm() {
        // torch 2.11: g = torch.Generator(); g.manual_seed(1); torch.randperm(10, generator=g)
        let (train, val) = decal_data::split::seed_split(10, 0.8, 1);
        assert_eq!(train, vec![5, 6, 1, 2, 0, 8, 9, 3]);
        assert_eq!(val, vec![7, 4]);
        let (train, val) = decal_data::split::seed_split(50_000, 0.8, 1);
        assert_eq!(&train[..5], &[45845, 11799, 43880, 43701, 41303]);
        assert_eq!(&val[val.len() - 3..], &[37038, 8785, 8475]);
        assert_eq!((train.len(), val.len()), (40_000, 10_000));
    }

    #[test]
    fn plan_toml_roundtrip_and_unknown_key() {
        let plan = Stage1Plan::default();
        let text = plan.to_toml().unwrap();
        let back = Stage1Plan::from_toml(&text, Path::new("c.toml")).unwrap();
        assert_eq!(plan, back);
        let err = Stage1Plan::from_toml("epochs = 3\nlearning_rate = 0.1\n", Path::new("c.toml"))
            .unwrap_err();
        assert!(err.to_string().contains("learning_rate"), "{err}");
    }

    #[test]
    fn compat_switches() {
        let mut plan = Stage1Plan {
            loss: LossConfig::AdaptiveFocal {
                gammas: vec![5.0, 3.0],
                probs: vec![0.2, 1.0],
                mode: AdaptiveMode::Fixed,
            },
            ..Stage1Plan::default()
        };
        plan.apply_compat(&Compat::parse_list("seed").unwrap());
        assert!(!plan.shuffle && plan.augment_val && plan.selection == Selection::ValLoss);
        assert!(matches!(
            plan.loss,
            LossConfig::AdaptiveFocal {
                mode: AdaptiveMode::Seed,
                ..
            }
        ));
        assert!(Compat::parse_list("seed-unshuffled, nope")
            .unwrap_err()
            .contains("nope"));
    }

    #[test]
    fn crop_and_flip_move_pixels_as_torchvision() {
        // One 1-channel 4x4 image with distinct values; crop offsets and flips are checked against a
        // direct computation on the padded image.
        let set = ImageSet {
            name: "t".into(),
            height: 4,
            width: 4,
            channels: 1,
            pixels: (0..16u8).map(|v| v * 10).collect(),
            labels: vec![0],
            class_names: vec!["a".into()],
        };
        let images = DeviceImages::new(&set, &[0.0], &[1.0], Device::Cpu);
        for seed in 0..20u64 {
            let mut rng = SplitMix64::for_epoch(seed, 0, 2);
            let mut probe = rng.clone();
            let (r, c, flip) = (
                probe.below(9) as i64,
                probe.below(9) as i64,
                probe.below(2) == 1,
            );
            let (x, _) = images.batch(&[0], Some(&mut rng));
            let x: Vec<f32> = Vec::<f32>::try_from(&x.view([-1])).unwrap();
            for i in 0..4i64 {
                for j in 0..4i64 {
                    let jj = if flip { 3 - j } else { j };
                    let (pi, pj) = (r + i - CROP_PADDING, c + jj - CROP_PADDING);
                    let want = if (0..4).contains(&pi) && (0..4).contains(&pj) {
                        (pi * 4 + pj) as f32 * 10.0 / 255.0
                    } else {
                        0.0
                    };
                    assert_eq!(
                        x[(i * 4 + j) as usize],
                        want,
                        "seed {seed} ({r},{c},{flip}) at {i},{j}"
                    );
                }
            }
        }
    }
}
