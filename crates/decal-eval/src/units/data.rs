//! Data-side units: `split`, `backbone`, `features`, `views` — the data half of the old `experiment::run`.
//!
//! - `backbone` ([`BackboneSpec`]): stage 1 into the unit's own directory (resumed from `last/`), or an
//!   imported checkpoint whose weights' SHA-256 is taken at plan time and verified when the unit runs;
//! - `split` ([`SplitSpec`]): which training images form the train / validation parts (the seed split,
//!   then `limit_train` / `limit_val`), which test images are kept (`limit_test`, evenly spaced), and where
//!   every fit is made ([`crate::validation`]: the validation part, or a held-out calibration part carved
//!   from the test split); written as [`SplitInfo`] (`split.json`);
//! - `features` ([`FeaturesSpec`]): one split or OOD set through the frozen body (or, with `drifted`, through
//!   the BatchNorm statistics a head unit saved as [`crate::drift::BODY_STATE_FILE`]), written in
//!   `decal_train::features`' cache format under the name `features`;
//! - `views` ([`ViewsSpec`]): the augmented views of the training images (`[features] mode = "augmented"`);
//! - for an experiment on feature files (`[backbone] features`), [`files`]: `features-file` units in place of
//!   the backbone, split and features units, and a `views-file` unit for the given training views.
//!
//! Other unit modules read these outputs only through the loaders exported here ([`load_backbone`],
//! [`load_split`], [`load_images`], [`device_images`], [`load_features`], [`features_key`], [`load_views`]),
//! each cached per process in the context's resources, and plan a head's drifted features with
//! [`plan_drifted_features`].
//!
//! The set keys of [`PlanCtx::features`]: `train`, `val`, `test`, `fit` (what every fit uses: the
//! held-out calibration part, the validation part, or — when only the loaded data can tell, for a stage-1
//! checkpoint with its run records — a `features/fit` unit that follows the split unit's decision, copying
//! its `features/val` input when that decision is the validation part) and
//! `ood:<name>` per `[[ood]]` set. An `[[ood]]` set whose directory is missing is left out at plan time
//! with a warning in [`PlanCtx::warnings`] (the old run's "OOD set … skipped"); one that exists but cannot
//! be read fails its features unit.

mod backbone;
mod extract;
pub mod files;
mod fingerprint;
mod inputs;
mod split;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use decal_train::stage1::{DataSettings, Stage1Plan};
use serde::{Deserialize, Serialize};

pub use backbone::{load_backbone, run_backbone, Backbone};
pub use extract::{features_key, load_features, load_views, run_features, run_views};
pub use files::{run_features_file, run_views_file, FeaturesFileSpec, TrainViews, ViewsFileSpec};
pub(crate) use fingerprint::sha256_cached;
pub use inputs::{device_images, load_images, Images};
pub use split::{load_split, run_split, SplitInfo};

use super::UnitSpec;
use crate::plan::build::PlanCtx;
use crate::plan::{PlanError, Resource, UnitId};
use crate::validation::{self, TrainingImages, ValidationChoice, ValidationSource};

/// A dataset on disk: reader, directory and a fingerprint of the directory's files taken at plan time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataRef {
    /// Dataset reader (`cifar10`, `fashion-mnist`, `imagefolder`, …).
    pub dataset: String,
    /// Its directory.
    pub dir: PathBuf,
    /// MNIST family: accept IDX subsets.
    pub allow_subset: bool,
    /// SHA-256 over the sorted relative paths, sizes and contents of every file below `dir`
    /// (modification times are not part of it; see `fingerprint.rs`).
    pub fingerprint: String,
}

/// Which images form each split, and where the fits are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    /// The in-distribution data.
    pub data: DataRef,
    /// Number of classes (checked against the loaded training split).
    pub num_classes: usize,
    /// Training fraction of the seed split.
    pub train_fraction: f64,
    /// Generator seed of the split (and of the held-out carve-out).
    pub split_seed: u64,
    /// First N images of the training part (0 = all).
    pub limit_train: usize,
    /// First N images of the validation part (0 = all).
    pub limit_val: usize,
    /// N test images evenly spaced over the test split (0 = all).
    pub limit_test: usize,
    /// `[data] validation`.
    pub validation: ValidationChoice,
    /// `[data] holdout_fraction`.
    pub holdout_fraction: f64,
}

/// Stage 1 (resumable) or an imported checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum BackboneSpec {
    /// Train stage 1 with this resolved plan (its `device` is the device kind) on `data`.
    Train {
        /// The resolved stage-1 plan.
        plan: Box<Stage1Plan>,
        /// The training data.
        data: DataRef,
    },
    /// Use the checkpoint in `checkpoint`.
    Import {
        /// The checkpoint directory.
        checkpoint: PathBuf,
        /// SHA-256 of its `model.safetensors` at plan time.
        weights_sha256: String,
        /// Dataset name (normalisation constants of a checkpoint that records none).
        dataset: String,
    },
}

/// An `[[ood]]` set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OodSource {
    /// Its name in records.
    pub name: String,
    /// The data.
    pub data: DataRef,
    /// Which split of it.
    pub split: String,
    /// N images evenly spaced over the set (0 = all).
    pub limit: usize,
}

/// Features of one split or OOD set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturesSpec {
    /// The set: `train`, `val`, `test`, `calibration`, `fit` (the split unit's fit set), `ood:<name>`.
    pub set: String,
    /// The OOD set (for `ood:<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ood: Option<OodSource>,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Device kind.
    pub device: String,
    /// Through the drifted body saved by the `body` input (a head unit), not the frozen one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drifted: bool,
}

/// Augmented views of the training images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewsSpec {
    /// A, views per training image.
    pub views: usize,
    /// Element type on disk.
    pub storage: decal_train::views::Storage,
    /// Seed of the crop and flip draws.
    pub seed: u64,
    /// Zero padding of the random crop.
    pub crop_padding: usize,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Device kind.
    pub device: String,
    /// Autocast precision of the body passes (absent for float32, so float32 views keep their ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_precision: Option<decal_train::precision::Precision>,
}

/// `[data]` as stage 1 takes it (the one resolution, `Stage1Plan::with_data`).
fn data_settings(config: &crate::experiment::ExperimentConfig) -> DataSettings {
    DataSettings {
        dataset: config.data.dataset.clone(),
        data_dir: config.data.dir.clone(),
        train_fraction: config.data.train_fraction,
        split_seed: config.data.split_seed,
        limit_train: config.data.limit_train,
        limit_val: config.data.limit_val,
    }
}

fn config_error(key: impl Into<String>) -> impl FnOnce(String) -> PlanError {
    let key = key.into();
    move |problem| PlanError::Config { key, problem }
}

fn deps(list: &[(&str, &UnitId)]) -> BTreeMap<String, UnitId> {
    list.iter()
        .map(|(r, id)| (r.to_string(), (*id).clone()))
        .collect()
}

/// Where every fit is made, as far as the plan can tell.
enum FitPlan {
    /// The split's validation part.
    Val,
    /// A held-out part of the test split.
    Holdout,
    /// Decided by the split unit (needs the loaded data's hash).
    AtRun,
}

/// The plan-time part of [`validation::checkpoint_training_images`]: an imported checkpoint's training
/// images are unknown whatever the data; any other checkpoint needs the loaded data (None).
fn known_at_plan(checkpoint: Option<&Path>) -> Option<TrainingImages> {
    let Some(dir) = checkpoint else {
        return Some(TrainingImages::Disjoint(split::TRAINED_HERE.into()));
    };
    let imported = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("stage").and_then(|s| s.as_str()).map(str::to_string))
        .is_some_and(|s| s == "imported");
    // For an imported checkpoint the function answers before looking at the data.
    imported.then(|| validation::checkpoint_training_images(dir, 0, "", &[]))
}

fn fit_plan(ctx: &PlanCtx<'_>) -> Result<FitPlan, PlanError> {
    let data = &ctx.config.data;
    if data.validation == ValidationChoice::TestHoldout {
        return Ok(FitPlan::Holdout);
    }
    let Some(known) = known_at_plan(ctx.config.backbone.checkpoint.as_deref()) else {
        return Ok(FitPlan::AtRun);
    };
    let source = validation::resolve(
        data.validation,
        &known,
        data.holdout_fraction,
        data.split_seed,
    )
    .map_err(config_error("data.validation"))?;
    Ok(match source {
        ValidationSource::TestHoldout { .. } => FitPlan::Holdout,
        ValidationSource::TrainSplit { .. } => FitPlan::Val,
    })
}

/// Whether the dataset has the seed's training augmentation (crop + flip: CIFAR), by the stage-1 dataset
/// defaults (`[features] mode = "augmented"` needs it; exact mode augments with it).
pub(super) fn dataset_augments(dataset: &str) -> bool {
    let mut defaults = Stage1Plan {
        dataset: dataset.to_string(),
        ..Stage1Plan::default()
    };
    defaults.apply_dataset_defaults();
    defaults.augment
}

/// The device a kind stands for (precision checks at plan time).
fn kind_device(kind: &str) -> tch::Device {
    match kind {
        "cuda" => tch::Device::Cuda(0),
        "mps" => tch::Device::Mps,
        "vulkan" => tch::Device::Vulkan,
        _ => tch::Device::Cpu,
    }
}

/// Plans the backbone unit; returns its id and feature width.
fn plan_backbone(ctx: &mut PlanCtx<'_>, data: &DataRef) -> Result<(UnitId, i64), PlanError> {
    let config = ctx.config;
    let (spec, width, resource) = match (&config.backbone.checkpoint, &config.backbone.train) {
        (Some(dir), _) => {
            let width = crate::config_check::checkpoint_feature_dim(dir)
                .map_err(config_error("backbone.checkpoint"))?;
            let weights = dir.join("model.safetensors");
            let weights_sha256 =
                decal_core::sha256_file(&weights).map_err(|e| PlanError::Input {
                    what: "backbone.checkpoint".into(),
                    problem: e.to_string(),
                })?;
            let spec = BackboneSpec::Import {
                checkpoint: dir.clone(),
                weights_sha256,
                dataset: config.data.dataset.clone(),
            };
            (spec, width, Resource::Cpu)
        }
        (None, Some(train)) => {
            let mut plan = train.clone().with_data(&data_settings(config));
            plan.device = ctx.device_kind.clone();
            plan.name = "backbone".into();
            // Threads never change what stage 1 computes (the executor sets them): not part of the id.
            plan.threads = 0;
            plan.precision
                .check_device(kind_device(&ctx.device_kind))
                .map_err(config_error("backbone.train.precision"))?;
            let width = crate::config_check::preset_feature_dim(&plan.model)
                .map_err(config_error("backbone.train.model"))?;
            let spec = BackboneSpec::Train {
                plan: Box::new(plan),
                data: data.clone(),
            };
            (spec, width, Resource::Device)
        }
        (None, None) => {
            return Err(PlanError::Config {
                key: "backbone".into(),
                problem: "needs `checkpoint`, `[backbone.train]` or `features`".into(),
            })
        }
    };
    let id = ctx.plan.add(
        "backbone",
        UnitSpec::Backbone(spec),
        BTreeMap::new(),
        resource,
    )?;
    Ok((id, width))
}

/// Plans one shared features unit.
fn add_features(
    ctx: &mut PlanCtx<'_>,
    name: &str,
    set: &str,
    ood: Option<OodSource>,
    (backbone, split): (&UnitId, &UnitId),
) -> Result<UnitId, PlanError> {
    let spec = FeaturesSpec {
        set: set.to_string(),
        ood,
        batch_size: ctx.config.features.batch_size,
        device: ctx.device_kind.clone(),
        drifted: false,
    };
    ctx.plan.add(
        format!("features/{name}"),
        UnitSpec::Features(spec),
        deps(&[("backbone", backbone), ("split", split)]),
        Resource::Device,
    )
}

/// Plans the features of `[[ood]]` set `i` (`ood:<name>`), or leaves a set whose directory is missing out
/// with the old run's warning (no unit, no id change for the others); a set that exists but cannot be read
/// fails its features unit.
fn plan_ood(ctx: &mut PlanCtx<'_>, i: usize, pair: (&UnitId, &UnitId)) -> Result<(), PlanError> {
    let config = ctx.config;
    let o = &config.ood[i];
    let slug = decal_report::slug(&o.name);
    let clash = config.ood[..i]
        .iter()
        .position(|p| p.name == o.name || decal_report::slug(&p.name) == slug);
    if let Some(j) = clash {
        return Err(PlanError::Config {
            key: format!("ood[{i}].name"),
            problem: format!(
                "{:?} names the same OOD set as ood[{j}].name {:?} (names must differ in letters or digits)",
                o.name, config.ood[j].name
            ),
        });
    }
    if !o.dir.exists() {
        ctx.warnings.push(format!(
            "OOD set {} skipped: cannot load {} from {}: the directory does not exist (ood[{i}].dir)",
            o.name,
            o.dataset,
            o.dir.display()
        ));
        return Ok(());
    }
    let data = inputs::data_ref(&o.dataset, &o.dir, o.allow_subset)
        .map_err(config_error(format!("ood[{i}].dir")))?;
    let source = OodSource {
        name: o.name.clone(),
        data,
        split: o.split.clone(),
        limit: o.limit,
    };
    let key = format!("ood:{}", o.name);
    let id = add_features(ctx, &format!("ood-{slug}"), &key, Some(source), pair)?;
    ctx.features.insert(key, id);
    Ok(())
}

/// Plans the view cache of the augmented training views.
fn plan_views(
    ctx: &mut PlanCtx<'_>,
    (backbone, split): (&UnitId, &UnitId),
) -> Result<UnitId, PlanError> {
    let f = &ctx.config.features;
    let spec = ViewsSpec {
        views: f.views,
        storage: f.storage,
        seed: f.views_seed,
        crop_padding: decal_train::stage1::CROP_PADDING as usize,
        batch_size: f.batch_size,
        device: ctx.device_kind.clone(),
        body_precision: f.views_precision.autocast(),
    };
    ctx.plan.add(
        "views",
        UnitSpec::Views(spec),
        deps(&[("backbone", backbone), ("split", split)]),
        Resource::Device,
    )
}

/// Plans the data-side units: `backbone`, `split`, `features/*`, `views`; sets `ctx.backbone`,
/// `ctx.split`, `ctx.features`, `ctx.views`, `ctx.feature_dim` and `ctx.num_classes`.
pub fn plan(ctx: &mut PlanCtx<'_>) -> Result<(), PlanError> {
    let config = ctx.config;
    if let Some(files) = &config.backbone.features {
        return files::plan(ctx, files);
    }
    let data = inputs::data_ref(
        &config.data.dataset,
        &config.data.dir,
        config.data.allow_subset,
    )
    .map_err(config_error("data.dir"))?;
    let num_classes = inputs::planned_num_classes(&config.data.dataset, &config.data.dir)
        .map_err(config_error("data.dir"))?;
    let (backbone, feature_dim) = plan_backbone(ctx, &data)?;
    let split_plan = Stage1Plan::for_split(&data_settings(config));
    let split_spec = SplitSpec {
        data,
        num_classes,
        train_fraction: split_plan.train_fraction,
        split_seed: config.data.split_seed,
        limit_train: config.data.limit_train,
        limit_val: config.data.limit_val,
        limit_test: config.data.limit_test,
        validation: config.data.validation,
        holdout_fraction: config.data.holdout_fraction,
    };
    let split = ctx.plan.add(
        "split",
        UnitSpec::Split(split_spec),
        deps(&[("backbone", &backbone)]),
        Resource::Cpu,
    )?;
    let pair = (&backbone, &split);
    for set in ["train", "val", "test"] {
        let id = add_features(ctx, set, set, None, pair)?;
        ctx.features.insert(set.to_string(), id);
    }
    let fit = match fit_plan(ctx)? {
        FitPlan::Val => ctx.features["val"].clone(),
        FitPlan::Holdout => add_features(ctx, "calibration", "calibration", None, pair)?,
        FitPlan::AtRun => {
            // Depends on `features/val` too: when the split unit chooses the validation part, the unit
            // copies those features instead of extracting the same images again.
            let spec = FeaturesSpec {
                set: "fit".to_string(),
                ood: None,
                batch_size: ctx.config.features.batch_size,
                device: ctx.device_kind.clone(),
                drifted: false,
            };
            let val = ctx.features["val"].clone();
            ctx.plan.add(
                "features/fit",
                UnitSpec::Features(spec),
                deps(&[("backbone", &backbone), ("split", &split), ("val", &val)]),
                Resource::Device,
            )?
        }
    };
    ctx.features.insert("fit".into(), fit);
    for i in 0..config.ood.len() {
        plan_ood(ctx, i, pair)?;
    }
    // `[features] mode = "augmented"` on a dataset without training augmentation trains on the
    // un-augmented features (the seed's training distribution there): no view cache.
    if config.features.mode == "augmented" && dataset_augments(&config.data.dataset) {
        ctx.views = Some(plan_views(ctx, pair)?);
    }
    ctx.backbone = Some(backbone);
    ctx.split = Some(split);
    ctx.feature_dim = feature_dim;
    ctx.num_classes = num_classes as i64;
    // The sets kept (one whose directory is missing was left out with a warning), in `[[ood]]` order.
    ctx.ood_sets = config
        .ood
        .iter()
        .map(|o| o.name.clone())
        .filter(|n| ctx.features.contains_key(&format!("ood:{n}")))
        .collect();
    ctx.dataset = decal_data::DatasetName::parse(&config.data.dataset)
        .map(|d| d.as_str().to_string())
        .unwrap_or_default();
    Ok(())
}

/// Plans features through the drifted body of `head_unit` (`[features] mode = "exact"`, `body =
/// "seed-bn-drift"`): for each set key of `sets` (`fit`, `train`, `val`, `test`, `ood:<name>`, keys of
/// [`PlanCtx::features`]) a `features/<head-slug>/seed-<s>/<set>` unit that loads the BatchNorm statistics
/// the head unit saved as [`crate::drift::BODY_STATE_FILE`] in its directory. Returns set key → unit id
/// (`fit` and `val` share a unit when the fits use the validation part).
pub fn plan_drifted_features(
    ctx: &mut PlanCtx<'_>,
    head_unit: &UnitId,
    head_name: &str,
    seed: u64,
    sets: &[&str],
) -> Result<BTreeMap<String, UnitId>, PlanError> {
    let mut out = BTreeMap::new();
    let mut by_base: BTreeMap<UnitId, UnitId> = BTreeMap::new();
    for &set in sets {
        let base_id = ctx
            .features
            .get(set)
            .cloned()
            .ok_or_else(|| PlanError::Config {
                key: "features".into(),
                problem: format!("no features of the set {set:?} to drift (a planner bug)"),
            })?;
        if let Some(id) = by_base.get(&base_id) {
            out.insert(set.to_string(), id.clone());
            continue;
        }
        let bug = || PlanError::Config {
            key: "features".into(),
            problem: format!(
                "the features of {set:?} are not a features unit of the plan (a planner bug)"
            ),
        };
        let base = ctx.plan.find(&base_id).cloned().ok_or_else(bug)?;
        let UnitSpec::Features(mut spec) = base.spec else {
            return Err(bug());
        };
        spec.drifted = true;
        let mut d = base.deps.clone();
        // `features/fit` may depend on the undrifted `features/val` (to copy it); a drifted set is always
        // extracted through the head's body, so it keeps only the backbone and split inputs.
        d.remove("val");
        d.insert("body".into(), head_unit.clone());
        let suffix = base.name.trim_start_matches("features/");
        let name = format!(
            "features/{}/seed-{seed}/{suffix}",
            decal_report::slug(head_name)
        );
        let id = ctx
            .plan
            .add(name, UnitSpec::Features(spec), d, Resource::Device)?;
        by_base.insert(base_id, id.clone());
        out.insert(set.to_string(), id);
    }
    Ok(out)
}
