//! SVHN cropped digits, format 2 (`{train,test,extra}_32x32.mat`, seed spec §4.1): `X` uint8
//! `[32, 32, 3, N]` column-major, `y` `[N, 1]` with labels 1..10 where 10 means the digit 0.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::mat::{parse_mat_bytes, MatData};
use crate::{ImageSet, SplitName};

/// Decodes an SVHN `.mat` file's bytes into HWC pixels and labels 0..9. `path` is used in errors.
pub fn parse_svhn_bytes(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<u32>)> {
    let mat = parse_mat_bytes(bytes).map_err(|e| DataError::format(path, e))?;
    let x = mat
        .get("X")
        .ok_or_else(|| DataError::format(path, "no variable 'X'"))?;
    let y = mat
        .get("y")
        .ok_or_else(|| DataError::format(path, "no variable 'y'"))?;
    let (h, w, c, n) = match x.dims.as_slice() {
        [h, w, c, n] => (*h, *w, *c, *n),
        [h, w, c] => (*h, *w, *c, 1),
        d => {
            return Err(DataError::format(
                path,
                format!("'X' has dimensions {d:?}, expected [32, 32, 3, N]"),
            ))
        }
    };
    if (h, w, c) != (32, 32, 3) {
        return Err(DataError::format(
            path,
            format!("'X' is {h}×{w}×{c} per image, expected 32×32×3"),
        ));
    }
    let MatData::U8(xd) = &x.data else {
        return Err(DataError::format(path, "'X' is not uint8"));
    };
    if y.data.len() != n {
        return Err(DataError::format(
            path,
            format!("'y' has {} labels but 'X' has {n} images", y.data.len()),
        ));
    }
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let v = y.data.get_f64(i);
        if !(1.0..=10.0).contains(&v) || v.fract() != 0.0 {
            return Err(DataError::Record {
                path: path.into(),
                index: i,
                message: format!("label {v} outside 1..10"),
            });
        }
        labels.push(if v == 10.0 { 0 } else { v as u32 });
    }
    // Column-major: X(r, c, ch, n) at r + 32·c + 1024·ch + 3072·n.
    let mut pixels = vec![0u8; n * 3072];
    for (img, dst) in pixels.chunks_exact_mut(3072).enumerate() {
        let src = &xd[img * 3072..(img + 1) * 3072];
        for ch in 0..3 {
            for col in 0..32 {
                for row in 0..32 {
                    dst[(row * 32 + col) * 3 + ch] = src[row + 32 * col + 1024 * ch];
                }
            }
        }
    }
    Ok((pixels, labels))
}

/// Fuzzing entry point for the `.mat` reader.
pub fn parse_mat_file_bytes(bytes: &[u8]) -> std::result::Result<crate::mat::MatFile, String> {
    parse_mat_bytes(bytes)
}

/// Reads one SVHN `.mat` file into an [`ImageSet`] named `name`.
pub fn read_file(path: &Path, name: String) -> Result<ImageSet> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let (pixels, labels) = parse_svhn_bytes(&bytes, path)?;
    Ok(ImageSet {
        name,
        height: 32,
        width: 32,
        channels: 3,
        pixels,
        labels,
        class_names: (0..10).map(|d| d.to_string()).collect(),
    })
}

/// Official image counts per split.
pub fn official_count(split: SplitName) -> Option<usize> {
    match split {
        SplitName::Train => Some(73_257),
        SplitName::Test => Some(26_032),
        SplitName::Extra => Some(531_131),
        _ => None,
    }
}

/// Reads `split` (train, test or extra) from `dir` or `dir/svhn`, checking the official count.
pub fn load_svhn(dir: &Path, split: SplitName) -> Result<ImageSet> {
    let Some(expected) = official_count(split) else {
        return Err(DataError::Invalid(format!(
            "svhn has no '{split}' split (use train, test or extra)"
        )));
    };
    let file = format!("{}_32x32.mat", split.as_str());
    let candidates: Vec<PathBuf> = vec![
        dir.join(&file),
        dir.join("svhn").join(&file),
        dir.join("SVHN").join(&file),
    ];
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Err(DataError::NotFound {
            dataset: "SVHN".into(),
            dir: dir.into(),
            hint: format!("expected {file} (format 2, cropped digits); `decal data download svhn --dir DIR` fetches it"),
        });
    };
    let set = read_file(path, format!("svhn/{split}"))?;
    if set.len() != expected {
        return Err(DataError::format(
            path,
            format!("holds {} images, expected {expected}", set.len()),
        ));
    }
    Ok(set)
}
