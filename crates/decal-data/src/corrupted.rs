//! CIFAR-10-C / CIFAR-100-C (Hendrycks & Dietterich 2019; seed spec §4.5): `<corruption>.npy` uint8
//! `[5·M, 32, 32, 3]` whose rows `[(s−1)·M, s·M)` are severity `s = 1..5`, each block in test-set order,
//! and `labels.npy` `[5·M]`. The directory may be `CIFAR-10-C`, `CIFAR-100-C` or the seed's `CIFAR100-C`.

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

/// The 13 corruptions the seed evaluates on CIFAR-10-C.
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

/// The corruptions present in `dir` (those of [`ALL_CORRUPTIONS`] with a `.npy` file), in benchmark order.
pub fn available(dir: &Path) -> Vec<String> {
    ALL_CORRUPTIONS
        .iter()
        .filter(|c| dir.join(format!("{c}.npy")).is_file())
        .map(|c| c.to_string())
        .collect()
}

/// A decal-io error on `p` as a [`DataError`] naming `p` once (decal-io's message already starts with it).
fn npy_error(p: &Path, e: decal_io::IoError) -> DataError {
    let text = e.to_string();
    let prefix = format!("{}: ", p.display());
    DataError::format(p, text.strip_prefix(&prefix).unwrap_or(&text).to_string())
}

/// Reads `labels.npy` of a corruption directory and checks it against the class count.
pub fn read_labels(dir: &Path, num_classes: usize) -> Result<Vec<u32>> {
    let p = dir.join("labels.npy");
    let a = decal_io::npy::read(&p).map_err(|e| npy_error(&p, e))?;
    let l = a.to_labels().map_err(|e| npy_error(&p, e))?;
    if l.len() % 5 != 0 {
        return Err(DataError::format(
            &p,
            format!("{} labels is not five severity blocks", l.len()),
        ));
    }
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

/// Reads one corruption at one severity (1..=5) as an [`ImageSet`] named `<base>-c/<corruption>-<s>/test`.
pub fn read(
    dir: &Path,
    corruption: &str,
    severity: usize,
    class_names: &[String],
) -> Result<ImageSet> {
    if !(1..=5).contains(&severity) {
        return Err(DataError::Invalid(format!(
            "severity {severity} outside 1..=5"
        )));
    }
    let labels = read_labels(dir, class_names.len())?;
    let p = dir.join(format!("{corruption}.npy"));
    if !p.is_file() {
        return Err(DataError::format(
            &p,
            format!("corruption file missing (available: {:?})", available(dir)),
        ));
    }
    let a = decal_io::npy::read(&p).map_err(|e| npy_error(&p, e))?;
    let NpyData::U8(px) = a.data else {
        return Err(DataError::format(
            &p,
            format!("dtype {:?}, expected uint8", a.dtype()),
        ));
    };
    if a.shape.len() != 4 || a.shape[1..] != [32, 32, 3] || a.shape[0] != labels.len() {
        return Err(DataError::format(
            &p,
            format!(
                "shape {:?}, expected [{}, 32, 32, 3] to match labels.npy",
                a.shape,
                labels.len()
            ),
        ));
    }
    let m = labels.len() / 5;
    let (lo, hi) = ((severity - 1) * m, severity * m);
    let base = if class_names.len() == 100 {
        "cifar100-c"
    } else {
        "cifar10-c"
    };
    Ok(ImageSet {
        name: format!("{base}/{corruption}-{severity}/test"),
        height: 32,
        width: 32,
        channels: 3,
        pixels: px[lo * 3072..hi * 3072].to_vec(),
        labels: labels[lo..hi].to_vec(),
        class_names: class_names.to_vec(),
    })
}
