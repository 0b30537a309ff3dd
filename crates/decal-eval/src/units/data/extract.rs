//! The `features` and `views` units: images through the frozen (or a head's drifted) body with the one
//! feature extractor, `decal_train::features::extract`, and the augmented view cache,
//! `decal_train::views::build_or_open`; and their loaders.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use decal_train::features::{self, BodyMode, CacheKey, FeatureMeta, FeatureSet};
use decal_train::stage1::DeviceImages;
use decal_train::views::ViewCache;
use serde_json::json;

use super::inputs::{read_ood, Images};
use super::{
    device_images, load_backbone, load_images, load_split, FeaturesSpec, TrainViews, ViewsSpec,
};
use crate::drift::{BodyState, BODY_STATE_FILE};
use crate::plan::{Unit, UnitId};
use crate::units::{UnitContext, UnitError, UnitResult, UnitSpec};

/// Name of the feature files in a features unit's directory (`features.features.npy`,
/// `features.labels.npy`, `features.json` with the [`CacheKey`]).
pub const FEATURES_NAME: &str = "features";

/// Directory of the view cache inside a views unit's directory.
pub const VIEWS_DIR: &str = "views";

/// The images a features unit passes through the body, and which of them.
enum Source {
    /// Images of the split unit, by index.
    Split(Images, Vec<usize>),
    /// An OOD set (all of it).
    Ood(decal_data::ImageSet),
}

fn source(
    s: &FeaturesSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    split: &UnitId,
) -> Result<Source, UnitError> {
    let info = load_split(ctx, split)?;
    let all = |n: usize| (0..n).collect::<Vec<usize>>();
    let holdout = info.test_holdout;
    Ok(match s.set.as_str() {
        "train" => Source::Split(Images::Train, info.train_indices.clone()),
        "val" => Source::Split(Images::Train, info.val_indices.clone()),
        "fit" if !holdout => Source::Split(Images::Train, info.val_indices.clone()),
        "test" => Source::Split(Images::Test, all(info.test_original.len())),
        "calibration" | "fit" => {
            if !holdout {
                return Err(UnitError::Input {
                    unit: unit.name.clone(),
                    problem: "the split unit chose the validation part for the fits; there are no held-out calibration images (plan again)".into(),
                });
            }
            Source::Split(Images::Calibration, all(info.calibration_original.len()))
        }
        set if set.starts_with("ood:") => {
            let ood = s.ood.as_ref().ok_or_else(|| UnitError::Input {
                unit: unit.name.clone(),
                problem: format!("features of {set} without an OOD source in the spec"),
            })?;
            let set = read_ood(ood, info.image_shape).map_err(|problem| UnitError::Input {
                unit: unit.name.clone(),
                problem,
            })?;
            Source::Ood(set)
        }
        other => {
            return Err(UnitError::Input {
                unit: unit.name.clone(),
                problem: format!("unknown feature set {other:?}"),
            })
        }
    })
}

/// Runs a `features` unit: the features of its set through the frozen body (or, `drifted`, through the
/// BatchNorm statistics its `body` input saved), written with their [`CacheKey`].
pub fn run_features(
    s: &FeaturesSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let started = Instant::now();
    let backbone_id = unit.dep("backbone")?.clone();
    let split_id = unit.dep("split")?.clone();
    // `features/fit` of a checkpoint whose run records decide the fit set at run time: when the split
    // unit chose the validation part, these are exactly the `features/val` it depends on — copied (with
    // their key), not extracted a second time. (Never for drifted features: those go through a head's
    // own body.)
    if let Some(val) = unit
        .deps
        .get("val")
        .filter(|_| s.set == "fit" && !s.drifted)
    {
        if !load_split(ctx, &split_id)?.test_holdout {
            let fs = load_features(ctx, val)?;
            let key = features_key(ctx, val)?;
            let how = ", the validation part's (copied from features/val)";
            let mut summary = save_features(s, unit, ctx, dir, &fs, &key, how)?;
            summary["copied_from"] = json!(val);
            return Ok(UnitResult::done(summary));
        }
    }
    let backbone = load_backbone(ctx, &backbone_id)?;
    let src = source(s, unit, ctx, &split_id)?;
    let (set, images, indices): (Rc<decal_data::ImageSet>, Rc<DeviceImages>, Vec<usize>) = match src
    {
        Source::Split(which, indices) => (
            load_images(ctx, &split_id, which)?,
            device_images(ctx, &split_id, &backbone_id, which)?,
            indices,
        ),
        Source::Ood(set) => {
            let dev = DeviceImages::new(&set, &backbone.mean, &backbone.std, ctx.options.device);
            let n = set.len();
            (Rc::new(set), Rc::new(dev), (0..n).collect())
        }
    };
    let mut backbone_hash = backbone.hash.clone();
    let mut drifted: Option<BodyState> = None;
    if s.drifted {
        let path = ctx.input_dir(unit, "body")?.join(BODY_STATE_FILE);
        let what = format!("the drifted body {}", path.display());
        let state = BodyState::load(&path, &backbone.undrifted)
            .map_err(UnitError::failed(unit, what.clone()))?;
        let hash = BodyState::file_hash(&path).map_err(UnitError::failed(unit, what))?;
        backbone_hash = format!("{backbone_hash}+bn-state:{hash}");
        drifted = Some(state);
    }
    let extracted = (|| {
        if let Some(state) = &drifted {
            state
                .restore(&backbone.vs)
                .map_err(UnitError::failed(unit, "loading the drifted body"))?;
        }
        features::extract(
            backbone.classifier.body.as_ref(),
            &images,
            &indices,
            s.batch_size,
            BodyMode::Frozen,
            None,
        )
        .map_err(UnitError::failed(unit, format!("features of {}", s.set)))
    })();
    if drifted.is_some() {
        // The cached backbone is shared by the process's units: always back to the frozen body.
        backbone
            .undrifted
            .restore(&backbone.vs)
            .map_err(UnitError::failed(unit, "restoring the undrifted body"))?;
    }
    let fs = extracted?;
    let key = CacheKey {
        backbone_hash,
        data_hash: features::images_hash(&set, &indices),
        transform: backbone.transform(),
        body_mode: BodyMode::Frozen,
    };
    let how = format!(" ({:.1}s)", started.elapsed().as_secs_f64());
    Ok(UnitResult::done(save_features(
        s, unit, ctx, dir, &fs, &key, &how,
    )?))
}

/// Writes a features unit's features with their key, logs `features <unit>: N × F<how>`, and returns the
/// unit's summary.
fn save_features(
    s: &FeaturesSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
    fs: &FeatureSet,
    key: &CacheKey,
    how: &str,
) -> Result<serde_json::Value, UnitError> {
    features::save(dir, FEATURES_NAME, fs, key)
        .map_err(UnitError::failed(unit, "writing the features"))?;
    (ctx.log)(&format!(
        "features {}: {} × {}{how}",
        unit.name,
        fs.len(),
        fs.feature_dim
    ));
    Ok(json!({
        "set": s.set, "examples": fs.len(), "feature_dim": fs.feature_dim, "data_hash": key.data_hash,
    }))
}

fn features_unit<'p>(ctx: &'p UnitContext<'_>, id: &UnitId) -> Result<&'p Unit, UnitError> {
    let unit = ctx.plan.find(id).ok_or_else(|| UnitError::Input {
        unit: "features".into(),
        problem: format!("unit {id} is not in the plan"),
    })?;
    match unit.spec {
        UnitSpec::Features(_) | UnitSpec::FeaturesFile(_) => Ok(unit),
        _ => Err(UnitError::Input {
            unit: unit.name.clone(),
            problem: format!("expected a features unit, found a {} unit", unit.kind()),
        }),
    }
}

/// The features of the features unit `features` (verified against their recorded SHA-256; cached per
/// process).
pub fn load_features(
    ctx: &mut UnitContext<'_>,
    features: &UnitId,
) -> Result<Rc<FeatureSet>, UnitError> {
    let unit = features_unit(ctx, features)?.clone();
    let dir = ctx.store.unit_dir(features);
    ctx.resources.cached(&format!("features:{features}"), || {
        features::load(&dir, FEATURES_NAME)
            .map(|(fs, _)| fs)
            .map_err(UnitError::failed(
                &unit,
                format!("reading the features in {}", dir.display()),
            ))
    })
}

/// What the features unit `features` was computed from (its [`CacheKey`]: backbone or drifted-body hash,
/// images hash, transform), for `results.json`.
pub fn features_key(ctx: &UnitContext<'_>, features: &UnitId) -> Result<CacheKey, UnitError> {
    let unit = features_unit(ctx, features)?;
    let path = ctx
        .store
        .unit_dir(features)
        .join(format!("{FEATURES_NAME}.json"));
    let text = std::fs::read_to_string(&path).map_err(UnitError::failed(
        unit,
        format!("reading {}", path.display()),
    ))?;
    let meta: FeatureMeta = serde_json::from_str(&text).map_err(UnitError::failed(
        unit,
        format!("reading {}", path.display()),
    ))?;
    Ok(meta.key)
}

/// Runs a `views` unit: `views` augmented views of every training image through the frozen body, into
/// `dir/views` (resumable chunk by chunk: the kind resumes).
pub fn run_views(
    s: &ViewsSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let started = Instant::now();
    let backbone_id = unit.dep("backbone")?.clone();
    let split_id = unit.dep("split")?.clone();
    let backbone = load_backbone(ctx, &backbone_id)?;
    let info = load_split(ctx, &split_id)?;
    let train = load_images(ctx, &split_id, Images::Train)?;
    let augmentation = decal_train::views::Augmentation::crop_flip(
        s.crop_padding,
        backbone.mean.clone(),
        backbone.std.clone(),
    );
    let key = decal_train::views::ViewsKey::new(
        s.views,
        s.storage,
        augmentation,
        s.seed,
        backbone.hash.clone(),
        &train,
        &info.train_indices,
    )
    .with_body_precision(s.body_precision.unwrap_or_default());
    let options = decal_train::views::BuildOptions {
        batch_size: s.batch_size,
        device: ctx.options.device,
        ..Default::default()
    };
    let mut body = decal_train::views::frozen_body(backbone.classifier.body.as_ref());
    let (cache, status) = decal_train::views::build_or_open(
        &dir.join(VIEWS_DIR),
        &key,
        &train,
        &info.train_indices,
        backbone.feature_dim() as usize,
        &options,
        &mut body,
        &mut *ctx.log,
    )
    .map_err(UnitError::failed(
        unit,
        "augmented views of the training images",
    ))?;
    let precision = key.body_precision();
    (ctx.log)(&format!(
        "features train views: {} × {} × {} {}, body {} ({status:?}, {:.1}s)",
        cache.num_views(),
        cache.len(),
        cache.feature_dim(),
        s.storage.name(),
        precision.name(),
        started.elapsed().as_secs_f64()
    ));
    Ok(UnitResult::done(json!({
        "views": cache.num_views(), "examples": cache.len(), "feature_dim": cache.feature_dim(),
        "storage": s.storage, "body_precision": precision, "key": key.digest(),
        "seconds": started.elapsed().as_secs_f64(),
    })))
}

/// The augmented training views of the `views` (or `views-file`) unit `views` (a view cache verified when
/// opened, or given views read into memory; cached per process).
pub fn load_views(ctx: &mut UnitContext<'_>, views: &UnitId) -> Result<Rc<TrainViews>, UnitError> {
    let unit = ctx
        .plan
        .find(views)
        .ok_or_else(|| UnitError::Input {
            unit: "views".into(),
            problem: format!("unit {views} is not in the plan"),
        })?
        .clone();
    let dir: PathBuf = ctx.store.unit_dir(views);
    if let UnitSpec::ViewsFile(_) = unit.spec {
        let train = load_features(ctx, unit.dep("train")?)?;
        return ctx.resources.cached(&format!("views:{views}"), || {
            super::files::open_stored(&dir, Some(&train.labels)).map_err(|problem| {
                UnitError::Input {
                    unit: unit.name.clone(),
                    problem,
                }
            })
        });
    }
    let dir = dir.join(VIEWS_DIR);
    ctx.resources.cached(&format!("views:{views}"), || {
        ViewCache::open(&dir)
            .map(|c| TrainViews::Cache(Box::new(c)))
            .map_err(UnitError::failed(
                &unit,
                format!("opening the view cache {}", dir.display()),
            ))
    })
}
