//! Dataset-level generation in the CIFAR-10-C layout, with a manifest and resumption.
//!
//! Output directory:
//! - `<corruption>.npy`: `uint8 [S·N, H, W, 3]`, the `S` requested severities stacked in ascending
//!   order (severity 1 first; with the default 1..5 this is exactly CIFAR-10-C's layout);
//! - `labels.npy`: `uint8 [S·N]` (the labels tiled `S` times; `int64` when a label exceeds 255);
//! - `manifest.json`: source (name, size, SHA-256 of pixels and labels), seed, severities,
//!   per-corruption file checksums and parameters, decal version, `"kind": "generated corruptions"`.
//!
//! Resumption: when `manifest.json` already describes the same source, seed and severities, every
//! corruption it lists whose file still has the recorded SHA-256 is skipped; anything else is
//! (re)generated. Any other non-empty directory is refused unless `force` is set. The manifest is
//! rewritten atomically after each corruption, so an interrupted run resumes where it stopped.

use crate::corruption::Corruption;
use crate::error::CorruptError;
use crate::recipe::{corrupt_image, Assets};
use crate::rng::image_rng;
use decal_core::{prepare_output_dir, sha256_bytes, sha256_file, write_json_atomic, Provenance};
use decal_io::npy::{self, NpyArray};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Value of the manifest's `kind` field: these are never the published CIFAR-10-C files.
pub const KIND: &str = "generated corruptions";

/// Recipe identifier written to the manifest; bump the suffix when outputs change for a given seed.
pub const RECIPE: &str =
    "hendrycks-dietterich-2019 make_cifar_c.py (CIFAR parameters), decal-corrupt v1";

/// Images to corrupt: a borrowed view of a labelled dataset (HWC `u8` pixels).
#[derive(Debug, Clone, Copy)]
pub struct SourceImages<'a> {
    /// Human-readable source, e.g. `cifar10/test`.
    pub name: &'a str,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Channels per pixel.
    pub channels: usize,
    /// `N × height × width × channels` bytes.
    pub pixels: &'a [u8],
    /// `N` labels.
    pub labels: &'a [u32],
}

impl SourceImages<'_> {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Checks the recipe's shape (32×32×3) and that pixels and labels agree.
    pub fn validate(&self) -> Result<(), CorruptError> {
        if (self.height, self.width, self.channels) != (32, 32, 3) {
            return Err(CorruptError::UnsupportedShape {
                source_name: self.name.to_string(),
                height: self.height,
                width: self.width,
                channels: self.channels,
            });
        }
        let expected = self.len() * self.height * self.width * self.channels;
        if self.pixels.len() != expected || self.is_empty() {
            return Err(CorruptError::InconsistentSource {
                source_name: self.name.to_string(),
                detail: format!(
                    "{} pixel bytes for {} labels (expected {expected}, and at least one image)",
                    self.pixels.len(),
                    self.len()
                ),
            });
        }
        Ok(())
    }

    fn image(&self, idx: usize) -> &[u8] {
        let size = self.height * self.width * self.channels;
        &self.pixels[idx * size..(idx + 1) * size]
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Corruptions, in the order they are generated.
    pub corruptions: Vec<Corruption>,
    /// Severities (1..=5), ascending.
    pub severities: Vec<u8>,
    /// Base seed of all random streams.
    pub seed: u64,
    /// Overwrite a non-empty output directory that is not a resumable run of the same request.
    pub force: bool,
    /// Free-form description of where the source came from (dataset, split, directory, limit),
    /// copied into the manifest.
    pub source_details: serde_json::Value,
}

/// Progress report after each corruption.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The corruption just handled.
    pub corruption: Corruption,
    /// 1-based position in the requested list.
    pub position: usize,
    /// Number of requested corruptions.
    pub total: usize,
    /// True when an existing, verified file was kept.
    pub skipped: bool,
    /// Wall time spent on it, in seconds.
    pub seconds: f64,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`KIND`].
    pub kind: String,
    /// Always [`RECIPE`].
    pub recipe: String,
    /// decal version, git commit, time and command line.
    pub provenance: Provenance,
    /// The corrupted source.
    pub source: SourceRecord,
    /// Base seed.
    pub seed: u64,
    /// Severities stacked in every file, in order.
    pub severities: Vec<u8>,
    /// How the random streams are derived.
    pub rng: String,
    /// `labels.npy`.
    pub labels: FileRecord,
    /// One entry per finished corruption, in generation order.
    pub corruptions: Vec<CorruptionRecord>,
    /// Known differences from the Python recipe.
    pub deviations: Vec<String>,
}

/// Identity of the source images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// E.g. `cifar10/test`.
    pub name: String,
    /// Number of source images `N`.
    pub num_images: usize,
    /// `[H, W, C]`.
    pub image_shape: [usize; 3],
    /// SHA-256 of the source pixel bytes (`N·H·W·C`, HWC order).
    pub pixels_sha256: String,
    /// SHA-256 of the labels as little-endian `u32`.
    pub labels_sha256: String,
    /// Where the source came from (caller-provided).
    pub details: serde_json::Value,
}

/// A file written by the generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// File name inside the output directory.
    pub file: String,
    /// SHA-256 of the whole file.
    pub sha256: String,
    /// Array shape.
    pub shape: Vec<usize>,
    /// NumPy dtype name.
    pub dtype: String,
}

/// One finished corruption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorruptionRecord {
    /// The corruption.
    pub corruption: Corruption,
    /// Standard (one of the 15) or extra.
    pub standard: bool,
    /// The `.npy` file.
    #[serde(flatten)]
    pub file: FileRecord,
    /// The recipe's parameters per severity, in the order of [`Manifest::severities`].
    pub parameters: Vec<serde_json::Value>,
    /// External assets used (frost textures and their checksums).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<serde_json::Value>,
    /// Generation wall time in seconds.
    pub seconds: f64,
}

/// Corrupts every image of `source` at one severity (parallel over images, deterministic).
pub fn corrupt_set(
    source: &SourceImages<'_>,
    corruption: Corruption,
    severity: u8,
    seed: u64,
    assets: &Assets,
) -> Result<Vec<u8>, CorruptError> {
    let size = source.height * source.width * source.channels;
    let images: Vec<Vec<u8>> = (0..source.len())
        .into_par_iter()
        .map(|idx| {
            let mut rng = image_rng(seed, corruption, severity, idx as u64);
            corrupt_image(
                corruption,
                severity,
                source.image(idx),
                source.height,
                source.width,
                &mut rng,
                assets,
            )
        })
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(size * source.len());
    images.iter().for_each(|img| out.extend_from_slice(img));
    Ok(out)
}

/// Generates the requested corruptions into `out_dir` (see the module docs for the layout and
/// resumption rules) and returns the final manifest. `progress` is called after each corruption.
pub fn generate(
    out_dir: &Path,
    source: &SourceImages<'_>,
    options: &GenerateOptions,
    assets: &Assets,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Manifest, CorruptError> {
    source.validate()?;
    if options.corruptions.is_empty() {
        return Err(CorruptError::EmptyList { what: "corruption" });
    }
    if options.severities.is_empty() {
        return Err(CorruptError::EmptyList { what: "severity" });
    }
    // Severities are stacked in ascending order whatever order they were given in.
    let mut severities = options.severities.clone();
    severities.sort_unstable();
    severities.dedup();
    if let Some(&bad) = severities.iter().find(|s| !(1..=5).contains(*s)) {
        return Err(CorruptError::BadSeverity {
            value: bad.to_string(),
        });
    }
    if options.corruptions.contains(&Corruption::Frost) && assets.frost.is_none() {
        return Err(CorruptError::MissingFrostTextures);
    }
    let label_bytes: Vec<u8> = source.labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    let source_record = SourceRecord {
        name: source.name.to_string(),
        num_images: source.len(),
        image_shape: [source.height, source.width, source.channels],
        pixels_sha256: sha256_bytes(source.pixels),
        labels_sha256: sha256_bytes(&label_bytes),
        details: options.source_details.clone(),
    };
    let manifest_path = out_dir.join("manifest.json");
    let previous = if options.force {
        None
    } else {
        read_resumable(&manifest_path, &source_record, options.seed, &severities)?
    };
    if previous.is_none() {
        prepare_output_dir(out_dir, options.force)?;
    }

    let num_severities = severities.len();
    let labels = write_labels(out_dir, source.labels, num_severities)?;
    let mut manifest = Manifest {
        kind: KIND.to_string(),
        recipe: RECIPE.to_string(),
        provenance: Provenance::capture(),
        source: source_record,
        seed: options.seed,
        severities: severities.clone(),
        rng: "ChaCha8, one stream per (seed, corruption index, severity, image index) laid out \
              little-endian in the 32-byte key; not NumPy's MT19937"
            .to_string(),
        labels,
        corruptions: Vec::new(),
        deviations: deviations(),
    };
    // Corruptions finished by an earlier run of the same request but not asked for now stay listed
    // (after re-verifying their files), so the manifest describes everything in the directory.
    if let Some(prev) = &previous {
        for record in prev
            .corruptions
            .iter()
            .filter(|r| !options.corruptions.contains(&r.corruption))
        {
            let path = out_dir.join(&record.file.file);
            if path.is_file() && sha256_file(&path)? == record.file.sha256 {
                manifest.corruptions.push(record.clone());
            }
        }
    }
    let image_shape = [source.height, source.width, source.channels];
    let total = options.corruptions.len();
    for (pos, &corruption) in options.corruptions.iter().enumerate() {
        let started = Instant::now();
        let file = format!("{}.npy", corruption.name());
        let path = out_dir.join(&file);
        let kept = previous
            .as_ref()
            .and_then(|m| m.corruptions.iter().find(|r| r.corruption == corruption))
            .filter(|r| {
                path.is_file()
                    && sha256_file(&path)
                        .map(|h| h == r.file.sha256)
                        .unwrap_or(false)
            });
        let record = match kept {
            Some(record) => record.clone(),
            None => {
                let mut data = Vec::with_capacity(num_severities * source.pixels.len());
                for &severity in &severities {
                    data.extend(corrupt_set(
                        source,
                        corruption,
                        severity,
                        options.seed,
                        assets,
                    )?);
                }
                let shape = vec![
                    num_severities * source.len(),
                    image_shape[0],
                    image_shape[1],
                    image_shape[2],
                ];
                write_npy(&path, NpyArray::from_u8(shape.clone(), data))?;
                CorruptionRecord {
                    corruption,
                    standard: corruption.is_standard(),
                    file: FileRecord {
                        file,
                        sha256: sha256_file(&path)?,
                        shape,
                        dtype: "uint8".into(),
                    },
                    parameters: severities
                        .iter()
                        .map(|&s| corruption.parameters(s))
                        .collect(),
                    assets: frost_assets(corruption, assets),
                    seconds: started.elapsed().as_secs_f64(),
                }
            }
        };
        manifest.corruptions.push(record);
        write_json_atomic(&manifest_path, &manifest)?;
        progress(&Progress {
            corruption,
            position: pos + 1,
            total,
            skipped: kept.is_some(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok(manifest)
}

/// Reads an existing manifest if it describes the same request (kind, recipe, source, seed,
/// severities); `None` when there is no manifest or it describes something else.
fn read_resumable(
    path: &Path,
    source: &SourceRecord,
    seed: u64,
    severities: &[u8],
) -> Result<Option<Manifest>, CorruptError> {
    if !path.is_file() {
        return Ok(None);
    }
    let err = |detail: String| CorruptError::Manifest {
        path: path.to_path_buf(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let Ok(manifest) = serde_json::from_str::<Manifest>(&text) else {
        return Ok(None);
    };
    let same = manifest.kind == KIND
        && manifest.recipe == RECIPE
        && manifest.seed == seed
        && manifest.severities == severities
        && manifest.source.pixels_sha256 == source.pixels_sha256
        && manifest.source.labels_sha256 == source.labels_sha256
        && manifest.source.num_images == source.num_images;
    Ok(same.then_some(manifest))
}

fn write_labels(
    out_dir: &Path,
    labels: &[u32],
    repeats: usize,
) -> Result<FileRecord, CorruptError> {
    let n = labels.len() * repeats;
    let tiled = labels.iter().copied().cycle().take(n);
    // CIFAR-10-C stores uint8 labels; larger label spaces need a wider type.
    let (array, dtype) = if labels.iter().all(|&l| l <= 255) {
        (
            NpyArray::from_u8(vec![n], tiled.map(|l| l as u8).collect()),
            "uint8",
        )
    } else {
        (
            NpyArray::from_i64(vec![n], tiled.map(i64::from).collect()),
            "int64",
        )
    };
    let path = out_dir.join("labels.npy");
    write_npy(&path, array)?;
    Ok(FileRecord {
        file: "labels.npy".into(),
        sha256: sha256_file(&path)?,
        shape: vec![n],
        dtype: dtype.into(),
    })
}

fn write_npy(path: &Path, array: NpyArray) -> Result<(), CorruptError> {
    npy::write(path, &array).map_err(|e| CorruptError::NpyWrite {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

fn frost_assets(corruption: Corruption, assets: &Assets) -> Option<serde_json::Value> {
    let frost = assets
        .frost
        .as_ref()
        .filter(|_| corruption == Corruption::Frost)?;
    let files: Vec<serde_json::Value> = crate::frost::FROST_FILES
        .iter()
        .zip(&frost.sha256)
        .map(|(name, sha)| serde_json::json!({ "file": name, "sha256": sha }))
        .collect();
    Some(serde_json::json!({ "frost_dir": frost.dir.display().to_string(), "textures": files }))
}

/// Known differences from `make_cifar_c.py`, recorded in every manifest.
pub fn deviations() -> Vec<String> {
    [
        "random streams are ChaCha8 (per image), not NumPy MT19937: statistically matched, not byte-identical to CIFAR-10-C",
        "motion_blur/snow: ImageMagick 6.9.11 Q16 MotionBlurImage re-implemented (bit-identical for a given angle)",
        "jpeg_compression: libjpeg's integer pipeline re-implemented (bit-identical to PIL/libjpeg-turbo for 32x32)",
        "elastic_transform: exact bilinear affine warp instead of OpenCV's 1/32-pixel quantised coordinates",
        "impulse_noise: per-value Bernoulli salt-and-pepper (current scikit-image semantics)",
        "spatter: OpenCV Canny/distanceTransform/equalizeHist re-implemented",
        "glass_blur keeps the script's NumPy aliasing (neighbour copy, not a swap)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
