//! Where `decal run` fits what it fits — temperature scaling, the selection of head epochs and the head
//! temperatures — so that those images were never in the backbone's training data.
//!
//! The seed fits all three on the validation part of its 80/20 split of the training set (seed-system.md
//! §4.3). That part is free of the backbone's training images only when the backbone was trained on the
//! other part of *the same permutation of the same copy of the data*: the seed's permutation selects its
//! validation images only on a copy in the official order. On a copy in another order (the class-ordered
//! ImageFolder JPEG copy of CIFAR-10) the same permutation selects different images, so for the imported
//! seed CNN about 80 % of decal's "validation" images were in the backbone's training data.
//!
//! [`TrainingImages`] says what decal knows about a backbone's training images:
//! - a backbone trained by this run (`[backbone.train]`) trained on the training part of this run's own
//!   split: known, disjoint from the validation part;
//! - a stage-1 checkpoint directory (`decal train`'s `best/`) whose run directory records its split
//!   (`split.json`), its plan (`config.toml`: `limit_train`) and the SHA-256 of its training set
//!   (`provenance.json`: `data_sha256`): known when that hash equals the hash of the data at hand, and then
//!   the validation part is checked image by image against the recorded training indices;
//! - anything else — an imported checkpoint (`decal import` records no split), a checkpoint without its
//!   run records, a run made on another copy or order of the data: unknown.
//!
//! [`ValidationChoice`] (`[data] validation`) decides what happens:
//! - `auto` (default): the training split's validation part when the backbone's training images are known
//!   to exclude it, otherwise a **held-out calibration split carved from the test split**
//!   ([`carve_holdout`]: stratified per class, seeded by `[data] split_seed`, `[data] holdout_fraction`
//!   of the test images, default 0.2); the rest stays the test set;
//! - `train-split`: the validation part, refused (an error) unless it is known to be clean;
//! - `test-holdout`: always the carve-out;
//! - `train-split-unsafe`: the validation part even when the backbone may have trained on it (an explicit
//!   override, reported as such in the output, `results.json` and the report).
//!
//! Heads always train on the training part of the split.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// `[data] validation`: which images calibration steps are fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ValidationChoice {
    /// The training split's validation part when it is known to be free of the backbone's training
    /// images, otherwise a held-out part of the test split.
    #[default]
    Auto,
    /// The training split's validation part; an error unless it is known to be clean.
    TrainSplit,
    /// Always a held-out part of the test split.
    TestHoldout,
    /// The training split's validation part even when the backbone may have trained on it.
    TrainSplitUnsafe,
}

impl ValidationChoice {
    /// The name in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationChoice::Auto => "auto",
            ValidationChoice::TrainSplit => "train-split",
            ValidationChoice::TestHoldout => "test-holdout",
            ValidationChoice::TrainSplitUnsafe => "train-split-unsafe",
        }
    }
}

/// What decal knows about the images a backbone was trained on, relative to this run's validation part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainingImages {
    /// The validation part is known to be disjoint from the backbone's training images (why).
    Disjoint(String),
    /// The validation part is known to overlap them: `overlap` of `val` images were training images.
    Overlap {
        /// Validation images that were training images.
        overlap: usize,
        /// Validation images.
        val: usize,
        /// How this is known.
        why: String,
    },
    /// Nothing is known (why).
    Unknown(String),
}

impl TrainingImages {
    /// One line for the log, `results.json` and the report.
    pub fn describe(&self) -> String {
        match self {
            TrainingImages::Disjoint(why) => why.clone(),
            TrainingImages::Overlap { overlap, val, why } => format!(
                "{overlap} of the {val} validation images ({:.1} %) were in the backbone's training data ({why})",
                100.0 * *overlap as f64 / (*val).max(1) as f64
            ),
            TrainingImages::Unknown(why) => {
                format!("the backbone's training images are unknown ({why})")
            }
        }
    }
}

/// The resolved validation source.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum ValidationSource {
    /// The training split's validation part.
    TrainSplit {
        /// Whether the backbone may have trained on these images (`train-split-unsafe`).
        contaminated: bool,
    },
    /// A stratified, seeded part of the test split.
    TestHoldout {
        /// Fraction of the test images held out.
        fraction: f64,
        /// Seed of the per-class permutations.
        seed: u64,
    },
}

/// Chooses the validation source, or refuses a contaminated choice (the error names the key to change).
pub fn resolve(
    choice: ValidationChoice,
    known: &TrainingImages,
    fraction: f64,
    seed: u64,
) -> Result<ValidationSource, String> {
    let clean = matches!(known, TrainingImages::Disjoint(_));
    let holdout = ValidationSource::TestHoldout { fraction, seed };
    match choice {
        ValidationChoice::Auto if clean => Ok(ValidationSource::TrainSplit {
            contaminated: false,
        }),
        ValidationChoice::Auto | ValidationChoice::TestHoldout => Ok(holdout),
        ValidationChoice::TrainSplit if clean => Ok(ValidationSource::TrainSplit {
            contaminated: false,
        }),
        ValidationChoice::TrainSplit => Err(format!(
            "[data] validation = \"train-split\" refused: {}; temperature scaling, head-epoch selection and head \
             temperatures would be fitted on images the backbone may have trained on. Use validation = \"auto\" or \
             \"test-holdout\" (a held-out part of the test split), or \"train-split-unsafe\" to accept the contamination",
            known.describe()
        )),
        ValidationChoice::TrainSplitUnsafe => Ok(ValidationSource::TrainSplit {
            contaminated: !clean,
        }),
    }
}

/// Splits `labels` (the test split) into `(test, calibration)` index lists: per class
/// `round(count · fraction)` images (at least one for a class of two or more) go to calibration, chosen by a
/// seeded permutation (`decal_data::split::stratified_split` with generator seed `seed + class`); both
/// lists sorted ascending, disjoint, covering every index.
pub fn carve_holdout(labels: &[u32], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    decal_data::split::stratified_split(labels, 1.0 - fraction, seed)
}

/// What the run directory of a stage-1 checkpoint records, or why it cannot be used.
fn stage1_records(dir: &Path) -> Result<(Vec<usize>, usize, String), String> {
    let run = dir
        .parent()
        .ok_or_else(|| format!("{} has no parent run directory", dir.display()))?;
    let split_path = run.join("split.json");
    let manifest = decal_data::split::SplitManifest::load(&split_path)
        .map_err(|e| format!("no usable split record: {e}"))?;
    let config_path = run.join("config.toml");
    let plan = decal_train::stage1::Stage1Plan::read(&config_path)
        .map_err(|e| format!("no usable stage-1 plan: {e}"))?;
    let prov_path = run.join("provenance.json");
    let prov: serde_json::Value = std::fs::read_to_string(&prov_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| format!("{}: missing or not JSON", prov_path.display()))?;
    let data = prov
        .get("data_sha256")
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("{}: no data_sha256", prov_path.display()))?
        .to_string();
    // The images `decal train` kept (decal_data::split::limit, as Stage1Data::from_set).
    let train = decal_data::split::limit(&manifest.train_indices, plan.limit_train);
    Ok((train, manifest.n, data))
}

/// What is known about a checkpoint backbone's training images relative to `val_indices` of a training set
/// of `n` images whose `decal_train::stage1::Stage1Data::data_hash` is `data_hash`.
pub fn checkpoint_training_images(
    dir: &Path,
    n: usize,
    data_hash: &str,
    val_indices: &[usize],
) -> TrainingImages {
    let imported = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("stage").and_then(|s| s.as_str()).map(str::to_string))
        .is_some_and(|s| s == "imported");
    if imported {
        return TrainingImages::Unknown(format!(
            "{} is an imported checkpoint; decal import records no split, and the seed's split selects its \
             validation images only on a copy of the data in the official order",
            dir.display()
        ));
    }
    match stage1_records(dir) {
        Err(why) => TrainingImages::Unknown(format!("{}: {why}", dir.display())),
        Ok((_, rn, rhash)) if rn != n || rhash != data_hash => TrainingImages::Unknown(format!(
            "{}'s run was trained on other data (its recorded training set has {rn} images, SHA-256 {}; the \
             data here has {n}, {})",
            dir.display(),
            &rhash[..rhash.len().min(12)],
            &data_hash[..data_hash.len().min(12)]
        )),
        Ok((train, _, _)) => {
            let mut in_train = vec![false; n];
            for &i in &train {
                if let Some(s) = in_train.get_mut(i) {
                    *s = true;
                }
            }
            let overlap = val_indices
                .iter()
                .filter(|&&i| in_train.get(i).copied().unwrap_or(false))
                .count();
            let why = format!(
                "checked against the split recorded with {} (same data, SHA-256 {})",
                dir.display(),
                &data_hash[..data_hash.len().min(12)]
            );
            if overlap == 0 {
                TrainingImages::Disjoint(format!(
                    "the validation images are disjoint from the backbone's training images ({why})"
                ))
            } else {
                TrainingImages::Overlap {
                    overlap,
                    val: val_indices.len(),
                    why,
                }
            }
        }
    }
}
