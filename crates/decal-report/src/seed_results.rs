//! Import of the seed repository's per-model evaluation files (seed-system.md §10.6) as
//! [`MetricRecord`]s, so the seed's own numbers can be tabulated with the same code, next to decal's.
//!
//! A seed results file is one JSON object `{model_name: {key: value}}` written by
//! `01_eval_models.py` (one line, or pretty-printed by hand). Keys and units (§10.5, §10.6):
//!
//! | seed key | record (split / metric) | unit conversion |
//! |---|---|---|
//! | `Train nll` | `train` / `nll` | — |
//! | `clean_accuracy` | `test` / `accuracy` | fraction already |
//! | `ECE`, `MCE` | `test` / `ece`, `mce` | stored ×100 → ÷100 |
//! | `nll` | `test` / `nll` | — |
//! | `brier` | `test` / `brier_div_k` | the seed's Brier is Brier/K (BUG-3) |
//! | `SHIFT ACCURACY` | `shift` / `accuracy` | — |
//! | `SHIFT ECE`, `SHIFT MCE` | `shift` / `ece`, `mce` | ÷100 |
//! | `SHIFT Intensity: i` → `ECE`, `MCE` | `shift`, severity i+1 / `ece`, `mce` | ÷100 |
//! | `OOD AUROC` (a one-element list, BUG-14) | `ood` / `auroc` | — |
//! | `OOD FPR95` | `ood` / `fpr95` | — |
//!
//! The run is the model name, the seed is parsed from its `_seed<k>` suffix, the dataset from its second
//! `_`-separated field (`WRN_CIFAR10_…`). Tiny ImageNet entries hold placeholder zeros for shift and
//! OOD (§10.5), which are not measurements and are skipped. A summary file (`{"metric": {"average",
//! "SE"}}`) is refused: aggregate the per-model file instead (the seed's SE uses ddof = 0 and a wrong n,
//! BUG-20). The per-severity values of CIFAR-100 files are ×18/13 too large (BUG-1); their definition
//! says so.

use std::path::Path;

use serde_json::Value;

use crate::record::MetricRecord;
use crate::ReportError;

const ECE_DEF: &str = "seed: torchmetrics 1.1.2 MulticlassCalibrationError, top-label, 10 bins [lo,hi) plus a bin for conf = 1, L1";
const MCE_DEF: &str = "seed: torchmetrics 1.1.2 MulticlassCalibrationError, top-label, 10 bins [lo,hi) plus a bin for conf = 1, max";
const ACC_DEF: &str = "seed: torchmetrics multiclass accuracy (micro), fraction";
const NLL_DEF: &str =
    "seed: sklearn 1.1.3 log_loss (probabilities clipped to [1e-15, 1-1e-15], renormalised), nats";
const BRIER_DEF: &str = "seed: sklearn mean_squared_error on one-hot labels = Brier / K";
const TRAIN_NLL_DEF: &str = "seed: sklearn log_loss on the full training set (train + validation parts, test transform), nats";
const AUROC_DEF: &str =
    "seed: ood_metrics.auroc (sklearn roc_curve + auc) on MSP, ID positive, OOD sets pooled";
const FPR_DEF: &str = "seed: ood_metrics.fpr_at_95_tpr on MSP, ID positive, linear interpolation on the ROC, OOD sets pooled";

/// Reads a seed results file; every model in it becomes records of `method`.
pub fn read_seed_results(path: &Path, method: &str) -> Result<Vec<MetricRecord>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(ReportError::io(path))?;
    parse_seed_results(&text, path, method)
}

/// Parses the text of a seed results file (`path` names it in errors).
pub fn parse_seed_results(
    text: &str,
    path: &Path,
    method: &str,
) -> Result<Vec<MetricRecord>, ReportError> {
    let root: Value = serde_json::from_str(text).map_err(|e| {
        ReportError::parse(
            path,
            e.line(),
            format!("not a seed results file (JSON): {e}"),
        )
    })?;
    let models = root.as_object().ok_or_else(|| {
        ReportError::parse(
            path,
            1,
            "a seed results file is a JSON object {model_name: {metric: value}}",
        )
    })?;
    if models
        .values()
        .any(|v| v.get("average").is_some() && v.get("SE").is_some())
    {
        return Err(ReportError::parse(
            path,
            1,
            "this is a seed summary file (average/SE); pass the per-model results file instead",
        ));
    }
    let mut records = Vec::new();
    for (model, metrics) in models {
        let metrics = metrics.as_object().ok_or_else(|| {
            ReportError::parse(
                path,
                1,
                format!("model {model:?}: expected an object of metrics"),
            )
        })?;
        records.extend(model_records(model, metrics, path, method)?);
    }
    Ok(records)
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        // BUG-14: AUROC stored as a one-element list.
        Value::Array(items) if items.len() == 1 => items[0].as_f64(),
        _ => None,
    }
}

fn model_records(
    model: &str,
    metrics: &serde_json::Map<String, Value>,
    path: &Path,
    method: &str,
) -> Result<Vec<MetricRecord>, ReportError> {
    let name = model.strip_prefix("Temp-").unwrap_or(model);
    let seed = name
        .rsplit_once("_seed")
        .and_then(|(_, s)| s.parse::<u64>().ok());
    let dataset_raw = name.split('_').nth(1).unwrap_or("unknown");
    let dataset = dataset_raw.to_ascii_lowercase();
    let (shift_set, num_corruptions, ood_set) = match dataset.as_str() {
        "cifar10" => ("cifar10-c (13 corruptions)", 13, "svhn+cifar100"),
        "cifar100" => ("cifar100-c (18 corruptions)", 18, "svhn+cifar10"),
        "svhn" => ("svhn-rotated", 5, "cifar10+cifar100"),
        _ => ("shift", 0, "ood"),
    };
    // Tiny ImageNet results hold placeholder zeros for shift and OOD (§10.5), not measurements.
    let placeholders = dataset == "tinyimagenet";
    let mut out = Vec::new();
    let mut push =
        |split: &str, set: &str, severity: Option<u8>, metric: &str, value: f64, def: String| {
            out.push(MetricRecord {
                run: model.to_string(),
                seed,
                method: method.to_string(),
                split: split.to_string(),
                dataset: set.to_string(),
                corruption: None,
                severity,
                metric: metric.to_string(),
                value,
                definition: def,
            });
        };
    let pooled_shift = format!("pooled over all {num_corruptions} corruptions x 5 severities");
    for (key, value) in metrics {
        let bad = || {
            ReportError::parse(
                path,
                1,
                format!("model {model:?}: {key:?} is not a number: {value}"),
            )
        };
        if let Some(i) = key.strip_prefix("SHIFT Intensity: ") {
            if placeholders {
                continue;
            }
            let i: u8 = i.trim().parse().map_err(|_| bad())?;
            let per = value.as_object().ok_or_else(bad)?;
            let def = |base: &str| {
                if dataset == "cifar100" {
                    format!("{base}; sum over 18 corruptions at severity {} divided by 13 (seed BUG-1, x18/13 too large)", i + 1)
                } else {
                    format!("{base}; mean over corruptions at severity {}", i + 1)
                }
            };
            for (sub, metric, d) in [("ECE", "ece", ECE_DEF), ("MCE", "mce", MCE_DEF)] {
                if let Some(v) = per.get(sub) {
                    push(
                        "shift",
                        shift_set,
                        Some(i + 1),
                        metric,
                        number(v).ok_or_else(bad)? / 100.0,
                        def(d),
                    );
                }
            }
            continue;
        }
        let v = number(value).ok_or_else(bad)?;
        match key.as_str() {
            "Train nll" | "Train NLL" => {
                push("train", &dataset, None, "nll", v, TRAIN_NLL_DEF.into())
            }
            "clean_accuracy" => push("test", &dataset, None, "accuracy", v, ACC_DEF.into()),
            "ECE" => push("test", &dataset, None, "ece", v / 100.0, ECE_DEF.into()),
            "MCE" => push("test", &dataset, None, "mce", v / 100.0, MCE_DEF.into()),
            "nll" => push("test", &dataset, None, "nll", v, NLL_DEF.into()),
            "brier" => push("test", &dataset, None, "brier_div_k", v, BRIER_DEF.into()),
            _ if placeholders && (key.starts_with("SHIFT") || key.starts_with("OOD")) => {}
            "SHIFT ACCURACY" => push(
                "shift",
                shift_set,
                None,
                "accuracy",
                v,
                format!("{ACC_DEF}; {pooled_shift}"),
            ),
            "SHIFT ECE" => push(
                "shift",
                shift_set,
                None,
                "ece",
                v / 100.0,
                format!("{ECE_DEF}; {pooled_shift}"),
            ),
            "SHIFT MCE" => push(
                "shift",
                shift_set,
                None,
                "mce",
                v / 100.0,
                format!("{MCE_DEF}; {pooled_shift}"),
            ),
            "OOD AUROC" => push("ood", ood_set, None, "auroc", v, AUROC_DEF.into()),
            "OOD FPR95" => push("ood", ood_set, None, "fpr95", v, FPR_DEF.into()),
            _ => {
                return Err(ReportError::parse(
                    path,
                    1,
                    format!("model {model:?}: unknown seed metric key {key:?}"),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{aggregate, Spread, Table};

    /// The seed's example entry (seed-system.md §10.6), with the elided intensities filled in from §12.1.
    const BASE: &str = r#"{"WRN_CIFAR10_28_10_Base_seed1": {"Train nll": 0.10310899595309254, "clean_accuracy": 0.9251999855041504, "ECE": 6.062109023332596, "MCE": 36.28459572792053, "nll": 0.5124250146459428, "brier": 0.01333459885709418, "SHIFT ECE": 20.059849321842194, "SHIFT MCE": 45.62256336212158, "SHIFT ACCURACY": 0.760192334651947, "SHIFT Intensity: 0": {"ECE": 11.020459349338825, "MCE": 42.79120541535891}, "SHIFT Intensity: 1": {"ECE": 13.86, "MCE": 40.0}, "SHIFT Intensity: 2": {"ECE": 17.41, "MCE": 41.0}, "SHIFT Intensity: 3": {"ECE": 23.85, "MCE": 44.0}, "SHIFT Intensity: 4": {"ECE": 34.10, "MCE": 50.0}, "OOD AUROC": [0.8744080747668739], "OOD FPR95": 0.7079817939609236}}"#;

    #[test]
    fn seed_example_becomes_the_seed_table_row() {
        let records = parse_seed_results(BASE, Path::new("WRN_CIFAR10.txt"), "WRN base").unwrap();
        assert_eq!(records.len(), 21);
        assert!(records
            .iter()
            .all(|r| r.seed == Some(1) && r.run == "WRN_CIFAR10_28_10_Base_seed1"));
        let aggs = aggregate(&records).unwrap();
        let table = Table::paper("Seed §12.1", &aggs, Spread::Std, &[]).unwrap();
        let md = table.to_markdown();
        // The numbers of seed-system.md §12.1, row "WRN base (seed 1)".
        assert!(
            md.contains("| WRN base | 92.52 | 6.06 | 36.28 | 0.5124 | 0.1031 | 76.02 | 20.06 | 45.62 | 0.8744 | 0.7080 |"),
            "{md}"
        );
        let sev1 = records
            .iter()
            .find(|r| r.severity == Some(1) && r.metric == "ece")
            .unwrap();
        assert!((sev1.value - 0.11020459349338825).abs() < 1e-15);
        assert_eq!(sev1.dataset, "cifar10-c (13 corruptions)");
    }

    #[test]
    fn placeholders_summaries_and_bad_keys() {
        let tin = r#"{"VIT_TINYIMAGENET_Base_seed1": {"clean_accuracy": 0.8338, "ECE": 3.33, "SHIFT ECE": 0, "SHIFT Intensity: 0": {"ECE": 0.0, "MCE": 0.0}, "OOD AUROC": 0, "OOD FPR95": 0}}"#;
        let records = parse_seed_results(tin, Path::new("VIT"), "ViT").unwrap();
        assert_eq!(records.len(), 2, "{records:?}");
        let summary = r#"{"ECE": {"average": 3.3, "SE": 0.02}}"#;
        let err = parse_seed_results(summary, Path::new("x_summary.txt"), "m")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("x_summary.txt:1: this is a seed summary file"),
            "{err}"
        );
        let bad = r#"{"WRN_CIFAR10_x_seed2": {"ECE": "high"}}"#;
        let err = parse_seed_results(bad, Path::new("f"), "m")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"ECE\" is not a number"), "{err}");
        let unknown = r#"{"WRN_CIFAR10_x_seed2": {"Foo": 1}}"#;
        assert!(parse_seed_results(unknown, Path::new("f"), "m")
            .unwrap_err()
            .to_string()
            .contains("unknown seed metric key"));
        let err = parse_seed_results("{\n\"a\": ", Path::new("f"), "m")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f:2: not a seed results file"), "{err}");
    }
}
