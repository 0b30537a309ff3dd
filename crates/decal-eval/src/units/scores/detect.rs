//! Pure OOD scoring shared by the `ood` units: the records and JSON of some sets against the test
//! predictions, and the MSP histogram file.

use std::path::Path;

use decal_metrics::ood::scores::msp;
use serde_json::{json, Value};

use super::{record_context, OodScoreSpec, RowSpec};
use crate::predict::Predictions;
use crate::suite;

/// Scores `sets` against the test predictions: the plain records (and the paper profile's).
pub(super) fn score(s: &OodScoreSpec, test: &Predictions, sets: &[(String, Predictions)]) -> Value {
    let rc = record_context(&s.row);
    let (records, ood) = suite::ood(&rc, test, sets);
    let mut value = json!({"records": records, "ood": ood, "records_paper": []});
    if s.paper {
        let (r, j) = suite::ood_paper(&rc, test, sets);
        value["records_paper"] = json!(r);
        value["ood_paper"] = j;
    }
    value
}

/// The MSP histogram of the test split and every OOD set (20 bins over all scores), as the old run drew
/// it once per method.
pub(super) fn write_histogram(
    path: &Path,
    row: &RowSpec,
    test: &Predictions,
    sets: &[(String, Predictions)],
) -> Result<(), String> {
    let id_scores = msp(&test.probabilities(), test.num_classes);
    let ood_scores: Vec<(String, Vec<f64>)> = sets
        .iter()
        .map(|(name, p)| (name.clone(), msp(&p.probabilities(), p.num_classes)))
        .collect();
    let refs: Vec<(&str, &[f64])> = ood_scores
        .iter()
        .map(|(name, s)| (name.as_str(), s.as_slice()))
        .collect();
    let hist = decal_report::plot::ScoreHistogram::from_scores(
        &row.method,
        "MSP",
        &row.dataset,
        &id_scores,
        &refs,
        20,
    )
    .map_err(|e| e.to_string())?;
    let csv = decal_report::plot::histogram::histograms_to_csv(&[hist]);
    decal_core::write_atomic(path, csv.as_bytes()).map_err(|e| e.to_string())
}
