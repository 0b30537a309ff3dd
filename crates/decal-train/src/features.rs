//! Feature cache: the frozen backbone's features `[N, F]` per split, computed once and stored on disk.
//!
//! The body runs in **eval mode under `no_grad`** (`features(x, false)`: BatchNorm on its running
//! statistics, dropout off), so the cached features are exactly what a frozen body produces (STYLE R4).
//! The seed instead left the body in train mode during stage 2 (seed-system.md §8.1, BUG-7); that
//! behaviour exists only as [`BodyMode::SeedBnDrift`], used by the exact (per-epoch) mode of stage 2.
//!
//! On disk, per split `<name>`: `<name>.features.npy` (f32 `[N, F]`), `<name>.labels.npy` (i64 `[N]`) and
//! `<name>.json` ([`FeatureMeta`]: the backbone checkpoint hash, the hash of the exact images and labels
//! that went in, the transform, the shape and the SHA-256 of both arrays). A cache whose key differs from
//! the requested one (another backbone, another data version, another transform) or whose arrays no longer
//! match their recorded hashes is rebuilt, and the reason is returned to the caller.

use std::path::{Path, PathBuf};

use decal_core::{sha256_bytes, sha256_file, write_json_atomic, CoreError};
use decal_data::ImageSet;
use decal_io::npy::{self, NpyArray};
use decal_models::Backbone;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use crate::stage1::{DeviceImages, SplitMix64};

/// Errors of feature extraction and of the cache; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// Reading or writing an array failed.
    #[error("feature cache {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: decal_io::IoError,
    },
    /// A filesystem helper failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The sidecar JSON cannot be parsed.
    #[error("feature cache {path}: invalid sidecar JSON: {source}")]
    Sidecar {
        /// The sidecar.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The arrays on disk disagree with each other or with the sidecar.
    #[error("feature cache {path}: {problem}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// libtorch failed while extracting (e.g. the body returned a non-float tensor).
    #[error("feature extraction: libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// How the frozen body is run while extracting features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BodyMode {
    /// Eval mode: BatchNorm uses running statistics, dropout off (the default; fixes BUG-7).
    #[default]
    Frozen,
    /// The seed's behaviour: body in train mode without gradients, so BatchNorm normalises with batch
    /// statistics and updates its running statistics, and dropout is active (seed-system.md §8.1, BUG-7).
    SeedBnDrift,
}

/// Features `[N, F]` and labels `[N]` of one split, in memory (row-major f32).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    /// `N × F` values, row-major.
    pub features: Vec<f32>,
    /// One label per row.
    pub labels: Vec<i64>,
    /// F.
    pub feature_dim: usize,
}

impl FeatureSet {
    /// N, the number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `(features [N, F] f32, labels [N] i64)` on `device`.
    pub fn to_tensors(&self, device: Device) -> (Tensor, Tensor) {
        let features = Tensor::from_slice(&self.features)
            .reshape([self.len() as i64, self.feature_dim as i64])
            .to_device(device);
        let labels = Tensor::from_slice(&self.labels).to_device(device);
        (features, labels)
    }

    /// The rows `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> FeatureSet {
        let f = self.feature_dim;
        let mut features = Vec::with_capacity(indices.len() * f);
        for &i in indices {
            features.extend_from_slice(&self.features[i * f..(i + 1) * f]);
        }
        FeatureSet {
            features,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            feature_dim: f,
        }
    }
}

/// What a cached split was computed from. Two caches are interchangeable iff their keys are equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// SHA-256 of the backbone checkpoint's weights file.
    pub backbone_hash: String,
    /// SHA-256 over the exact images (pixels, shape, order) and labels fed to the body; see [`images_hash`].
    pub data_hash: String,
    /// The transform applied before the body, e.g. `normalize(cifar10)` (no augmentation in the cache).
    pub transform: String,
    /// How the body was run.
    pub body_mode: BodyMode,
}

/// The sidecar `<name>.json` of a cached split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureMeta {
    /// The split's name, e.g. `train`, `ood-tinyimagenet`.
    pub name: String,
    /// What the features were computed from.
    pub key: CacheKey,
    /// N.
    pub num_examples: usize,
    /// F.
    pub feature_dim: usize,
    /// SHA-256 of `<name>.features.npy`.
    pub features_sha256: String,
    /// SHA-256 of `<name>.labels.npy`.
    pub labels_sha256: String,
}

/// What [`load_or_extract`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// A valid cache was found and loaded.
    Hit,
    /// No cache existed; features were extracted.
    Built,
    /// A cache existed but was stale or damaged (the reason); features were re-extracted.
    Rebuilt(String),
}

/// SHA-256 of the images `indices` of `set` (shape, order, pixels, labels): the "data version" of a
/// cached split. Changing one pixel, label, or the order of the indices changes the hash.
pub fn images_hash(set: &ImageSet, indices: &[usize]) -> String {
    let mut hasher = Sha256::new();
    let image_len = set.height * set.width * set.channels;
    hasher.update(
        format!(
            "{}x{}x{}:{}\n",
            set.height,
            set.width,
            set.channels,
            indices.len()
        )
        .as_bytes(),
    );
    for &i in indices {
        hasher.update(&set.pixels[i * image_len..(i + 1) * image_len]);
        hasher.update(set.labels[i].to_le_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One forward pass of the body for features: `[B, F]` float32 on the batch's device, without gradients,
/// in the mode's train/eval setting. [`extract`] runs it per batch; the augmented view cache runs it
/// through `crate::views::frozen_body`, so both compute the same features of the same batch.
pub fn forward(body: &dyn Backbone, x: &Tensor, mode: BodyMode) -> Tensor {
    let train = mode == BodyMode::SeedBnDrift;
    tch::no_grad(|| body.features(x, train).to_kind(Kind::Float))
}

/// **The** feature extractor of decal (one owner, issue #11): the features `[N, F]` of the images
/// `indices` of `images`, in that order, through `body`, `batch_size` images per forward pass, without
/// gradients. Every caller that turns images into features goes through this function (the experiment's
/// units, the drifted bodies, `decal eval`), so there is one definition of what "the features" are.
///
/// - `mode`: [`BodyMode::Frozen`] runs the body in eval mode (BatchNorm on its running statistics, which
///   stay unchanged; dropout off); [`BodyMode::SeedBnDrift`] runs it in train mode as the seed did
///   (BatchNorm normalises with batch statistics and **updates** its running statistics; dropout on).
/// - `augment`: with a generator, each batch gets the training augmentation of [`DeviceImages::batch`]
///   (random crop with zero padding [`crate::stage1::CROP_PADDING`], horizontal flip with probability ½),
///   drawn from `augment` in index order, batch by batch; `None` gives the plain normalised images.
///
/// Features are returned as float32 on the CPU, labels as the images' labels. Empty `indices` give an empty
/// set of width `body.feature_dim()`. The result is bit-identical to the computation `decal run` has always
/// used (tested in `tests/stage2_body_mode.rs` against a copy of it).
pub fn extract(
    body: &dyn Backbone,
    images: &DeviceImages,
    indices: &[usize],
    batch_size: usize,
    mode: BodyMode,
    mut augment: Option<&mut SplitMix64>,
) -> Result<FeatureSet, FeatureError> {
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let feature_dim = body.feature_dim() as usize;
    tch::no_grad(|| {
        for chunk in indices.chunks(batch_size.max(1)) {
            let (x, y) = images.batch(chunk, augment.as_deref_mut());
            let f = forward(body, &x, mode).to_device(Device::Cpu);
            features.extend(Vec::<f32>::try_from(f.flatten(0, -1))?);
            labels.extend(Vec::<i64>::try_from(y.to_device(Device::Cpu))?);
        }
        Ok::<(), tch::TchError>(())
    })?;
    Ok(FeatureSet {
        features,
        labels,
        feature_dim,
    })
}

fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.features.npy")),
        dir.join(format!("{name}.labels.npy")),
        dir.join(format!("{name}.json")),
    )
}

/// Writes a split into the cache directory (arrays first, sidecar last, each atomically: a sidecar
/// exists only for a complete cache).
pub fn save(
    dir: &Path,
    name: &str,
    set: &FeatureSet,
    key: &CacheKey,
) -> Result<FeatureMeta, FeatureError> {
    let (fpath, lpath, jpath) = paths(dir, name);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FeatureError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(|source| CoreError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let farr = NpyArray::from_f32(vec![set.len(), set.feature_dim], set.features.clone());
    npy::write(&fpath, &farr).map_err(io(&fpath))?;
    npy::write(
        &lpath,
        &NpyArray::from_i64(vec![set.len()], set.labels.clone()),
    )
    .map_err(io(&lpath))?;
    let meta = FeatureMeta {
        name: name.to_string(),
        key: key.clone(),
        num_examples: set.len(),
        feature_dim: set.feature_dim,
        features_sha256: sha256_file(&fpath)?,
        labels_sha256: sha256_file(&lpath)?,
    };
    write_json_atomic(&jpath, &meta)?;
    Ok(meta)
}

/// Reads a cached split, verifying both arrays against the sidecar's hashes and shape.
pub fn load(dir: &Path, name: &str) -> Result<(FeatureSet, FeatureMeta), FeatureError> {
    let (fpath, lpath, jpath) = paths(dir, name);
    let text = std::fs::read_to_string(&jpath).map_err(|source| CoreError::Io {
        path: jpath.clone(),
        source,
    })?;
    let meta: FeatureMeta =
        serde_json::from_str(&text).map_err(|source| FeatureError::Sidecar {
            path: jpath.clone(),
            source,
        })?;
    for (path, expected) in [
        (&fpath, &meta.features_sha256),
        (&lpath, &meta.labels_sha256),
    ] {
        let actual = sha256_file(path)?;
        if &actual != expected {
            return Err(FeatureError::Inconsistent {
                path: path.clone(),
                problem: format!(
                    "SHA-256 {actual} differs from {expected} recorded in {}",
                    jpath.display()
                ),
            });
        }
    }
    let farr = npy::read(&fpath).map_err(|source| FeatureError::Io {
        path: fpath.clone(),
        source,
    })?;
    let larr = npy::read(&lpath).map_err(|source| FeatureError::Io {
        path: lpath.clone(),
        source,
    })?;
    if farr.shape != [meta.num_examples, meta.feature_dim] {
        return Err(FeatureError::Inconsistent {
            path: fpath,
            problem: format!(
                "shape {:?}, sidecar says [{}, {}]",
                farr.shape, meta.num_examples, meta.feature_dim
            ),
        });
    }
    let features = match farr.data {
        decal_io::npy::NpyData::F32(v) => v,
        other => other_to_f32(other),
    };
    let labels = larr.to_labels().map_err(|source| FeatureError::Io {
        path: lpath.clone(),
        source,
    })?;
    if labels.len() != meta.num_examples {
        return Err(FeatureError::Inconsistent {
            path: lpath,
            problem: format!(
                "{} labels for {} feature rows",
                labels.len(),
                meta.num_examples
            ),
        });
    }
    Ok((
        FeatureSet {
            features,
            labels,
            feature_dim: meta.feature_dim,
        },
        meta,
    ))
}

fn other_to_f32(data: decal_io::npy::NpyData) -> Vec<f32> {
    NpyArray {
        shape: vec![],
        data,
    }
    .to_f64_vec()
    .into_iter()
    .map(|v| v as f32)
    .collect()
}

/// Loads split `name` from `dir` when its cache key equals `key` and its arrays verify; otherwise calls
/// `extract_fn`, stores the result and reports why it had to.
pub fn load_or_extract(
    dir: &Path,
    name: &str,
    key: &CacheKey,
    extract_fn: impl FnOnce() -> Result<FeatureSet, FeatureError>,
) -> Result<(FeatureSet, CacheStatus), FeatureError> {
    let (_, _, jpath) = paths(dir, name);
    let status = if jpath.exists() {
        match load(dir, name) {
            Ok((set, meta)) if &meta.key == key => return Ok((set, CacheStatus::Hit)),
            Ok((_, meta)) => CacheStatus::Rebuilt(stale_reason(&meta.key, key)),
            Err(err) => CacheStatus::Rebuilt(format!("damaged cache: {err}")),
        }
    } else {
        CacheStatus::Built
    };
    let set = extract_fn()?;
    save(dir, name, &set, key)?;
    Ok((set, status))
}

fn stale_reason(old: &CacheKey, new: &CacheKey) -> String {
    let mut parts = Vec::new();
    if old.backbone_hash != new.backbone_hash {
        parts.push(format!(
            "backbone changed ({} → {})",
            short(&old.backbone_hash),
            short(&new.backbone_hash)
        ));
    }
    if old.data_hash != new.data_hash {
        parts.push(format!(
            "data changed ({} → {})",
            short(&old.data_hash),
            short(&new.data_hash)
        ));
    }
    if old.transform != new.transform {
        parts.push(format!(
            "transform changed ({} → {})",
            old.transform, new.transform
        ));
    }
    if old.body_mode != new.body_mode {
        parts.push(format!(
            "body mode changed ({:?} → {:?})",
            old.body_mode, new.body_mode
        ));
    }
    parts.join(", ")
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// SHA-256 of a string (used for config hashes).
pub fn text_hash(text: &str) -> String {
    sha256_bytes(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(backbone: &str) -> CacheKey {
        CacheKey {
            backbone_hash: backbone.into(),
            data_hash: "d".into(),
            transform: "normalize(test)".into(),
            body_mode: BodyMode::Frozen,
        }
    }

    fn set() -> FeatureSet {
        FeatureSet {
            features: (0..12).map(|v| v as f32 * 0.5).collect(),
            labels: vec![0, 1, 2, 1],
            feature_dim: 3,
        }
    }

    #[test]
    fn cache_round_trips_hits_and_rebuilds_on_another_backbone() {
        let dir = tempfile::tempdir().unwrap();
        let mut calls = 0;
        let (got, status) = load_or_extract(dir.path(), "train", &key("a"), || {
            calls += 1;
            Ok(set())
        })
        .unwrap();
        assert_eq!((got, status), (set(), CacheStatus::Built));
        let (got, status) =
            load_or_extract(dir.path(), "train", &key("a"), || panic!("must hit")).unwrap();
        assert_eq!((got, status), (set(), CacheStatus::Hit));
        let (_, status) = load_or_extract(dir.path(), "train", &key("b"), || Ok(set())).unwrap();
        match status {
            CacheStatus::Rebuilt(reason) => {
                assert!(reason.contains("backbone changed"), "{reason}")
            }
            other => panic!("expected a rebuild, got {other:?}"),
        }
        assert_eq!(calls, 1);
    }

    #[test]
    fn damaged_arrays_are_detected_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), "val", &set(), &key("a")).unwrap();
        let fpath = dir.path().join("val.features.npy");
        let mut bytes = std::fs::read(&fpath).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&fpath, bytes).unwrap();
        let err = load(dir.path(), "val").unwrap_err().to_string();
        assert!(
            err.contains("val.features.npy") && err.contains("SHA-256"),
            "{err}"
        );
        let (_, status) = load_or_extract(dir.path(), "val", &key("a"), || Ok(set())).unwrap();
        assert!(
            matches!(status, CacheStatus::Rebuilt(ref r) if r.contains("damaged")),
            "{status:?}"
        );
        assert_eq!(load(dir.path(), "val").unwrap().0, set());
    }

    #[test]
    fn images_hash_sees_pixels_labels_and_order() {
        let base = ImageSet {
            name: "t".into(),
            height: 1,
            width: 2,
            channels: 1,
            pixels: vec![1, 2, 3, 4, 5, 6],
            labels: vec![0, 1, 0],
            class_names: vec!["a".into(), "b".into()],
        };
        let h = images_hash(&base, &[0, 1, 2]);
        assert_ne!(h, images_hash(&base, &[1, 0, 2]));
        let mut other = base.clone();
        other.pixels[5] = 7;
        assert_ne!(h, images_hash(&other, &[0, 1, 2]));
        let mut other = base.clone();
        other.labels[2] = 1;
        assert_ne!(h, images_hash(&other, &[0, 1, 2]));
        assert_eq!(h, images_hash(&base.clone(), &[0, 1, 2]));
    }

    #[test]
    fn subset_takes_rows_in_order() {
        let s = set().subset(&[3, 0]);
        assert_eq!(s.features, vec![4.5, 5.0, 5.5, 0.0, 0.5, 1.0]);
        assert_eq!(s.labels, vec![1, 0]);
    }
}
