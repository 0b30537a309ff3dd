//! Tidy metric records: one measured number per row, with everything needed to group it and say what
//! it means (STYLE.md R11). Evaluation writes them as `metrics.jsonl`; the report only reads, groups and
//! formats them, it never recomputes a metric.
//!
//! Two interchangeable file formats:
//! - **JSONL**: one JSON object per line with the fields of [`MetricRecord`] in declaration order.
//!   `seed`, `corruption` and `severity` may be `null` or absent. A non-finite `value` is written as the
//!   string `"NaN"`, `"inf"` or `"-inf"` (JSON has no literal for them); finite values are JSON numbers
//!   printed with the shortest representation that reads back to the same f64.
//! - **CSV**: header `run,seed,method,split,dataset,corruption,severity,metric,value,definition`, empty
//!   cells for absent optional fields, values printed the same way (`NaN`, `inf`, `-inf`).
//!
//! Readers skip blank lines and report a malformed line as `file:line: problem`.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::csv;
use crate::ReportError;

/// One metric value of one run (one seed of one method) on one split, dataset and corruption cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    /// Run identifier, e.g. the run directory name (`cifar10-wrn28-10/seed-3`).
    pub run: String,
    /// The seed of the run, when the run is one of several seeds; tables aggregate over it.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Method / table row, e.g. `Baseline`, `TS`, `TST`, `V-TST m=10`.
    pub method: String,
    /// Evaluation split: `test`, `val`, `train`, `shift` (corrupted test data), `ood`, ...
    pub split: String,
    /// The dataset the metric was measured on (for `ood`, the OOD set, e.g. `svhn`, `pooled`).
    pub dataset: String,
    /// Corruption name for shift metrics (`gaussian_noise`), `None` for clean or pooled values.
    #[serde(default)]
    pub corruption: Option<String>,
    /// Corruption severity (1..=5 by convention), `None` for clean or pooled values.
    #[serde(default)]
    pub severity: Option<u8>,
    /// Metric key: `accuracy`, `ece`, `mce`, `nll`, `brier`, `brier_div_k`, `auroc`, `fpr95`, ...
    pub metric: String,
    /// The value in its natural unit: fractions for accuracy/ECE/MCE (rendering turns them into percent),
    /// nats for NLL.
    #[serde(serialize_with = "ser_value", deserialize_with = "de_value")]
    pub value: f64,
    /// How the value was computed (profile, bins, membership, estimator), e.g.
    /// `top-label ECE, 15 equal-width bins, (lo,hi] membership`.
    pub definition: String,
}

/// Column names of the CSV format, in order.
pub const CSV_HEADER: [&str; 10] = [
    "run",
    "seed",
    "method",
    "split",
    "dataset",
    "corruption",
    "severity",
    "metric",
    "value",
    "definition",
];

fn ser_value<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() {
        s.serialize_f64(*value)
    } else {
        s.serialize_str(&format_value(*value))
    }
}

fn de_value<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(f64),
        Str(String),
    }
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(v) => Ok(v),
        NumOrStr::Str(s) => parse_value(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("value {s:?} is neither a number nor NaN/inf/-inf"))
        }),
    }
}

/// Prints a value losslessly: shortest round-trip decimal for finite values, `NaN`/`inf`/`-inf` otherwise.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{value:?}")
    }
}

/// Parses what [`format_value`] prints (and plain decimal / exponent notation).
pub fn parse_value(text: &str) -> Option<f64> {
    match text.trim() {
        "NaN" | "nan" => Some(f64::NAN),
        "inf" | "Infinity" | "+inf" => Some(f64::INFINITY),
        "-inf" | "-Infinity" => Some(f64::NEG_INFINITY),
        t => t.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

impl MetricRecord {
    fn validate(&self) -> Result<(), String> {
        for (name, field) in [
            ("run", &self.run),
            ("method", &self.method),
            ("metric", &self.metric),
        ] {
            if field.trim().is_empty() {
                return Err(format!("field `{name}` is empty"));
            }
        }
        Ok(())
    }
}

/// Renders records as JSONL text (one object per line, trailing newline).
pub fn to_jsonl_string(records: &[MetricRecord]) -> String {
    let mut out = String::new();
    for record in records {
        // Serialising a struct of strings, integers and f64 (non-finite handled above) cannot fail.
        out.push_str(
            &serde_json::to_string(record).expect("a MetricRecord should always serialise"),
        );
        out.push('\n');
    }
    out
}

/// Parses JSONL text; `path` only names the source in errors.
pub fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<MetricRecord>, ReportError> {
    let mut records = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: MetricRecord = serde_json::from_str(line)
            .map_err(|e| ReportError::parse(path, idx + 1, format!("not a metric record: {e}")))?;
        record
            .validate()
            .map_err(|m| ReportError::parse(path, idx + 1, m))?;
        records.push(record);
    }
    Ok(records)
}

/// Reads a JSONL file of records.
pub fn read_jsonl(path: &Path) -> Result<Vec<MetricRecord>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(ReportError::io(path))?;
    parse_jsonl(&text, path)
}

/// Writes records as JSONL, atomically (the file is replaced as a whole).
pub fn write_jsonl(path: &Path, records: &[MetricRecord]) -> Result<(), ReportError> {
    decal_core::write_atomic(path, to_jsonl_string(records).as_bytes())?;
    Ok(())
}

/// Appends records to a JSONL file (creating it when missing). The file is re-read and rewritten
/// atomically, so a reader never sees a half-appended line; an existing malformed file is an error.
pub fn append_jsonl(path: &Path, records: &[MetricRecord]) -> Result<(), ReportError> {
    let mut all = if path.exists() {
        read_jsonl(path)?
    } else {
        Vec::new()
    };
    all.extend_from_slice(records);
    write_jsonl(path, &all)
}

/// Renders records as CSV text with [`CSV_HEADER`].
pub fn to_csv_string(records: &[MetricRecord]) -> String {
    let mut out = String::new();
    csv::write_row(&mut out, &CSV_HEADER);
    for r in records {
        csv::write_row(
            &mut out,
            &[
                r.run.clone(),
                r.seed.map(|s| s.to_string()).unwrap_or_default(),
                r.method.clone(),
                r.split.clone(),
                r.dataset.clone(),
                r.corruption.clone().unwrap_or_default(),
                r.severity.map(|s| s.to_string()).unwrap_or_default(),
                r.metric.clone(),
                format_value(r.value),
                r.definition.clone(),
            ],
        );
    }
    out
}

/// Parses CSV text with [`CSV_HEADER`] (columns may come in any order; all ten are required).
pub fn parse_csv(text: &str, path: &Path) -> Result<Vec<MetricRecord>, ReportError> {
    let rows = csv::parse(text).map_err(|(line, m)| ReportError::parse(path, line, m))?;
    let Some((header, body)) = rows.split_first() else {
        return Err(ReportError::parse(
            path,
            1,
            "empty file: expected a header row",
        ));
    };
    let index = csv::column_indices(header, CSV_HEADER, path)?;
    let mut records = Vec::with_capacity(body.len());
    for row in body {
        csv::check_row_width(row, header, path)?;
        let err = |m: String| ReportError::parse(path, row.line, m);
        let get = |i: usize| row.fields[index[i]].as_str();
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let seed = match get(1) {
            "" => None,
            s => Some(
                s.parse::<u64>()
                    .map_err(|_| err(format!("seed {s:?} is not a non-negative integer")))?,
            ),
        };
        let severity = match get(6) {
            "" => None,
            s => Some(
                s.parse::<u8>()
                    .map_err(|_| err(format!("severity {s:?} is not an integer 0..=255")))?,
            ),
        };
        let value = parse_value(get(8)).ok_or_else(|| {
            err(format!(
                "value {:?} is neither a number nor NaN/inf/-inf",
                get(8)
            ))
        })?;
        let record = MetricRecord {
            run: get(0).to_string(),
            seed,
            method: get(2).to_string(),
            split: get(3).to_string(),
            dataset: get(4).to_string(),
            corruption: opt(get(5)),
            severity,
            metric: get(7).to_string(),
            value,
            definition: get(9).to_string(),
        };
        record.validate().map_err(err)?;
        records.push(record);
    }
    Ok(records)
}

/// Reads a CSV file of records.
pub fn read_csv(path: &Path) -> Result<Vec<MetricRecord>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(ReportError::io(path))?;
    parse_csv(&text, path)
}

/// Writes records as CSV, atomically.
pub fn write_csv(path: &Path, records: &[MetricRecord]) -> Result<(), ReportError> {
    decal_core::write_atomic(path, to_csv_string(records).as_bytes())?;
    Ok(())
}

/// Reads records from a `.jsonl` or `.csv` file, chosen by extension (anything else is read as JSONL).
pub fn read_any(path: &Path) -> Result<Vec<MetricRecord>, ReportError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => read_csv(path),
        _ => read_jsonl(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<MetricRecord> {
        vec![
            MetricRecord {
                run: "wrn/seed-1".into(),
                seed: Some(1),
                method: "V-TST m=10".into(),
                split: "test".into(),
                dataset: "cifar10".into(),
                corruption: None,
                severity: None,
                metric: "ece".into(),
                value: 0.013_812_345_678_9,
                definition: "top-label ECE, 10 bins, torchmetrics membership".into(),
            },
            MetricRecord {
                run: "wrn/seed-1".into(),
                seed: None,
                method: "TS, \"guo\"".into(),
                split: "shift".into(),
                dataset: "cifar10-c-generated".into(),
                corruption: Some("gaussian_noise".into()),
                severity: Some(3),
                metric: "nll".into(),
                value: f64::INFINITY,
                definition: "nats,\nunclipped".into(),
            },
            MetricRecord {
                run: "r".into(),
                seed: Some(u64::MAX),
                method: "m".into(),
                split: "ood".into(),
                dataset: "svhn".into(),
                corruption: None,
                severity: None,
                metric: "auroc".into(),
                value: f64::NAN,
                definition: String::new(),
            },
        ]
    }

    fn same(a: &[MetricRecord], b: &[MetricRecord]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            let mut x2 = x.clone();
            let mut y2 = y.clone();
            assert_eq!(x.value.to_bits(), y.value.to_bits(), "{x:?} vs {y:?}");
            x2.value = 0.0;
            y2.value = 0.0;
            assert_eq!(x2, y2);
        }
    }

    #[test]
    fn jsonl_round_trip_is_exact() {
        let text = to_jsonl_string(&sample());
        assert!(text.starts_with(r#"{"run":"wrn/seed-1","seed":1,"method":"V-TST m=10","split":"test","dataset":"cifar10","corruption":null,"severity":null,"metric":"ece","value":0.0138123456789,"#), "{text}");
        assert!(text.contains(r#""value":"inf""#));
        assert!(text.contains(r#""value":"NaN""#));
        same(
            &parse_jsonl(&text, Path::new("x.jsonl")).unwrap(),
            &sample(),
        );
    }

    #[test]
    fn csv_round_trip_is_exact() {
        let text = to_csv_string(&sample());
        assert!(text.starts_with(
            "run,seed,method,split,dataset,corruption,severity,metric,value,definition\n"
        ));
        assert!(text.contains("wrn/seed-1,1,V-TST m=10,test,cifar10,,,ece,0.0138123456789,"));
        same(&parse_csv(&text, Path::new("x.csv")).unwrap(), &sample());
    }

    #[test]
    fn optional_fields_may_be_absent_in_jsonl() {
        let line = r#"{"run":"a","method":"TST","split":"test","dataset":"cifar10","metric":"accuracy","value":0.9255,"definition":"top-1"}"#;
        let records = parse_jsonl(&format!("\n{line}\n\n"), Path::new("m.jsonl")).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].seed, None);
        assert_eq!(records[0].value, 0.9255);
    }

    #[test]
    fn malformed_jsonl_names_file_and_line() {
        let good = to_jsonl_string(&sample()[..1]);
        let text = format!("{good}\n{{\"run\":\"a\",\"method\":\"x\"}}\n");
        let err = parse_jsonl(&text, Path::new("runs/a/metrics.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("runs/a/metrics.jsonl:3: not a metric record: missing field"),
            "{err}"
        );
        let err = parse_jsonl("{not json", Path::new("m.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("m.jsonl:1: "), "{err}");
        let bad_value = good.replace("0.0138123456789", "\"lots\"");
        let err = parse_jsonl(&bad_value, Path::new("m.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.jsonl:1:") && err.contains("lots"), "{err}");
        let empty_method = good.replace("V-TST m=10", " ");
        let err = parse_jsonl(&empty_method, Path::new("m.jsonl"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "m.jsonl:1: field `method` is empty");
    }

    #[test]
    fn malformed_csv_names_file_and_line() {
        let mut text = to_csv_string(&sample()[..1]);
        text.push_str("r,x,m,test,d,,,acc,0.5,def\n");
        let err = parse_csv(&text, Path::new("t.csv"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "t.csv:3: seed \"x\" is not a non-negative integer");
        let err = parse_csv("run,seed\n", Path::new("t.csv"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "t.csv:1: header has no `method` column");
        let mut text = to_csv_string(&[]);
        text.push_str("a,1,m\n");
        let err = parse_csv(&text, Path::new("t.csv"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "t.csv:2: 3 fields, the header has 10");
    }

    #[test]
    fn files_round_trip_and_append() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("sub/metrics.jsonl");
        write_jsonl(&jsonl, &sample()[..1]).unwrap();
        append_jsonl(&jsonl, &sample()[1..]).unwrap();
        same(&read_any(&jsonl).unwrap(), &sample());
        let csv_path = dir.path().join("m.csv");
        write_csv(&csv_path, &sample()).unwrap();
        same(&read_any(&csv_path).unwrap(), &sample());
        let err = read_jsonl(&dir.path().join("missing.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.jsonl"), "{err}");
    }
}
