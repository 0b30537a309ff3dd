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
use decal_metrics::bootstrap::BootstrapConfig;
use decal_metrics::profile::Profile;
use decal_models::heads::{HeadConfig, HeadKind};
use decal_report::table::{aggregate, Spread, Table};
use decal_report::{MetricRecord, ReliabilitySeries};
use decal_train::features::{BodyMode, CacheKey, FeatureSet};
use decal_train::losses::LossConfig;
use decal_train::stage1::Stage1Plan;
use decal_train::stage2::{self, Selection, Stage2Config, TrainSource};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::{nn, Device};

use crate::predict::{predict, Predictions, Predictor};
use crate::recipe::{self, Recipe};
use crate::suite::{self, EvalSettings, RecordContext};

/// `[backbone] features`: an experiment on features saved from any model (a child module, so it shares
/// this module's units, temperature fits and report).
#[path = "feature_run.rs"]
mod feature_run;
use crate::validation::ValidationChoice;

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

/// A file-system friendly form of a method name (the one owner: [`decal_report::slug`]).
pub use decal_report::slug;

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

/// An experiment on feature files (`[backbone] features`, `decal heads`): heads, temperature fits,
/// evaluation and report on features saved from any model, in `out` (resumable). Experiments on images run
/// as a plan of units ([`crate::runner`]); this path is not planned as units yet.
pub fn run_feature_files(
    config: &ExperimentConfig,
    out: &Path,
    options: &RunOptions,
    log: &mut dyn FnMut(&str),
) -> Result<RunSummary, ExperimentError> {
    let started = Instant::now();
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
    let files = config
        .backbone
        .features
        .as_ref()
        .ok_or_else(|| ExperimentError::Step {
            step: "config".into(),
            message: "run_feature_files needs [backbone] features".into(),
        })?;
    feature_run::run(config, files, out, options, log, started)
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
        let Some(bins) = decal_report::pool_bins(list.iter().map(|r| r.bins.as_slice())) else {
            return Err(format!(
                "{method}: seeds disagree on the reliability bin edges"
            ));
        };
        let ece = decal_report::bins_ece(&bins);
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
