//! The experiment config of `decal run` (and of `decal heads`, which builds one): [`ExperimentConfig`]
//! and its sections (`[data]`, `[backbone]`, `[features]`, `[[heads]]`, `[[ood]]`, `[shift]`, `[eval]`),
//! their defaults and whole-config validation ([`ExperimentConfig::validate`], errors naming the key),
//! the `--smoke` shrink ([`smoke_config`]) and the resolution of a `[[heads]]` table into a head
//! architecture and a stage-2 config ([`head_config`], [`stage2_config`]).
//!
//! Running an experiment is the plan of units in [`crate::plan`] and [`crate::units`], driven by
//! [`crate::runner`]: every unit's id is a hash of its resolved spec and inputs, so a finished unit is
//! reused, a killed run resumes, and a changed config recomputes only what it changes.
//!
//! # Temperature scaling
//! `temperature_scaling = true` adds the baseline rows `TS` (exact fit) and `TS (seed LBFGS)`; in a
//! `[[heads]]` table it adds `TS + <row>` for every row of that head, fitted per seed on the validation
//! split's predictive of the row — V-TST with its m and its ε stream (seed-system.md §9, BUG-16 fixed) —
//! and `temperature_scaling_seed_lbfgs = true` the seed's single-sample LBFGS fit for single-prediction rows.
//! Each fit is a `temperature` unit; every fitted T is in `results.json` under `calibration`.
//!
//! # Missing optional inputs
//! An `[[ood]]` set whose directory is missing is left out at plan time with a warning (printed, kept in
//! `results.json` and shown in the report). A temperature fit without a finite optimum (validation logits
//! no better than uniform) skips its unit: its row (`TS`, `TS (seed LBFGS)`, or a head's `TS + <row>` for
//! that seed) is left out with the reason.

use std::path::{Path, PathBuf};

use decal_metrics::profile::Profile;
use decal_models::heads::{HeadConfig, HeadKind};
use decal_report::table::Spread;
use decal_train::features::BodyMode;
use decal_train::losses::LossConfig;
use decal_train::stage1::Stage1Plan;
use decal_train::stage2::{Selection, Stage2Config};
use serde::{Deserialize, Serialize};

use crate::recipe::{self, Recipe};
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
    /// Other post-hoc calibrators of the baseline, each a row fitted where temperature scaling is:
    /// `"vector"` (row `VS`), `"histogram"` (`Histogram binning`), `"isotonic"` (`Isotonic`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calibrators: Vec<String>,
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
    /// Autocast precision of the body passes that build the view cache (`augmented` mode): `fp32`
    /// (default, the seed's) or `bf16` (bfloat16 autocast: WRN-16-4 views 2.3× faster on this CPU). Only the
    /// training views: validation, test, OOD and shift features stay float32. Not written when `fp32`, so
    /// float32 runs keep their unit ids.
    #[serde(default, skip_serializing_if = "is_fp32")]
    pub views_precision: decal_train::precision::Precision,
    /// `exact` mode only: augment the validation images of the heads' epoch selection every epoch with
    /// the training augmentation, as the seed does (BUG-6; `recipe = "seed"` sets it). Default false: the
    /// un-augmented validation images.
    #[serde(default)]
    pub augment_val: bool,
}

fn is_fp32(p: &decal_train::precision::Precision) -> bool {
    *p == decal_train::precision::Precision::Fp32
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
            views_precision: decal_train::precision::Precision::Fp32,
            augment_val: false,
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
        for (i, c) in self.calibrators.iter().enumerate() {
            if crate::units::heads::calibrator_row(c).is_none() {
                return Err(format!(
                    "calibrators[{i}]: unknown calibrator {c:?} (vector, histogram, isotonic; temperature \
                     scaling is `temperature_scaling = true`)"
                ));
            }
            if self.calibrators[..i].contains(c) {
                return Err(format!("calibrators[{i}]: {c:?} is listed twice"));
            }
        }
        match (&self.backbone.checkpoint, &self.backbone.train) {
            _ if self.backbone.features.is_some() => {
                crate::units::data::files::validate_config(self)?
            }
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
        if self.features.mode != "exact" && self.features.augment_val {
            return Err("[features] augment_val = true needs mode = \"exact\" (cached features hold un-augmented validation images)".into());
        }
        if self.features.views_precision != decal_train::precision::Precision::Fp32 {
            if self.features.mode != "augmented" {
                return Err(format!("[features] views_precision = \"{}\" needs mode = \"augmented\" (it is the precision of the view cache's body passes)", self.features.views_precision.name()));
            }
            if self.features.views_precision == decal_train::precision::Precision::Fp16 {
                return Err("[features] views_precision = \"fp16\" is not supported (libtorch has no fast float16 CPU convolutions, and float16's range can overflow un-normalised features); use \"bf16\"".into());
            }
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

/// Marker file proving `out` is a decal experiment directory (resume is allowed into it).
pub const MARKER: &str = "experiment.json";

/// A file-system friendly form of a method name (the one owner: [`decal_report::slug`]).
pub use decal_report::slug;

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
mod views_precision_tests {
    use super::*;

    fn parse(features: &str) -> Result<ExperimentConfig, String> {
        let text = format!(
            "name = \"t\"\n[data]\ndataset = \"cifar10\"\ndir = \"d\"\n[backbone]\ncheckpoint = \"c\"\n\
             [features]\n{features}\n[[heads]]\nname = \"TST\"\nkind = \"tst\"\n"
        );
        let config: ExperimentConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        config.validate().map(|()| config)
    }

    #[test]
    fn views_precision_is_float32_by_default_and_absent_from_the_serialised_config() {
        let c = parse("").unwrap();
        assert_eq!(
            c.features.views_precision,
            decal_train::precision::Precision::Fp32
        );
        // Absent when float32, so configs (and the report units that embed them) keep their ids.
        let json = serde_json::to_string(&c.features).unwrap();
        assert!(!json.contains("views_precision"), "{json}");
        let c = parse("views_precision = \"bf16\"").unwrap();
        assert_eq!(
            c.features.views_precision,
            decal_train::precision::Precision::Bf16
        );
        let json = serde_json::to_string(&c.features).unwrap();
        assert!(json.contains("\"views_precision\":\"bf16\""), "{json}");
        let line = crate::recipe::departures(&c, false).join("\n");
        assert!(line.contains("bf16 autocast"), "{line}");
        assert!(!crate::recipe::departures(&parse("").unwrap(), false)
            .join("\n")
            .contains("autocast"));
    }

    #[test]
    fn views_precision_is_refused_outside_augmented_mode_and_as_fp16() {
        let err = parse("mode = \"exact\"\nviews_precision = \"bf16\"").unwrap_err();
        assert!(err.contains("needs mode = \"augmented\""), "{err}");
        let err = parse("mode = \"unaugmented\"\nviews_precision = \"bf16\"").unwrap_err();
        assert!(err.contains("needs mode = \"augmented\""), "{err}");
        let err = parse("views_precision = \"fp16\"").unwrap_err();
        assert!(err.contains("use \"bf16\""), "{err}");
        assert!(parse("views_precision = \"fp32\"").is_ok());
        assert!(parse("views_precision = \"bf17\"").is_err());
    }
}
