//! Features saved from any model as the backbone of an experiment (`[backbone] features = { … }` in
//! `decal run`, and `decal heads`): stage 2 needs only the frozen features, not the network.
//!
//! Every input is a path, optionally with a member: `F.npy`, `F.npz` (one array, or `F.npz:name`),
//! `F.safetensors` (one tensor, or `F.safetensors:name`). Features and logits are floating point
//! (float16, float32 or float64; used as float32, as decal's own feature cache), `[N, F]` / `[N, K]`;
//! labels are integers `[N]`. [`load`] checks everything before any work and names the file and the
//! problem: rows that disagree with the labels, different feature widths between splits, NaN/Inf values
//! (first row and column), labels outside `[0, K)`, logits whose width is not K.
//!
//! The model's own logits (`test_logits`, and optionally `val_logits`, `train_logits`, `ood_logits`) are the
//! baseline: the `Baseline` row evaluates them as they are, `TS` fits a temperature on `val_logits`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use decal_core::sha256_bytes;
use decal_io::npy::{NpyArray, NpyData};
use decal_train::features::{BodyMode, CacheKey, FeatureSet};
use serde::{Deserialize, Serialize};
use tch::Kind;

/// `[backbone] features = { train = …, train_labels = …, … }`: feature files of every split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureFiles {
    /// Training features `[N, F]`.
    pub train: PathBuf,
    /// Training labels `[N]`.
    pub train_labels: PathBuf,
    /// Validation features (checkpoint selection, temperature fits).
    pub val: PathBuf,
    /// Validation labels.
    pub val_labels: PathBuf,
    /// Test features.
    pub test: PathBuf,
    /// Test labels.
    pub test_labels: PathBuf,
    /// Out-of-distribution features by set name.
    #[serde(default)]
    pub ood: BTreeMap<String, PathBuf>,
    /// The model's own test logits `[N, K]`: adds the `Baseline` row.
    #[serde(default)]
    pub test_logits: Option<PathBuf>,
    /// The model's validation logits: with `temperature_scaling = true`, adds the baseline `TS` rows.
    #[serde(default)]
    pub val_logits: Option<PathBuf>,
    /// The model's training logits (the baseline's train NLL; optional).
    #[serde(default)]
    pub train_logits: Option<PathBuf>,
    /// The model's logits on the OOD sets, by set name (the baseline's OOD detection; optional).
    #[serde(default)]
    pub ood_logits: BTreeMap<String, PathBuf>,
    /// Augmented views of the training features (the faithful stage 2: each epoch every training row is
    /// replaced by one of its views, chosen by [`decal_train::views::ViewSampler`]): a stack `[A, N, F]`
    /// (`.npy`, `.npz:name`, `.safetensors:name`), a folder of per-view `[N, F]` files (`*.npy`, sorted by
    /// name) or a decal view cache (a folder with `views.json`). Row `r` of every view is an augmentation
    /// of training row `r`; validation and test stay as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_views: Option<PathBuf>,
    /// K (default: the logits' width, else the largest label + 1).
    #[serde(default)]
    pub num_classes: Option<usize>,
    /// Dataset name in records (default `features`).
    #[serde(default = "default_dataset")]
    pub dataset: String,
}

fn default_dataset() -> String {
    "features".into()
}

impl FeatureFiles {
    /// Makes relative paths relative to `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for p in [
            &mut self.train,
            &mut self.train_labels,
            &mut self.val,
            &mut self.val_labels,
            &mut self.test,
            &mut self.test_labels,
        ] {
            fix(p);
        }
        for p in self
            .ood
            .values_mut()
            .chain(self.ood_logits.values_mut())
            .chain(self.test_logits.iter_mut())
            .chain(self.val_logits.iter_mut())
            .chain(self.train_logits.iter_mut())
            .chain(self.train_views.iter_mut())
        {
            fix(p);
        }
    }
}

/// One loaded split: the features, their cache key (content hash of the files) and the model's logits.
#[derive(Debug, Clone)]
pub struct LoadedSplit {
    /// Features and labels.
    pub features: FeatureSet,
    /// Identifies the content (SHA-256 of features and labels).
    pub key: CacheKey,
    /// The model's own logits `[N, K]` as a feature set of width K (same labels), when given.
    pub logits: Option<FeatureSet>,
}

/// Every split of a [`FeatureFiles`], checked.
#[derive(Debug, Clone)]
pub struct LoadedFeatures {
    /// Training split.
    pub train: LoadedSplit,
    /// Validation split.
    pub val: LoadedSplit,
    /// Test split.
    pub test: LoadedSplit,
    /// OOD sets by name (labels are zeros: unused).
    pub ood: Vec<(String, LoadedSplit)>,
    /// F.
    pub feature_dim: usize,
    /// K.
    pub num_classes: usize,
    /// SHA-256 over every logits array given (the baseline's content, for content addressing).
    pub logits_hash: String,
}

/// A path with an optional member: `F.npz:key`, `F.safetensors:name` (only after these extensions, so a
/// plain path with a colon is kept whole).
pub fn split_member(path: &Path) -> (PathBuf, Option<String>) {
    let text = path.to_string_lossy();
    for ext in [".npz:", ".safetensors:"] {
        if let Some(pos) = text.rfind(ext) {
            let cut = pos + ext.len() - 1;
            return (
                PathBuf::from(&text[..cut]),
                Some(text[cut + 1..].to_string()),
            );
        }
    }
    (path.to_path_buf(), None)
}

/// Reads one array (shape, data) from `.npy`, `.npz` or `.safetensors`.
pub fn read_array(spec: &Path) -> Result<NpyArray, String> {
    let (path, member) = split_member(spec);
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if !is_safetensors {
        return decal_io::matrix::load_array(&path, member.as_deref()).map_err(|e| e.to_string());
    }
    let state = decal_models::import::read_state_dict(&path).map_err(|e| e.to_string())?;
    let names: Vec<&str> = state.tensors.iter().map(|(n, _)| n.as_str()).collect();
    let tensor = match &member {
        Some(m) => state.tensors.iter().find(|(n, _)| n == m).ok_or_else(|| {
            format!(
                "{}: no tensor named '{m}' (file holds: {})",
                path.display(),
                names.join(", ")
            )
        })?,
        None if state.tensors.len() == 1 => &state.tensors[0],
        None => {
            return Err(format!(
                "{}: holds {} tensors ({}); name one as {}:<name>",
                path.display(),
                names.len(),
                names.join(", "),
                path.display()
            ))
        }
    };
    let (name, t) = tensor;
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let flat = t.flatten(0, -1);
    let data = match t.kind() {
        Kind::Float | Kind::Half | Kind::BFloat16 => NpyData::F32(
            Vec::<f32>::try_from(flat.to_kind(Kind::Float)).map_err(|e| e.to_string())?,
        ),
        Kind::Double => NpyData::F64(Vec::<f64>::try_from(flat).map_err(|e| e.to_string())?),
        Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8 => NpyData::I64(
            Vec::<i64>::try_from(flat.to_kind(Kind::Int64)).map_err(|e| e.to_string())?,
        ),
        other => {
            return Err(format!(
                "{}: tensor '{name}' has unsupported dtype {other:?}",
                path.display()
            ))
        }
    };
    Ok(NpyArray { shape, data })
}

/// Reads a float matrix `[N, W]` as float32, checking that every value is finite.
pub fn read_matrix(spec: &Path, what: &str) -> Result<(Vec<f32>, usize, usize), String> {
    let fail = |m: String| format!("{what} {}: {m}", spec.display());
    let array = read_array(spec).map_err(|e| format!("{what}: {e}"))?;
    if array.shape.len() != 2 || array.shape[0] == 0 || array.shape[1] == 0 {
        return Err(fail(format!(
            "expected a non-empty 2-D [N, F] array, got shape {:?}",
            array.shape
        )));
    }
    let (rows, cols) = (array.shape[0], array.shape[1]);
    let values: Vec<f32> = match array.data {
        NpyData::F32(v) => v,
        NpyData::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        other => {
            return Err(fail(format!(
                "expected floating-point values (float16/32/64), got dtype {}",
                other.dtype().code()
            )))
        }
    };
    if let Some(pos) = values.iter().position(|x| !x.is_finite()) {
        return Err(fail(format!(
            "row {}, column {} is {} (values must be finite; float64 values beyond the float32 range \
             become infinite)",
            pos / cols,
            pos % cols,
            values[pos]
        )));
    }
    Ok((values, rows, cols))
}

/// Reads integer labels `[N]`.
pub fn read_labels(spec: &Path, what: &str) -> Result<Vec<i64>, String> {
    let array = read_array(spec).map_err(|e| format!("{what}: {e}"))?;
    decal_io::matrix::labels_from_array(&array, spec).map_err(|e| format!("{what}: {e}"))
}

/// The cache key of features (or logits) read from files: a content hash of the values and, for a split,
/// its labels (OOD sets have none), described by `what` (the set and file).
pub fn content_key(values: &[f32], labels: Option<&[i64]>, what: &str) -> CacheKey {
    match labels {
        Some(y) => key(&[&f32_bytes(values), &i64_bytes(y)], what),
        None => key(&[&f32_bytes(values)], what),
    }
}

fn key(parts: &[&[u8]], what: &str) -> CacheKey {
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend_from_slice(sha256_bytes(p).as_bytes());
    }
    CacheKey {
        backbone_hash: "features-from-files".into(),
        data_hash: sha256_bytes(&bytes),
        transform: format!("features from files ({what})"),
        body_mode: BodyMode::Frozen,
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Loads and checks every file (see the module docs). Errors name the config key and the file.
pub fn load(files: &FeatureFiles) -> Result<LoadedFeatures, String> {
    let mut feature_dim: Option<(usize, String)> = None;
    let mut width = |cols: usize, what: &str, path: &Path| -> Result<(), String> {
        match &feature_dim {
            Some((f, first)) if *f != cols => Err(format!(
                "{what} {}: {cols} features per row, but {first} has {f} (every split needs the same feature width)",
                path.display()
            )),
            Some(_) => Ok(()),
            None => {
                feature_dim = Some((cols, format!("{what} {}", path.display())));
                Ok(())
            }
        }
    };
    let mut splits = Vec::new();
    for (name, fpath, lpath) in [
        ("train", &files.train, &files.train_labels),
        ("val", &files.val, &files.val_labels),
        ("test", &files.test, &files.test_labels),
    ] {
        let (values, rows, cols) = read_matrix(fpath, &format!("{name} features"))?;
        width(cols, &format!("{name} features"), fpath)?;
        let labels = read_labels(lpath, &format!("{name}_labels"))?;
        if labels.len() != rows {
            return Err(format!(
                "{name}_labels {}: {} labels, but {name} features {} has {rows} rows",
                lpath.display(),
                labels.len(),
                fpath.display()
            ));
        }
        splits.push((name, fpath, lpath, values, labels, cols));
    }
    let logits_of = |name: &str| match name {
        "train" => files.train_logits.as_ref(),
        "val" => files.val_logits.as_ref(),
        _ => files.test_logits.as_ref(),
    };
    // K: given, else the logits' width, else the largest label + 1.
    let mut logits_width = None;
    for name in ["test", "val", "train"] {
        if let Some(p) = logits_of(name) {
            let (_, _, cols) = read_matrix(p, &format!("{name}_logits"))?;
            logits_width.get_or_insert((cols, p.clone()));
        }
    }
    let max_label = splits
        .iter()
        .flat_map(|s| s.4.iter().copied())
        .max()
        .unwrap_or(0);
    let num_classes = files
        .num_classes
        .or(logits_width.as_ref().map(|(k, _)| *k))
        .unwrap_or((max_label.max(0) + 1) as usize);
    if num_classes < 2 {
        return Err(format!(
            "the labels name only {num_classes} class; a classifier needs at least 2 (set num_classes)"
        ));
    }
    for (name, _, lpath, _, labels, _) in &splits {
        decal_io::matrix::check_labels(labels, num_classes, lpath)
            .map_err(|e| format!("{name}_labels: {e}"))?;
    }
    let mut out = Vec::new();
    for (name, fpath, _, values, labels, cols) in splits {
        let logits = match logits_of(name) {
            Some(p) => {
                let (lv, rows, k) = read_matrix(p, &format!("{name}_logits"))?;
                if rows != labels.len() || k != num_classes {
                    return Err(format!(
                        "{name}_logits {}: shape [{rows}, {k}], expected [{}, {num_classes}] (one row per {name} example, one column per class)",
                        p.display(),
                        labels.len()
                    ));
                }
                Some(FeatureSet {
                    features: lv,
                    labels: labels.clone(),
                    feature_dim: k,
                })
            }
            None => None,
        };
        let key = key(
            &[&f32_bytes(&values), &i64_bytes(&labels)],
            &format!("{name}: {}", fpath.display()),
        );
        out.push(LoadedSplit {
            features: FeatureSet {
                features: values,
                labels,
                feature_dim: cols,
            },
            key,
            logits,
        });
    }
    for name in files.ood_logits.keys() {
        if !files.ood.contains_key(name) {
            return Err(format!(
                "ood_logits {name:?}: there is no OOD feature set of that name (ood: {})",
                files.ood.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let mut ood = Vec::new();
    for (name, path) in &files.ood {
        let what = format!("OOD features {name:?}");
        let (values, rows, cols) = read_matrix(path, &what)?;
        width(cols, &what, path)?;
        let logits = match files.ood_logits.get(name) {
            Some(p) => {
                let (lv, lrows, k) = read_matrix(p, &format!("ood_logits {name:?}"))?;
                if lrows != rows || k != num_classes {
                    return Err(format!(
                        "ood_logits {name:?} {}: shape [{lrows}, {k}], expected [{rows}, {num_classes}]",
                        p.display()
                    ));
                }
                Some(FeatureSet {
                    features: lv,
                    labels: vec![0; rows],
                    feature_dim: k,
                })
            }
            None => None,
        };
        let key = key(
            &[&f32_bytes(&values)],
            &format!("ood {name}: {}", path.display()),
        );
        ood.push((
            name.clone(),
            LoadedSplit {
                features: FeatureSet {
                    features: values,
                    labels: vec![0; rows],
                    feature_dim: cols,
                },
                key,
                logits,
            },
        ));
    }
    let mut logit_bytes = Vec::new();
    for (name, split) in out
        .iter()
        .map(|s| ("", s))
        .chain(ood.iter().map(|(n, s)| (n.as_str(), s)))
    {
        if let Some(l) = &split.logits {
            logit_bytes.extend_from_slice(name.as_bytes());
            logit_bytes.extend_from_slice(sha256_bytes(&f32_bytes(&l.features)).as_bytes());
        }
    }
    let logits_hash = sha256_bytes(&logit_bytes);
    let mut it = out.into_iter();
    let (train, val, test) = (
        it.next().expect("three splits"),
        it.next().expect("three splits"),
        it.next().expect("three splits"),
    );
    Ok(LoadedFeatures {
        feature_dim: train.features.feature_dim,
        train,
        val,
        test,
        ood,
        num_classes,
        logits_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_f32(dir: &Path, name: &str, shape: Vec<usize>, v: Vec<f32>) -> PathBuf {
        let p = dir.join(name);
        decal_io::npy::write(&p, &NpyArray::from_f32(shape, v)).unwrap();
        p
    }
    fn write_i64(dir: &Path, name: &str, v: Vec<i64>) -> PathBuf {
        let p = dir.join(name);
        decal_io::npy::write(&p, &NpyArray::from_i64(vec![v.len()], v)).unwrap();
        p
    }

    fn files(dir: &Path) -> FeatureFiles {
        let f = |n: &str, rows: usize| {
            write_f32(
                dir,
                &format!("{n}.npy"),
                vec![rows, 3],
                (0..rows * 3).map(|i| i as f32 * 0.1).collect(),
            )
        };
        FeatureFiles {
            train: f("train", 6),
            train_labels: write_i64(dir, "train_y.npy", vec![0, 1, 2, 0, 1, 2]),
            val: f("val", 4),
            val_labels: write_i64(dir, "val_y.npy", vec![0, 1, 2, 0]),
            test: f("test", 4),
            test_labels: write_i64(dir, "test_y.npy", vec![2, 1, 0, 0]),
            ood: BTreeMap::new(),
            test_logits: None,
            val_logits: None,
            train_logits: None,
            ood_logits: BTreeMap::new(),
            train_views: None,
            num_classes: None,
            dataset: default_dataset(),
        }
    }

    #[test]
    fn loads_and_infers_the_classes() {
        let dir = tempfile::tempdir().unwrap();
        let l = load(&files(dir.path())).unwrap();
        assert_eq!((l.feature_dim, l.num_classes), (3, 3));
        assert_eq!(l.test.features.labels, vec![2, 1, 0, 0]);
        assert_ne!(l.train.key, l.val.key);
    }

    #[test]
    fn bad_inputs_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Rows disagree with labels.
        let mut f = files(d);
        f.val_labels = write_i64(d, "short.npy", vec![0, 1]);
        let e = load(&f).unwrap_err();
        assert!(
            e.contains("val_labels") && e.contains("short.npy") && e.contains("4 rows"),
            "{e}"
        );
        // Different widths.
        let mut f = files(d);
        f.test = write_f32(d, "wide.npy", vec![4, 5], vec![0.0; 20]);
        let e = load(&f).unwrap_err();
        assert!(
            e.contains("wide.npy") && e.contains("5 features per row"),
            "{e}"
        );
        // NaN.
        let mut f = files(d);
        let mut v = vec![0.0f32; 12];
        v[7] = f32::NAN;
        f.train = write_f32(d, "nan.npy", vec![6, 2], v);
        let e = load(&f).unwrap_err();
        assert!(
            e.contains("nan.npy") && e.contains("row 3, column 1 is NaN"),
            "{e}"
        );
        // Labels outside the class range given by the logits.
        let mut f = files(d);
        f.test_logits = Some(write_f32(d, "logits2.npy", vec![4, 2], vec![0.0; 8]));
        let e = load(&f).unwrap_err();
        assert!(
            e.contains("train_labels") && e.contains("outside [0, 2)"),
            "{e}"
        );
        // Integer features.
        let mut f = files(d);
        f.val = write_i64(d, "ints.npy", vec![1, 2, 3, 4]);
        let e = load(&f).unwrap_err();
        assert!(e.contains("val features") && e.contains("ints.npy"), "{e}");
    }

    #[test]
    fn members_are_split_only_after_known_extensions() {
        assert_eq!(
            split_member(Path::new("a/f.npz:train_x")),
            (PathBuf::from("a/f.npz"), Some("train_x".into()))
        );
        assert_eq!(
            split_member(Path::new("f.safetensors:features")),
            (PathBuf::from("f.safetensors"), Some("features".into()))
        );
        assert_eq!(
            split_member(Path::new("c:/x.npy")),
            (PathBuf::from("c:/x.npy"), None)
        );
    }
}
