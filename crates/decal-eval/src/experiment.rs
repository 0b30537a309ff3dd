//! `decal run`: one experiment config end to end — backbone (stage 1 or import), feature cache, every head ×
//! every seed (stage 2), evaluation of every method, records, table and report — resumable.
//!
//! # Content addressing
//! Every unit of work lives in a directory or file whose name carries a hash of everything it depends on:
//! - backbone: `backbone-<h>/` with `h` = hash of the resolved stage-1 plan (or of the imported weights);
//! - features: `features/<backbone h>/<split>.*`, each split with a [`CacheKey`] (backbone weights hash,
//!   image hash, transform), rebuilt when stale;
//! - heads: `heads/<head>/seed-<s>-<h>/` with `h` = hash of the resolved [`Stage2Config`] and of the
//!   training/validation features;
//! - evaluations: `eval/<method>-<h>.json` with `h` = hash of the method's weights, its features and the
//!   evaluation settings.
//!
//! A unit whose directory/file already holds a complete result (written last, atomically) is skipped, so a
//! killed run resumes where it stopped and nothing finished is recomputed; a changed config creates new units
//! next to the old ones instead of overwriting them. `--force` recomputes every unit. The derived files at
//! the top (`metrics.jsonl`, `metrics.csv`, `results.json`, `reliability/`, `report/`) are regenerated from
//! the units of the current config on every run; `report/` by [`decal_report::generate::generate_report`],
//! so it is the report `decal report <run>` writes.
//!
//! # Temperature scaling
//! `temperature_scaling = true` adds the baseline rows `TS` (exact fit) and `TS (seed LBFGS)`; in a
//! `[[heads]]` table it adds `TS + <row>` for every row of that head, fitted per seed on the validation
//! split's predictive of the row — V-TST with its m and its ε stream (seed-system.md §9, BUG-16 fixed) —
//! and `temperature_scaling_seed_lbfgs = true` the seed's single-sample LBFGS fit for single-prediction rows.
//! Each head fit is a unit (`eval/ts-<row>-seed<s>-<h>.json`); every fitted T is in `results.json`
//! under `calibration`.
//!
//! # Missing optional inputs
//! An OOD set or corruption directory that cannot be loaded is skipped with a warning; the warning is
//! printed, kept in `results.json` and shown in the report, and everything else completes. So does a
//! temperature fit without a finite optimum (validation logits no better than uniform): its row
//! (`TS`, `TS (seed LBFGS)`, or a head's `TS + <row>` for that seed) is left out with a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use decal_core::{sha256_bytes, sha256_file, write_atomic, write_json_atomic, Provenance};
use decal_data::{DatasetName, ImageSet, SplitName};
use decal_metrics::bootstrap::BootstrapConfig;
use decal_metrics::profile::Profile;
use decal_models::heads::{HeadConfig, HeadKind};
use decal_models::{ArchConfig, Classifier};
use decal_report::table::{aggregate, Spread, Table};
use decal_report::{BinStat, MetricRecord, ReliabilitySeries};
use decal_train::features::{self, BodyMode, CacheKey, FeatureSet};
use decal_train::losses::LossConfig;
use decal_train::stage1::{self, DeviceImages, Stage1Data, Stage1Plan};
use decal_train::stage2::{self, Selection, Stage2Config, TrainSource};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::{nn, Device};

use crate::drift::{BodyState, BODY_STATE_FILE};
use crate::predict::{predict, Predictions, Predictor};
use crate::recipe::{self, Recipe};
use crate::suite::{self, EvalSettings, RecordContext, ShiftCompat, ShiftSweep};

/// `[backbone] features`: an experiment on features saved from any model (a child module, so it shares
/// this module's units, temperature fits and report).
#[path = "feature_run.rs"]
mod feature_run;
use crate::validation::{self, TrainingImages, ValidationChoice, ValidationSource};

/// Errors of an experiment run: one line naming the step, the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The config file is invalid.
    #[error("{path}: {problem}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A step failed.
    #[error("{step}: {message}")]
    Step {
        /// Which step (and input).
        step: String,
        /// The underlying error, rendered.
        message: String,
    },
}

fn step<E: std::fmt::Display>(name: impl Into<String>) -> impl FnOnce(E) -> ExperimentError {
    let name = name.into();
    move |e| ExperimentError::Step {
        step: name,
        message: format!("{e}"),
    }
}

/// The experiment file (`experiment.toml`). Unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Experiment name (used in record `run` fields and titles).
    pub name: String,
    /// One-line description shown in the report.
    #[serde(default)]
    pub description: String,
    /// Stage-2 seeds: every head is trained once per seed (the seed: 0..9).
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// In-distribution data (not used, and may be left out, with `[backbone] features`).
    #[serde(default = "no_data")]
    pub data: DataConfig,
    /// The frozen backbone: trained (stage 1) or imported.
    pub backbone: BackboneConfig,
    /// How features are produced for stage 2.
    #[serde(default)]
    pub features: FeaturesConfig,
    /// Heads to train on the frozen features.
    #[serde(default)]
    pub heads: Vec<HeadSpec>,
    /// Post-hoc temperature scaling of the baseline (fitted on the validation split).
    #[serde(default)]
    pub temperature_scaling: bool,
    /// Out-of-distribution sets.
    #[serde(default)]
    pub ood: Vec<OodSpec>,
    /// Corruption shift (generated corruptions in the CIFAR-10-C layout).
    #[serde(default)]
    pub shift: Option<ShiftSpec>,
    /// Evaluation settings.
    #[serde(default)]
    pub eval: EvalConfig,
    /// `"decal"` (default) or `"seed"`: a preset for every documented difference from the seed; explicit keys
    /// win over it ([`crate::recipe`]).
    #[serde(default)]
    pub recipe: Recipe,
}

fn default_seeds() -> Vec<u64> {
    vec![0, 1, 2]
}

/// `[data]` of a config without one (`[backbone] features`): no dataset, every other key at its default.
fn no_data() -> DataConfig {
    toml::from_str("dataset = \"\"\ndir = \"\"").expect("a [data] table with every default parses")
}

/// In-distribution dataset and split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `cifar10`, `cifar100`, `svhn`, `mnist`, `fashion-mnist`, `tinyimagenet`, `imagefolder`.
    pub dataset: String,
    /// Directory in one of the dataset's official layouts (relative paths: relative to the config file).
    pub dir: PathBuf,
    /// Training fraction of the seed's split (default: the seed's, 0.8; CIFAR-100 0.95).
    #[serde(default)]
    pub train_fraction: Option<f64>,
    /// Generator seed of the split (seed: 1).
    #[serde(default = "one")]
    pub split_seed: u64,
    /// Use only the first N images of the training part (0 = all).
    #[serde(default)]
    pub limit_train: usize,
    /// Use only the first N images of the validation part (0 = all).
    #[serde(default)]
    pub limit_val: usize,
    /// Use only N test images, evenly spaced over the test set (every (size/N)-th; 0 = all), so a
    /// class-ordered copy keeps every class.
    #[serde(default)]
    pub limit_test: usize,
    /// MNIST / Fashion-MNIST only: accept IDX files with fewer images than the official sets (the bundled
    /// quickstart subsets). The files must still be internally consistent.
    #[serde(default)]
    pub allow_subset: bool,
    /// Where temperature scaling, head-epoch selection and head temperatures are fitted
    /// ([`crate::validation`]): `auto` (default: the split's validation part when the backbone is known not
    /// to have trained on it, otherwise a held-out part of the test split), `train-split`, `test-holdout`,
    /// or `train-split-unsafe` (the validation part even if the backbone may have trained on it).
    #[serde(default)]
    pub validation: ValidationChoice,
    /// Fraction of the test split held out for calibration when the validation source is the test split
    /// (stratified per class, seeded by `split_seed`; the rest stays the test set).
    #[serde(default = "default_holdout_fraction")]
    pub holdout_fraction: f64,
}

fn default_holdout_fraction() -> f64 {
    0.2
}

fn one() -> u64 {
    1
}

/// Where the backbone comes from: exactly one of `checkpoint` / `train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    /// A decal checkpoint directory (`decal import` output or a stage-1 `best/`).
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// A stage-1 plan (`decal train` config keys); `dataset`, `data_dir`, `train_fraction`, `split_seed`,
    /// `limit_train`, `limit_val` and `device` are taken from `[data]` and the run.
    #[serde(default)]
    pub train: Option<Stage1Plan>,
    /// Features saved from any model instead of a network (`decal heads`; see
    /// [`crate::feature_files`]): `features = { train = "F.npy", train_labels = "Y.npy", val = …,
    /// val_labels = …, test = …, test_labels = …, ood = { name = "O.npy" }, test_logits = … }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<crate::feature_files::FeatureFiles>,
}

/// Feature production for stage 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesConfig {
    /// How stage 2 gets its training features (validation and test features are always un-augmented):
    /// - `augmented`: the frozen body's features of `views` augmented views of every training image
    ///   (the seed's crop + flip), extracted once into a cache ([`decal_train::views`]); every head epoch
    ///   takes one view per image per seed;
    /// - `unaugmented` (alias `cached`, its older name): features of the un-augmented training images,
    ///   computed once — not the seed's training distribution;
    /// - `exact`: the seed's loop — freshly augmented training images through the body every epoch.
    ///
    /// Default `augmented` with `views = 10`: on the imported seed CNN its TST and V-TST results match exact
    /// mode where un-augmented features do not (docs/stage2-views.md).
    #[serde(default = "augmented")]
    pub mode: String,
    /// `frozen` (default) or `seed-bn-drift` (exact mode only: the seed's train-mode body, BUG-7).
    #[serde(default)]
    pub body: BodyMode,
    /// Batch size of the body's forward passes (does not change results in frozen mode).
    #[serde(default = "default_feature_batch")]
    pub batch_size: usize,
    /// A, augmented views per training image (`augmented` mode).
    #[serde(default = "default_views")]
    pub views: usize,
    /// Element type of the view cache: `f16` (default, half the disk) or `f32` (`augmented` mode).
    #[serde(default)]
    pub storage: decal_train::views::Storage,
    /// Seed of the views' crop and flip draws (`augmented` mode).
    #[serde(default)]
    pub views_seed: u64,
}

fn default_views() -> usize {
    10
}

fn augmented() -> String {
    "augmented".into()
}
fn default_feature_batch() -> usize {
    512
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig {
            mode: augmented(),
            body: BodyMode::Frozen,
            batch_size: default_feature_batch(),
            views: default_views(),
            storage: decal_train::views::Storage::F16,
            views_seed: 0,
        }
    }
}

/// One head to train (per seed) and how to evaluate it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    /// Method name in tables, e.g. `TST`, `V-TST` (V-TST rows get ` m=<m>` appended).
    pub name: String,
    /// `tst`, `vtst` or `reinit`.
    pub kind: HeadKind,
    /// F, the backbone feature width the head is meant for (optional; checked against the backbone).
    #[serde(default)]
    pub feature_dim: Option<i64>,
    /// Z (ignored by REINIT).
    #[serde(default = "default_latent")]
    pub latent_dim: i64,
    /// 3, 4 or 5 (ignored by REINIT).
    #[serde(default = "three")]
    pub mlp_size: usize,
    /// Stage-2 epochs (seed: 40).
    #[serde(default = "forty")]
    pub epochs: usize,
    /// Batch size (seed: 256).
    #[serde(default = "b256")]
    pub batch_size: usize,
    /// Adam learning rate (seed: 1e-4).
    #[serde(default = "lr")]
    pub lr: f64,
    /// Stage-2 classification loss.
    #[serde(default)]
    pub loss: LossConfig,
    /// V-TST training samples S.
    #[serde(default = "one_usize")]
    pub train_samples: usize,
    /// V-TST samples for the validation NLL of checkpoint selection.
    #[serde(default = "ten")]
    pub val_samples: usize,
    /// Checkpoint selection.
    #[serde(default)]
    pub selection: Selection,
    /// Reshuffle every epoch (false = seed BUG-5).
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// V-TST test-time sample counts m, one table row each (0 = decode μ).
    #[serde(default = "default_eval_samples")]
    pub eval_samples: Vec<usize>,
    /// Also evaluate the head temperature-scaled: one more row `TS + <row>` per row of this head, with T
    /// fitted per seed by minimising the validation split's NLL of that row's predictive. For V-TST with
    /// m ≥ 1 the predictive is `(1/m) Σ_s softmax(z_s / T)` (T divides every sample's logits; fitted on
    /// the same m and the same ε stream as the untempered row; seed-system.md BUG-16 fixed); for TST,
    /// REINIT and V-TST `mean` it is the ordinary exact fit on the head's logits.
    #[serde(default)]
    pub temperature_scaling: bool,
    /// Seed compatibility (seed-system.md §9, BUG-15/16): also a row `TS (seed LBFGS) + <row>` for the
    /// single-prediction rows (TST, REINIT, V-TST m = 1): T from the seed's one LBFGS step (T₀ 1.5, lr 0.01)
    /// on one stochastic sample of validation logits, applied to one sample. The seed cannot
    /// temperature-scale m > 1, so there is no such row for it.
    #[serde(default)]
    pub temperature_scaling_seed_lbfgs: bool,
}

fn default_latent() -> i64 {
    128
}
fn three() -> usize {
    3
}
fn forty() -> usize {
    40
}
fn b256() -> usize {
    256
}
fn lr() -> f64 {
    1e-4
}
fn one_usize() -> usize {
    1
}
fn ten() -> usize {
    10
}
fn yes() -> bool {
    true
}
fn default_eval_samples() -> Vec<usize> {
    vec![1, 10]
}

/// An out-of-distribution set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OodSpec {
    /// Name in records, e.g. `tinyimagenet`.
    pub name: String,
    /// Dataset reader (`tinyimagenet`, `mnist`, `svhn`, `cifar100`, `imagefolder`, …).
    pub dataset: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Which split (`test`, `val`, …).
    #[serde(default = "test_split")]
    pub split: String,
    /// Use only N images, evenly spaced over the set (every (size/N)-th; 0 = all).
    #[serde(default)]
    pub limit: usize,
    /// MNIST / Fashion-MNIST only: accept an IDX subset (see `[data] allow_subset`).
    #[serde(default)]
    pub allow_subset: bool,
}

fn test_split() -> String {
    "test".into()
}

/// Generated corruptions (`decal data corrupt` output: `<corruption>.npy`, `labels.npy`, `manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftSpec {
    /// The directory.
    pub dir: PathBuf,
    /// Dataset name in records (default `<dataset>-c-generated`).
    #[serde(default)]
    pub name: Option<String>,
    /// Corruptions to evaluate (empty = every `<name>.npy` found). The seed's 13-corruption CIFAR-10 list is
    /// a compatibility choice: list it here explicitly.
    #[serde(default)]
    pub corruptions: Vec<String>,
    /// Seed compat (BUG-1): divide per-severity sums by this instead of the number of corruptions.
    #[serde(default)]
    pub severity_divisor: Option<usize>,
    /// Evaluate every k-th image of each severity block (1 = all). A strided subset keeps the class
    /// balance of a class-ordered test set (e.g. the CIFAR-10 JPEG copy), unlike a prefix.
    #[serde(default = "one_usize")]
    pub every: usize,
    /// Evaluate at most N images of each severity block (0 = all): the stride `every` is widened to
    /// `ceil(block / N)` when that is larger, so the subset stays spread over the block. Set by
    /// `decal run --smoke` ([`smoke_config`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Evaluation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Metric profiles; the first is primary (plain metric keys). Default `["default", "paper"]`.
    #[serde(default = "default_profiles")]
    pub profiles: Vec<String>,
    /// Bootstrap resamples for in-distribution intervals (0 = none).
    #[serde(default = "thousand")]
    pub bootstrap: usize,
    /// Base seed of V-TST evaluation sampling.
    #[serde(default)]
    pub eval_seed: u64,
    /// Also compute NLL on the whole training set (train + validation parts).
    #[serde(default = "yes")]
    pub train_nll: bool,
    /// Write every method's test-set probabilities as `.npy`.
    #[serde(default = "yes")]
    pub save_predictions: bool,
    /// A smoke run (`decal run --smoke`, see [`smoke_config`]): the experiment shrunk to check that every
    /// stage runs. The report title, its notes and `results.json` say that its numbers are not results.
    /// Not serialised when false, so the hashes of ordinary runs are unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub smoke: bool,
    /// What follows "±" in the table: `std` (default: sample std, ddof = 1), `se` (std / √n) or `seed-se`
    /// (the seed's population std, ddof = 0, / √n; BUG-20). Not serialised when `std`.
    #[serde(default = "default_spread", skip_serializing_if = "is_std")]
    pub spread: Spread,
}

fn default_spread() -> Spread {
    Spread::Std
}
fn is_std(s: &Spread) -> bool {
    *s == Spread::Std
}

fn default_profiles() -> Vec<String> {
    vec!["default".into(), "paper".into()]
}
fn thousand() -> usize {
    1000
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            profiles: default_profiles(),
            bootstrap: 1000,
            eval_seed: 0,
            train_nll: true,
            save_predictions: true,
            smoke: false,
            spread: Spread::Std,
        }
    }
}

impl ExperimentConfig {
    /// Parses and validates `experiment.toml`; relative data paths are resolved against the file's folder.
    pub fn read(path: &Path) -> Result<Self, ExperimentError> {
        let text = std::fs::read_to_string(path).map_err(|e| ExperimentError::Config {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        let config_error = |problem: String| ExperimentError::Config {
            path: path.to_path_buf(),
            problem,
        };
        // Parsed once as written (errors point at the line), then with the recipe preset and the stage-1
        // dataset defaults filled in where the file sets nothing (crate::recipe).
        toml::from_str::<ExperimentConfig>(&text)
            .map_err(|e| config_error(e.to_string().trim().replace('\n', " ")))?;
        let mut table: toml::Table = toml::from_str(&text)
            .map_err(|e| config_error(e.to_string().trim().replace('\n', " ")))?;
        recipe::apply(&mut table, path).map_err(config_error)?;
        let mut config: ExperimentConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| config_error(e.to_string().trim().replace('\n', " ")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config
            .validate()
            .map_err(|problem| ExperimentError::Config {
                path: path.to_path_buf(),
                problem,
            })?;
        Ok(config)
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data.dir);
        if let Some(f) = &mut self.backbone.features {
            f.resolve_paths(base);
        }
        if let Some(c) = &mut self.backbone.checkpoint {
            fix(c);
        }
        for o in &mut self.ood {
            fix(&mut o.dir);
        }
        if let Some(s) = &mut self.shift {
            fix(&mut s.dir);
        }
    }

    /// Checks combinations that serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("name must not be empty".into());
        }
        match (&self.backbone.checkpoint, &self.backbone.train) {
            _ if self.backbone.features.is_some() => feature_run::validate(self)?,
            (Some(_), Some(_)) => {
                return Err("[backbone] has both `checkpoint` and `train`; give one".into())
            }
            (None, None) => {
                return Err(
                    "[backbone] needs `checkpoint = \"dir\"`, a `[backbone.train]` table or `features = { … }`".into(),
                )
            }
            _ => {}
        }
        if self.seeds.is_empty() && !self.heads.is_empty() {
            return Err("seeds must list at least one seed".into());
        }
        if !matches!(
            self.features.mode.as_str(),
            "augmented" | "unaugmented" | "cached" | "exact"
        ) {
            return Err(format!(
                "[features] mode must be \"augmented\", \"unaugmented\" (alias \"cached\") or \"exact\", got {:?}",
                self.features.mode
            ));
        }
        if self.features.views == 0 {
            return Err("[features] views must be at least 1".into());
        }
        if self.features.mode != "exact" && self.features.body == BodyMode::SeedBnDrift {
            return Err("[features] body = \"seed-bn-drift\" needs mode = \"exact\" (cached features come from the frozen body)".into());
        }
        let mut names: Vec<&str> = Vec::new();
        for h in &self.heads {
            if names.contains(&h.name.as_str())
                || matches!(h.name.as_str(), "Baseline" | "TS")
                || h.name.starts_with("TS ")
            {
                return Err(format!(
                    "head name {:?} is used twice or reserved (Baseline, TS and names starting with \"TS \" name temperature-scaled rows)",
                    h.name
                ));
            }
            if h.temperature_scaling_seed_lbfgs
                && h.kind == HeadKind::Vtst
                && !h.eval_samples.contains(&1)
            {
                return Err(format!(
                    "head {:?}: temperature_scaling_seed_lbfgs reproduces the seed's single-sample TS and needs m = 1 in eval_samples (the seed cannot scale m > 1)",
                    h.name
                ));
            }
            names.push(&h.name);
            if h.kind == HeadKind::Vtst && h.eval_samples.is_empty() {
                return Err(format!(
                    "head {:?}: eval_samples must list at least one m",
                    h.name
                ));
            }
        }
        for p in &self.eval.profiles {
            if Profile::by_name(p).is_none() {
                return Err(format!(
                    "[eval] unknown metric profile {p:?} (use \"default\" or \"paper\")"
                ));
            }
        }
        if self.eval.profiles.is_empty() {
            return Err("[eval] profiles must not be empty".into());
        }
        let f = self.data.holdout_fraction;
        if !(f > 0.0 && f < 1.0) {
            return Err(format!(
                "[data] holdout_fraction must lie strictly between 0 and 1, got {f}"
            ));
        }
        crate::config_check::check_keys(self)
    }
}

/// What a smoke run's report notes and `results.json` (`"smoke"`) say.
pub const SMOKE_NOTE: &str = "SMOKE RUN (decal run --smoke), NOT RESULTS: the experiment was shrunk \
(1 stage-1 epoch, a few hundred images, 1 seed, 1 head epoch, capped V-TST samples, subsampled OOD and \
corruption sets) only to check that every stage runs; its numbers must not be reported or compared.";

/// Smoke-run sizes (see [`smoke_config`]).
pub mod smoke {
    /// Training images (the training part of the split).
    pub const TRAIN: usize = 320;
    /// Validation images.
    pub const VAL: usize = 128;
    /// Test images.
    pub const TEST: usize = 256;
    /// Images per OOD set.
    pub const OOD: usize = 128;
    /// Images per corruption × severity cell.
    pub const SHIFT_PER_CELL: usize = 16;
    /// Stage-1 and stage-2 epochs.
    pub const EPOCHS: usize = 1;
    /// Cap on V-TST training samples S and validation samples.
    pub const VTST_SAMPLES: usize = 2;
    /// Cap on bootstrap resamples.
    pub const BOOTSTRAP: usize = 20;
}

/// The smoke version of an experiment (`decal run --smoke`): the same stages, methods, heads, OOD sets,
/// corruptions, metric profiles and seed-compatibility options, shrunk so that it runs in well under a
/// minute on a CPU. Every override is here:
/// - `name` gets the suffix `-smoke`, the description the prefix `SMOKE RUN, NOT RESULTS:`, and
///   `[eval] smoke = true` marks the report title, its notes and `results.json` (see [`SMOKE_NOTE`]);
/// - `seeds`: only the first (each head is trained once);
/// - `[data]`: at most [`smoke::TRAIN`] / [`smoke::VAL`] / [`smoke::TEST`] images (0, "all", counts as
///   larger); the split itself (fraction, split seed) is unchanged;
/// - `[backbone.train]`: [`smoke::EPOCHS`] epoch, warm-up capped at that epoch (model, optimiser, loss,
///   precision and augmentation unchanged); an imported `checkpoint` is used as it is;
/// - every `[[heads]]`: [`smoke::EPOCHS`] epoch; V-TST `train_samples` and `val_samples` capped at
///   [`smoke::VTST_SAMPLES`]; `eval_samples` (the m of each row) are kept, because they name the rows and
///   cost only head forward passes;
/// - every `[[ood]]`: at most [`smoke::OOD`] images;
/// - `[shift]`: at most [`smoke::SHIFT_PER_CELL`] images per corruption × severity (strided), every
///   configured corruption kept;
/// - `[eval] bootstrap`: at most [`smoke::BOOTSTRAP`] resamples.
///
/// Inputs that do not exist stay as they are and take the ordinary "missing optional inputs" path.
pub fn smoke_config(config: &ExperimentConfig) -> ExperimentConfig {
    fn cap(limit: usize, max: usize) -> usize {
        if limit == 0 {
            max
        } else {
            limit.min(max)
        }
    }
    let mut c = config.clone();
    c.name = format!("{}-smoke", config.name);
    c.description = if config.description.is_empty() {
        "SMOKE RUN, NOT RESULTS".to_string()
    } else {
        format!("SMOKE RUN, NOT RESULTS: {}", config.description)
    };
    c.seeds.truncate(1);
    c.data.limit_train = cap(c.data.limit_train, smoke::TRAIN);
    c.data.limit_val = cap(c.data.limit_val, smoke::VAL);
    c.data.limit_test = cap(c.data.limit_test, smoke::TEST);
    if let Some(plan) = &mut c.backbone.train {
        plan.epochs = smoke::EPOCHS;
        plan.warmup_epochs = plan.warmup_epochs.min(smoke::EPOCHS as f64);
    }
    for h in &mut c.heads {
        h.epochs = smoke::EPOCHS;
        h.train_samples = h.train_samples.min(smoke::VTST_SAMPLES);
        h.val_samples = h.val_samples.min(smoke::VTST_SAMPLES);
    }
    // Augmented stage 2: two views are enough to exercise the view cache and its sampler.
    c.features.views = c.features.views.min(2);
    for o in &mut c.ood {
        o.limit = cap(o.limit, smoke::OOD);
    }
    if let Some(s) = &mut c.shift {
        s.limit = cap(s.limit, smoke::SHIFT_PER_CELL);
    }
    c.eval.bootstrap = c.eval.bootstrap.min(smoke::BOOTSTRAP);
    c.eval.smoke = true;
    c
}

/// Run options from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Recompute every unit even when a valid result exists.
    pub force: bool,
    /// Device for every stage.
    pub device: Device,
    /// The device as the user wrote it (`cpu`, `cuda:0`, …), recorded in the stage-1 plan.
    pub device_spec: String,
    /// libtorch CPU threads while training heads and evaluating (None = leave as set). Heads are tiny: on a
    /// CPU one thread is usually fastest (measured 24× faster than two contended threads on a loaded
    /// 2-core machine, with identical results).
    pub head_threads: Option<usize>,
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The comparison table (Markdown).
    pub table_markdown: String,
    /// `metrics.jsonl`.
    pub metrics: PathBuf,
    /// The report's `index.html`.
    pub report: PathBuf,
    /// Warnings (skipped inputs).
    pub warnings: Vec<String>,
    /// Units computed in this invocation vs reused.
    pub computed: usize,
    /// Units reused from an earlier invocation.
    pub reused: usize,
}

/// Marker file proving `out` is a decal experiment directory (resume is allowed into it).
pub const MARKER: &str = "experiment.json";

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn hash_json<T: Serialize>(value: &T) -> String {
    sha256_bytes(
        serde_json::to_string(value)
            .expect("config values serialise")
            .as_bytes(),
    )
}

/// A file-system friendly form of a method name: `V-TST m=10` → `v-tst-m10`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if c == '=' || c == '.' {
            continue;
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The frozen backbone with the stage-1 linear head.
struct Backbone {
    _vs: nn::VarStore,
    classifier: Classifier,
    arch: ArchConfig,
    /// SHA-256 of the weights file.
    hash: String,
    mean: Vec<f32>,
    std: Vec<f32>,
}

/// Loads a classifier from either checkpoint layout: `decal_models::checkpoint` (config.json =
/// `CheckpointMeta`) or a stage-1 `best/` (config.json = `ArchConfig`, meta.json = `BestMeta`).
fn load_classifier(dir: &Path, device: Device, dataset: &str) -> Result<Backbone, ExperimentError> {
    let what = format!("loading backbone checkpoint {}", dir.display());
    let weights = dir.join("model.safetensors");
    let hash = sha256_file(&weights).map_err(step(&what))?;
    // A decal checkpoint (its config.json parses as one) is loaded strictly: a tensor that does not match
    // the architecture in config.json is that error, not a fallback to the older bare-architecture layout.
    let meta_error = decal_models::checkpoint::read_meta(dir).err();
    if meta_error.is_none() {
        let loaded = decal_models::checkpoint::load(dir, device).map_err(step(&what))?;
        let channels = loaded.meta.arch.input_shape().0 as usize;
        let (mean, std) = match &loaded.meta.normalization {
            Some(n) => (
                n.mean.iter().map(|&v| v as f32).collect(),
                n.std.iter().map(|&v| v as f32).collect(),
            ),
            None => stage1::normalization(dataset, channels),
        };
        let arch = loaded.meta.arch.clone();
        return Ok(Backbone {
            _vs: loaded.vs,
            classifier: loaded.classifier,
            arch,
            hash,
            mean,
            std,
        });
    }
    let text = std::fs::read_to_string(dir.join("config.json")).map_err(step(&what))?;
    let meta_error = meta_error.map(|e| e.to_string()).unwrap_or_default();
    // A config.json that records its own checksum is a decal checkpoint: its error (e.g. the checksum
    // mismatch of a damaged file) is the cause, not a failed parse as the older bare-architecture layout.
    if text.contains(decal_models::checkpoint::CONFIG_CHECKSUM_KEY) {
        return Err(step(&what)(meta_error));
    }
    let arch: ArchConfig = serde_json::from_str(&text).map_err(|e| {
        step(format!("{what}: config.json"))(format!(
            "neither a decal checkpoint ({meta_error}) nor a bare architecture ({e})"
        ))
    })?;
    let vs = nn::VarStore::new(device);
    let classifier = decal_models::try_build_classifier(&vs.root(), &arch).map_err(step(&what))?;
    // Strict: every tensor named and shaped as config.json's architecture says (no broadcasting).
    let tensors = tch::Tensor::read_safetensors(&weights)
        .map_err(|e| step(&what)(format!("{}: {e}", weights.display())))?;
    decal_models::checkpoint::copy_into(&vs, tensors, &weights, |_| false).map_err(step(&what))?;
    let (mean, std) = match std::fs::read_to_string(dir.join("meta.json")) {
        Ok(t) => {
            let meta: stage1::BestMeta =
                serde_json::from_str(&t).map_err(step(format!("{what}: meta.json")))?;
            (meta.mean, meta.std)
        }
        Err(_) => stage1::normalization(dataset, arch.input_shape().0 as usize),
    };
    Ok(Backbone {
        _vs: vs,
        classifier,
        arch,
        hash,
        mean,
        std,
    })
}

struct Stage1Progress<'a> {
    log: &'a mut dyn FnMut(&str),
    started: Instant,
}

impl stage1::Progress for Stage1Progress<'_> {
    fn message(&mut self, text: &str) {
        (self.log)(&format!("  stage 1: {text}"));
    }
    fn epoch_end(&mut self, r: &decal_train::checkpoint::EpochRecord) {
        (self.log)(&format!(
            "  stage 1 epoch {:>3}: train loss {:.4}, val NLL {:.4}, val acc {:.2}%{} [{:.0}s]",
            r.epoch + 1,
            r.train_loss,
            r.val_nll,
            100.0 * r.val_accuracy,
            if r.is_best { " (best)" } else { "" },
            self.started.elapsed().as_secs_f64()
        ));
    }
}

/// Adapts an OOD set to the in-distribution image geometry: channels (grey → RGB by replication, RGB → grey
/// by the mean) and size (Pillow bilinear with antialias, like torchvision's `Resize` on PIL images).
fn adapt_images(set: ImageSet, height: usize, width: usize, channels: usize) -> ImageSet {
    let mut set = set;
    if set.channels != channels {
        let n = set.len();
        let hw = set.height * set.width;
        let mut pixels = Vec::with_capacity(n * hw * channels);
        for px in set.pixels.chunks(set.channels) {
            if set.channels == 1 {
                pixels.extend(std::iter::repeat_n(px[0], channels));
            } else {
                let mean = px.iter().map(|&v| v as u32).sum::<u32>() as f64 / px.len() as f64;
                pixels.extend(std::iter::repeat_n(mean.round() as u8, channels));
            }
        }
        set.pixels = pixels;
        set.channels = channels;
    }
    if (set.height, set.width) != (height, width) {
        let filter = decal_data::resize::Filter::BilinearAntialias;
        let mut pixels = Vec::with_capacity(set.len() * height * width * channels);
        for i in 0..set.len() {
            pixels.extend(decal_data::resize::resize_u8(
                set.image(i),
                set.height,
                set.width,
                channels,
                height,
                width,
                filter,
            ));
        }
        set.pixels = pixels;
        set.height = height;
        set.width = width;
    }
    set
}

/// Loads a split; with `allow_subset`, MNIST-family IDX files of any consistent size are accepted.
fn load_split(
    dataset: &str,
    dir: &Path,
    split: SplitName,
    allow_subset: bool,
) -> Result<ImageSet, String> {
    let name = DatasetName::parse(dataset).map_err(|e| e.to_string())?;
    if allow_subset && matches!(name, DatasetName::Mnist | DatasetName::FashionMnist) {
        let prefix = if split == SplitName::Train {
            "train"
        } else {
            "t10k"
        };
        let file = |stem: &str| {
            let gz = dir.join(format!("{prefix}-{stem}-ubyte.gz"));
            if gz.exists() {
                gz
            } else {
                dir.join(format!("{prefix}-{stem}-ubyte"))
            }
        };
        let classes: Vec<String> = if name == DatasetName::Mnist {
            (0..10).map(|d| d.to_string()).collect()
        } else {
            decal_data::idx::FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        return decal_data::idx::read_pair(
            &file("images-idx3"),
            &file("labels-idx1"),
            format!("{name}/{split:?}"),
            classes,
        )
        .map_err(|e| e.to_string());
    }
    decal_data::load(name, dir, split).map_err(|e| e.to_string())
}

/// The indices [`subsample_evenly`] keeps of a set of `n` images.
fn evenly_spaced(n: usize, limit: usize) -> Vec<usize> {
    if limit == 0 || limit >= n {
        (0..n).collect()
    } else {
        (0..limit).map(|i| i * n / limit).collect()
    }
}

/// Keeps `limit` images spread evenly over `set` (image `⌊i·n/limit⌋` for `i < limit`; 0 = all). Unlike a
/// prefix, this keeps every class of a class-ordered copy (the CIFAR-10 JPEG test set stores 1,000
/// airplanes first), and for a shuffled set it is as good as a prefix.
fn subsample_evenly(set: &mut ImageSet, limit: usize) {
    let n = set.len();
    if limit == 0 || limit >= n {
        return;
    }
    let picked = evenly_spaced(n, limit);
    *set = set
        .subset(&picked, set.name.clone())
        .expect("evenly spaced indices are below the set's length");
}

/// Features of `indices` of `images` through the frozen body (eval mode unless `mode` says otherwise),
/// optionally augmented with `rng`.
fn body_features(
    backbone: &Backbone,
    images: &DeviceImages,
    indices: &[usize],
    batch_size: usize,
    mode: BodyMode,
    mut rng: Option<&mut stage1::SplitMix64>,
) -> FeatureSet {
    let train = mode == BodyMode::SeedBnDrift;
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let feature_dim = backbone.classifier.body.feature_dim() as usize;
    tch::no_grad(|| {
        for chunk in indices.chunks(batch_size.max(1)) {
            let (x, y) = images.batch(chunk, rng.as_deref_mut());
            let f = backbone
                .classifier
                .body
                .features(&x, train)
                .to_kind(tch::Kind::Float)
                .to_device(Device::Cpu);
            let f: Vec<f32> = Vec::try_from(f.flatten(0, -1)).expect("features are float");
            features.extend(f);
            let y: Vec<i64> = Vec::try_from(y.to_device(Device::Cpu)).expect("labels are int64");
            labels.extend(y);
        }
    });
    FeatureSet {
        features,
        labels,
        feature_dim,
    }
}

/// The images of every evaluation split, for features through a drifted body ([`drifted_features`]).
struct EvalImages<'a> {
    train_set: &'a ImageSet,
    train_images: &'a DeviceImages,
    train_indices: &'a [usize],
    val_indices: &'a [usize],
    /// The held-out calibration images (None: the fits use the validation part).
    calibration: Option<&'a ImageSet>,
    test_set: &'a ImageSet,
    test_images: &'a DeviceImages,
    ood: &'a [(String, ImageSet)],
}

/// Features of the evaluation splits through one drifted body (eval mode, its own BatchNorm statistics).
struct DriftedFeatures {
    /// The split the fits use (calibration or validation part) and its cache key.
    fit: (FeatureSet, CacheKey),
    /// Training part, validation part, test and OOD sets: None with `fit_only`.
    rest: Option<DriftedEvalSplits>,
}

/// The evaluation splits through a drifted body (see [`DriftedFeatures`]).
struct DriftedEvalSplits {
    train: FeatureSet,
    val: FeatureSet,
    test: FeatureSet,
    ood: Vec<(String, FeatureSet, CacheKey)>,
}

/// Loads `state` into the backbone, extracts (or reuses from `features/<backbone>-bn-<state>/`) the
/// features of every evaluation split — only the fit split with `fit_only` — and restores `undrifted`.
#[allow(clippy::too_many_arguments)]
fn drifted_features(
    backbone: &Backbone,
    (state, state_hash): (&BodyState, &str),
    undrifted: &BodyState,
    out: &Path,
    transform: &str,
    batch: usize,
    images: &EvalImages<'_>,
    fit_only: bool,
    log: &mut dyn FnMut(&str),
) -> Result<DriftedFeatures, ExperimentError> {
    state
        .restore(&backbone._vs)
        .map_err(step("loading a drifted body"))?;
    let key_hash = format!("{}+bn-state:{state_hash}", backbone.hash);
    let dir = out.join("features").join(format!(
        "{}-bn-{}",
        short(&backbone.hash),
        short(state_hash)
    ));
    let one = |name: &str, set: &ImageSet, dev: &DeviceImages, indices: &[usize]| {
        let key = CacheKey {
            backbone_hash: key_hash.clone(),
            data_hash: features::images_hash(set, indices),
            transform: transform.to_string(),
            body_mode: BodyMode::Frozen,
        };
        let (fs, _) = features::load_or_extract(&dir, name, &key, || {
            Ok(body_features(
                backbone,
                dev,
                indices,
                batch,
                BodyMode::Frozen,
                None,
            ))
        })
        .map_err(step(format!("features of {name} (drifted body)")))?;
        Ok::<_, ExperimentError>((fs, key))
    };
    let all = |set: &ImageSet| (0..set.len()).collect::<Vec<usize>>();
    let result = (|| {
        let fit = match images.calibration {
            Some(set) => {
                let dev = DeviceImages::new(
                    set,
                    &backbone.mean,
                    &backbone.std,
                    backbone_device(backbone),
                );
                one("calibration", set, &dev, &all(set))?
            }
            None => one(
                "val",
                images.train_set,
                images.train_images,
                images.val_indices,
            )?,
        };
        if fit_only {
            return Ok(DriftedFeatures { fit, rest: None });
        }
        let train = one(
            "train",
            images.train_set,
            images.train_images,
            images.train_indices,
        )?
        .0;
        let val = one(
            "val",
            images.train_set,
            images.train_images,
            images.val_indices,
        )?
        .0;
        let test = one(
            "test",
            images.test_set,
            images.test_images,
            &all(images.test_set),
        )?;
        let mut ood = Vec::new();
        for (name, set) in images.ood {
            let dev = DeviceImages::new(
                set,
                &backbone.mean,
                &backbone.std,
                backbone_device(backbone),
            );
            let (fs, key) = one(&format!("ood-{}", slug(name)), set, &dev, &all(set))?;
            ood.push((name.clone(), fs, key));
        }
        Ok(DriftedFeatures {
            fit,
            rest: Some(DriftedEvalSplits {
                train,
                val,
                test: test.0,
                ood,
            }),
        })
    })();
    undrifted
        .restore(&backbone._vs)
        .map_err(step("restoring the undrifted body"))?;
    if result.is_ok() {
        log(&format!(
            "features through the drifted body {} ready",
            short(state_hash)
        ));
    }
    result
}

/// The device the backbone's variables live on.
fn backbone_device(backbone: &Backbone) -> Device {
    backbone._vs.device()
}

/// A method to evaluate (one table row, one seed).
struct MethodUnit {
    /// Table row.
    method: String,
    /// Stage-2 seed (None for baseline / TS).
    seed: Option<u64>,
    /// Head checkpoint directory (None for baseline / TS).
    head_dir: Option<PathBuf>,
    /// V-TST m.
    num_samples: usize,
    /// Fitted temperature of a temperature-scaled row (baseline or head); None = untempered.
    temperature: Option<f64>,
}

/// Loaded stage-2 heads by checkpoint directory: variables, head, SHA-256 of the weights.
type LoadedHeads = BTreeMap<PathBuf, (nn::VarStore, decal_models::heads::Head, String)>;

/// Loads the head in `dir` unless it is loaded already.
fn ensure_head_loaded(
    heads: &mut LoadedHeads,
    dir: &Path,
    device: Device,
) -> Result<(), ExperimentError> {
    if heads.contains_key(dir) {
        return Ok(());
    }
    let weights_hash = sha256_file(&dir.join(stage2::HEAD_WEIGHTS))
        .map_err(step(format!("{}: head weights", dir.display())))?;
    let (vs, head, _) =
        stage2::load_head(dir, device).map_err(step(format!("loading head {}", dir.display())))?;
    heads.insert(dir.to_path_buf(), (vs, head, weights_hash));
    Ok(())
}

/// The evaluation ε seed of a stage-2 seed's rows (the validation split adds salt 3, test 1).
fn unit_eval_seed(config: &ExperimentConfig, seed: Option<u64>) -> u64 {
    config.eval.eval_seed ^ seed.unwrap_or(0).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// How a head row's temperature is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum HeadTsFit {
    /// Exact NLL optimum of the row's own predictive (m-sample for V-TST, logits otherwise).
    Exact,
    /// The seed's single LBFGS step on one sample's logits.
    SeedLbfgs,
}

/// Fits (or reuses from `eval/`) the temperature of the head row `method` for one seed, on the validation
/// split's per-sample logits drawn with the row's ε stream (salt 3, as the row's own validation predictions).
/// `Ok(Err(why))`: the fit itself failed (no finite optimum); nothing is written.
#[allow(clippy::too_many_arguments)]
fn fit_head_temperature(
    edir: &Path,
    method: &str,
    seed: u64,
    head: &decal_models::heads::Head,
    weights_hash: &str,
    num_samples: usize,
    fit: HeadTsFit,
    val: &FeatureSet,
    val_key: &CacheKey,
    eval_seed: u64,
    force: bool,
    device: Device,
) -> Result<Result<(decal_calib::TemperatureScaler, bool), String>, ExperimentError> {
    let hash = hash_json(&json!({
        "method": method, "fit": fit, "m": num_samples, "eval_seed": eval_seed, "weights": weights_hash,
        "val": val_key, "version": 1,
    }));
    let file = edir.join(format!(
        "ts-{}-seed{seed}-{}.json",
        slug(method),
        short(&hash)
    ));
    if file.exists() && !force {
        if let Some(scaler) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
        {
            return Ok(Ok((scaler, true)));
        }
    }
    let what = format!("temperature scaling of {method} seed {seed}");
    let (z, k) = crate::predict::sample_logits(head, num_samples, eval_seed ^ 3, val, device)
        .map_err(step(&what))?;
    // Sampled V-TST rows (m ≥ 1) are fitted on their m-sample predictive (for m = 1 the same optimum as the
    // exact fit on that sample's logits, recorded as a fit of the sampled predictive); deterministic rows
    // on their logits.
    let sampled = head.is_stochastic() && num_samples > 0;
    let scaler = match fit {
        HeadTsFit::SeedLbfgs => {
            decal_calib::TemperatureScaler::fit_seed_lbfgs(&z[..val.len() * k], &val.labels, k)
        }
        HeadTsFit::Exact if sampled => {
            decal_calib::TemperatureScaler::fit_sampled(&z, num_samples, &val.labels, k)
        }
        HeadTsFit::Exact => decal_calib::TemperatureScaler::fit_exact(&z, &val.labels, k),
    };
    let scaler = match scaler {
        Ok(scaler) => scaler,
        // The fit's own failure (no finite optimum) is the row's, not the run's: the caller skips it.
        Err(e) => return Ok(Err(e.to_string())),
    };
    write_json_atomic(&file, &scaler).map_err(step(&what))?;
    Ok(Ok((scaler, false)))
}

/// Runs the experiment into `out`.
pub fn run(
    config: &ExperimentConfig,
    out: &Path,
    options: &RunOptions,
    log: &mut dyn FnMut(&str),
) -> Result<RunSummary, ExperimentError> {
    let started = Instant::now();
    let device = options.device;
    let mut warnings: Vec<String> = Vec::new();
    let (mut computed, mut reused) = (0usize, 0usize);

    // The whole configuration (keys, data directory, backbone checkpoint, head widths) is checked before
    // anything is created, loaded or trained.
    crate::config_check::check_inputs(config).map_err(|message| ExperimentError::Step {
        step: "config".into(),
        message,
    })?;
    // The output directory: new, empty, or an earlier run of an experiment (resume) by this decal version.
    if out.join(MARKER).exists() {
        if !options.force {
            decal_core::run_version::check_file(&out.join(MARKER), "/provenance/decal_version")
                .map_err(|message| ExperimentError::Step {
                    step: "output directory".into(),
                    message,
                })?;
        }
        log(&format!(
            "resuming in {} (finished units are reused; --force recomputes them)",
            out.display()
        ));
    } else {
        decal_core::prepare_output_dir(out, options.force).map_err(step("output directory"))?;
    }
    write_json_atomic(
        &out.join(MARKER),
        &json!({"config": config, "config_hash": hash_json(config), "provenance": Provenance::capture()}),
    )
    .map_err(step("output directory"))?;
    // Features from files (`decal heads`): no images, no network; stage 2 and evaluation as below.
    if let Some(files) = &config.backbone.features {
        return feature_run::run(config, files, out, options, log, started);
    }

    // ---- Data ---------------------------------------------------------------------------------------
    let dataset = DatasetName::parse(&config.data.dataset).map_err(step("[data] dataset"))?;
    log(&format!(
        "loading {} from {}",
        config.data.dataset,
        config.data.dir.display()
    ));
    let train_set = load_split(
        &config.data.dataset,
        &config.data.dir,
        SplitName::Train,
        config.data.allow_subset,
    )
    .map_err(step(format!(
        "loading {} training split",
        config.data.dataset
    )))?;
    let mut test_set = load_split(
        &config.data.dataset,
        &config.data.dir,
        SplitName::Test,
        config.data.allow_subset,
    )
    .map_err(step(format!("loading {} test split", config.data.dataset)))?;
    let _ = dataset;
    // Index of each kept test image in the full test split (the corruption files follow that order).
    let full_test_len = test_set.len();
    let test_original: Vec<usize> = evenly_spaced(full_test_len, config.data.limit_test);
    subsample_evenly(&mut test_set, config.data.limit_test);
    let mut plan_for_split = Stage1Plan {
        dataset: config.data.dataset.clone(),
        ..Stage1Plan::default()
    };
    plan_for_split.apply_dataset_defaults();
    let train_fraction = config
        .data
        .train_fraction
        .unwrap_or(plan_for_split.train_fraction);

    // ---- Backbone -----------------------------------------------------------------------------------
    let backbone = if let Some(dir) = &config.backbone.checkpoint {
        log(&format!("importing backbone from {}", dir.display()));
        load_classifier(dir, device, &config.data.dataset)?
    } else {
        let mut plan = config
            .backbone
            .train
            .clone()
            .expect("validated: train or checkpoint");
        plan.dataset = config.data.dataset.clone();
        plan.data_dir = config.data.dir.clone();
        plan.train_fraction = train_fraction;
        plan.split_seed = config.data.split_seed;
        plan.limit_train = config.data.limit_train;
        plan.limit_val = config.data.limit_val;
        plan.device = options.device_spec.clone();
        plan.name = "backbone".into();
        plan.precision
            .check_device(device)
            .map_err(step("[backbone.train] precision"))?;
        let plan_hash = sha256_bytes(plan.to_toml().map_err(step("stage-1 plan"))?.as_bytes());
        let dir = out.join(format!("backbone-{}", short(&plan_hash)));
        let best = dir.join("best");
        let finished = dir.join("summary.json").exists() && best.join("model.safetensors").exists();
        if finished && !options.force {
            log(&format!("stage 1: reusing {}", dir.display()));
            reused += 1;
        } else {
            let resume = dir.join("last").exists() && !options.force;
            log(&format!(
                "stage 1: training {} for {} epochs on {} ({})",
                plan.model,
                plan.epochs,
                config.data.dataset,
                if resume { "resuming" } else { "from scratch" }
            ));
            if !resume {
                decal_core::prepare_output_dir(&dir, true).map_err(step("stage 1"))?;
            }
            let data =
                Stage1Data::from_set(train_set.clone(), &plan).map_err(step("stage 1 data"))?;
            let mut progress = Stage1Progress {
                log: &mut *log,
                started: Instant::now(),
            };
            stage1::train(&plan, &data, &dir, device, resume, &mut progress)
                .map_err(step("stage 1"))?;
            computed += 1;
        }
        load_classifier(&best, device, &config.data.dataset)?
    };
    let feature_dim = backbone.classifier.body.feature_dim();
    let num_classes = train_set.num_classes() as i64;
    log(&format!(
        "backbone {} ({}-d features, {} classes), weights sha256 {}",
        backbone.arch.family(),
        feature_dim,
        num_classes,
        short(&backbone.hash)
    ));
    // A head that does not fit the backbone is a config error: say so before any work.
    for h in &config.heads {
        head_config(h, h.feature_dim.unwrap_or(feature_dim), num_classes)
            .check_feature_dim(feature_dim)
            .map_err(step(format!("head {:?}", h.name)))?;
    }

    // ---- Features -------------------------------------------------------------------------------------
    let split_data = Stage1Data::from_set(
        train_set.clone(),
        &Stage1Plan {
            dataset: config.data.dataset.clone(),
            train_fraction,
            split_seed: config.data.split_seed,
            limit_train: config.data.limit_train,
            limit_val: config.data.limit_val,
            ..Stage1Plan::default()
        },
    )
    .map_err(step("train/validation split"))?;

    // ---- Validation source: never fit on images the backbone may have trained on (crate::validation) ----
    let known = match &config.backbone.checkpoint {
        Some(dir) => validation::checkpoint_training_images(
            dir,
            train_set.len(),
            &split_data.data_hash(),
            &split_data.val_indices,
        ),
        None => TrainingImages::Disjoint(
            "the backbone is trained by this run on the training part of its split".into(),
        ),
    };
    let validation_source = validation::resolve(
        config.data.validation,
        &known,
        config.data.holdout_fraction,
        config.data.split_seed,
    )
    .map_err(|message| ExperimentError::Step {
        step: "validation source".into(),
        message,
    })?;
    let mut calibration_set: Option<ImageSet> = None;
    let mut calibration_original: Vec<usize> = Vec::new();
    let validation_note = match validation_source {
        ValidationSource::TestHoldout { fraction, seed } => {
            let (rest, cal) = validation::carve_holdout(&test_set.labels, fraction, seed);
            calibration_original = cal.iter().map(|&i| test_original[i]).collect();
            let name = test_set.name.clone();
            calibration_set = Some(
                test_set
                    .subset(&cal, format!("{name} (held-out calibration)"))
                    .map_err(step("held-out calibration split"))?,
            );
            test_set = test_set
                .subset(&rest, name)
                .map_err(step("held-out calibration split"))?;
            format!(
                "validation source: {} held-out test images ({:.0} % of the test split, stratified per class, seed {seed}; \
                 [data] validation = \"{}\") fit temperature scaling, select head epochs and fit head temperatures; \
                 the test set is the other {} images. Reason: {}",
                cal.len(),
                100.0 * fraction,
                config.data.validation.as_str(),
                rest.len(),
                known.describe()
            )
        }
        ValidationSource::TrainSplit { contaminated } => format!(
            "validation source: the training split's validation part ({} images){}: {}",
            split_data.val_indices.len(),
            if contaminated {
                " — CONTAMINATED, accepted by [data] validation = \"train-split-unsafe\""
            } else {
                ""
            },
            known.describe()
        ),
    };
    log(&validation_note);
    if matches!(
        validation_source,
        ValidationSource::TrainSplit { contaminated: true }
    ) {
        warnings.push(validation_note.clone());
    }
    let fdir = out.join("features").join(short(&backbone.hash));
    let transform = format!(
        "to-tensor, normalize(mean={:?}, std={:?})",
        backbone.mean, backbone.std
    );
    let train_images = DeviceImages::new(&train_set, &backbone.mean, &backbone.std, device);
    let test_images = DeviceImages::new(&test_set, &backbone.mean, &backbone.std, device);
    let batch = config.features.batch_size;
    let cache = |name: &str,
                 set: &ImageSet,
                 images: &DeviceImages,
                 indices: &[usize],
                 log: &mut dyn FnMut(&str)| {
        let key = CacheKey {
            backbone_hash: backbone.hash.clone(),
            data_hash: features::images_hash(set, indices),
            transform: transform.clone(),
            body_mode: BodyMode::Frozen,
        };
        let t = Instant::now();
        let (fs, status) = features::load_or_extract(&fdir, name, &key, || {
            Ok(body_features(
                &backbone,
                images,
                indices,
                batch,
                BodyMode::Frozen,
                None,
            ))
        })
        .map_err(step(format!("features of {name}")))?;
        log(&format!(
            "features {name}: {} × {} ({status:?}, {:.1}s)",
            fs.len(),
            fs.feature_dim,
            t.elapsed().as_secs_f64()
        ));
        Ok::<_, ExperimentError>((fs, key))
    };
    let (train_f, train_key) = cache(
        "train",
        &train_set,
        &train_images,
        &split_data.train_indices,
        log,
    )?;
    let (val_f, val_key) = cache(
        "val",
        &train_set,
        &train_images,
        &split_data.val_indices,
        log,
    )?;
    let test_indices: Vec<usize> = (0..test_set.len()).collect();
    let (test_f, test_key) = cache("test", &test_set, &test_images, &test_indices, log)?;
    // The features every fit uses (temperature scaling, head-epoch selection, head temperatures).
    let (fit_f, fit_key) = match &calibration_set {
        Some(set) => {
            let images = DeviceImages::new(set, &backbone.mean, &backbone.std, device);
            let idx: Vec<usize> = (0..set.len()).collect();
            cache("calibration", set, &images, &idx, log)?
        }
        None => (val_f.clone(), val_key.clone()),
    };
    let mut ood_f: Vec<(String, FeatureSet, CacheKey)> = Vec::new();
    // `[features] body = "seed-bn-drift"` (exact mode): every stage-2 checkpoint gets its own drifted body
    // for all of its own evaluations (crate::drift); the baselines keep the undrifted one.
    let drift_mode =
        config.features.mode == "exact" && config.features.body == BodyMode::SeedBnDrift;
    let undrifted = BodyState::capture(&backbone._vs);
    // A body without BatchNorm statistics does not drift: its evaluations need no features of their own.
    let drift_active = drift_mode && !undrifted.is_empty();
    let mut ood_sets: Vec<(String, ImageSet)> = Vec::new();
    for spec in &config.ood {
        let loaded = SplitName::parse(&spec.split)
            .map_err(|e| e.to_string())
            .and_then(|split| load_split(&spec.dataset, &spec.dir, split, spec.allow_subset));
        match loaded {
            Ok(mut set) => {
                subsample_evenly(&mut set, spec.limit);
                let set = adapt_images(set, test_set.height, test_set.width, test_set.channels);
                let images = DeviceImages::new(&set, &backbone.mean, &backbone.std, device);
                let idx: Vec<usize> = (0..set.len()).collect();
                let (fs, key) = cache(
                    &format!("ood-{}", slug(&spec.name)),
                    &set,
                    &images,
                    &idx,
                    log,
                )?;
                ood_f.push((spec.name.clone(), fs, key));
                if drift_mode {
                    ood_sets.push((spec.name.clone(), set));
                }
            }
            Err(e) => {
                let w = format!(
                    "OOD set {} skipped: cannot load {} from {}: {e}",
                    spec.name,
                    spec.dataset,
                    spec.dir.display()
                );
                log(&format!("warning: {w}"));
                warnings.push(w);
            }
        }
    }

    // `[features] mode = "augmented"`: A augmented views of every training image through the frozen body,
    // extracted once (chunked, resumable) and shared by every head and seed (decal_train::views).
    let views_cache = if config.features.mode == "augmented" && !plan_for_split.augment {
        // Nothing to augment (e.g. SVHN, MNIST): the un-augmented cached features are the seed's training
        // distribution, so they are used as they are (float32, no view cache).
        log(&format!(
            "features: {} has no training augmentation; augmented mode trains on the un-augmented features",
            config.data.dataset
        ));
        None
    } else if config.features.mode == "augmented" {
        let (views, augmentation) = (
            config.features.views,
            decal_train::views::Augmentation::crop_flip(
                stage1::CROP_PADDING as usize,
                backbone.mean.clone(),
                backbone.std.clone(),
            ),
        );
        let key = decal_train::views::ViewsKey::new(
            views,
            config.features.storage,
            augmentation,
            config.features.views_seed,
            backbone.hash.clone(),
            &train_set,
            &split_data.train_indices,
        );
        let vdir = fdir.join(format!(
            "views-a{views}-{}-{}",
            config.features.storage.name(),
            short(&key.digest())
        ));
        let t = Instant::now();
        let options = decal_train::views::BuildOptions {
            batch_size: batch,
            device,
            ..Default::default()
        };
        let mut body = decal_train::views::frozen_body(backbone.classifier.body.as_ref());
        let (cache, status) = decal_train::views::build_or_open(
            &vdir,
            &key,
            &train_set,
            &split_data.train_indices,
            feature_dim as usize,
            &options,
            &mut body,
            log,
        )
        .map_err(step("augmented views of the training images"))?;
        log(&format!(
            "features train views: {} × {} × {} {} ({status:?}, {:.1}s)",
            cache.num_views(),
            cache.len(),
            cache.feature_dim(),
            config.features.storage.name(),
            t.elapsed().as_secs_f64()
        ));
        Some(cache)
    } else {
        None
    };
    // ---- Stage 2 --------------------------------------------------------------------------------------
    if let Some(n) = options.head_threads {
        tch::set_num_threads(n.max(1) as i32);
    }
    let mut features_desc = json!({
        "train": train_key, "val": fit_key,
        "train_sha": hash_json(&train_f.labels.len()), "mode": config.features.mode, "body": config.features.body,
    });
    if let Some(cache) = &views_cache {
        features_desc["views"] = json!({
            "views": cache.num_views(), "storage": cache.meta().key.dtype, "key": cache.meta().key.digest(),
        });
    }
    if drift_mode {
        // Heads trained before each one started from the undrifted body (and saved its drifted state) differ.
        features_desc["drift"] = json!("per-checkpoint body, restored before each head, v2");
    }
    // The drifted body of every stage-2 checkpoint (drift_active only): its state and the state file's hash.
    let mut bodies: BTreeMap<PathBuf, (BodyState, String)> = BTreeMap::new();
    let eval_images = EvalImages {
        train_set: &train_set,
        train_images: &train_images,
        train_indices: &split_data.train_indices,
        val_indices: &split_data.val_indices,
        calibration: calibration_set.as_ref(),
        test_set: &test_set,
        test_images: &test_images,
        ood: &ood_sets,
    };
    let mut calibration = serde_json::Map::new();
    let edir = out.join("eval");
    // Heads loaded for temperature fits and the evaluation (and kept for the corruption sweep).
    let mut loaded_heads: LoadedHeads = BTreeMap::new();
    let mut units: Vec<MethodUnit> = vec![MethodUnit {
        method: "Baseline".into(),
        seed: None,
        head_dir: None,
        num_samples: 0,
        temperature: None,
    }];
    for spec in &config.heads {
        // Cached features (augmented views or un-augmented): every seed still to train, as one batched model
        // (decal_train::stage2_batched); each seed's head is saved as its own ordinary checkpoint.
        let mut batched_done: Vec<u64> = Vec::new();
        if config.features.mode != "exact" {
            let mut todo: Vec<(Stage2Config, PathBuf)> = Vec::new();
            for &seed in &config.seeds {
                let s2 = stage2_config(spec, feature_dim, num_classes, seed);
                let unit_hash = hash_json(&json!({"stage2": s2, "features": features_desc}));
                let dir = out
                    .join("heads")
                    .join(slug(&spec.name))
                    .join(format!("seed-{seed}-{}", short(&unit_hash)));
                if options.force || !dir.join(stage2::HEAD_CONFIG).exists() {
                    todo.push((s2, dir));
                }
            }
            if !todo.is_empty() {
                let t = Instant::now();
                let configs: Vec<Stage2Config> = todo.iter().map(|(c, _)| c.clone()).collect();
                let source = match &views_cache {
                    Some(cache) => decal_train::stage2_batched::BatchedSource::Views(cache),
                    None => decal_train::stage2_batched::BatchedSource::Fixed(&train_f),
                };
                let seeds: Vec<u64> = configs.iter().map(|c| c.seed).collect();
                let trained = decal_train::stage2_batched::train_batched(
                    &configs,
                    source,
                    &fit_f,
                    device,
                    &mut |_, _| {},
                )
                .map_err(step(format!("stage 2: {} seeds {seeds:?}", spec.name)))?;
                for ((c, dir), head) in todo.iter().zip(&trained) {
                    stage2::save_head(dir, head, features_desc.clone())
                        .map_err(step(format!("saving head {} seed {}", spec.name, c.seed)))?;
                    let last = head.history.last().expect("at least one epoch");
                    log(&format!(
                        "stage 2: {} seed {}: best epoch {} of {} (val NLL {:.4}); last epoch: train loss {:.4}, val NLL {:.4}, val acc {:.2}%",
                        spec.name,
                        c.seed,
                        head.best_epoch + 1,
                        c.epochs,
                        head.history[head.best_epoch].val_nll,
                        last.train_loss,
                        last.val_nll,
                        100.0 * last.val_accuracy
                    ));
                    batched_done.push(c.seed);
                }
                log(&format!(
                    "stage 2: {} seeds {seeds:?} trained batched in {:.1}s",
                    spec.name,
                    t.elapsed().as_secs_f64()
                ));
            }
        }
        for &seed in &config.seeds {
            let s2 = stage2_config(spec, feature_dim, num_classes, seed);
            let unit_hash = hash_json(&json!({"stage2": s2, "features": features_desc}));
            let dir = out
                .join("heads")
                .join(slug(&spec.name))
                .join(format!("seed-{seed}-{}", short(&unit_hash)));
            if batched_done.contains(&seed) {
                computed += 1;
            } else if dir.join(stage2::HEAD_CONFIG).exists() && !options.force {
                log(&format!(
                    "stage 2: {} seed {seed}: reusing {}",
                    spec.name,
                    dir.display()
                ));
                reused += 1;
            } else {
                let t = Instant::now();
                let mut last_line = String::new();
                let mut on_epoch = |e: &stage2::EpochStats| {
                    last_line = format!(
                        "epoch {}/{}: train loss {:.4}, val NLL {:.4}, val acc {:.2}%",
                        e.epoch + 1,
                        s2.epochs,
                        e.train_loss,
                        e.val_nll,
                        100.0 * e.val_accuracy
                    );
                };
                // The drifted body after every epoch (drift_active): the selected epoch's goes with the head.
                let mut epoch_states: Vec<BodyState> = Vec::new();
                let trained = if config.features.mode == "exact" {
                    let mode = config.features.body;
                    let indices = split_data.train_indices.clone();
                    if drift_active {
                        // Every head starts from the stage-1 body, as every seed run of the seed does.
                        undrifted
                            .restore(&backbone._vs)
                            .map_err(step("restoring the undrifted body"))?;
                    }
                    let mut per_epoch = |epoch: usize| -> Result<FeatureSet, stage2::Stage2Error> {
                        // The seed's loader: a fixed or shuffled order, augmented images, the body as configured.
                        let mut order = indices.clone();
                        if s2.shuffle {
                            stage1::SplitMix64::for_epoch(seed, epoch, 0x5348_5546)
                                .shuffle(&mut order);
                        }
                        let mut rng = stage1::SplitMix64::for_epoch(seed, epoch, 0x4155_4730);
                        let augment = plan_for_split.augment.then_some(&mut rng);
                        let fs = body_features(
                            &backbone,
                            &train_images,
                            &order,
                            s2.batch_size,
                            mode,
                            augment,
                        );
                        if drift_active {
                            epoch_states.push(BodyState::capture(&backbone._vs));
                        }
                        Ok(fs)
                    };
                    stage2::train(
                        &s2,
                        TrainSource::PerEpoch(&mut per_epoch),
                        &fit_f,
                        device,
                        &mut on_epoch,
                    )
                } else {
                    stage2::train(
                        &s2,
                        TrainSource::Cached(&train_f),
                        &fit_f,
                        device,
                        &mut on_epoch,
                    )
                }
                .map_err(step(format!("stage 2: {} seed {seed}", spec.name)))?;
                if drift_active {
                    let state = epoch_states.get(trained.best_epoch).ok_or_else(|| {
                        step(format!("stage 2: {} seed {seed}", spec.name))(
                            "no body state for the selected epoch",
                        )
                    })?;
                    state
                        .save(&dir.join(BODY_STATE_FILE))
                        .map_err(step(format!(
                            "saving the drifted body of {} seed {seed}",
                            spec.name
                        )))?;
                    undrifted
                        .restore(&backbone._vs)
                        .map_err(step("restoring the undrifted body"))?;
                }
                stage2::save_head(&dir, &trained, features_desc.clone())
                    .map_err(step(format!("saving head {} seed {seed}", spec.name)))?;
                log(&format!(
                    "stage 2: {} seed {seed}: best epoch {} of {} (val NLL {:.4}) in {:.1}s; last {last_line}",
                    spec.name,
                    trained.best_epoch + 1,
                    s2.epochs,
                    trained.history[trained.best_epoch].val_nll,
                    t.elapsed().as_secs_f64()
                ));
                computed += 1;
            }
            // This checkpoint's own drifted body (drift_active): its temperature fits and evaluations use it.
            let mut head_fit: Option<(FeatureSet, CacheKey)> = None;
            if drift_active {
                let what = format!("drifted body of {} seed {seed}", spec.name);
                let path = dir.join(BODY_STATE_FILE);
                let state = BodyState::load(&path, &undrifted).map_err(step(&what))?;
                let hash = BodyState::file_hash(&path).map_err(step(&what))?;
                if spec.temperature_scaling || spec.temperature_scaling_seed_lbfgs {
                    let f = drifted_features(
                        &backbone,
                        (&state, &hash),
                        &undrifted,
                        out,
                        &transform,
                        batch,
                        &eval_images,
                        true,
                        log,
                    )?;
                    head_fit = Some(f.fit);
                }
                bodies.insert(dir.clone(), (state, hash));
            }
            let ms: Vec<usize> = if spec.kind == HeadKind::Vtst {
                spec.eval_samples.clone()
            } else {
                vec![0]
            };
            for m in ms {
                let method = if spec.kind == HeadKind::Vtst {
                    if m == 0 {
                        format!("{} mean", spec.name)
                    } else {
                        format!("{} m={m}", spec.name)
                    }
                } else {
                    spec.name.clone()
                };
                units.push(MethodUnit {
                    method: method.clone(),
                    seed: Some(seed),
                    head_dir: Some(dir.clone()),
                    num_samples: m,
                    temperature: None,
                });
                let mut fits = Vec::new();
                if spec.temperature_scaling {
                    fits.push(("TS", HeadTsFit::Exact));
                }
                let single = spec.kind != HeadKind::Vtst || m == 1;
                if spec.temperature_scaling_seed_lbfgs && single {
                    fits.push(("TS (seed LBFGS)", HeadTsFit::SeedLbfgs));
                }
                for (prefix, fit) in fits {
                    ensure_head_loaded(&mut loaded_heads, &dir, device)?;
                    let (_, head, weights_hash) = &loaded_heads[&dir];
                    let ts_method = format!("{prefix} + {method}");
                    let t = Instant::now();
                    let fitted = fit_head_temperature(
                        &edir,
                        &ts_method,
                        seed,
                        head,
                        weights_hash,
                        m,
                        fit,
                        head_fit.as_ref().map_or(&fit_f, |f| &f.0),
                        head_fit.as_ref().map_or(&fit_key, |f| &f.1),
                        unit_eval_seed(config, Some(seed)),
                        options.force,
                        device,
                    )?;
                    // As for the baseline: a fit without a finite optimum drops this row (this seed) with
                    // a warning.
                    let (scaler, was_reused) = match fitted {
                        Ok(fitted) => fitted,
                        Err(e) => {
                            let w = format!("method {ts_method} seed {seed} skipped: its temperature fit on the validation split failed: {e}");
                            log(&format!("warning: {w}"));
                            warnings.push(w);
                            continue;
                        }
                    };
                    if was_reused {
                        reused += 1;
                    } else {
                        computed += 1;
                    }
                    log(&format!(
                        "{ts_method} seed {seed}: T = {:.4} (validation NLL {:.4} → {:.4}, {}{} on {} images{}) [{:.1}s]",
                        scaler.temperature,
                        scaler.nll_before,
                        scaler.nll_after,
                        scaler.fit_method,
                        if scaler.num_samples > 1 { format!(", m = {}", scaler.num_samples) } else { String::new() },
                        fit_f.len(),
                        if was_reused { ", reused" } else { "" },
                        t.elapsed().as_secs_f64()
                    ));
                    calibration.insert(
                        format!("{ts_method} seed {seed}"),
                        serde_json::to_value(&scaler).unwrap_or(Value::Null),
                    );
                    units.push(MethodUnit {
                        method: ts_method,
                        seed: Some(seed),
                        head_dir: Some(dir.clone()),
                        num_samples: m,
                        temperature: Some(scaler.temperature),
                    });
                }
            }
        }
    }
    if config.temperature_scaling {
        // Both fits minimise the validation NLL of the baseline's logits (decal-calib): "TS" is the exact
        // minimiser, "TS (seed LBFGS)" the seed's single LBFGS step from T = 1.5 (seed-system.md §9).
        // A fit without a finite optimum (validation logits no better than uniform, e.g. a barely trained
        // backbone) drops that row with a warning instead of ending the run without a report.
        let fits = fit_temperatures(&backbone, &fit_f, device)?;
        let mut position = 1;
        for (method, fitted) in fits {
            let scaler = match fitted {
                Ok(scaler) => scaler,
                Err(e) => {
                    let w = format!("method {method} skipped: its temperature fit on the validation split failed: {e}");
                    log(&format!("warning: {w}"));
                    warnings.push(w);
                    continue;
                }
            };
            log(&format!(
                "{method}: T = {:.4} (validation NLL {:.4} → {:.4}, {} on {} images)",
                scaler.temperature,
                scaler.nll_before,
                scaler.nll_after,
                scaler.fit_method,
                fit_f.len()
            ));
            calibration.insert(
                method.to_string(),
                serde_json::to_value(&scaler).unwrap_or(Value::Null),
            );
            units.insert(
                position,
                MethodUnit {
                    method: method.into(),
                    seed: None,
                    head_dir: None,
                    num_samples: 0,
                    temperature: Some(scaler.temperature),
                },
            );
            position += 1;
        }
    }

    // ---- Evaluation -------------------------------------------------------------------------------------
    let profiles: Vec<Profile> = config
        .eval
        .profiles
        .iter()
        .map(|p| Profile::by_name(p).expect("validated profile"))
        .collect();
    let settings = EvalSettings {
        profiles: profiles.clone(),
        bootstrap: (config.eval.bootstrap > 0).then_some(BootstrapConfig {
            resamples: config.eval.bootstrap,
            seed: config.eval.eval_seed,
            confidence: 0.95,
        }),
    };
    let eval_desc = json!({
        "eval": config.eval, "test": test_key, "ood": ood_f.iter().map(|(n, _, k)| (n.clone(), k.clone())).collect::<Vec<_>>(),
        "train": train_key, "val": val_key, "backbone": backbone.hash,
        // 2: OOD records under the paper profile (float32 softmax, ood_paper).
        "version": 2,
    });
    let ds_name = DatasetName::parse(&config.data.dataset)
        .map(|d| d.as_str().to_string())
        .unwrap_or_default();
    let mut all_records: Vec<MetricRecord> = Vec::new();
    let mut results = serde_json::Map::new();
    let mut reliability: BTreeMap<String, Vec<decal_metrics::calibration::ReliabilityBins>> =
        BTreeMap::new();
    // OOD score histograms are drawn for one seed per method (the smallest), so the report shows one
    // figure per method rather than one per seed.
    let histogram_seed = units.iter().filter_map(|u| u.seed).min();
    // Features of the drifted body of the checkpoint evaluated last (units of one head are consecutive).
    let mut current_drift: Option<(String, DriftedFeatures)> = None;
    for unit in &units {
        if let Some(d) = &unit.head_dir {
            ensure_head_loaded(&mut loaded_heads, d, device)?;
        }
        let weights_hash = match &unit.head_dir {
            Some(d) => loaded_heads[d].2.clone(),
            None => backbone.hash.clone(),
        };
        let mut unit_desc = json!({
            "method": unit.method, "seed": unit.seed, "m": unit.num_samples, "t": unit.temperature,
            "weights": weights_hash, "desc": eval_desc,
        });
        let unit_body = unit.head_dir.as_ref().and_then(|d| bodies.get(d));
        if let Some((_, body_hash)) = unit_body {
            unit_desc["body"] = json!(body_hash);
        }
        let unit_hash = hash_json(&unit_desc);
        let seed_tag = unit.seed.map(|s| format!("-seed{s}")).unwrap_or_default();
        let file = edir.join(format!(
            "{}{seed_tag}-{}.json",
            slug(&unit.method),
            short(&unit_hash)
        ));
        let cached_result: Option<Value> = if file.exists() && !options.force {
            std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
        } else {
            None
        };
        let result = match cached_result {
            Some(v) => {
                reused += 1;
                v
            }
            None => {
                let t = Instant::now();
                let eval_seed = unit_eval_seed(config, unit.seed);
                let ctx = RecordContext {
                    run: config.name.clone(),
                    seed: unit.seed,
                    method: unit.method.clone(),
                };
                let head = unit.head_dir.as_ref().map(|d| &loaded_heads[d].1);
                let predictor = make_predictor(&backbone, head, unit, eval_seed);
                let pred = |fs: &FeatureSet, salt: u64| -> Result<Predictions, ExperimentError> {
                    let p = match &predictor {
                        Predictor::Head {
                            head,
                            num_samples,
                            eval_seed,
                            temperature,
                        } => Predictor::Head {
                            head,
                            num_samples: *num_samples,
                            eval_seed: eval_seed ^ salt,
                            temperature: *temperature,
                        },
                        Predictor::Linear {
                            weight,
                            bias,
                            temperature,
                        } => Predictor::Linear {
                            weight,
                            bias: *bias,
                            temperature: *temperature,
                        },
                    };
                    predict(&p, fs, device)
                        .map_err(step(format!("predicting with {}", unit.method)))
                };
                // A stage-2 checkpoint with its own drifted body is evaluated on that body's features.
                let drifted = match unit_body {
                    Some((state, body_hash)) => {
                        if current_drift.as_ref().is_none_or(|(h, _)| h != body_hash) {
                            // The previous checkpoint's features go first (memory).
                            current_drift.take();
                            let f = drifted_features(
                                &backbone,
                                (state, body_hash),
                                &undrifted,
                                out,
                                &transform,
                                batch,
                                &eval_images,
                                false,
                                log,
                            )?;
                            current_drift = Some((body_hash.clone(), f));
                        }
                        current_drift.as_ref().and_then(|(_, f)| f.rest.as_ref())
                    }
                    None => None,
                };
                let (u_train, u_val, u_test, u_ood) = match drifted {
                    Some(d) => (&d.train, &d.val, &d.test, d.ood.as_slice()),
                    None => (&train_f, &val_f, &test_f, ood_f.as_slice()),
                };
                let test_p = pred(u_test, 1)?;
                let indist = suite::in_distribution(&ctx, &test_p, "test", &ds_name, &settings)
                    .map_err(step(format!("evaluating {}", unit.method)))?;
                let mut records = indist.records.clone();
                let mut res = serde_json::Map::new();
                res.insert("test".into(), indist.json.clone());
                if config.eval.train_nll {
                    let tr = Predictions::concat(&[&pred(u_train, 2)?, &pred(u_val, 3)?])
                        .map_err(step("train NLL"))?;
                    let (r, j) = suite::train_nll(&ctx, &tr, &ds_name, &settings)
                        .map_err(step("train NLL"))?;
                    records.extend(r);
                    res.insert("train".into(), j);
                }
                if !u_ood.is_empty() {
                    let mut sets = Vec::new();
                    for (i, (name, fs, _)) in u_ood.iter().enumerate() {
                        sets.push((name.clone(), pred(fs, 100 + i as u64)?));
                    }
                    let (r, j) = suite::ood(&ctx, &test_p, &sets);
                    records.extend(r);
                    res.insert("ood".into(), j);
                    if config.eval.profiles.iter().any(|p| p == "paper") {
                        // The seed's OOD scores: float32 softmax, interpolated FPR95 (decal metrics --profile paper).
                        let (r, j) = suite::ood_paper(&ctx, &test_p, &sets);
                        records.extend(r);
                        res.insert("ood_paper".into(), j);
                    }
                    if unit.seed.is_none() || unit.seed == histogram_seed {
                        write_ood_histogram(out, &unit.method, &test_p, &sets, &ds_name)
                            .map_err(step(format!("OOD histogram of {}", unit.method)))?;
                    }
                }
                if config.eval.save_predictions {
                    save_test_predictions(out, &unit.method, &seed_tag, &test_p)?;
                }
                let value = json!({
                    "method": unit.method, "seed": unit.seed, "num_samples": unit.num_samples,
                    "temperature": unit.temperature, "head": unit.head_dir,
                    "records": records, "results": res,
                    "reliability": indist.primary.reliability,
                });
                write_json_atomic(&file, &value).map_err(step("writing evaluation"))?;
                log(&format!(
                    "eval {}{}: acc {:.2}%, ECE {:.2}%, NLL {:.4} [{:.1}s]",
                    unit.method,
                    unit.seed.map(|s| format!(" seed {s}")).unwrap_or_default(),
                    100.0 * indist.primary.accuracy,
                    100.0 * indist.primary.ece,
                    indist.primary.nll,
                    t.elapsed().as_secs_f64()
                ));
                computed += 1;
                value
            }
        };
        collect_unit_result(
            &unit.method,
            unit.seed,
            &file,
            &result,
            &mut all_records,
            &mut reliability,
            &mut results,
        )?;
    }

    // ---- Corruption shift (streamed cell by cell over every method) --------------------------------------
    if let Some(shift) = &config.shift {
        let mut shift_desc = json!({
            "spec": shift, "units": units.iter().map(|u| (u.method.clone(), u.seed, u.num_samples, u.temperature,
                u.head_dir.as_ref().map(|d| loaded_heads[d].2.clone()))).collect::<Vec<_>>(),
            "manifest": sha256_file(&shift.dir.join("manifest.json")).ok(), "desc": eval_desc,
        });
        if !calibration_original.is_empty() {
            shift_desc["held_out"] = json!(hash_json(&calibration_original));
        }
        if !bodies.is_empty() {
            shift_desc["bodies"] = json!(bodies.values().map(|b| b.1.clone()).collect::<Vec<_>>());
        }
        let shift_hash = hash_json(&shift_desc);
        let file = edir.join(format!("shift-{}.json", short(&shift_hash)));
        let cached_result: Option<Value> = if file.exists() && !options.force {
            std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
        } else {
            None
        };
        let shift_result = match cached_result {
            Some(v) => {
                reused += 1;
                Some(v)
            }
            None => match run_shift(
                config,
                shift,
                &backbone,
                &units,
                &loaded_heads,
                &test_set,
                (&calibration_original, full_test_len),
                (&undrifted, &bodies),
                device,
                log,
            ) {
                Ok(v) => {
                    write_json_atomic(&file, &v).map_err(step("writing shift evaluation"))?;
                    computed += 1;
                    Some(v)
                }
                Err(e) => {
                    let w = format!("corruption shift skipped: {e}");
                    log(&format!("warning: {w}"));
                    warnings.push(w);
                    None
                }
            },
        };
        if let Some(v) = shift_result {
            if let Some(w) = v.get("warning").and_then(|w| w.as_str()) {
                log(&format!("warning: {w}"));
                warnings.push(w.to_string());
            }
            let recs: Vec<MetricRecord> = serde_json::from_value(v["records"].clone())
                .map_err(step(format!("reading {}", file.display())))?;
            all_records.extend(recs);
            results.insert("shift".into(), v["results"].clone());
        }
    }

    // ---- Outputs --------------------------------------------------------------------------------------
    // What ran, for the report and results.json: stage 2, the validation source, every seed departure.
    let run_notes: Vec<String> = [recipe::stage2_line(config), validation_note.clone()]
        .into_iter()
        .chain(recipe::departures(
            config,
            matches!(validation_source, ValidationSource::TestHoldout { .. }),
        ))
        .collect();
    let metrics = out.join("metrics.jsonl");
    decal_report::record::write_jsonl(&metrics, &all_records)
        .map_err(step("writing metrics.jsonl"))?;
    decal_report::record::write_csv(&out.join("metrics.csv"), &all_records)
        .map_err(step("writing metrics.csv"))?;
    let mut results_json = json!({
            "experiment": config.name, "config": config, "warnings": warnings,
            "compat_notes": compat_notes(config),
            "recipe": {"name": config.recipe, "stage2": run_notes[0], "departures": &run_notes[2..]},
            "backbone": {"arch": backbone.arch, "weights_sha256": backbone.hash},
            "features": {"train": train_key, "val": val_key, "test": test_key, "fit": fit_key, "mode": config.features.mode,
                "views": (config.features.mode == "augmented").then(|| json!({
                    "views": views_cache.as_ref().map(|c| c.num_views()), "storage": config.features.storage,
                    "seed": config.features.views_seed, "augmentation": views_cache.as_ref().map(|c| &c.meta().key.augmentation),
                }))},
            "validation": {
                "choice": config.data.validation, "resolved": validation_source, "note": validation_note,
                "backbone_training_images": known.describe(), "fit_images": fit_f.len(), "test_images": test_f.len(),
            },
            "results": results, "calibration": calibration, "provenance": Provenance::capture(),
    });
    if config.eval.smoke {
        results_json["smoke"] = json!(SMOKE_NOTE);
    }
    write_json_atomic(&out.join("results.json"), &results_json)
        .map_err(step("writing results.json"))?;
    let method_order: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for u in &units {
            if !v.contains(&u.method) {
                v.push(u.method.clone());
            }
        }
        v
    };
    let report = write_report_with_notes(
        config,
        out,
        &all_records,
        &reliability,
        &method_order,
        &warnings,
        &run_notes,
    )
    .map_err(step("report"))?;
    for m in &report.messages {
        log(&format!("report: {m}"));
    }
    log(&format!(
        "done in {:.1}s: {computed} units computed, {reused} reused",
        started.elapsed().as_secs_f64()
    ));
    Ok(RunSummary {
        table_markdown: report.table_markdown,
        metrics,
        report: report.index_html,
        warnings,
        computed,
        reused,
    })
}

/// Writes a unit's test probabilities (float32 [N, K]) and labels under
/// `predictions/<method><seed_tag>/` (`[eval] save_predictions`).
fn save_test_predictions(
    out: &Path,
    method: &str,
    seed_tag: &str,
    test_p: &Predictions,
) -> Result<(), ExperimentError> {
    let path = out
        .join("predictions")
        .join(format!("{}{seed_tag}", slug(method)))
        .join("test_probs.npy");
    let arr = decal_io::NpyArray::from_f32(
        vec![test_p.len(), test_p.num_classes],
        test_p.probabilities().iter().map(|&v| v as f32).collect(),
    );
    decal_io::npy::write(&path, &arr).map_err(step(format!("writing {}", path.display())))?;
    let lpath = path.with_file_name("test_labels.npy");
    decal_io::npy::write(
        &lpath,
        &decal_io::NpyArray::from_i64(vec![test_p.len()], test_p.labels.clone()),
    )
    .map_err(step(format!("writing {}", lpath.display())))
}

/// Adds one evaluation unit's stored result (`file`, computed now or reused) to the run's records,
/// reliability bins per method and `results.json` entries (keyed `<method>[ seed <s>]`).
fn collect_unit_result(
    method: &str,
    seed: Option<u64>,
    file: &Path,
    result: &serde_json::Value,
    all_records: &mut Vec<MetricRecord>,
    reliability: &mut BTreeMap<String, Vec<decal_metrics::calibration::ReliabilityBins>>,
    results: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(), ExperimentError> {
    let recs: Vec<MetricRecord> = serde_json::from_value(result["records"].clone())
        .map_err(step(format!("reading {}", file.display())))?;
    all_records.extend(recs);
    if let Ok(rb) = serde_json::from_value(result["reliability"].clone()) {
        reliability.entry(method.to_string()).or_default().push(rb);
    }
    let key = format!(
        "{}{}",
        method,
        seed.map(|s| format!(" seed {s}")).unwrap_or_default()
    );
    results.insert(key, result["results"].clone());
    Ok(())
}

/// The resolved head architecture of a spec.
pub fn head_config(spec: &HeadSpec, feature_dim: i64, num_classes: i64) -> HeadConfig {
    match spec.kind {
        HeadKind::Reinit => HeadConfig::reinit(feature_dim, num_classes),
        HeadKind::Tst => {
            HeadConfig::tst(feature_dim, spec.latent_dim, num_classes).with_mlp_size(spec.mlp_size)
        }
        HeadKind::Vtst => {
            HeadConfig::vtst(feature_dim, spec.latent_dim, num_classes).with_mlp_size(spec.mlp_size)
        }
    }
}

/// The resolved stage-2 config of a spec for one seed.
pub fn stage2_config(
    spec: &HeadSpec,
    feature_dim: i64,
    num_classes: i64,
    seed: u64,
) -> Stage2Config {
    Stage2Config {
        head: head_config(spec, feature_dim, num_classes),
        loss: spec.loss.clone(),
        epochs: spec.epochs,
        batch_size: spec.batch_size,
        lr: spec.lr,
        train_samples: spec.train_samples,
        val_samples: spec.val_samples,
        selection: spec.selection,
        shuffle: spec.shuffle,
        seed,
    }
}

fn make_predictor<'a>(
    backbone: &'a Backbone,
    head: Option<&'a decal_models::heads::Head>,
    unit: &MethodUnit,
    eval_seed: u64,
) -> Predictor<'a> {
    match head {
        Some(head) => Predictor::Head {
            head,
            num_samples: unit.num_samples,
            eval_seed,
            temperature: unit.temperature.unwrap_or(1.0),
        },
        None => Predictor::Linear {
            weight: &backbone.classifier.head.ws,
            bias: backbone.classifier.head.bs.as_ref(),
            temperature: unit.temperature.unwrap_or(1.0),
        },
    }
}

/// One baseline temperature fit: the row name and the fitted scaler or why the fit failed.
type BaselineFit = (&'static str, Result<decal_calib::TemperatureScaler, String>);

/// Temperature scaling of the baseline's validation logits: the exact NLL minimiser and the seed's LBFGS.
/// A fit that fails (no finite optimum) is returned as that row's error; the caller skips the row.
fn fit_temperatures(
    backbone: &Backbone,
    val: &FeatureSet,
    device: Device,
) -> Result<Vec<BaselineFit>, ExperimentError> {
    let predictor = Predictor::Linear {
        weight: &backbone.classifier.head.ws,
        bias: backbone.classifier.head.bs.as_ref(),
        temperature: 1.0,
    };
    let logits = predict(&predictor, val, device).map_err(step("temperature scaling"))?;
    let (z, y, k) = (&logits.logits, &logits.labels, logits.num_classes);
    let exact = decal_calib::TemperatureScaler::fit_exact(z, y, k).map_err(|e| e.to_string());
    let seed = decal_calib::TemperatureScaler::fit_seed_lbfgs(z, y, k).map_err(|e| e.to_string());
    Ok(vec![("TS", exact), ("TS (seed LBFGS)", seed)])
}

#[allow(clippy::too_many_arguments)]
fn run_shift(
    config: &ExperimentConfig,
    shift: &ShiftSpec,
    backbone: &Backbone,
    units: &[MethodUnit],
    heads: &LoadedHeads,
    test_set: &ImageSet,
    (held_out, full_test_len): (&[usize], usize),
    bodies: (&BodyState, &BTreeMap<PathBuf, (BodyState, String)>),
    device: Device,
    log: &mut dyn FnMut(&str),
) -> Result<Value, String> {
    let dir = &shift.dir;
    // Corrupted versions of the held-out calibration images are left out of every cell when the files
    // follow the full test split's order (one row per test image and severity).
    let mut excluded = vec![false; full_test_len];
    for &i in held_out {
        excluded[i] = true;
    }
    let mut warning: Option<String> = None;
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let severities: Vec<u8> = std::fs::read_to_string(dir.join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("severities").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_else(|| vec![1, 2, 3, 4, 5]);
    let mut names: Vec<String> = if shift.corruptions.is_empty() {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.ends_with(".npy") && n != "labels.npy")
            .map(|n| n.trim_end_matches(".npy").to_string())
            .collect();
        v.sort();
        v
    } else {
        shift.corruptions.clone()
    };
    names.dedup();
    if names.is_empty() {
        return Err(format!("no <corruption>.npy files in {}", dir.display()));
    }
    let lpath = dir.join("labels.npy");
    let labels = decal_io::npy::read(&lpath)
        .and_then(|a| a.to_labels())
        .map_err(|e| format!("{}: {e}", lpath.display()))?;
    let dataset = shift
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-c-generated", slug(&config.data.dataset)));
    let compat = ShiftCompat {
        severity_divisor: shift.severity_divisor,
    };
    let profile = Profile::by_name(&config.eval.profiles[0]).expect("validated profile");
    let mut sweeps: Vec<ShiftSweep> = units
        .iter()
        .map(|u| {
            let ctx = RecordContext {
                run: config.name.clone(),
                seed: u.seed,
                method: u.method.clone(),
            };
            ShiftSweep::new(ctx, &dataset, profile.clone(), compat)
        })
        .collect();
    let mut paper_sweeps: Vec<ShiftSweep> = units
        .iter()
        .map(|u| {
            let ctx = RecordContext {
                run: config.name.clone(),
                seed: u.seed,
                method: u.method.clone(),
            };
            ShiftSweep::new(ctx, &dataset, Profile::paper(), compat)
        })
        .collect();
    let t = Instant::now();
    for name in &names {
        let path = dir.join(format!("{name}.npy"));
        let arr = match decal_io::npy::read(&path) {
            Ok(a) => a,
            Err(e) => {
                log(&format!(
                    "warning: corruption {name} skipped: {}: {e}",
                    path.display()
                ));
                continue;
            }
        };
        let pixels = match arr.data {
            decal_io::NpyData::U8(p) => p,
            _ => return Err(format!("{}: expected uint8 pixels", path.display())),
        };
        if arr.shape.len() != 4
            || arr.shape[1..] != [test_set.height, test_set.width, test_set.channels]
        {
            return Err(format!(
                "{}: shape {:?} does not match the test images ({}×{}×{})",
                path.display(),
                arr.shape,
                test_set.height,
                test_set.width,
                test_set.channels
            ));
        }
        let rows = arr.shape[0];
        if rows % severities.len() != 0 || labels.len() != rows {
            return Err(format!(
                "{}: {rows} rows do not split into {} severities with {} labels",
                path.display(),
                severities.len(),
                labels.len()
            ));
        }
        let per = rows / severities.len();
        let image_len = test_set.image_len();
        let every = match shift.limit {
            0 => shift.every.max(1),
            n => shift.every.max(per.div_ceil(n)).max(1),
        };
        let exclude = !held_out.is_empty() && per == full_test_len;
        if !held_out.is_empty() && per != full_test_len && warning.is_none() {
            warning = Some(format!(
                "shift: {} has {per} images per severity, not the test split's {full_test_len}: the corrupted \
                 versions of the {} held-out calibration images could not be left out",
                path.display(),
                held_out.len()
            ));
        }
        let mut kept = 0;
        for (si, &severity) in severities.iter().enumerate() {
            let picked: Vec<usize> = (si * per..(si + 1) * per)
                .step_by(every)
                .filter(|&r| !(exclude && excluded[r - si * per]))
                .collect();
            kept = picked.len();
            let cell = ImageSet {
                name: format!("{dataset}/{name}/{severity}"),
                height: test_set.height,
                width: test_set.width,
                channels: test_set.channels,
                pixels: picked
                    .iter()
                    .flat_map(|&r| pixels[r * image_len..(r + 1) * image_len].iter().copied())
                    .collect(),
                labels: picked.iter().map(|&r| labels[r] as u32).collect(),
                class_names: test_set.class_names.clone(),
            };
            let images = DeviceImages::new(&cell, &backbone.mean, &backbone.std, device);
            let idx: Vec<usize> = (0..cell.len()).collect();
            // One feature pass per body: the undrifted one, then each drifted checkpoint's own.
            let mut body_of: Vec<Option<&PathBuf>> = Vec::new();
            for u in units {
                let b = u.head_dir.as_ref().filter(|d| bodies.1.contains_key(*d));
                if !body_of.contains(&b) {
                    body_of.push(b);
                }
            }
            for body in body_of {
                let state = body.map_or(bodies.0, |d| &bodies.1[d].0);
                state.restore(&backbone._vs)?;
                let fs = body_features(
                    backbone,
                    &images,
                    &idx,
                    config.features.batch_size,
                    BodyMode::Frozen,
                    None,
                );
                for (ui, unit) in units.iter().enumerate() {
                    if unit.head_dir.as_ref().filter(|d| bodies.1.contains_key(*d)) != body {
                        continue;
                    }
                    let head = unit.head_dir.as_ref().map(|d| &heads[d].1);
                    let seed = config.eval.eval_seed
                        ^ (1000 + si as u64)
                        ^ unit.seed.unwrap_or(0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let predictor = make_predictor(backbone, head, unit, seed);
                    let p = predict(&predictor, &fs, device).map_err(|e| e.to_string())?;
                    sweeps[ui]
                        .add_cell(name, severity, &p)
                        .map_err(|e| e.to_string())?;
                    paper_sweeps[ui]
                        .add_cell(name, severity, &p)
                        .map_err(|e| e.to_string())?;
                }
            }
            bodies.0.restore(&backbone._vs)?;
        }
        log(&format!(
            "shift: {name} done ({} severities × {} images) [{:.0}s]",
            severities.len(),
            kept,
            t.elapsed().as_secs_f64()
        ));
    }
    let mut records = Vec::new();
    let mut results = serde_json::Map::new();
    for (unit, (sweep, paper)) in units.iter().zip(sweeps.into_iter().zip(paper_sweeps)) {
        let key = format!(
            "{}{}",
            unit.method,
            unit.seed.map(|s| format!(" seed {s}")).unwrap_or_default()
        );
        let (r, j) = sweep.finish();
        records.extend(r);
        let (rp, jp) = paper.finish();
        // Paper-profile shift metrics get the `_paper` suffix (the primary profile keeps plain keys).
        records.extend(rp.into_iter().map(|mut x| {
            x.metric = format!("{}_paper", x.metric);
            x
        }));
        results.insert(key, json!({"primary": j, "paper": jp}));
    }
    Ok(
        json!({"records": records, "results": results, "kind": "generated corruptions", "dir": dir,
            "held_out_calibration_images_excluded": !held_out.is_empty() && warning.is_none(), "warning": warning}),
    )
}

/// Writes the MSP histogram of one method (ID test set vs each OOD set, 20 equal-width bins) to
/// `ood_histograms/<method>.csv`, the file `decal report` draws as an OOD score histogram.
fn write_ood_histogram(
    out: &Path,
    method: &str,
    id: &Predictions,
    sets: &[(String, Predictions)],
    id_name: &str,
) -> Result<(), String> {
    use decal_metrics::ood::scores::msp;
    let id_scores = msp(&id.probabilities(), id.num_classes);
    let ood_scores: Vec<(String, Vec<f64>)> = sets
        .iter()
        .map(|(name, p)| (name.clone(), msp(&p.probabilities(), p.num_classes)))
        .collect();
    let refs: Vec<(&str, &[f64])> = ood_scores
        .iter()
        .map(|(name, s)| (name.as_str(), s.as_slice()))
        .collect();
    let hist = decal_report::plot::ScoreHistogram::from_scores(
        method, "MSP", id_name, &id_scores, &refs, 20,
    )
    .map_err(|e| e.to_string())?;
    let path = out
        .join("ood_histograms")
        .join(format!("{}.csv", slug(method)));
    let csv = decal_report::plot::histogram::histograms_to_csv(&[hist]);
    write_atomic(&path, csv.as_bytes()).map_err(|e| e.to_string())
}

/// Seed-compatibility options in effect (seed-system.md §15), one line each: shown with the warnings in the
/// report, because they change how rows are computed.
fn compat_notes(config: &ExperimentConfig) -> Vec<String> {
    let mut notes = Vec::new();
    if config.features.body == BodyMode::SeedBnDrift {
        notes.push("seed compatibility: stage-2 features come from the body in train mode, BatchNorm statistics drifting (features.body = \"seed-bn-drift\", seed BUG-7)".to_string());
    }
    for h in &config.heads {
        if !h.shuffle {
            notes.push(format!(
                "seed compatibility: head {} is trained without reshuffling between epochs (shuffle = false, seed BUG-5)",
                h.name
            ));
        }
        if h.selection == Selection::SeedLoss {
            notes.push(format!(
                "seed compatibility: head {} keeps the epoch with the lowest single-sample training-objective validation loss (selection = \"seed-loss\", seed Q-8)",
                h.name
            ));
        }
    }
    if let Some(d) = config.shift.as_ref().and_then(|s| s.severity_divisor) {
        notes.push(format!(
            "seed compatibility: per-severity shift metrics are divided by {d} instead of the number of corruptions evaluated (severity_divisor, seed BUG-1)"
        ));
    }
    notes
}

/// Files of the report directory written by `decal run` before it used `decal_report::generate` (no
/// `report.json`); removed once so that a regenerated `report/` holds only the current report.
const LEGACY_REPORT_FILES: &[&str] = &[
    "results.tex",
    "results.csv",
    "reliability.svg",
    "reliability.png",
    "reliability.csv",
];

/// What [`write_report`] produced.
struct ReportFiles {
    /// The comparison table (Markdown), as printed.
    table_markdown: String,
    /// `report/index.html`.
    index_html: PathBuf,
    /// The report's own warnings (e.g. reliability series that could not be pooled) and notices.
    messages: Vec<String>,
}

/// Writes `reliability/<method>.csv` (each method's bins pooled over seeds), then the report in `report/`
/// through [`decal_report::generate::generate_report`] — the same tables, reliability diagrams,
/// ECE-vs-severity plots, OOD score histograms and HTML as `decal report <run>` — with the run's warnings
/// in its Warnings section, and `report/results.md`, the comparison table `decal run` prints.
fn write_report(
    config: &ExperimentConfig,
    out: &Path,
    records: &[MetricRecord],
    reliability: &BTreeMap<String, Vec<decal_metrics::calibration::ReliabilityBins>>,
    method_order: &[String],
    warnings: &[String],
) -> Result<ReportFiles, String> {
    write_report_with_notes(
        config,
        out,
        records,
        reliability,
        method_order,
        warnings,
        &[],
    )
}

/// [`write_report`] with the run's own notes (what ran: stage-2 mode, validation source, departures from
/// the seed's recipe) after the warnings and before the compatibility notes.
fn write_report_with_notes(
    config: &ExperimentConfig,
    out: &Path,
    records: &[MetricRecord],
    reliability: &BTreeMap<String, Vec<decal_metrics::calibration::ReliabilityBins>>,
    method_order: &[String],
    warnings: &[String],
    run_notes: &[String],
) -> Result<ReportFiles, String> {
    // The report draws every CSV in `reliability/` and `ood_histograms/`: those of methods that are no
    // longer in the config (an earlier config in the same run directory) go first.
    let current: Vec<String> = method_order.iter().map(|m| slug(m)).collect();
    for sub in ["reliability", "ood_histograms"] {
        let dir = out.join(sub);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let stale = path.extension().is_some_and(|e| e == "csv")
                && path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|s| !current.iter().any(|c| c == s));
            if stale && path.is_file() {
                std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
    }
    // Reliability: bins summed over seeds (each seed evaluates the same test images).
    for method in method_order {
        let Some(list) = reliability.get(method) else {
            continue;
        };
        let first = &list[0];
        let bins: Vec<BinStat> = (0..first.bins.len())
            .map(|b| {
                let count: u64 = list.iter().map(|r| r.bins[b].count).sum();
                let w = |f: &dyn Fn(&decal_metrics::calibration::ReliabilityBin) -> f64| {
                    if count == 0 {
                        0.0
                    } else {
                        list.iter()
                            .map(|r| f(&r.bins[b]) * r.bins[b].count as f64)
                            .sum::<f64>()
                            / count as f64
                    }
                };
                BinStat {
                    lower: first.bins[b].lower,
                    upper: first.bins[b].upper,
                    count,
                    mean_confidence: w(&|x| x.mean_confidence),
                    accuracy: w(&|x| x.accuracy),
                }
            })
            .collect();
        let total: u64 = bins.iter().map(|b| b.count).sum();
        let ece = (total > 0).then(|| {
            bins.iter()
                .map(|b| b.count as f64 / total as f64 * (b.accuracy - b.mean_confidence).abs())
                .sum::<f64>()
        });
        let definition = format!(
            "top-label, {} equal-width bins, {:?} membership, {} seeds pooled",
            first.num_bins,
            first.membership,
            list.len()
        );
        let s = ReliabilitySeries {
            label: method.clone(),
            bins,
            ece,
            definition,
        };
        decal_report::reliability::write_reliability_csv(
            &out.join("reliability")
                .join(format!("{}.csv", slug(method))),
            std::slice::from_ref(&s),
        )
        .map_err(|e| e.to_string())?;
    }
    let title = format!(
        "{}{}: calibration of baseline, TS, TST and V-TST",
        if config.eval.smoke {
            "SMOKE RUN, NOT RESULTS — "
        } else {
            ""
        },
        config.name
    );
    let aggregates = aggregate(records).map_err(|e| e.to_string())?;
    let table_markdown = Table::paper(&title, &aggregates, config.eval.spread, method_order)
        .map_err(|e| e.to_string())?
        .to_markdown();
    // `report/` belongs to the run (regenerated on every run, so `force`): a report decal-report wrote there
    // is replaced, stale files it lists removed; files of the pre-manifest layout are removed here.
    let rdir = out.join("report");
    if !rdir.join(decal_report::manifest::MANIFEST).exists() {
        for name in LEGACY_REPORT_FILES {
            let p = rdir.join(name);
            if p.is_file() {
                std::fs::remove_file(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            }
        }
    }
    let mut options = decal_report::generate::ReportOptions::new(&rdir);
    options.title = title;
    options.method_order = method_order.to_vec();
    options.description = config.description.clone();
    options.force = true;
    options.provenance = Some(Provenance::capture());
    options.notes = config
        .eval
        .smoke
        .then(|| SMOKE_NOTE.to_string())
        .into_iter()
        .chain(warnings.iter().cloned())
        .chain(run_notes.iter().cloned())
        .chain(compat_notes(config))
        .collect();
    options.spread = config.eval.spread;
    // The printed table, also as `report/results.md` (listed in the report's manifest).
    options.extra_files = vec![(
        PathBuf::from("results.md"),
        table_markdown.as_bytes().to_vec(),
    )];
    let outcome = decal_report::generate::generate_report(&[out.join("metrics.jsonl")], &options)
        .map_err(|e| e.to_string())?;
    let index_html = outcome
        .index_html
        .ok_or_else(|| "report: no index.html written".to_string())?;
    Ok(ReportFiles {
        table_markdown,
        index_html,
        messages: outcome
            .warnings
            .into_iter()
            .chain(outcome.notices)
            .collect(),
    })
}

#[cfg(test)]
mod smoke_tests {
    use super::*;

    fn catalogue() -> Vec<(PathBuf, ExperimentConfig)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/experiments/cpu");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 10, "catalogue in {}", dir.display());
        files
            .into_iter()
            .map(|p| {
                let c = ExperimentConfig::read(&p).unwrap();
                (p, c)
            })
            .collect()
    }

    /// Every catalogue config's smoke version keeps every method, head, OOD set and corruption, with the
    /// small sizes, and is marked as a smoke run.
    #[test]
    fn smoke_config_keeps_every_method_and_shrinks_every_size() {
        for (path, c) in catalogue() {
            let s = smoke_config(&c);
            let what = path.display().to_string();
            s.validate().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(s.eval.smoke && !c.eval.smoke, "{what}");
            assert_eq!(s.name, format!("{}-smoke", c.name), "{what}");
            assert!(
                s.description.starts_with("SMOKE RUN, NOT RESULTS"),
                "{what}"
            );
            assert_eq!(s.seeds, c.seeds[..1].to_vec(), "{what}");
            // Data: same dataset, directory and split, at most a few hundred images.
            assert_eq!(
                (
                    &s.data.dataset,
                    &s.data.dir,
                    s.data.split_seed,
                    s.data.train_fraction
                ),
                (
                    &c.data.dataset,
                    &c.data.dir,
                    c.data.split_seed,
                    c.data.train_fraction
                ),
                "{what}"
            );
            assert!(
                s.data.limit_train > 0 && s.data.limit_train <= smoke::TRAIN,
                "{what}"
            );
            assert!(
                s.data.limit_val > 0 && s.data.limit_val <= smoke::VAL,
                "{what}"
            );
            assert!(
                s.data.limit_test > 0 && s.data.limit_test <= smoke::TEST,
                "{what}"
            );
            let (sp, cp) = (
                s.backbone.train.as_ref().unwrap(),
                c.backbone.train.as_ref().unwrap(),
            );
            assert_eq!(sp.epochs, 1, "{what}");
            assert!(
                cp.epochs > 1,
                "{what}: the catalogue trains more than one epoch"
            );
            assert_eq!(
                (&sp.model, &sp.loss, sp.batch_size),
                (&cp.model, &cp.loss, cp.batch_size),
                "{what}"
            );
            // Heads: same names, kinds, architectures, losses and rows; 1 epoch, capped samples.
            assert_eq!(s.heads.len(), c.heads.len(), "{what}");
            for (sh, ch) in s.heads.iter().zip(&c.heads) {
                assert_eq!(
                    (
                        &sh.name,
                        sh.kind,
                        sh.latent_dim,
                        sh.mlp_size,
                        &sh.loss,
                        &sh.eval_samples
                    ),
                    (
                        &ch.name,
                        ch.kind,
                        ch.latent_dim,
                        ch.mlp_size,
                        &ch.loss,
                        &ch.eval_samples
                    ),
                    "{what}"
                );
                assert_eq!(
                    (
                        sh.temperature_scaling,
                        sh.temperature_scaling_seed_lbfgs,
                        sh.selection
                    ),
                    (
                        ch.temperature_scaling,
                        ch.temperature_scaling_seed_lbfgs,
                        ch.selection
                    ),
                    "{what}"
                );
                assert_eq!(sh.epochs, 1, "{what}");
                assert!(
                    sh.train_samples <= smoke::VTST_SAMPLES && sh.train_samples >= 1,
                    "{what}"
                );
                assert!(
                    sh.val_samples <= smoke::VTST_SAMPLES && sh.val_samples >= 1,
                    "{what}"
                );
            }
            assert_eq!(s.temperature_scaling, c.temperature_scaling, "{what}");
            // OOD sets and corruptions: all kept, subsampled.
            assert_eq!(s.ood.len(), c.ood.len(), "{what}");
            for (so, co) in s.ood.iter().zip(&c.ood) {
                assert_eq!(
                    (&so.name, &so.dataset, &so.dir),
                    (&co.name, &co.dataset, &co.dir),
                    "{what}"
                );
                assert!(so.limit > 0 && so.limit <= smoke::OOD, "{what}");
            }
            let (ss, cs) = (s.shift.as_ref().unwrap(), c.shift.as_ref().unwrap());
            assert_eq!(
                (&ss.dir, &ss.corruptions),
                (&cs.dir, &cs.corruptions),
                "{what}"
            );
            assert!(ss.limit > 0 && ss.limit <= smoke::SHIFT_PER_CELL, "{what}");
            assert_eq!(s.eval.profiles, c.eval.profiles, "{what}");
            assert!(s.eval.bootstrap <= smoke::BOOTSTRAP, "{what}");
            // The smoke marker is serialised (results.json's config says so); an ordinary config's
            // serialisation, which its hashes are made from, has neither new key.
            let text = toml::to_string(&s).unwrap();
            assert!(text.contains("smoke = true"), "{what}");
            let plain: toml::Value = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
            assert!(plain["eval"].get("smoke").is_none(), "{what}");
            assert!(plain["shift"].get("limit").is_none(), "{what}");
        }
    }

    /// Explicit limits smaller than the smoke sizes are kept; "0 = all" becomes the smoke size.
    #[test]
    fn smoke_config_keeps_smaller_limits() {
        let (_, mut c) = catalogue().remove(0);
        c.data.limit_train = 0;
        c.data.limit_test = 10;
        c.ood[0].limit = 0;
        c.ood[1].limit = 5;
        c.eval.bootstrap = 0;
        let s = smoke_config(&c);
        assert_eq!((s.data.limit_train, s.data.limit_test), (smoke::TRAIN, 10));
        assert_eq!((s.ood[0].limit, s.ood[1].limit), (smoke::OOD, 5));
        assert_eq!(s.eval.bootstrap, 0);
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn limits_keep_every_class_of_a_class_ordered_set() {
        // 10 classes stored one after the other, 100 images each, one byte per image.
        let full = ImageSet {
            name: "ordered".into(),
            height: 1,
            width: 1,
            channels: 1,
            pixels: (0..1000).map(|i| (i % 251) as u8).collect(),
            labels: (0..1000).map(|i| i / 100).collect(),
            class_names: (0..10).map(|c| c.to_string()).collect(),
        };
        let mut set = full.clone();
        subsample_evenly(&mut set, 50);
        assert_eq!(set.len(), 50);
        let mut per_class = [0usize; 10];
        for &l in &set.labels {
            per_class[l as usize] += 1;
        }
        assert_eq!(per_class, [5; 10]);
        // Image i of the subset is image 20·i of the set, pixels and label together.
        assert_eq!(set.pixels[7], full.pixels[140]);
        assert_eq!(set.labels[7], full.labels[140]);
        let mut same = full.clone();
        subsample_evenly(&mut same, 0);
        assert_eq!(same, full);
        subsample_evenly(&mut same, 5000);
        assert_eq!(same, full);
    }
}
