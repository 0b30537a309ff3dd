//! Reading the data of the data-side units: dataset splits (MNIST-family subsets included), the
//! directory fingerprint (`fingerprint.rs`) taken at plan time, the number of classes known before loading, the evenly spaced
//! subsets, the OOD sets adapted to the in-distribution geometry, and the cached image loaders other units
//! use ([`load_images`], [`device_images`]).

use std::path::Path;
use std::rc::Rc;

use decal_data::{DatasetName, ImageSet, SplitName};
use decal_train::stage1::DeviceImages;

use super::{load_backbone, load_split, DataRef, OodSource, SplitSpec};
use crate::plan::{Unit, UnitId};
use crate::units::{UnitContext, UnitError, UnitSpec};

/// A [`DataRef`] with the directory's fingerprint (the error names the directory).
pub(super) fn data_ref(dataset: &str, dir: &Path, allow_subset: bool) -> Result<DataRef, String> {
    Ok(DataRef {
        dataset: dataset.to_string(),
        dir: dir.to_path_buf(),
        allow_subset,
        fingerprint: super::fingerprint::fingerprint(dir)?,
    })
}

/// The number of classes of a dataset, known without loading it (ImageFolder: its class folders, as the
/// reader finds them).
pub(super) fn planned_num_classes(dataset: &str, dir: &Path) -> Result<usize, String> {
    let name = DatasetName::parse(dataset).map_err(|e| e.to_string())?;
    Ok(match name {
        DatasetName::Cifar10 | DatasetName::Svhn | DatasetName::Mnist => 10,
        DatasetName::FashionMnist => 10,
        DatasetName::Cifar100 => 100,
        DatasetName::TinyImagenet => 200,
        DatasetName::Imagefolder => {
            let folders =
                |d: &Path| decal_data::imagefolder::class_folders(d).map_err(|e| e.to_string());
            let n = if dir.join("train").is_dir() || dir.join("test").is_dir() {
                let mut union: Vec<String> = Vec::new();
                for s in ["train", "val", "test"] {
                    union.extend(folders(&dir.join(s))?);
                }
                union.sort();
                union.dedup();
                union.len()
            } else {
                folders(dir)?.len()
            };
            if n == 0 {
                return Err(format!("{}: no class folders", dir.display()));
            }
            n
        }
    })
}

/// Loads a split; with `allow_subset`, MNIST-family IDX files of any consistent size are accepted.
pub(super) fn read_split(data: &DataRef, split: SplitName) -> Result<ImageSet, String> {
    let (dataset, dir) = (&data.dataset, &data.dir);
    let name = DatasetName::parse(dataset).map_err(|e| e.to_string())?;
    if data.allow_subset && matches!(name, DatasetName::Mnist | DatasetName::FashionMnist) {
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

/// Keeps `limit` images spread evenly over `set` (the one meaning of a limit,
/// `decal_data::split::evenly_spaced`).
pub(super) fn subsample_evenly(set: ImageSet, limit: usize) -> Result<ImageSet, String> {
    let n = set.len();
    if limit == 0 || limit >= n {
        return Ok(set);
    }
    let name = set.name.clone();
    set.subset(&decal_data::split::evenly_spaced(n, limit), name)
        .map_err(|e| e.to_string())
}

/// An `[[ood]]` set as the features see it: read, evenly subsampled, then adapted to the in-distribution
/// geometry `(height, width, channels)` by the one OOD adaptation, `decal_data::ood::prepare_with`.
pub(super) fn read_ood(ood: &OodSource, shape: [usize; 3]) -> Result<ImageSet, String> {
    let split = SplitName::parse(&ood.split).map_err(|e| e.to_string())?;
    let set = read_split(&ood.data, split).map_err(|e| {
        format!(
            "OOD set {}: cannot load {} from {}: {e}",
            ood.name,
            ood.data.dataset,
            ood.data.dir.display()
        )
    })?;
    let set = subsample_evenly(set, ood.limit)?;
    decal_data::ood::prepare_with(
        &set,
        shape[0],
        shape[1],
        shape[2],
        decal_data::resize::Filter::BilinearAntialias,
    )
    .map_err(|e| format!("OOD set {}: {e}", ood.name))
}

/// Which images of a split unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Images {
    /// The whole training split (index it with `SplitInfo::train_indices` / `val_indices`).
    Train,
    /// The kept test images (after `limit_test` and the held-out carve-out), in `SplitInfo::test_original`
    /// order.
    Test,
    /// The held-out calibration images (empty when the fits use the validation part), in
    /// `SplitInfo::calibration_original` order.
    Calibration,
}

impl Images {
    fn key(self) -> &'static str {
        match self {
            Images::Train => "train",
            Images::Test => "test",
            Images::Calibration => "calibration",
        }
    }
}

/// The spec of a split unit.
pub(super) fn split_spec<'p>(
    ctx: &'p UnitContext<'_>,
    split: &UnitId,
) -> Result<(&'p Unit, &'p SplitSpec), UnitError> {
    let unit = ctx.plan.find(split).ok_or_else(|| UnitError::Input {
        unit: "split".into(),
        problem: format!("unit {split} is not in the plan"),
    })?;
    match &unit.spec {
        UnitSpec::Split(s) => Ok((unit, s)),
        other => Err(UnitError::Input {
            unit: unit.name.clone(),
            problem: format!("expected a split unit, found a {} unit", other.kind()),
        }),
    }
}

/// The images `which` of the split unit `split` (cached per process). The images are checked against the
/// hashes the split unit recorded, so a data directory changed since the split ran is an error.
pub fn load_images(
    ctx: &mut UnitContext<'_>,
    split: &UnitId,
    which: Images,
) -> Result<Rc<ImageSet>, UnitError> {
    let info = load_split(ctx, split)?;
    let (unit, spec) = {
        let (u, s) = split_spec(ctx, split)?;
        (u.clone(), s.clone())
    };
    let key = format!("images:{split}:{}", which.key());
    ctx.resources.cached(&key, || {
        let read = |s: SplitName| {
            read_split(&spec.data, s).map_err(UnitError::failed(
                &unit,
                format!(
                    "loading the {s} split of {} from {}",
                    spec.data.dataset,
                    spec.data.dir.display()
                ),
            ))
        };
        let (set, want) = match which {
            Images::Train => (read(SplitName::Train)?, &info.train_images_hash),
            Images::Test | Images::Calibration => {
                let full = read(SplitName::Test)?;
                let name = full.name.clone();
                let (indices, name, want) = if which == Images::Test {
                    (&info.test_original, name, &info.test_images_hash)
                } else {
                    (
                        &info.calibration_original,
                        format!("{name} (held-out calibration)"),
                        &info.calibration_images_hash,
                    )
                };
                let set = full.subset(indices, name).map_err(UnitError::failed(
                    &unit,
                    "selecting the split's test images",
                ))?;
                (set, want)
            }
        };
        let all: Vec<usize> = (0..set.len()).collect();
        let got = decal_train::features::images_hash(&set, &all);
        if &got != want {
            return Err(UnitError::Input {
                unit: unit.name.clone(),
                problem: format!(
                    "the {} images in {} changed since the split unit ran (SHA-256 {}, recorded {}); plan again",
                    which.key(),
                    spec.data.dir.display(),
                    &got[..12],
                    &want[..want.len().min(12)]
                ),
            });
        }
        Ok(set)
    })
}

/// The images `which` of `split` on the run's device, normalised with the backbone unit's constants
/// (cached per process): the input of `decal_train::features::extract` and of exact-mode heads.
pub fn device_images(
    ctx: &mut UnitContext<'_>,
    split: &UnitId,
    backbone: &UnitId,
    which: Images,
) -> Result<Rc<DeviceImages>, UnitError> {
    let key = format!("device-images:{split}:{backbone}:{}", which.key());
    let set = load_images(ctx, split, which)?;
    let bb = load_backbone(ctx, backbone)?;
    let device = ctx.options.device;
    ctx.resources.cached(&key, || {
        Ok(DeviceImages::new(&set, &bb.mean, &bb.std, device))
    })
}
