//! Dataset readers, splits, transforms, OOD adaptation and corruption directories. No tensor library:
//! images are `u8` [`ImageSet`]s that the training crates upload and batch on their device
//! (`decal_train::stage1::DeviceImages`).
//!
//! Entry points:
//! * [`load`]`(dataset, data_dir, split)` reads any supported dataset from its official on-disk format
//!   (auto-detected where several exist, e.g. CIFAR-10 binary / python / ImageFolder).
//! * [`imagefolder::read`] for `<root>/<class>/<image>` trees.
//! * [`split::seed_split`] reproduces the seed's `random_split` bit for bit; [`split::SplitManifest`]
//!   records it per run.
//! * [`transforms`]: per-image normalisation and augmentation draws (used by the augmented view cache) and
//!   the seed's normalisation constants; [`ood`]: an OOD set in the in-distribution geometry;
//!   [`corrupted`]: CIFAR-C and generated corruption directories.
//!
//! Invariant: a reader never returns a silently shorter dataset. Truncated files, bad magic numbers,
//! labels outside the class range, unreadable images are errors that name the file and the record.
#![warn(missing_docs)]

pub mod cifar;
pub mod corrupted;
pub mod download;
pub mod error;
pub mod idx;
pub mod imagefolder;
pub mod inspect;
pub mod mat;
pub mod ood;
pub mod resize;
pub mod split;
pub mod svhn;
pub mod tinyimagenet;
pub mod transforms;
pub mod verify;

pub use error::{DataError, Result};

use std::path::Path;

/// A labelled image dataset held in memory as raw 8-bit pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// Human-readable name, e.g. `cifar10/train`.
    pub name: String,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Channels (1 or 3).
    pub channels: usize,
    /// `N × H × W × C` row-major (HWC per image), 0..=255.
    pub pixels: Vec<u8>,
    /// One label per image, each `< class_names.len()`.
    pub labels: Vec<u32>,
    /// Class names in label order.
    pub class_names: Vec<String>,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image (`H·W·C`).
    pub fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// The HWC pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Images per class, in label order.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.num_classes()];
        for &l in &self.labels {
            if let Some(x) = c.get_mut(l as usize) {
                *x += 1;
            }
        }
        c
    }

    /// True when this set was loaded as a held-out test split (its name ends in `/test`). Fitting code
    /// ([`split::TrainValid`], temperature scaling inputs) refuses such sets.
    pub fn is_test_split(&self) -> bool {
        self.name.ends_with("/test")
            || self.name.contains("/test/")
            || self.name.ends_with("/seed-test")
    }

    /// Checks the invariants every reader guarantees (pixel buffer length, labels in range).
    pub fn validate(&self) -> Result<()> {
        if self.pixels.len() != self.len() * self.image_len() {
            return Err(DataError::Invalid(format!(
                "{}: pixel buffer holds {} bytes, expected {} images × {}",
                self.name,
                self.pixels.len(),
                self.len(),
                self.image_len()
            )));
        }
        if let Some((i, l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= self.num_classes())
        {
            return Err(DataError::Invalid(format!(
                "{}: image {i} has label {l}, outside 0..{}",
                self.name,
                self.num_classes()
            )));
        }
        Ok(())
    }

    /// A new set holding the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize], name: impl Into<String>) -> Result<ImageSet> {
        let n = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len() {
                return Err(DataError::Invalid(format!(
                    "{}: index {i} out of range 0..{}",
                    self.name,
                    self.len()
                )));
            }
            pixels.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Ok(ImageSet {
            name: name.into(),
            pixels,
            labels,
            class_names: self.class_names.clone(),
            ..*self
        })
    }
}

/// The datasets decal reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// CIFAR-10 (binary, python or ImageFolder layout).
    Cifar10,
    /// CIFAR-100 (binary or python layout), fine labels.
    Cifar100,
    /// SVHN cropped digits, format 2 (`*_32x32.mat`).
    Svhn,
    /// Tiny ImageNet-200 (official layout, or the seed's val/test re-organisation).
    TinyImagenet,
    /// MNIST (IDX, raw or gzipped).
    Mnist,
    /// Fashion-MNIST (IDX, raw or gzipped).
    FashionMnist,
    /// Any `<root>/<split>/<class>/<image>` or `<root>/<class>/<image>` tree.
    Imagefolder,
}

impl DatasetName {
    /// All names, for help texts.
    pub const ALL: [DatasetName; 7] = [
        DatasetName::Cifar10,
        DatasetName::Cifar100,
        DatasetName::Svhn,
        DatasetName::TinyImagenet,
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Imagefolder,
    ];

    /// The canonical lowercase name (`cifar10`, `tiny-imagenet`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Cifar100 => "cifar100",
            DatasetName::Svhn => "svhn",
            DatasetName::TinyImagenet => "tiny-imagenet",
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Imagefolder => "imagefolder",
        }
    }

    /// Parses a name, accepting common spellings (`CIFAR10`, `cifar-10`, `tinyimagenet`, `fashionmnist`).
    pub fn parse(s: &str) -> Result<DatasetName> {
        let k: String = s
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        Ok(match k.as_str() {
            "cifar10" => DatasetName::Cifar10,
            "cifar100" => DatasetName::Cifar100,
            "svhn" => DatasetName::Svhn,
            "tinyimagenet" | "tinyimagenet200" => DatasetName::TinyImagenet,
            "mnist" => DatasetName::Mnist,
            "fashionmnist" | "fmnist" => DatasetName::FashionMnist,
            "imagefolder" => DatasetName::Imagefolder,
            _ => {
                let names: Vec<_> = DatasetName::ALL.iter().map(|d| d.as_str()).collect();
                return Err(DataError::Invalid(format!(
                    "unknown dataset '{s}'; expected one of {}",
                    names.join(", ")
                )));
            }
        })
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DatasetName {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        DatasetName::parse(s)
    }
}

/// Which official split to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitName {
    /// The training split (the seed further splits it into train/valid with [`split::seed_split`]).
    Train,
    /// The held-out test split. Sets loaded with it report [`ImageSet::is_test_split`].
    Test,
    /// Tiny ImageNet's full official validation set (10,000 images, 50 per class).
    Val,
    /// SVHN's `extra` split.
    Extra,
    /// Tiny ImageNet as the seed re-organises it: the first `ceil(n/2)` val images of each class
    /// (seed spec §4.7; unused by the seed).
    SeedVal,
    /// Tiny ImageNet as the seed re-organises it: the remaining val images of each class, used by the seed
    /// as its labelled test set (5,000 images). Reports [`ImageSet::is_test_split`].
    SeedTest,
}

impl SplitName {
    /// The canonical lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Test => "test",
            SplitName::Val => "val",
            SplitName::Extra => "extra",
            SplitName::SeedVal => "seed-val",
            SplitName::SeedTest => "seed-test",
        }
    }

    /// Parses `train | test | val | extra | seed-val | seed-test`.
    pub fn parse(s: &str) -> Result<SplitName> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "train" => SplitName::Train,
            "test" => SplitName::Test,
            "val" | "valid" | "validation" => SplitName::Val,
            "extra" => SplitName::Extra,
            "seed-val" => SplitName::SeedVal,
            "seed-test" => SplitName::SeedTest,
            _ => {
                return Err(DataError::Invalid(format!(
                    "unknown split '{s}'; expected train, test, val, extra, seed-val or seed-test"
                )))
            }
        })
    }
}

impl std::fmt::Display for SplitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SplitName {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        SplitName::parse(s)
    }
}

/// Reads `split` of `dataset` from `data_dir` in whichever official layout is found there. `data_dir` may
/// be the dataset's own folder (e.g. `cifar-10-batches-bin`) or a folder above it (e.g. `data/`).
///
/// The returned set is named `<dataset>/<split>`, validated, and never silently shorter than the files.
pub fn load(dataset: DatasetName, data_dir: &Path, split: SplitName) -> Result<ImageSet> {
    let set = match dataset {
        DatasetName::Cifar10 => cifar::load_cifar10(data_dir, split)?,
        DatasetName::Cifar100 => cifar::load_cifar100(data_dir, split)?,
        DatasetName::Svhn => svhn::load_svhn(data_dir, split)?,
        DatasetName::TinyImagenet => tinyimagenet::load_tinyimagenet(data_dir, split)?,
        DatasetName::Mnist | DatasetName::FashionMnist => {
            idx::load_mnist_family(dataset, data_dir, split)?
        }
        DatasetName::Imagefolder => load_imagefolder(data_dir, split)?,
    };
    set.validate()?;
    Ok(set)
}

fn load_imagefolder(dir: &Path, split: SplitName) -> Result<ImageSet> {
    let sub = dir.join(split.as_str());
    let root = if sub.is_dir() {
        sub
    } else if dir.join("train").is_dir() || dir.join("test").is_dir() {
        return Err(DataError::format(
            dir,
            format!("has split folders but no '{split}' folder"),
        ));
    } else {
        dir.to_path_buf()
    };
    // With split folders, every split must hold the same classes: labels are folder positions, so a class
    // folder missing from one split would silently shift every later label of that split.
    let mut class_names = None;
    if root != dir {
        let mut union: Vec<String> = Vec::new();
        for s in ["train", "val", "test"] {
            union.extend(imagefolder::class_folders(&dir.join(s))?);
        }
        union.sort();
        union.dedup();
        class_names = Some(union);
    }
    let opts = imagefolder::ImageFolderOptions {
        name: Some(format!("imagefolder/{}", split.as_str())),
        class_names,
        ..Default::default()
    };
    imagefolder::read_with(&root, &opts)
}
