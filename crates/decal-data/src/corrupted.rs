//! Corruption directories — **the** reader of corrupted test sets (one owner, issue #11): CIFAR-10-C /
//! CIFAR-100-C (Hendrycks & Dietterich 2019; seed spec §4.5) and `decal data corrupt` output alike.
//!
//! Layout: `<corruption>.npy` uint8 `[S·M, H, W, C]` whose rows `[i·M, (i+1)·M)` are the `i`-th severity
//! block, each block in test-set order, and `labels.npy` `[S·M]`. The severities are those of
//! `manifest.json`'s `severities` list (`decal data corrupt`), or 1..=5 without a manifest (the official
//! archives). The directory may be `CIFAR-10-C`, `CIFAR-100-C` or the seed's `CIFAR100-C`.
//!
//! [`CorruptionDir::open`] reads and checks the labels and severities once; [`CorruptionDir::read_pixels`]
//! reads one corruption checked against the test images' geometry; [`CorruptionDir::cell`] cuts the
//! images of one (corruption, severity) cell. [`read`] is the one-call form for a CIFAR-C cell.

use std::path::{Path, PathBuf};

use decal_io::npy::NpyData;

use crate::error::{DataError, Result};
use crate::ImageSet;

/// The 15 standard + 4 extra corruptions of CIFAR-10-C, in the benchmark's order.
pub const ALL_CORRUPTIONS: [&str; 19] = [
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "speckle_noise",
    "gaussian_blur",
    "spatter",
    "saturate",
];

/// The 13 corruptions the seed evaluates on CIFAR-10-C (Q-4).
pub const SEED_CIFAR10_C: [&str; 13] = [
    "brightness",
    "contrast",
    "defocus_blur",
    "elastic_transform",
    "fog",
    "frost",
    "glass_blur",
    "impulse_noise",
    "jpeg_compression",
    "motion_blur",
    "pixelate",
    "shot_noise",
    "snow",
];

/// Finds the corruption directory under `dir` (itself, or a `CIFAR-10-C`/`CIFAR-100-C`/`CIFAR100-C` child).
pub fn find_dir(dir: &Path, num_classes: usize) -> Result<PathBuf> {
    let subs: &[&str] = if num_classes == 100 {
        &["CIFAR-100-C", "CIFAR100-C"]
    } else {
        &["CIFAR-10-C", "CIFAR10-C"]
    };
    for d in std::iter::once(dir.to_path_buf()).chain(subs.iter().map(|s| dir.join(s))) {
        if d.join("labels.npy").is_file() {
            return Ok(d);
        }
    }
    Err(DataError::NotFound {
        dataset: subs[0].into(),
        dir: dir.into(),
        hint: format!("expected {}/<corruption>.npy and labels.npy", subs[0]),
    })
}

/// The corruptions present in `dir`: every `<name>.npy` except `labels.npy`, sorted by name (the order
/// of a sweep). Unreadable directories give an empty list; [`CorruptionDir::corruptions`] reports them.
pub fn available(dir: &Path) -> Vec<String> {
    list_npy(dir).unwrap_or_default()
}

fn list_npy(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::format(dir, e.to_string()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter_map(|n| n.strip_suffix(".npy").map(str::to_string))
        .filter(|n| n != "labels")
        .collect();
    names.sort();
    Ok(names)
}

/// A decal-io error on `p` as a [`DataError`] naming `p` once (decal-io's message already starts with it).
fn npy_error(p: &Path, e: decal_io::IoError) -> DataError {
    let text = e.to_string();
    let prefix = format!("{}: ", p.display());
    DataError::format(p, text.strip_prefix(&prefix).unwrap_or(&text).to_string())
}

/// Reads `labels.npy` of a corruption directory and checks it against the class count (the severity
/// blocks are checked by [`CorruptionDir::open`]).
pub fn read_labels(dir: &Path, num_classes: usize) -> Result<Vec<u32>> {
    let p = dir.join("labels.npy");
    let a = decal_io::npy::read(&p).map_err(|e| npy_error(&p, e))?;
    let l = a.to_labels().map_err(|e| npy_error(&p, e))?;
    let mut out = Vec::with_capacity(l.len());
    for (i, &v) in l.iter().enumerate() {
        if v < 0 || v as usize >= num_classes {
            return Err(DataError::Record {
                path: p,
                index: i,
                message: format!("label {v} outside 0..{num_classes}"),
            });
        }
        out.push(v as u32);
    }
    Ok(out)
}

/// The severities of a corruption directory: `manifest.json`'s `severities` (each in 1..=5, strictly
/// increasing), or 1..=5 when there is no manifest or it has no such key. A manifest that cannot be read or
/// parsed is an error naming it.
pub fn severities(dir: &Path) -> Result<Vec<u8>> {
    let p = dir.join("manifest.json");
    if !p.is_file() {
        return Ok(vec![1, 2, 3, 4, 5]);
    }
    let text = std::fs::read_to_string(&p).map_err(|e| DataError::format(&p, e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| DataError::format(&p, e.to_string()))?;
    let Some(list) = value.get("severities") else {
        return Ok(vec![1, 2, 3, 4, 5]);
    };
    let list: Vec<u8> = serde_json::from_value(list.clone())
        .map_err(|e| DataError::format(&p, format!("severities: {e}")))?;
    let increasing = list.windows(2).all(|w| w[0] < w[1]);
    if list.is_empty() || !increasing || list.iter().any(|s| !(1..=5).contains(s)) {
        return Err(DataError::format(
            &p,
            format!(
                "severities {list:?}: expected a strictly increasing, non-empty list within 1..=5"
            ),
        ));
    }
    Ok(list)
}

/// A corruption directory opened for reading: its severities and checked labels.
#[derive(Debug, Clone, PartialEq)]
pub struct CorruptionDir {
    /// The directory holding `<corruption>.npy` and `labels.npy`.
    pub dir: PathBuf,
    /// The severity of each block, in file order ([`severities`]).
    pub severities: Vec<u8>,
    /// `labels.npy`, every row (`severities.len()` blocks of [`CorruptionDir::per_severity`]).
    pub labels: Vec<u32>,
}

/// The pixels of one corruption file (every severity block), checked against the geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct CorruptionPixels {
    /// The corruption's name (file stem).
    pub name: String,
    /// uint8 `[S·M, H, W, C]`, row-major.
    pub pixels: Vec<u8>,
    /// `(H, W, C)`.
    pub geometry: (usize, usize, usize),
}

impl CorruptionDir {
    /// Opens `dir`: its severities ([`severities`]) and `labels.npy`, checked against `num_classes` and to
    /// form one block of equal size per severity.
    pub fn open(dir: &Path, num_classes: usize) -> Result<Self> {
        if !dir.is_dir() {
            return Err(DataError::format(dir, "not a directory"));
        }
        let severities = severities(dir)?;
        let labels = read_labels(dir, num_classes)?;
        if labels.is_empty() || labels.len() % severities.len() != 0 {
            return Err(DataError::format(
                dir.join("labels.npy"),
                format!(
                    "{} labels do not form {} severity blocks of equal size",
                    labels.len(),
                    severities.len()
                ),
            ));
        }
        Ok(CorruptionDir {
            dir: dir.to_path_buf(),
            severities,
            labels,
        })
    }

    /// M, the images per severity block.
    pub fn per_severity(&self) -> usize {
        self.labels.len() / self.severities.len()
    }

    /// The corruptions in the directory ([`available`]); an error when there is none.
    pub fn corruptions(&self) -> Result<Vec<String>> {
        let names = list_npy(&self.dir)?;
        if names.is_empty() {
            return Err(DataError::format(
                &self.dir,
                "no <corruption>.npy files next to labels.npy",
            ));
        }
        Ok(names)
    }

    /// Reads `<corruption>.npy`: uint8 `[S·M, H, W, C]` with one row per label and `(H, W, C)` equal to
    /// `geometry` (the test images'). Errors name the file.
    pub fn read_pixels(
        &self,
        corruption: &str,
        geometry: (usize, usize, usize),
    ) -> Result<CorruptionPixels> {
        let p = self.dir.join(format!("{corruption}.npy"));
        if !p.is_file() {
            return Err(DataError::format(
                &p,
                format!(
                    "corruption file missing (available: {:?})",
                    available(&self.dir)
                ),
            ));
        }
        let a = decal_io::npy::read(&p).map_err(|e| npy_error(&p, e))?;
        let NpyData::U8(pixels) = a.data else {
            return Err(DataError::format(
                &p,
                format!("dtype {:?}, expected uint8", a.dtype()),
            ));
        };
        let (h, w, c) = geometry;
        if a.shape.len() != 4 || a.shape[1..] != [h, w, c] || a.shape[0] != self.labels.len() {
            return Err(DataError::format(
                &p,
                format!(
                    "shape {:?}, expected [{}, {h}, {w}, {c}] (labels.npy rows × the test images' geometry)",
                    a.shape,
                    self.labels.len()
                ),
            ));
        }
        Ok(CorruptionPixels {
            name: corruption.to_string(),
            pixels,
            geometry,
        })
    }

    /// The images `rows` (indices within the block, `< per_severity()`) of severity block
    /// `severity_index` as an [`ImageSet`] named `name`.
    pub fn cell(
        &self,
        pixels: &CorruptionPixels,
        severity_index: usize,
        rows: &[usize],
        name: String,
        class_names: &[String],
    ) -> Result<ImageSet> {
        let m = self.per_severity();
        if severity_index >= self.severities.len() || rows.iter().any(|&r| r >= m) {
            return Err(DataError::Invalid(format!(
                "{}: cell (severity block {severity_index}, rows up to {:?}) outside {} blocks of {m}",
                pixels.name,
                rows.iter().max(),
                self.severities.len()
            )));
        }
        let (h, w, c) = pixels.geometry;
        let len = h * w * c;
        let base = severity_index * m;
        Ok(ImageSet {
            name,
            height: h,
            width: w,
            channels: c,
            pixels: rows
                .iter()
                .flat_map(|&r| {
                    pixels.pixels[(base + r) * len..(base + r + 1) * len]
                        .iter()
                        .copied()
                })
                .collect(),
            labels: rows.iter().map(|&r| self.labels[base + r]).collect(),
            class_names: class_names.to_vec(),
        })
    }
}

/// Reads one corruption at one severity (1..=5) of a CIFAR-C directory (32×32 RGB) as an [`ImageSet`]
/// named `<base>-c/<corruption>-<s>/test`.
pub fn read(
    dir: &Path,
    corruption: &str,
    severity: usize,
    class_names: &[String],
) -> Result<ImageSet> {
    let d = CorruptionDir::open(dir, class_names.len())?;
    let Some(si) = d.severities.iter().position(|&s| s as usize == severity) else {
        return Err(DataError::Invalid(format!(
            "severity {severity} is not among {:?} of {}",
            d.severities,
            dir.display()
        )));
    };
    let pixels = d.read_pixels(corruption, (32, 32, 3))?;
    let base = if class_names.len() == 100 {
        "cifar100-c"
    } else {
        "cifar10-c"
    };
    let rows: Vec<usize> = (0..d.per_severity()).collect();
    d.cell(
        &pixels,
        si,
        &rows,
        format!("{base}/{corruption}-{severity}/test"),
        class_names,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use decal_io::npy::NpyArray;

    /// A generated directory: 3 severities × 4 images of 2×2 grey, pixel = 100·block + 10·row + k.
    fn generated(dir: &Path, manifest: Option<&str>) {
        let labels: Vec<u8> = (0..12).map(|r| (r % 4) as u8).collect();
        decal_io::npy::write(
            &dir.join("labels.npy"),
            &NpyArray::from_u8(vec![12], labels),
        )
        .unwrap();
        let px: Vec<u8> = (0..12)
            .flat_map(|r| (0..4).map(move |k| (100 * (r / 4) + 10 * (r % 4) + k) as u8))
            .collect();
        decal_io::npy::write(
            &dir.join("zoom.npy"),
            &NpyArray::from_u8(vec![12, 2, 2, 1], px.clone()),
        )
        .unwrap();
        decal_io::npy::write(
            &dir.join("blur.npy"),
            &NpyArray::from_u8(vec![12, 2, 2, 1], px),
        )
        .unwrap();
        if let Some(m) = manifest {
            std::fs::write(dir.join("manifest.json"), m).unwrap();
        }
    }

    #[test]
    fn generated_directory_cells_follow_the_manifest_severities() {
        let tmp = tempfile::tempdir().unwrap();
        generated(tmp.path(), Some(r#"{"seed": 0, "severities": [1, 3, 5]}"#));
        let d = CorruptionDir::open(tmp.path(), 4).unwrap();
        assert_eq!(d.severities, vec![1, 3, 5]);
        assert_eq!(d.per_severity(), 4);
        assert_eq!(d.corruptions().unwrap(), vec!["blur", "zoom"]);
        let px = d.read_pixels("zoom", (2, 2, 1)).unwrap();
        let classes: Vec<String> = (0..4).map(|c| c.to_string()).collect();
        let cell = d
            .cell(&px, 1, &[0, 3], "x/zoom/3".into(), &classes)
            .unwrap();
        assert_eq!(cell.pixels, vec![100, 101, 102, 103, 130, 131, 132, 133]);
        assert_eq!(cell.labels, vec![0, 3]);
        assert!(d.cell(&px, 3, &[0], "x".into(), &classes).is_err());
        assert!(d.cell(&px, 0, &[4], "x".into(), &classes).is_err());
        // The test images' geometry is enforced, naming the file.
        let e = d.read_pixels("zoom", (2, 2, 3)).unwrap_err().to_string();
        assert!(e.contains("zoom.npy") && e.contains("[12, 2, 2, 3]"), "{e}");
        // Labels outside the class count are an error.
        assert!(CorruptionDir::open(tmp.path(), 3).is_err());
    }

    #[test]
    fn a_bad_manifest_or_block_count_is_an_error_not_a_fallback() {
        let tmp = tempfile::tempdir().unwrap();
        generated(tmp.path(), Some("{not json"));
        let e = CorruptionDir::open(tmp.path(), 4).unwrap_err().to_string();
        assert!(e.contains("manifest.json"), "{e}");
        std::fs::write(
            tmp.path().join("manifest.json"),
            r#"{"severities": [3, 1]}"#,
        )
        .unwrap();
        assert!(CorruptionDir::open(tmp.path(), 4).is_err());
        // No manifest: 1..=5, and 12 labels are not five equal blocks.
        std::fs::remove_file(tmp.path().join("manifest.json")).unwrap();
        let e = CorruptionDir::open(tmp.path(), 4).unwrap_err().to_string();
        assert!(
            e.contains("labels.npy") && e.contains("5 severity blocks"),
            "{e}"
        );
    }
}
