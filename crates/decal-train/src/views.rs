//! Augmented feature cache: the frozen body's features of `A` augmented views of every training image,
//! `[A, N, F]` on disk, so stage 2 sees the seed's augmentation distribution (seed-system.md §8: freshly
//! augmented images through the frozen body every epoch) without running the body every epoch.
//!
//! # What is cached
//! View `a` of training image `i` is the seed's training augmentation — random crop with zero padding
//! (4 px for CIFAR) and a horizontal flip with probability ½, then the normalisation — drawn by
//! [`decal_data::transforms::Transform::draws`]`(epoch = a, index = i)` with the cache's seed, i.e. a pure
//! function of `(seed, view, image index in the dataset)`: reproducible, independent of batching, of the
//! order of extraction and of an interruption. The body runs in **eval mode under `no_grad`**
//! ([`frozen_body`]). Views are shared by every head and every stage-2 seed. Validation and test features
//! are not here: they stay un-augmented ([`crate::features`]).
//!
//! # On disk (one directory)
//! - `views.npy`: `[A, N, F]`, little-endian `float16` (`f2`) or `float32` (`f4`) by [`Storage`], C order;
//!   row `(a, r)` is view `a` of the `r`-th image of the index list the cache was built from.
//! - `labels.npy`: `[N]` int64, the labels of those images.
//! - `views.json` ([`ViewsMeta`]): A, N, F, dtype, the augmentation, the seed, the body hash, the images hash,
//!   the chunk size, `status` (`extracting` / `complete`), how many chunks are written and the SHA-256 of
//!   each.
//!
//! Extraction is chunked: chunk `k` holds view `k / C` for images `(k % C)·chunk .. ` (C = chunks per view).
//! Each chunk is written in place into the pre-sized `views.npy`, synced, and only then counted in
//! `views.json` (written atomically), so a killed extraction resumes at the first uncounted chunk. The
//! size is printed before extraction, and extraction is refused (with the bytes it needs and the bytes
//! free) when the file system cannot hold it. A directory whose key ([`ViewsKey`]: A, storage,
//! augmentation, seed, body, images) differs from the requested one is rebuilt or refused
//! ([`OnMismatch`]), never reused; a complete cache whose chunks no longer match their hashes is damaged
//! and treated the same way.
//!
//! Reading: [`ViewCache::open`] verifies the header and every chunk hash, then serves rows either from
//! memory (caches up to [`DEFAULT_RESIDENT_BYTES`]) or by positioned reads from the file (larger ones), so
//! memory stays bounded. (Memory-mapping would need `unsafe`, which the workspace denies; positioned reads
//! through the page cache have the same effect here.) Float16 rows are widened to float32 on read.
//!
//! # Which view an epoch sees
//! [`ViewSampler`]: for stage-2 seed `s` and image `r`, epochs `0..A` use the views in the order of a
//! seeded random permutation of `0..A` (drawn per `(s, cycle, r)`), epochs `A..2A` a fresh permutation, and
//! so on. With `A ≥ epochs` every epoch of a head sees a distinct view of every image; with `A < epochs`
//! each view is used once per cycle of `A` epochs. Streams differ per seed, so seeds see different views.
//!
//! # Example
//! ```no_run
//! use decal_train::views::{self, Augmentation, BuildOptions, Storage, ViewCache, ViewSampler, ViewsKey};
//! # fn demo(backbone: &dyn decal_models::Backbone, set: &decal_data::ImageSet, train_idx: &[usize],
//! #         body_hash: String) -> Result<(), views::ViewsError> {
//! let aug = Augmentation::crop_flip(4, vec![0.4914, 0.4822, 0.4465], vec![0.247, 0.243, 0.261]);
//! let key = ViewsKey::new(10, Storage::F16, aug, 0, body_hash, set, train_idx);
//! let mut body = views::frozen_body(backbone);
//! let (cache, status) = views::build_or_open(
//!     std::path::Path::new("runs/x/views-a10-f16"), &key, set, train_idx,
//!     backbone.feature_dim() as usize, &BuildOptions::default(), &mut body, &mut |line| eprintln!("{line}"),
//! )?;
//! // Reading it back elsewhere (e.g. `--train-views DIR`): refuses an incomplete or damaged cache.
//! let cache = ViewCache::open(std::path::Path::new("runs/x/views-a10-f16"))?;
//! let (a, n, f) = (cache.num_views(), cache.len(), cache.feature_dim());
//! let whole_view_3 = cache.view(3)?;                  // FeatureSet [N, F] with labels
//! let epoch_views = ViewSampler::new(a, 7).views_for_epoch(0, n); // seed 7, epoch 0: one view per image
//! let mut row = vec![0f32; f];
//! cache.read_row(epoch_views[0] as usize, 0, &mut row)?;
//! # let _ = (status, whole_view_3); Ok(()) }
//! ```

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use decal_core::{sha256_bytes, write_json_atomic, CoreError};
use decal_data::transforms::{Normalize, Transform};
use decal_data::ImageSet;
use decal_io::npy::{self, DType, NpyArray};
use decal_models::Backbone;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::features::{images_hash, FeatureSet};

/// `views.json`.
pub const VIEWS_JSON: &str = "views.json";
/// `views.npy`, `[A, N, F]`.
pub const VIEWS_NPY: &str = "views.npy";
/// `labels.npy`, `[N]` int64.
pub const LABELS_NPY: &str = "labels.npy";
/// The `format` field of `views.json`.
pub const FORMAT: &str = "decal-views/1";
/// Caches up to this size are read into memory by [`ViewCache::open`]; larger ones are read row by row.
pub const DEFAULT_RESIDENT_BYTES: u64 = 2 << 30;

/// Errors of the view cache; each names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ViewsError {
    /// A filesystem helper failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Reading or writing an array failed.
    #[error("view cache {path}: {source}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: decal_io::IoError,
    },
    /// `views.json` cannot be parsed.
    #[error("view cache {path}: invalid views.json: {source}")]
    Meta {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The cache is incomplete, damaged or inconsistent.
    #[error("view cache {path}: {problem}")]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The cache on disk was built from something else and [`OnMismatch::Refuse`] was asked for.
    #[error("view cache {path} was built with other settings ({reason}); remove it or choose another directory")]
    Mismatch {
        /// The directory.
        path: PathBuf,
        /// Which parts of the key differ.
        reason: String,
    },
    /// Not enough free space for the extraction.
    #[error("view cache {path}: needs {needed} bytes ({needed_h}) but the file system has {free} bytes free; free space or lower views / use storage = \"f16\"")]
    NoSpace {
        /// The directory.
        path: PathBuf,
        /// Bytes still to be written.
        needed: u64,
        /// The same, human-readable.
        needed_h: String,
        /// Bytes available to this user.
        free: u64,
    },
    /// A bad argument.
    #[error("view cache: {0}")]
    Argument(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ViewsError + '_ {
    move |source| {
        ViewsError::Core(CoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Element type of `views.npy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// IEEE half precision (default): half the disk and memory; the features are rounded to 11 bits of
    /// mantissa (relative error ≤ 2⁻¹¹).
    #[default]
    F16,
    /// Single precision: exactly what the body produced.
    F32,
}

impl Storage {
    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            Storage::F16 => 2,
            Storage::F32 => 4,
        }
    }
    /// `f16` / `f32`.
    pub fn name(self) -> &'static str {
        match self {
            Storage::F16 => "f16",
            Storage::F32 => "f32",
        }
    }
    /// Parses `f16` / `f32`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "f16" => Ok(Storage::F16),
            "f32" => Ok(Storage::F32),
            other => Err(format!("storage must be \"f16\" or \"f32\", got {other:?}")),
        }
    }
    fn npy_descr(self) -> &'static str {
        match self {
            Storage::F16 => "<f2",
            Storage::F32 => "<f4",
        }
    }
}

/// The augmentation of the cached views (applied in `[0, 1]` space, then normalised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augmentation {
    /// Zero padding of the random crop back to the image size (seed: 4 for CIFAR); 0 = no crop.
    pub crop_padding: usize,
    /// Random horizontal flip with probability ½.
    pub hflip: bool,
    /// Per-channel normalisation mean (after the crop/flip).
    pub mean: Vec<f32>,
    /// Per-channel normalisation std.
    pub std: Vec<f32>,
    /// Where the random draws come from (documentation for readers of `views.json`).
    #[serde(default = "draws_doc")]
    pub draws: String,
}

fn draws_doc() -> String {
    "decal_data::Transform::draws(epoch = view, index = image index in the dataset), seeded with `seed`"
        .into()
}

impl Augmentation {
    /// The seed's CIFAR training augmentation: `RandomCrop(size, padding)` with zero fill and
    /// `RandomHorizontalFlip()`, then `Normalize(mean, std)`.
    pub fn crop_flip(padding: usize, mean: Vec<f32>, std: Vec<f32>) -> Self {
        Augmentation {
            crop_padding: padding,
            hflip: true,
            mean,
            std,
            draws: draws_doc(),
        }
    }

    /// The decal-data transform that draws and applies it.
    pub fn transform(&self, seed: u64) -> Result<Transform, ViewsError> {
        let normalize = Normalize::new(&self.mean, &self.std)
            .map_err(|e| ViewsError::Argument(e.to_string()))?;
        Ok(Transform {
            grey_to_rgb: false,
            resize: None,
            crop_padding: (self.crop_padding > 0).then_some(self.crop_padding),
            hflip: self.hflip,
            normalize,
            seed,
        })
    }
}

/// Everything that decides the bytes of a cache. Two caches are interchangeable iff their keys are equal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewsKey {
    /// A, the number of augmented views per image.
    pub views: usize,
    /// Element type on disk.
    pub dtype: Storage,
    /// The augmentation.
    pub augmentation: Augmentation,
    /// Seed of the augmentation draws.
    pub seed: u64,
    /// SHA-256 of the frozen body's weights (e.g. the backbone checkpoint's weights file).
    pub body_hash: String,
    /// [`crate::features::images_hash`] of the images, in cache row order.
    pub images_hash: String,
    /// Autocast precision of the body's forward passes; absent for float32 (so the keys, digests and
    /// directories of float32 caches are those they had before this field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_precision: Option<crate::precision::Precision>,
}

impl ViewsKey {
    /// A key for the images `indices` of `set` (hashes them).
    pub fn new(
        views: usize,
        dtype: Storage,
        augmentation: Augmentation,
        seed: u64,
        body_hash: String,
        set: &ImageSet,
        indices: &[usize],
    ) -> Self {
        ViewsKey {
            views,
            dtype,
            augmentation,
            seed,
            body_hash,
            images_hash: images_hash(set, indices),
            body_precision: None,
        }
    }

    /// This key with the body's forward passes under `precision`'s autocast (`fp32`: none, the default).
    pub fn with_body_precision(mut self, precision: crate::precision::Precision) -> Self {
        self.body_precision = precision.autocast();
        self
    }

    /// The precision of the body's forward passes (`fp32` unless set).
    pub fn body_precision(&self) -> crate::precision::Precision {
        self.body_precision.unwrap_or_default()
    }

    /// A short hash of the key (for directory names and head unit hashes).
    pub fn digest(&self) -> String {
        let text = serde_json::to_string(self).expect("a ViewsKey serialises");
        sha256_bytes(text.as_bytes())
    }

    fn differences(&self, other: &ViewsKey) -> String {
        let mut parts = Vec::new();
        if self.views != other.views {
            parts.push(format!("views {} → {}", self.views, other.views));
        }
        if self.dtype != other.dtype {
            parts.push(format!(
                "dtype {} → {}",
                self.dtype.name(),
                other.dtype.name()
            ));
        }
        if self.augmentation != other.augmentation {
            parts.push("augmentation changed".into());
        }
        if self.seed != other.seed {
            parts.push(format!("seed {} → {}", self.seed, other.seed));
        }
        if self.body_hash != other.body_hash {
            parts.push(format!(
                "body {} → {}",
                short(&self.body_hash),
                short(&other.body_hash)
            ));
        }
        if self.images_hash != other.images_hash {
            parts.push(format!(
                "images {} → {}",
                short(&self.images_hash),
                short(&other.images_hash)
            ));
        }
        if self.body_precision() != other.body_precision() {
            parts.push(format!(
                "body precision {} → {}",
                self.body_precision().name(),
                other.body_precision().name()
            ));
        }
        parts.join(", ")
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Extraction state in `views.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewsStatus {
    /// Chunks are still being written (`chunks_done` of `chunks_total`).
    Extracting,
    /// Every chunk is written and hashed.
    Complete,
}

/// `views.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewsMeta {
    /// [`FORMAT`].
    pub format: String,
    /// Extraction state.
    pub status: ViewsStatus,
    /// What the cache holds.
    #[serde(flatten)]
    pub key: ViewsKey,
    /// N, images (rows per view).
    pub num_examples: usize,
    /// F, the feature width.
    pub feature_dim: usize,
    /// Images per chunk.
    pub chunk_size: usize,
    /// A · ⌈N / chunk_size⌉.
    pub chunks_total: usize,
    /// Chunks written so far (in order).
    pub chunks_done: usize,
    /// SHA-256 of every written chunk's bytes.
    pub chunk_sha256: Vec<String>,
    /// SHA-256 of `labels.npy`.
    pub labels_sha256: String,
    /// Wall seconds spent extracting (summed over resumed sessions).
    pub seconds: f64,
}

impl ViewsMeta {
    fn chunks_per_view(&self) -> usize {
        self.num_examples.div_ceil(self.chunk_size)
    }
    /// Bytes of `views.npy`'s data (without the header).
    pub fn data_bytes(&self) -> u64 {
        (self.key.views * self.num_examples * self.feature_dim * self.key.dtype.bytes()) as u64
    }
    /// `(view, first row, rows)` of chunk `k`.
    fn chunk(&self, k: usize) -> (usize, usize, usize) {
        let cpv = self.chunks_per_view();
        let (view, c) = (k / cpv, k % cpv);
        let start = c * self.chunk_size;
        (view, start, self.chunk_size.min(self.num_examples - start))
    }
    fn row_offset(&self, view: usize, row: usize) -> u64 {
        ((view * self.num_examples + row) * self.feature_dim * self.key.dtype.bytes()) as u64
    }
}

/// What to do with a cache directory built from another key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMismatch {
    /// Delete its files and extract anew (the reason is returned in [`BuildStatus::Rebuilt`]).
    #[default]
    Rebuild,
    /// Return [`ViewsError::Mismatch`].
    Refuse,
}

/// Extraction options that do not change the cache's contents.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Images per chunk (the unit of resumption).
    pub chunk_size: usize,
    /// Images per forward pass of the body.
    pub batch_size: usize,
    /// Device of the body.
    pub device: Device,
    /// Stale or damaged caches: rebuild or refuse.
    pub on_mismatch: OnMismatch,
    /// Keep the cache in memory when it is at most this many bytes.
    pub resident_bytes: u64,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            chunk_size: 4096,
            batch_size: 512,
            device: Device::Cpu,
            on_mismatch: OnMismatch::Rebuild,
            resident_bytes: DEFAULT_RESIDENT_BYTES,
        }
    }
}

/// What [`build_or_open`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum BuildStatus {
    /// A complete cache with the same key was found and verified.
    Hit,
    /// No cache existed; every chunk was extracted.
    Built,
    /// An interrupted extraction with the same key was continued from this chunk.
    Resumed {
        /// First chunk extracted in this session.
        from_chunk: usize,
        /// Chunks in all.
        of: usize,
    },
    /// A cache with another key, or a damaged one, was replaced (the reason).
    Rebuilt(String),
}

/// The body as [`build_or_open`] wants it: eval mode, no gradients, features as float32.
pub fn frozen_body(backbone: &dyn Backbone) -> impl FnMut(&Tensor) -> Tensor + '_ {
    move |x| crate::features::forward(backbone, x, crate::features::BodyMode::Frozen)
}

/// Human-readable byte count (GiB / MiB).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

/// Bytes of `views.npy` plus `labels.npy` for a cache of `views × n × f` (headers included, rounded up).
pub fn estimate_bytes(views: usize, n: usize, f: usize, dtype: Storage) -> u64 {
    (views * n * f * dtype.bytes()) as u64 + (n * 8) as u64 + 256
}

/// Bytes available to this user on the file system holding `dir` (or its nearest existing parent).
pub fn free_bytes(dir: &Path) -> Result<u64, ViewsError> {
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            probe = PathBuf::from(".");
            break;
        }
    }
    let st = rustix::fs::statvfs(&probe).map_err(|e| {
        ViewsError::Core(CoreError::Io {
            path: probe.clone(),
            source: e.into(),
        })
    })?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

fn npy_header(dtype: Storage, shape: &[usize]) -> Vec<u8> {
    let shape_text = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_text}, }}",
        dtype.npy_descr()
    );
    let total = 10 + dict.len() + 1;
    let pad = (64 - total % 64) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

fn encode(values: &[f32], dtype: Storage, out: &mut Vec<u8>) {
    match dtype {
        Storage::F32 => {
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Storage::F16 => {
            for v in values {
                out.extend_from_slice(&half::f16::from_f32(*v).to_bits().to_le_bytes());
            }
        }
    }
}

fn decode(bytes: &[u8], dtype: Storage, out: &mut [f32]) {
    match dtype {
        Storage::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Storage::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
    }
}

fn read_meta(dir: &Path) -> Result<ViewsMeta, ViewsError> {
    let path = dir.join(VIEWS_JSON);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let meta: ViewsMeta = serde_json::from_str(&text).map_err(|source| ViewsError::Meta {
        path: path.clone(),
        source,
    })?;
    if meta.format != FORMAT {
        return Err(ViewsError::Invalid {
            path,
            problem: format!("format {:?}, expected {FORMAT:?}", meta.format),
        });
    }
    if meta.chunk_size == 0
        || meta.num_examples == 0
        || meta.feature_dim == 0
        || meta.key.views == 0
        || meta.chunks_total != meta.key.views * meta.chunks_per_view()
        || meta.chunks_done > meta.chunks_total
        || meta.chunk_sha256.len() != meta.chunks_done
    {
        return Err(ViewsError::Invalid {
            path,
            problem: "inconsistent sizes or chunk counts".into(),
        });
    }
    Ok(meta)
}

/// Checks `views.npy`'s header against the meta; returns the data offset.
fn check_npy(dir: &Path, meta: &ViewsMeta) -> Result<u64, ViewsError> {
    let path = dir.join(VIEWS_NPY);
    let header = npy::read_header(&path).map_err(|source| ViewsError::Npy {
        path: path.clone(),
        source,
    })?;
    let want_dtype = match meta.key.dtype {
        Storage::F16 => DType::F16,
        Storage::F32 => DType::F32,
    };
    let want_shape = vec![meta.key.views, meta.num_examples, meta.feature_dim];
    if header.dtype != want_dtype
        || header.big_endian
        || header.fortran_order
        || header.shape != want_shape
    {
        return Err(ViewsError::Invalid {
            path,
            problem: format!(
                "header says {:?} {:?}, views.json says {} {want_shape:?}",
                header.dtype,
                header.shape,
                meta.key.dtype.name()
            ),
        });
    }
    let len = std::fs::metadata(&path).map_err(io_err(&path))?.len();
    let want = header.data_offset as u64 + meta.data_bytes();
    if len != want {
        return Err(ViewsError::Invalid {
            path,
            problem: format!("{len} bytes, expected {want}"),
        });
    }
    Ok(header.data_offset as u64)
}

/// Opens the cache in `dir` for the images `indices` of `set`, extracting (or finishing the extraction of)
/// every view that is missing. `body` maps a normalised batch `[B, C, H, W]` on `options.device` to
/// features `[B, F]` (use [`frozen_body`]); `feature_dim` is F. `log` receives the size estimate and
/// progress lines.
#[allow(clippy::too_many_arguments)]
pub fn build_or_open(
    dir: &Path,
    key: &ViewsKey,
    set: &ImageSet,
    indices: &[usize],
    feature_dim: usize,
    options: &BuildOptions,
    body: &mut dyn FnMut(&Tensor) -> Tensor,
    log: &mut dyn FnMut(&str),
) -> Result<(ViewCache, BuildStatus), ViewsError> {
    if key.views == 0 {
        return Err(ViewsError::Argument("views (A) must be at least 1".into()));
    }
    if indices.is_empty() || feature_dim == 0 || options.chunk_size == 0 {
        return Err(ViewsError::Argument(
            "no images, F = 0 or chunk size 0".into(),
        ));
    }
    if key.images_hash != images_hash(set, indices) {
        return Err(ViewsError::Argument(
            "the key's images hash does not match the images given".into(),
        ));
    }
    let transform = key.augmentation.transform(key.seed)?;
    transform
        .check(set)
        .map_err(|e| ViewsError::Argument(e.to_string()))?;
    let n = indices.len();

    // An existing directory: hit, resume, or mismatch.
    let mut status = BuildStatus::Built;
    let mut resume: Option<ViewsMeta> = None;
    if dir.join(VIEWS_JSON).exists() {
        let problem = match read_meta(dir) {
            Ok(meta) if meta.key != *key => Some(meta.key.differences(key)),
            Ok(meta) if meta.num_examples != n || meta.feature_dim != feature_dim => Some(format!(
                "shape [{}, {}] differs from the requested [{n}, {feature_dim}]",
                meta.num_examples, meta.feature_dim
            )),
            Ok(meta) if meta.status == ViewsStatus::Complete => {
                match ViewCache::open_with(dir, options.resident_bytes) {
                    Ok(cache) => return Ok((cache, BuildStatus::Hit)),
                    Err(e) => Some(format!("damaged: {e}")),
                }
            }
            Ok(meta) => match check_npy(dir, &meta) {
                Ok(_) => {
                    resume = Some(meta);
                    None
                }
                Err(e) => Some(format!("damaged partial extraction: {e}")),
            },
            Err(e) => Some(format!("unreadable: {e}")),
        };
        if let Some(reason) = problem {
            if options.on_mismatch == OnMismatch::Refuse {
                return Err(ViewsError::Mismatch {
                    path: dir.to_path_buf(),
                    reason,
                });
            }
            log(&format!(
                "view cache {}: rebuilding ({reason})",
                dir.display()
            ));
            for name in [VIEWS_JSON, VIEWS_NPY, LABELS_NPY] {
                let p = dir.join(name);
                if p.exists() {
                    std::fs::remove_file(&p).map_err(io_err(&p))?;
                }
            }
            status = BuildStatus::Rebuilt(reason);
        }
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;

    let npy_path = dir.join(VIEWS_NPY);
    let mut meta = match resume {
        Some(meta) => {
            status = BuildStatus::Resumed {
                from_chunk: meta.chunks_done,
                of: meta.chunks_total,
            };
            meta
        }
        None => {
            let labels: Vec<i64> = indices.iter().map(|&i| set.labels[i] as i64).collect();
            let lpath = dir.join(LABELS_NPY);
            npy::write(&lpath, &NpyArray::from_i64(vec![n], labels)).map_err(|source| {
                ViewsError::Npy {
                    path: lpath.clone(),
                    source,
                }
            })?;
            let chunks_per_view = n.div_ceil(options.chunk_size);
            let meta = ViewsMeta {
                format: FORMAT.into(),
                status: ViewsStatus::Extracting,
                key: key.clone(),
                num_examples: n,
                feature_dim,
                chunk_size: options.chunk_size,
                chunks_total: key.views * chunks_per_view,
                chunks_done: 0,
                chunk_sha256: Vec::new(),
                labels_sha256: decal_core::sha256_file(&lpath)?,
                seconds: 0.0,
            };
            let needed = estimate_bytes(key.views, n, feature_dim, key.dtype);
            let free = free_bytes(dir)?;
            log(&format!(
                "view cache {}: A = {} views × N = {n} × F = {feature_dim} × {} = {} to extract ({} free)",
                dir.display(),
                key.views,
                key.dtype.name(),
                human_bytes(needed),
                human_bytes(free)
            ));
            if needed > free {
                return Err(ViewsError::NoSpace {
                    path: dir.to_path_buf(),
                    needed,
                    needed_h: human_bytes(needed),
                    free,
                });
            }
            let header = npy_header(key.dtype, &[key.views, n, feature_dim]);
            let mut f = File::create(&npy_path).map_err(io_err(&npy_path))?;
            f.write_all(&header).map_err(io_err(&npy_path))?;
            f.set_len(header.len() as u64 + meta.data_bytes())
                .map_err(io_err(&npy_path))?;
            f.sync_all().map_err(io_err(&npy_path))?;
            write_json_atomic(&dir.join(VIEWS_JSON), &meta)?;
            meta
        }
    };
    if let BuildStatus::Resumed { from_chunk, of } = status {
        // Sparse pre-sizing means the space of the remaining chunks is not reserved: check it again.
        let needed = (meta.chunks_total - meta.chunks_done) as u64
            * (meta.chunk_size * feature_dim * key.dtype.bytes()) as u64;
        let free = free_bytes(dir)?;
        log(&format!(
            "view cache {}: resuming an interrupted extraction at chunk {from_chunk} of {of} (≤ {} left to write, {} free)",
            dir.display(),
            human_bytes(needed),
            human_bytes(free)
        ));
        if needed > free {
            return Err(ViewsError::NoSpace {
                path: dir.to_path_buf(),
                needed,
                needed_h: human_bytes(needed),
                free,
            });
        }
    }

    let data_offset = check_npy(dir, &meta)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&npy_path)
        .map_err(io_err(&npy_path))?;
    let [c, h, w] = transform.output_shape(set.height, set.width, set.channels);
    let image_len = c * h * w;
    let mut input = Vec::new();
    let mut bytes = Vec::new();
    let start_time = std::time::Instant::now();
    let seconds_before = meta.seconds;
    let mut last_log = std::time::Instant::now();
    let precision = key.body_precision();
    precision
        .check_device(options.device)
        .map_err(ViewsError::Argument)?;
    for k in meta.chunks_done..meta.chunks_total {
        let (view, start, rows) = meta.chunk(k);
        bytes.clear();
        for b0 in (start..start + rows).step_by(options.batch_size.max(1)) {
            let b1 = (b0 + options.batch_size.max(1)).min(start + rows);
            input.resize((b1 - b0) * image_len, 0.0);
            for (slot, r) in (b0..b1).enumerate() {
                transform.apply_into(
                    set,
                    indices[r],
                    view,
                    &mut input[slot * image_len..(slot + 1) * image_len],
                );
            }
            let x = Tensor::from_slice(&input)
                .reshape([(b1 - b0) as i64, c as i64, h as i64, w as i64])
                .to_device(options.device);
            let out = crate::precision::with_autocast(precision, options.device, || body(&x))
                .map_err(ViewsError::Argument)?;
            if out.size() != [(b1 - b0) as i64, feature_dim as i64] {
                return Err(ViewsError::Argument(format!(
                    "the body returned features of shape {:?}, expected [{}, {feature_dim}]",
                    out.size(),
                    b1 - b0
                )));
            }
            let values: Vec<f32> = Vec::try_from(
                out.to_kind(Kind::Float)
                    .to_device(Device::Cpu)
                    .flatten(0, -1),
            )
            .map_err(|e| ViewsError::Argument(format!("body features: {e}")))?;
            encode(&values, key.dtype, &mut bytes);
        }
        let offset = data_offset + meta.row_offset(view, start);
        file.write_all_at(&bytes, offset)
            .map_err(io_err(&npy_path))?;
        file.sync_data().map_err(io_err(&npy_path))?;
        meta.chunk_sha256.push(sha256_bytes(&bytes));
        meta.chunks_done = k + 1;
        meta.seconds = seconds_before + start_time.elapsed().as_secs_f64();
        if meta.chunks_done == meta.chunks_total {
            meta.status = ViewsStatus::Complete;
        }
        write_json_atomic(&dir.join(VIEWS_JSON), &meta)?;
        if last_log.elapsed().as_secs_f64() > 30.0 || meta.chunks_done == meta.chunks_total {
            last_log = std::time::Instant::now();
            log(&format!(
                "view cache: chunk {}/{} (view {}/{}), {:.0}s",
                meta.chunks_done,
                meta.chunks_total,
                view + 1,
                key.views,
                meta.seconds
            ));
        }
    }
    drop(file);
    let cache = ViewCache::open_with(dir, options.resident_bytes)?;
    Ok((cache, status))
}

/// A complete, verified view cache opened for reading.
#[derive(Debug)]
pub struct ViewCache {
    dir: PathBuf,
    meta: ViewsMeta,
    labels: Vec<i64>,
    file: File,
    data_offset: u64,
    /// The whole data block, when small enough.
    resident: Option<Vec<u8>>,
}

impl ViewCache {
    /// Opens `dir` (keeping caches up to [`DEFAULT_RESIDENT_BYTES`] in memory). Refuses an incomplete
    /// extraction, a header that disagrees with `views.json`, and chunks whose SHA-256 changed.
    pub fn open(dir: &Path) -> Result<Self, ViewsError> {
        Self::open_with(dir, DEFAULT_RESIDENT_BYTES)
    }

    /// [`ViewCache::open`] with another in-memory limit (0 = always read rows from the file).
    pub fn open_with(dir: &Path, resident_bytes: u64) -> Result<Self, ViewsError> {
        let meta = read_meta(dir)?;
        if meta.status != ViewsStatus::Complete || meta.chunks_done != meta.chunks_total {
            return Err(ViewsError::Invalid {
                path: dir.join(VIEWS_JSON),
                problem: format!(
                    "extraction incomplete ({} of {} chunks); run the extraction again to resume it",
                    meta.chunks_done, meta.chunks_total
                ),
            });
        }
        let data_offset = check_npy(dir, &meta)?;
        let npy_path = dir.join(VIEWS_NPY);
        let lpath = dir.join(LABELS_NPY);
        if decal_core::sha256_file(&lpath)? != meta.labels_sha256 {
            return Err(ViewsError::Invalid {
                path: lpath,
                problem: "SHA-256 differs from views.json".into(),
            });
        }
        let labels = npy::read(&lpath)
            .and_then(|a| a.to_labels())
            .map_err(|source| ViewsError::Npy {
                path: lpath.clone(),
                source,
            })?;
        if labels.len() != meta.num_examples {
            return Err(ViewsError::Invalid {
                path: lpath,
                problem: format!("{} labels for N = {}", labels.len(), meta.num_examples),
            });
        }
        let file = File::open(&npy_path).map_err(io_err(&npy_path))?;
        let keep = meta.data_bytes() <= resident_bytes;
        let mut resident = keep.then(|| Vec::with_capacity(meta.data_bytes() as usize));
        // Chunks are contiguous in file order except at view boundaries; verify each by its own range.
        let mut buf = Vec::new();
        for k in 0..meta.chunks_total {
            let (view, start, rows) = meta.chunk(k);
            let len = rows * meta.feature_dim * meta.key.dtype.bytes();
            buf.resize(len, 0);
            file.read_exact_at(&mut buf, data_offset + meta.row_offset(view, start))
                .map_err(io_err(&npy_path))?;
            if sha256_bytes(&buf) != meta.chunk_sha256[k] {
                return Err(ViewsError::Invalid {
                    path: npy_path,
                    problem: format!(
                        "chunk {k} (view {view}, rows {start}..{}) does not match its SHA-256 in views.json",
                        start + rows
                    ),
                });
            }
            if let Some(r) = resident.as_mut() {
                r.extend_from_slice(&buf);
            }
        }
        Ok(ViewCache {
            dir: dir.to_path_buf(),
            meta,
            labels,
            file,
            data_offset,
            resident,
        })
    }

    /// The metadata (`views.json`).
    pub fn meta(&self) -> &ViewsMeta {
        &self.meta
    }
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// A, views per image.
    pub fn num_views(&self) -> usize {
        self.meta.key.views
    }
    /// N, images.
    pub fn len(&self) -> usize {
        self.meta.num_examples
    }
    /// Whether the cache holds no images (never true for an opened cache).
    pub fn is_empty(&self) -> bool {
        self.meta.num_examples == 0
    }
    /// F.
    pub fn feature_dim(&self) -> usize {
        self.meta.feature_dim
    }
    /// The labels `[N]`, in row order.
    pub fn labels(&self) -> &[i64] {
        &self.labels
    }

    /// Row `row` of view `view`, widened to float32, into `out` (`F` values).
    pub fn read_row(&self, view: usize, row: usize, out: &mut [f32]) -> Result<(), ViewsError> {
        let f = self.meta.feature_dim;
        if view >= self.num_views() || row >= self.len() || out.len() != f {
            return Err(ViewsError::Argument(format!(
                "row ({view}, {row}) with {} outputs is outside [{}, {}, {f}]",
                out.len(),
                self.num_views(),
                self.len()
            )));
        }
        let eb = self.meta.key.dtype.bytes();
        let offset = self.meta.row_offset(view, row);
        match &self.resident {
            Some(data) => decode(
                &data[offset as usize..offset as usize + f * eb],
                self.meta.key.dtype,
                out,
            ),
            None => {
                let mut buf = vec![0u8; f * eb];
                self.file
                    .read_exact_at(&mut buf, self.data_offset + offset)
                    .map_err(io_err(&self.dir.join(VIEWS_NPY)))?;
                decode(&buf, self.meta.key.dtype, out);
            }
        }
        Ok(())
    }

    /// Rows `(view, row)` one after another into `out` (`picks.len() · F` values).
    pub fn gather(&self, picks: &[(usize, usize)], out: &mut [f32]) -> Result<(), ViewsError> {
        let f = self.meta.feature_dim;
        if out.len() != picks.len() * f {
            return Err(ViewsError::Argument(format!(
                "gather of {} rows into {} values",
                picks.len(),
                out.len()
            )));
        }
        for (slot, &(view, row)) in picks.iter().enumerate() {
            self.read_row(view, row, &mut out[slot * f..(slot + 1) * f])?;
        }
        Ok(())
    }

    /// View `view` of every image as a [`FeatureSet`] `[N, F]` with the labels.
    pub fn view(&self, view: usize) -> Result<FeatureSet, ViewsError> {
        let picks: Vec<(usize, usize)> = (0..self.len()).map(|r| (view, r)).collect();
        let mut features = vec![0f32; self.len() * self.feature_dim()];
        self.gather(&picks, &mut features)?;
        Ok(FeatureSet {
            features,
            labels: self.labels.clone(),
            feature_dim: self.feature_dim(),
        })
    }
}

/// Which cached view each image gets in each epoch, for one stage-2 seed (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewSampler {
    views: usize,
    seed: u64,
}

/// Stream constant of the view choice (independent of shuffling and ε).
const VIEW_STREAM: u64 = 0x5649_4557_5f43_484f;

impl ViewSampler {
    /// A sampler over `views` views for stage-2 seed `seed`.
    pub fn new(views: usize, seed: u64) -> Self {
        ViewSampler {
            views: views.max(1),
            seed,
        }
    }

    /// The view of each of the `n` images (rows) in `epoch`: position `epoch mod A` of the image's
    /// permutation for cycle `epoch div A`.
    pub fn views_for_epoch(&self, epoch: usize, n: usize) -> Vec<u32> {
        let a = self.views;
        if a == 1 {
            return vec![0; n];
        }
        let (cycle, pos) = (epoch / a, epoch % a);
        let mut perm: Vec<u32> = Vec::with_capacity(a);
        (0..n)
            .map(|r| {
                let mut rng =
                    crate::stage1::SplitMix64::for_epoch(self.seed ^ VIEW_STREAM, cycle, r as u64);
                perm.clear();
                perm.extend(0..a as u32);
                // Partial Fisher–Yates: positions 0..=pos of a uniformly random permutation.
                for j in 0..=pos {
                    let k = j + rng.below((a - j) as u64) as usize;
                    perm.swap(j, k);
                }
                perm[pos]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(n: usize) -> ImageSet {
        ImageSet {
            name: "t/train".into(),
            height: 6,
            width: 6,
            channels: 1,
            pixels: (0..n * 36).map(|v| (v * 7 % 251) as u8).collect(),
            labels: (0..n).map(|i| (i % 3) as u32).collect(),
            class_names: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    fn aug() -> Augmentation {
        Augmentation::crop_flip(2, vec![0.5], vec![0.25])
    }

    /// A fixed "body": per-row sums over a few pixel subsets (F = 3), so views that differ give different
    /// features.
    fn body(x: &Tensor) -> Tensor {
        let b = x.size()[0];
        let flat = x.reshape([b, -1]);
        Tensor::stack(
            &[
                flat.sum_dim_intlist([1i64].as_slice(), false, Kind::Float),
                flat.narrow(1, 0, 6)
                    .sum_dim_intlist([1i64].as_slice(), false, Kind::Float),
                flat.narrow(1, 3, 12).square().sum_dim_intlist(
                    [1i64].as_slice(),
                    false,
                    Kind::Float,
                ),
            ],
            1,
        )
    }

    fn build(
        dir: &Path,
        key: &ViewsKey,
        set: &ImageSet,
        idx: &[usize],
        chunk: usize,
    ) -> Result<(ViewCache, BuildStatus), ViewsError> {
        let options = BuildOptions {
            chunk_size: chunk,
            batch_size: 3,
            ..BuildOptions::default()
        };
        build_or_open(dir, key, set, idx, 3, &options, &mut body, &mut |_| {})
    }

    #[test]
    fn bf16_body_passes_are_keyed_apart_and_close_to_float32() {
        use crate::precision::Precision;
        let set = images(9);
        let idx: Vec<usize> = (0..9).collect();
        let key = ViewsKey::new(3, Storage::F32, aug(), 4, "body".into(), &set, &idx);
        // float32 keys serialise as before the field existed: their digests (and unit directories) stay.
        let text = serde_json::to_string(&key).unwrap();
        assert!(!text.contains("body_precision"), "{text}");
        assert_eq!(key.clone().with_body_precision(Precision::Fp32), key);
        let bf16 = key.clone().with_body_precision(Precision::Bf16);
        assert_ne!(bf16.digest(), key.digest());
        assert_eq!(bf16.body_precision(), Precision::Bf16);
        let back: ViewsKey = serde_json::from_str(&serde_json::to_string(&bf16).unwrap()).unwrap();
        assert_eq!(back, bf16);
        // A matrix product (autocast runs it in bfloat16): the bf16 cache holds different values that
        // stay within bfloat16's rounding of the float32 ones.
        let w = Tensor::from_slice(
            &(0..36 * 3)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect::<Vec<_>>(),
        )
        .reshape([36, 3]);
        let mut linear = |x: &Tensor| x.reshape([x.size()[0], -1]).matmul(&w);
        let options = BuildOptions {
            chunk_size: 4,
            batch_size: 3,
            ..BuildOptions::default()
        };
        let read = |key: &ViewsKey, body: &mut dyn FnMut(&Tensor) -> Tensor| {
            let dir = tempfile::tempdir().unwrap();
            let (cache, _) =
                build_or_open(dir.path(), key, &set, &idx, 3, &options, body, &mut |_| {}).unwrap();
            let mut all = vec![0f32; 3 * 9 * 3];
            for v in 0..3 {
                for r in 0..9 {
                    let at = (v * 9 + r) * 3;
                    cache.read_row(v, r, &mut all[at..at + 3]).unwrap();
                }
            }
            all
        };
        let exact = read(&key, &mut linear);
        let fast = read(&bf16, &mut linear);
        assert_ne!(exact, fast);
        let scale = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in exact.iter().zip(&fast) {
            assert!((a - b).abs() <= 0.02 * scale, "{a} vs {b} (scale {scale})");
        }
        // Outside the guard autocast is off again.
        assert!(!crate::precision::Autocast::is_enabled(Device::Cpu));
    }

    #[test]
    fn views_are_the_transforms_draws_and_round_trip_in_both_dtypes() {
        let set = images(11);
        let idx: Vec<usize> = (0..11).rev().collect();
        for dtype in [Storage::F32, Storage::F16] {
            let dir = tempfile::tempdir().unwrap();
            let key = ViewsKey::new(4, dtype, aug(), 9, "body".into(), &set, &idx);
            let (cache, status) = build(dir.path(), &key, &set, &idx, 4).unwrap();
            assert_eq!(status, BuildStatus::Built);
            assert_eq!(
                (cache.num_views(), cache.len(), cache.feature_dim()),
                (4, 11, 3)
            );
            let header = npy::read_header(&dir.path().join(VIEWS_NPY)).unwrap();
            assert_eq!(header.shape, vec![4, 11, 3]);
            // Row (a, r) is the body applied to Transform::draws(view a) of image idx[r].
            let t = aug().transform(9).unwrap();
            let mut distinct = std::collections::BTreeSet::new();
            for a in 0..4 {
                for (r, &image) in idx.iter().enumerate() {
                    let mut img = vec![0f32; 36];
                    t.apply_into(&set, image, a, &mut img);
                    let want: Vec<f32> = Vec::try_from(
                        body(&Tensor::from_slice(&img).reshape([1, 1, 6, 6])).flatten(0, -1),
                    )
                    .unwrap();
                    let mut got = vec![0f32; 3];
                    cache.read_row(a, r, &mut got).unwrap();
                    for (g, w) in got.iter().zip(&want) {
                        let tol = if dtype == Storage::F16 {
                            w.abs() * 1e-3 + 1e-3
                        } else {
                            0.0
                        };
                        assert!(
                            (g - w).abs() <= tol,
                            "{dtype:?} ({a},{r}): {got:?} vs {want:?}"
                        );
                    }
                    distinct.insert(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
                }
            }
            assert!(
                distinct.len() > 30,
                "views should differ: {}",
                distinct.len()
            );
            assert_eq!(cache.labels()[0], set.labels[10] as i64);
            // The same key hits; the data on disk read through a fresh handle agrees.
            let (again, status) = build(dir.path(), &key, &set, &idx, 4).unwrap();
            assert_eq!(status, BuildStatus::Hit);
            assert_eq!(again.view(2).unwrap(), cache.view(2).unwrap());
            let streamed = ViewCache::open_with(dir.path(), 0).unwrap();
            assert_eq!(streamed.view(3).unwrap(), cache.view(3).unwrap());
        }
    }

    #[test]
    fn another_key_is_rebuilt_or_refused_never_reused() {
        let set = images(7);
        let idx: Vec<usize> = (0..7).collect();
        let dir = tempfile::tempdir().unwrap();
        let key = ViewsKey::new(2, Storage::F32, aug(), 1, "body".into(), &set, &idx);
        build(dir.path(), &key, &set, &idx, 3).unwrap();
        let variants = [
            ViewsKey {
                views: 3,
                ..key.clone()
            },
            ViewsKey {
                dtype: Storage::F16,
                ..key.clone()
            },
            ViewsKey {
                seed: 2,
                ..key.clone()
            },
            ViewsKey {
                body_hash: "other".into(),
                ..key.clone()
            },
            key.clone()
                .with_body_precision(crate::precision::Precision::Bf16),
            ViewsKey {
                augmentation: Augmentation {
                    hflip: false,
                    ..aug()
                },
                ..key.clone()
            },
        ];
        for other in variants {
            let options = BuildOptions {
                on_mismatch: OnMismatch::Refuse,
                ..BuildOptions::default()
            };
            let err = build_or_open(
                dir.path(),
                &other,
                &set,
                &idx,
                3,
                &options,
                &mut body,
                &mut |_| {},
            )
            .unwrap_err();
            assert!(matches!(err, ViewsError::Mismatch { .. }), "{err}");
        }
        // Other images (data version) are detected too, then rebuilt by default.
        let mut changed = set.clone();
        changed.pixels[5] ^= 1;
        let key2 = ViewsKey::new(2, Storage::F32, aug(), 1, "body".into(), &changed, &idx);
        let (_, status) = build(dir.path(), &key2, &changed, &idx, 3).unwrap();
        assert!(
            matches!(status, BuildStatus::Rebuilt(ref r) if r.contains("images")),
            "{status:?}"
        );
    }

    #[test]
    fn an_interrupted_extraction_resumes_and_gives_the_same_bytes() {
        let set = images(10);
        let idx: Vec<usize> = (0..10).collect();
        let key = ViewsKey::new(3, Storage::F16, aug(), 5, "body".into(), &set, &idx);
        let full = tempfile::tempdir().unwrap();
        build(full.path(), &key, &set, &idx, 4).unwrap();

        let dir = tempfile::tempdir().unwrap();
        // A body that "crashes" (returns a wrong shape) after 4 batches of 3 images.
        let mut calls = 0;
        let mut failing = |x: &Tensor| {
            calls += 1;
            if calls > 4 {
                Tensor::zeros([1, 1], (Kind::Float, Device::Cpu))
            } else {
                body(x)
            }
        };
        let options = BuildOptions {
            chunk_size: 4,
            batch_size: 3,
            ..BuildOptions::default()
        };
        assert!(build_or_open(
            dir.path(),
            &key,
            &set,
            &idx,
            3,
            &options,
            &mut failing,
            &mut |_| {}
        )
        .is_err());
        let meta = read_meta(dir.path()).unwrap();
        assert_eq!(meta.status, ViewsStatus::Extracting);
        assert!(
            meta.chunks_done > 0 && meta.chunks_done < meta.chunks_total,
            "{meta:?}"
        );
        let err = ViewCache::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("incomplete"), "{err}");
        let (cache, status) = build(dir.path(), &key, &set, &idx, 4).unwrap();
        assert_eq!(
            status,
            BuildStatus::Resumed {
                from_chunk: meta.chunks_done,
                of: 9
            }
        );
        assert_eq!(
            std::fs::read(dir.path().join(VIEWS_NPY)).unwrap(),
            std::fs::read(full.path().join(VIEWS_NPY)).unwrap()
        );
        assert_eq!(
            cache.view(1).unwrap().labels,
            vec![0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
        );
    }

    #[test]
    fn damaged_chunks_are_detected() {
        let set = images(5);
        let idx: Vec<usize> = (0..5).collect();
        let dir = tempfile::tempdir().unwrap();
        let key = ViewsKey::new(2, Storage::F32, aug(), 1, "body".into(), &set, &idx);
        build(dir.path(), &key, &set, &idx, 2).unwrap();
        let path = dir.path().join(VIEWS_NPY);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
        std::fs::write(&path, bytes).unwrap();
        let err = ViewCache::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("SHA-256") && err.contains("views.npy"),
            "{err}"
        );
        let (_, status) = build(dir.path(), &key, &set, &idx, 2).unwrap();
        assert!(
            matches!(status, BuildStatus::Rebuilt(ref r) if r.contains("damaged")),
            "{status:?}"
        );
    }

    #[test]
    fn sampler_gives_distinct_views_per_epoch_and_differs_by_seed() {
        let s = ViewSampler::new(8, 3);
        let epochs: Vec<Vec<u32>> = (0..8).map(|e| s.views_for_epoch(e, 50)).collect();
        for r in 0..50 {
            let mut seen: Vec<u32> = epochs.iter().map(|e| e[r]).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..8).collect::<Vec<_>>(), "image {r}");
        }
        assert_eq!(s.views_for_epoch(5, 50), epochs[5]);
        assert_ne!(ViewSampler::new(8, 4).views_for_epoch(0, 50), epochs[0]);
        // A new cycle is a new permutation.
        assert_ne!(s.views_for_epoch(8, 50), epochs[0]);
        assert_eq!(ViewSampler::new(1, 3).views_for_epoch(4, 3), vec![0, 0, 0]);
    }

    #[test]
    fn estimate_matches_the_issue_example_and_header_parses() {
        // 40k × A=40 × 640 floats ≈ 4.1 GB in f32, half that in f16.
        assert_eq!(
            estimate_bytes(40, 40_000, 640, Storage::F32) - 320_256,
            4_096_000_000
        );
        let h = npy_header(Storage::F16, &[3, 5, 7]);
        assert_eq!(h.len() % 64, 0);
        let parsed = npy::parse_header(&h, Path::new("x.npy")).unwrap();
        assert_eq!(parsed.shape, vec![3, 5, 7]);
        assert_eq!(parsed.dtype, DType::F16);
    }
}
