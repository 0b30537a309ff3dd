//! Loading prediction matrices and label vectors from `.npy`, `.npz` or `.csv`, with the validation every
//! command needs: `[N, K]` shape, finite values (the error names the row), integer labels in `[0, K)`.
//! The format is chosen by the file extension (`.npy`, `.npz`, `.csv`; anything else is tried as `.npy`).

use std::path::Path;

use crate::error::IoError;
use crate::npy::{NpyArray, NpyData};

/// A row-major `[rows, cols]` matrix of `f64` (converted exactly from f16/f32/f64 storage).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Number of rows (N, examples).
    pub rows: usize,
    /// Number of columns (K, classes).
    pub cols: usize,
    /// `rows × cols` values, row-major.
    pub data: Vec<f64>,
}

impl Matrix {
    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Loads one array from `.npy`, `.npz` (by `key`; optional when the archive holds exactly one array)
/// or `.csv` (returned as a 2-D `f64` array, or 1-D when it has a single column).
pub fn load_array(path: &Path, key: Option<&str>) -> Result<NpyArray, IoError> {
    match extension(path).as_str() {
        "npz" => {
            if let Some(key) = key {
                return crate::npz::read_key(path, key);
            }
            let mut arrays = crate::npz::read(path)?;
            match arrays.len() {
                1 => Ok(arrays.remove(0).1),
                0 => Err(IoError::format(path, "archive holds no arrays")),
                _ => Err(IoError::format(
                    path,
                    format!(
                        "archive holds several arrays ({}); choose one with --key",
                        arrays
                            .iter()
                            .map(|(k, _)| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        }
        "csv" => {
            let m = crate::csv::read(path)?;
            let shape = if m.cols == 1 {
                vec![m.rows]
            } else {
                vec![m.rows, m.cols]
            };
            Ok(NpyArray::from_f64(shape, m.data))
        }
        _ => crate::npy::read(path),
    }
}

/// Loads a `[N, K]` floating-point matrix (logits or probabilities) and checks it: 2-D, N ≥ 1, K ≥ 1,
/// float dtype, every value finite (the error names the first bad row and column).
pub fn load_matrix(path: &Path, key: Option<&str>) -> Result<Matrix, IoError> {
    let array = load_array(path, key)?;
    matrix_from_array(array, path)
}

/// Validates an already-loaded array as a `[N, K]` float matrix (see [`load_matrix`]).
pub fn matrix_from_array(array: NpyArray, path: &Path) -> Result<Matrix, IoError> {
    if array.shape.len() != 2 {
        return Err(IoError::format(
            path,
            format!(
                "expected a 2-D [N, K] array of scores, got shape {:?}",
                array.shape
            ),
        ));
    }
    let (rows, cols) = (array.shape[0], array.shape[1]);
    if rows == 0 || cols == 0 {
        return Err(IoError::format(
            path,
            format!("empty array of shape {:?}", array.shape),
        ));
    }
    let data = match array.data {
        NpyData::F64(v) => v,
        NpyData::F32(v) => v.into_iter().map(f64::from).collect(),
        other => {
            return Err(IoError::format(
                path,
                format!(
                    "expected float32/float64 scores, got dtype {}",
                    other.dtype().code()
                ),
            ))
        }
    };
    if let Some(pos) = data.iter().position(|x| !x.is_finite()) {
        return Err(IoError::format(
            path,
            format!(
                "row {}, column {} is {} (scores must be finite)",
                pos / cols,
                pos % cols,
                data[pos]
            ),
        ));
    }
    Ok(Matrix { rows, cols, data })
}

/// Loads class labels: shape `[N]` or `[N, 1]`, any integer dtype (or floats holding integers),
/// N ≥ 1. Range is checked separately with [`check_labels`] once K is known.
pub fn load_labels(path: &Path, key: Option<&str>) -> Result<Vec<i64>, IoError> {
    if extension(path) == "csv" {
        // Integers straight from the text: a label too large for f64 is reported exactly.
        let labels = crate::csv::read_labels(path)?;
        if labels.is_empty() {
            return Err(IoError::format(path, "no labels (empty file)"));
        }
        return Ok(labels);
    }
    let array = load_array(path, key)?;
    labels_from_array(&array, path)
}

/// Validates an already-loaded array as a label vector (see [`load_labels`]).
pub fn labels_from_array(array: &NpyArray, path: &Path) -> Result<Vec<i64>, IoError> {
    let ok_shape = array.shape.len() == 1 || (array.shape.len() == 2 && array.shape[1] == 1);
    if !ok_shape {
        return Err(IoError::format(
            path,
            format!("expected labels of shape [N], got shape {:?}", array.shape),
        ));
    }
    if array.is_empty() {
        return Err(IoError::format(path, "no labels (empty array)"));
    }
    array.to_labels().map_err(|e| match e {
        IoError::Value { message, .. } => IoError::format(path, message),
        other => other,
    })
}

/// Checks that every label lies in `[0, num_classes)`; the error names the first bad index.
pub fn check_labels(labels: &[i64], num_classes: usize, path: &Path) -> Result<(), IoError> {
    if let Some(i) = labels
        .iter()
        .position(|&y| y < 0 || y as u64 >= num_classes as u64)
    {
        return Err(IoError::format(
            path,
            format!(
                "label {i} is {}, outside [0, {num_classes}) for {num_classes} classes",
                labels[i]
            ),
        ));
    }
    Ok(())
}
