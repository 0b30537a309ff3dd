//! The `split` unit: the seed split of the training images, the kept test images, and where the fits are
//! made ([`crate::validation`]), written as [`SplitInfo`] (`split.json`).

use std::path::Path;
use std::rc::Rc;

use decal_data::{ImageSet, SplitName};
use decal_train::stage1::{DataSettings, Stage1Data, Stage1Plan};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::inputs::{read_split, split_spec, subsample_evenly};
use super::{BackboneSpec, SplitSpec};
use crate::plan::{Unit, UnitId};
use crate::units::{UnitContext, UnitError, UnitResult, UnitSpec};
use crate::validation::{self, TrainingImages, ValidationSource};
use decal_data::split::evenly_spaced;

/// What a backbone trained by the run knows about its training images.
pub(super) const TRAINED_HERE: &str =
    "the backbone is trained by this run on the training part of its split";

/// The split unit's output file.
pub const SPLIT_FILE: &str = "split.json";

/// What the `split` unit decided (`split.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// Dataset name.
    pub dataset: String,
    /// Number of classes.
    pub num_classes: usize,
    /// Whether the dataset has the seed's training augmentation (crop + flip: CIFAR).
    pub augment: bool,
    /// Images in the whole training split.
    pub train_len: usize,
    /// The training part (indices into the training split, in the split's order).
    pub train_indices: Vec<usize>,
    /// The validation part.
    pub val_indices: Vec<usize>,
    /// Index in the full test split of every kept test image, in test-set order.
    pub test_original: Vec<usize>,
    /// Index in the full test split of every held-out calibration image (empty: the fits use the
    /// validation part).
    pub calibration_original: Vec<usize>,
    /// Images in the full test split (the corruption files follow its order).
    pub full_test_len: usize,
    /// `[height, width, channels]` of the images.
    pub image_shape: [usize; 3],
    /// True when the fits use the held-out calibration images.
    pub test_holdout: bool,
    /// The resolved validation source as results.json shows it (`{"source": "train-split", …}`).
    pub validation_source: Value,
    /// One line: which images the fits use and why (log, results.json, report notes).
    pub validation_note: String,
    /// The validation part is used although the backbone may have trained on it (`train-split-unsafe`).
    pub contaminated: bool,
    /// What is known about the backbone's training images (results.json `backbone_training_images`).
    pub known: String,
    /// SHA-256 of the seed split (train then validation indices).
    pub split_sha256: String,
    /// `decal_train::features::images_hash` of the whole training split.
    pub train_images_hash: String,
    /// … of the kept test images.
    pub test_images_hash: String,
    /// … of the held-out calibration images.
    pub calibration_images_hash: String,
}

fn all_hash(set: &decal_data::ImageSet) -> String {
    let all: Vec<usize> = (0..set.len()).collect();
    decal_train::features::images_hash(set, &all)
}

/// The validation note of the old run (same words).
fn note(
    source: &ValidationSource,
    s: &SplitSpec,
    known: &TrainingImages,
    (cal, rest, val): (usize, usize, usize),
) -> String {
    match source {
        ValidationSource::TestHoldout { fraction, seed } => format!(
            "validation source: {cal} held-out test images ({:.0} % of the test split, stratified per class, seed {seed}; \
             [data] validation = \"{}\") fit temperature scaling, select head epochs and fit head temperatures; \
             the test set is the other {rest} images. Reason: {}",
            100.0 * fraction,
            s.validation.as_str(),
            known.describe()
        ),
        ValidationSource::TrainSplit { contaminated } => format!(
            "validation source: the training split's validation part ({val} images){}: {}",
            if *contaminated {
                " — CONTAMINATED, accepted by [data] validation = \"train-split-unsafe\""
            } else {
                ""
            },
            known.describe()
        ),
    }
}

fn read(s: &SplitSpec, unit: &Unit, split: SplitName) -> Result<ImageSet, UnitError> {
    read_split(&s.data, split).map_err(UnitError::failed(
        unit,
        format!(
            "loading the {split} split of {} from {}",
            s.data.dataset,
            s.data.dir.display()
        ),
    ))
}

/// The training split, checked against the planned classes, split as stage 1 splits it; and its hash.
fn train_split(s: &SplitSpec, unit: &Unit) -> Result<(Stage1Data, String), UnitError> {
    let train_set = read(s, unit, SplitName::Train)?;
    if train_set.num_classes() != s.num_classes {
        return Err(UnitError::Input {
            unit: unit.name.clone(),
            problem: format!(
                "{} has {} classes; the plan expected {} (plan again)",
                s.data.dir.display(),
                train_set.num_classes(),
                s.num_classes
            ),
        });
    }
    let hash = all_hash(&train_set);
    let split_plan = Stage1Plan::for_split(&DataSettings {
        dataset: s.data.dataset.clone(),
        data_dir: s.data.dir.clone(),
        train_fraction: Some(s.train_fraction),
        split_seed: s.split_seed,
        limit_train: s.limit_train,
        limit_val: s.limit_val,
    });
    let data = Stage1Data::from_set(train_set, &split_plan)
        .map_err(UnitError::failed(unit, "train/validation split"))?;
    Ok((data, hash))
}

/// The kept test images split into the test set and the held-out calibration part.
struct Carved {
    test_original: Vec<usize>,
    calibration_original: Vec<usize>,
    test_hash: String,
    calibration_hash: String,
}

/// Carves the held-out calibration part (if `source` says so) from `test_set`, the test images kept of
/// the full split (`kept`: their indices in it).
fn carve(
    unit: &Unit,
    test_set: &ImageSet,
    kept: &[usize],
    source: &ValidationSource,
) -> Result<Carved, UnitError> {
    // Positions in the kept test images: the test set and the held-out calibration part.
    let (rest, cal) = match source {
        ValidationSource::TestHoldout { fraction, seed } => {
            validation::carve_holdout(&test_set.labels, *fraction, *seed)
        }
        ValidationSource::TrainSplit { .. } => ((0..test_set.len()).collect(), Vec::new()),
    };
    let name = test_set.name.clone();
    let part = |idx: &[usize], name: String| {
        test_set
            .subset(idx, name)
            .map_err(UnitError::failed(unit, "held-out calibration split"))
    };
    let kept_test = part(&rest, name.clone())?;
    let calibration = part(&cal, format!("{name} (held-out calibration)"))?;
    Ok(Carved {
        test_original: rest.iter().map(|&i| kept[i]).collect(),
        calibration_original: cal.iter().map(|&i| kept[i]).collect(),
        test_hash: all_hash(&kept_test),
        calibration_hash: all_hash(&calibration),
    })
}

/// What is known about the backbone's training images relative to the validation part.
fn known(backbone: &UnitSpec, split_data: &Stage1Data) -> TrainingImages {
    match backbone {
        UnitSpec::Backbone(BackboneSpec::Import { checkpoint, .. }) => {
            validation::checkpoint_training_images(
                checkpoint,
                split_data.set.len(),
                &split_data.data_hash(),
                &split_data.val_indices,
            )
        }
        _ => TrainingImages::Disjoint(TRAINED_HERE.into()),
    }
}

/// Runs a `split` unit: loads the training and test splits, splits, resolves the validation source and
/// writes [`SplitInfo`].
pub fn run_split(
    s: &SplitSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let backbone = ctx.input(unit, "backbone")?.spec.clone();
    (ctx.log)(&format!(
        "loading {} from {}",
        s.data.dataset,
        s.data.dir.display()
    ));
    let (split_data, train_images_hash) = train_split(s, unit)?;
    let test_set = read(s, unit, SplitName::Test)?;
    let full_test_len = test_set.len();
    let kept = evenly_spaced(full_test_len, s.limit_test);
    let test_set =
        subsample_evenly(test_set, s.limit_test).map_err(UnitError::failed(unit, "limit_test"))?;
    let known = known(&backbone, &split_data);
    let source = validation::resolve(s.validation, &known, s.holdout_fraction, s.split_seed)
        .map_err(|problem| UnitError::Input {
            unit: unit.name.clone(),
            problem,
        })?;
    let carved = carve(unit, &test_set, &kept, &source)?;
    let validation_note = note(
        &source,
        s,
        &known,
        (
            carved.calibration_original.len(),
            carved.test_original.len(),
            split_data.val_indices.len(),
        ),
    );
    (ctx.log)(&validation_note);
    let contaminated = matches!(source, ValidationSource::TrainSplit { contaminated: true });
    let info = SplitInfo {
        dataset: s.data.dataset.clone(),
        num_classes: s.num_classes,
        augment: super::dataset_augments(&s.data.dataset),
        train_len: split_data.set.len(),
        train_indices: split_data.train_indices.clone(),
        val_indices: split_data.val_indices.clone(),
        test_original: carved.test_original,
        calibration_original: carved.calibration_original,
        full_test_len,
        image_shape: [test_set.height, test_set.width, test_set.channels],
        test_holdout: matches!(source, ValidationSource::TestHoldout { .. }),
        validation_source: serde_json::to_value(&source).unwrap_or(Value::Null),
        validation_note: validation_note.clone(),
        contaminated,
        known: known.describe(),
        split_sha256: split_data.split_hash(),
        train_images_hash,
        test_images_hash: carved.test_hash,
        calibration_images_hash: carved.calibration_hash,
    };
    decal_core::write_json_atomic(&dir.join(SPLIT_FILE), &info)
        .map_err(UnitError::failed(unit, SPLIT_FILE))?;
    let mut result = UnitResult::done(json!({
        "train": info.train_indices.len(), "val": info.val_indices.len(), "test": info.test_original.len(),
        "calibration": info.calibration_original.len(), "validation": info.validation_source,
    }));
    if contaminated {
        result.warnings.push(validation_note);
    }
    Ok(result)
}

/// The decision of the split unit `split` (cached per process).
pub fn load_split(ctx: &mut UnitContext<'_>, split: &UnitId) -> Result<Rc<SplitInfo>, UnitError> {
    let unit = split_spec(ctx, split)?.0.clone();
    let path = ctx.store.unit_dir(split).join(SPLIT_FILE);
    ctx.resources.cached(&format!("split:{split}"), || {
        let text = std::fs::read_to_string(&path).map_err(UnitError::failed(
            &unit,
            format!("reading {}", path.display()),
        ))?;
        serde_json::from_str(&text).map_err(UnitError::failed(
            &unit,
            format!("reading {}", path.display()),
        ))
    })
}
