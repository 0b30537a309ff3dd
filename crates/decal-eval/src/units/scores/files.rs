//! The files scoring units leave for each other and for the report: predictions stored exactly (f64
//! logits, labels, −MI, their kind), the `[eval] save_predictions` export, and [`merge_row`], which turns a
//! row's `eval.json` and its `ood.json` files back into the records and `results.json` entry the old
//! single-function run produced, in the same order.

use std::path::Path;

use decal_io::{npy, NpyArray};
use decal_report::MetricRecord;
use serde_json::{json, Value};

use crate::predict::{LogitKind, Predictions};

/// Why stored predictions could not be written or read back: the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FileError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

fn err(path: &Path, problem: impl std::fmt::Display) -> FileError {
    FileError {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// Writes `p` exactly under `dir` as `<stem>_logits.npy` (f64 `[N, K]`), `<stem>_labels.npy` (i64 `[N]`),
/// `<stem>_negmi.npy` (f64 `[N]`, V-TST with m ≥ 2 only) and `<stem>_predictions.json` (kind, N, K).
pub fn save_predictions(dir: &Path, stem: &str, p: &Predictions) -> Result<(), FileError> {
    let n = p.len();
    let write = |name: String, arr: NpyArray| {
        let path = dir.join(name);
        npy::write(&path, &arr).map_err(|e| err(&path, e))
    };
    write(
        format!("{stem}_logits.npy"),
        NpyArray::from_f64(vec![n, p.num_classes], p.logits.clone()),
    )?;
    write(
        format!("{stem}_labels.npy"),
        NpyArray::from_i64(vec![n], p.labels.clone()),
    )?;
    if let Some(mi) = &p.neg_mutual_information {
        write(
            format!("{stem}_negmi.npy"),
            NpyArray::from_f64(vec![n], mi.clone()),
        )?;
    }
    let meta = dir.join(format!("{stem}_predictions.json"));
    let value = json!({
        "kind": p.kind.name(), "n": n, "num_classes": p.num_classes,
        "neg_mutual_information": p.neg_mutual_information.is_some(),
    });
    decal_core::write_json_atomic(&meta, &value).map_err(|e| err(&meta, e))
}

fn read_f64(path: &Path, shape: &[usize]) -> Result<Vec<f64>, FileError> {
    let arr = npy::read(path).map_err(|e| err(path, e))?;
    if arr.shape != shape {
        return Err(err(
            path,
            format!("shape {:?}, expected {shape:?}", arr.shape),
        ));
    }
    match arr.data {
        decal_io::npy::NpyData::F64(v) => Ok(v),
        _ => Err(err(path, "not a float64 array")),
    }
}

/// Reads back what [`save_predictions`] wrote (bit for bit), checking every shape against the metadata.
pub fn load_predictions(dir: &Path, stem: &str) -> Result<Predictions, FileError> {
    let meta_path = dir.join(format!("{stem}_predictions.json"));
    let text = std::fs::read_to_string(&meta_path).map_err(|e| err(&meta_path, e))?;
    let meta: Value = serde_json::from_str(&text).map_err(|e| err(&meta_path, e))?;
    let field = |k: &str| meta.get(k).and_then(Value::as_u64).map(|v| v as usize);
    let (Some(n), Some(k)) = (field("n"), field("num_classes")) else {
        return Err(err(&meta_path, "no n / num_classes"));
    };
    let name = meta.get("kind").and_then(Value::as_str);
    let Some(kind) = name.and_then(LogitKind::by_name) else {
        return Err(err(&meta_path, format!("unknown kind {name:?}")));
    };
    let logits = read_f64(&dir.join(format!("{stem}_logits.npy")), &[n, k])?;
    let labels_path = dir.join(format!("{stem}_labels.npy"));
    let labels = npy::read(&labels_path).map_err(|e| err(&labels_path, e))?;
    if labels.shape != [n] {
        return Err(err(
            &labels_path,
            format!("shape {:?}, expected [{n}]", labels.shape),
        ));
    }
    let labels = labels.to_labels().map_err(|e| err(&labels_path, e))?;
    let neg_mutual_information = match meta.get("neg_mutual_information").and_then(Value::as_bool) {
        Some(true) => Some(read_f64(&dir.join(format!("{stem}_negmi.npy")), &[n])?),
        _ => None,
    };
    Ok(Predictions {
        num_classes: k,
        logits,
        kind,
        labels,
        neg_mutual_information,
    })
}

/// The `[eval] save_predictions` export (what `save_test_predictions` wrote per method): the test
/// probabilities (float32 `[N, K]`) and labels as `<dir>/test_probs.npy` and `<dir>/test_labels.npy`.
pub fn export_test_probabilities(dir: &Path, p: &Predictions) -> Result<(), FileError> {
    let path = dir.join("test_probs.npy");
    let arr = NpyArray::from_f32(
        vec![p.len(), p.num_classes],
        p.probabilities().iter().map(|&v| v as f32).collect(),
    );
    npy::write(&path, &arr).map_err(|e| err(&path, e))?;
    let lpath = dir.join("test_labels.npy");
    npy::write(&lpath, &NpyArray::from_i64(vec![p.len()], p.labels.clone()))
        .map_err(|e| err(&lpath, e))
}

fn records(value: &Value, key: &str, what: &str) -> Result<Vec<MetricRecord>, String> {
    match value.get(key) {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("{what}: {key}: {e}")),
    }
}

/// One row × seed put back together for the report: `eval` is the row's `eval.json`, `oods` its `ood.json`
/// values in plan order (the sets in `[[ood]]` order, then the `pooled` unit's, if planned). Returns the
/// records in the old run's order (test, train, every OOD record, then every paper-profile OOD record) and
/// the row's `results.json` entry (`test`, `train`, `ood`, `ood_paper`, each present when computed).
pub fn merge_row(eval: &Value, oods: &[&Value]) -> Result<(Vec<MetricRecord>, Value), String> {
    let mut all = records(eval, "records", "eval.json")?;
    let mut paper = Vec::new();
    let mut results = match eval.get("results") {
        Some(Value::Object(m)) => m.clone(),
        _ => return Err("eval.json: no results object".into()),
    };
    let mut ood = serde_json::Map::new();
    let mut ood_paper: Option<serde_json::Map<String, Value>> = None;
    for v in oods {
        all.extend(records(v, "records", "ood.json")?);
        paper.extend(records(v, "records_paper", "ood.json")?);
        if let Some(Value::Object(m)) = v.get("ood") {
            ood.extend(m.clone());
        }
        if let Some(Value::Object(m)) = v.get("ood_paper") {
            ood_paper
                .get_or_insert_with(Default::default)
                .extend(m.clone());
        }
    }
    all.extend(paper);
    if !oods.is_empty() {
        results.insert("ood".into(), Value::Object(ood));
    }
    if let Some(m) = ood_paper {
        results.insert("ood_paper".into(), Value::Object(m));
    }
    Ok((all, Value::Object(results)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(mi: bool) -> Predictions {
        Predictions {
            num_classes: 3,
            logits: vec![0.1, -2.5, 1.0 / 3.0, 7.0, 0.0, -1e-300],
            kind: if mi {
                LogitKind::LogProbs
            } else {
                LogitKind::Logits
            },
            labels: vec![2, 0],
            neg_mutual_information: mi.then(|| vec![-0.25, -1.0 / 7.0]),
        }
    }

    #[test]
    fn predictions_round_trip_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        for mi in [false, true] {
            let p = sample(mi);
            save_predictions(dir.path(), "x", &p).unwrap();
            assert_eq!(load_predictions(dir.path(), "x").unwrap(), p);
        }
    }

    #[test]
    fn damaged_predictions_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        save_predictions(dir.path(), "x", &sample(false)).unwrap();
        npy::write(
            &dir.path().join("x_logits.npy"),
            &NpyArray::from_f64(vec![3, 2], vec![0.0; 6]),
        )
        .unwrap();
        let e = load_predictions(dir.path(), "x").unwrap_err().to_string();
        assert!(e.contains("x_logits.npy") && e.contains("[3, 2]"), "{e}");
    }
}
