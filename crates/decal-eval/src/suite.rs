//! Which metrics are computed on which predictions, and how they become records.
//!
//! - [`in_distribution`]: every profile in [`EvalSettings::profiles`] (the first is the *primary* one; its
//!   metrics get the plain keys `accuracy, ece, mce, rmsce, classwise_ece, ece_em, nll, brier,
//!   brier_div_k`; other profiles get `<metric>_<profile>`, e.g. `ece_paper`), with bootstrap intervals
//!   (`<metric>_ci_lower` / `_ci_upper`) on the primary profile.
//! - [`train_nll`]: NLL on the full training set (train + validation parts, un-augmented; seed §10.5).
//! - [`ood`](fn@ood): per OOD set and pooled, for every score: MSP (the paper's, plain keys `auroc, fpr95,
//!   aupr_in, aupr_out`), and `_maxlogit`, `_energy`, `_negentropy`, `_negmi` variants where the method
//!   provides them.
//! - [`ShiftSweep`]: corruption cells streamed one at a time: per cell `accuracy, ece, nll`; per severity the
//!   mean over corruptions; pooled "SHIFT" accuracy / ECE / MCE over every prediction of the sweep (the
//!   seed's aggregation, §10.5), plus the mean over cells (`ub` aggregate, metrics.md §3.6).

use decal_metrics::bootstrap::BootstrapConfig;
use decal_metrics::ood::{self, scores, PrEstimator};
use decal_metrics::profile::Profile;
use decal_metrics::summary::{
    evaluate_with, EvalOptions, KeepRows, PredictionInput, Summary, SummaryAccumulator, Values,
};
use decal_report::MetricRecord;
use serde_json::{json, Value};

use crate::predict::{LogitKind, Predictions};
use crate::EvalError;

/// Who the records belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordContext {
    /// Run identifier.
    pub run: String,
    /// Seed of the run (stage-2 seed), when there are several.
    pub seed: Option<u64>,
    /// Method / table row, e.g. `TST`, `V-TST m=10`.
    pub method: String,
}

impl RecordContext {
    /// One record.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        split: &str,
        dataset: &str,
        corruption: Option<&str>,
        severity: Option<u8>,
        metric: &str,
        value: f64,
        definition: &str,
    ) -> MetricRecord {
        MetricRecord {
            run: self.run.clone(),
            seed: self.seed,
            method: self.method.clone(),
            split: split.to_string(),
            dataset: dataset.to_string(),
            corruption: corruption.map(str::to_string),
            severity,
            metric: metric.to_string(),
            value,
            definition: definition.to_string(),
        }
    }
}

/// Profiles and bootstrap settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSettings {
    /// Metric profiles; the first is primary (plain metric keys).
    pub profiles: Vec<Profile>,
    /// Bootstrap intervals for the primary profile's in-distribution metrics.
    pub bootstrap: Option<BootstrapConfig>,
}

impl Default for EvalSettings {
    /// decal's default profile first, the paper profile second, 1,000 bootstrap resamples at 95 %.
    fn default() -> Self {
        EvalSettings {
            profiles: vec![Profile::default_profile(), Profile::paper()],
            bootstrap: Some(BootstrapConfig {
                resamples: 1000,
                seed: 0,
                confidence: 0.95,
            }),
        }
    }
}

fn input<'a>(preds: &'a Predictions, what: &str) -> Result<PredictionInput<'a>, EvalError> {
    PredictionInput::new(
        preds.kind.score_kind(),
        Values::F64(&preds.logits),
        preds.num_classes,
        &preds.labels,
    )
    .map_err(|source| EvalError::Metrics {
        what: what.to_string(),
        source,
    })
}

fn key(metric: &str, profile: &Profile, primary: bool) -> String {
    if primary {
        metric.to_string()
    } else {
        format!("{metric}_{}", profile.name)
    }
}

/// Records of one [`Summary`]: the headline metrics with their definitions.
fn summary_records(
    ctx: &RecordContext,
    split: &str,
    dataset: &str,
    cell: (Option<&str>, Option<u8>),
    summary: &Summary,
    profile: &Profile,
    primary: bool,
) -> Vec<MetricRecord> {
    let d = &summary.definitions;
    let prof = format!("profile {}", profile.name);
    let mut out = Vec::new();
    let mut push = |metric: &str, value: f64, def: String| {
        out.push(ctx.record(
            split,
            dataset,
            cell.0,
            cell.1,
            &key(metric, profile, primary),
            value,
            &def,
        ));
    };
    push(
        "accuracy",
        summary.accuracy,
        format!("{}; {prof}", d.accuracy),
    );
    push("ece", summary.ece, format!("{}; {prof}", d.ece));
    push("mce", summary.mce, format!("{}; {prof}", d.mce));
    push("rmsce", summary.rmsce, format!("{}; {prof}", d.rmsce));
    push(
        "classwise_ece",
        summary.classwise_ece,
        format!("{}; {prof}", d.classwise_ece),
    );
    if let Some(v) = summary.ece_em {
        push("ece_em", v, format!("{}; {prof}", d.ece_em));
    }
    push("nll", summary.nll, format!("{}; {prof}", d.nll));
    push("brier", summary.brier, format!("{}; {prof}", d.brier));
    push(
        "brier_div_k",
        summary.brier_div_k,
        format!("{}; {prof}", d.brier_div_k),
    );
    if let Some(b) = &summary.bootstrap {
        let def = format!(
            "{} ({} resamples, level {}, seed {})",
            b.method, b.config.resamples, b.config.confidence, b.config.seed
        );
        for (name, iv) in [
            ("accuracy", b.accuracy),
            ("ece", b.ece),
            ("nll", b.nll),
            ("brier", b.brier),
        ] {
            push(&format!("{name}_ci_lower"), iv.lower, def.clone());
            push(&format!("{name}_ci_upper"), iv.upper, def.clone());
        }
    }
    out
}

/// Result of an in-distribution evaluation.
#[derive(Debug, Clone)]
pub struct InDistribution {
    /// Tidy records.
    pub records: Vec<MetricRecord>,
    /// `{profile name: Summary}`.
    pub json: Value,
    /// The primary profile's summary (reliability bins for the report).
    pub primary: Summary,
}

/// In-distribution metrics of `preds` on `dataset`/`split` under every profile.
pub fn in_distribution(
    ctx: &RecordContext,
    preds: &Predictions,
    split: &str,
    dataset: &str,
    settings: &EvalSettings,
) -> Result<InDistribution, EvalError> {
    let what = format!("{} on {dataset}/{split}", ctx.method);
    let inp = input(preds, &what)?;
    let mut records = Vec::new();
    let mut json = serde_json::Map::new();
    let mut primary = None;
    for (i, profile) in settings.profiles.iter().enumerate() {
        let options = EvalOptions {
            bootstrap: if i == 0 { settings.bootstrap } else { None },
        };
        let summary = evaluate_with(&inp, profile, options);
        records.extend(summary_records(
            ctx,
            split,
            dataset,
            (None, None),
            &summary,
            profile,
            i == 0,
        ));
        json.insert(
            profile.name.clone(),
            serde_json::to_value(&summary).expect("a Summary serialises"),
        );
        if i == 0 {
            primary = Some(summary);
        }
    }
    let primary = primary.ok_or_else(|| EvalError::Mismatch("no metric profile given".into()))?;
    Ok(InDistribution {
        records,
        json: Value::Object(json),
        primary,
    })
}

/// NLL over the whole training set (pass train and validation parts concatenated), every profile.
pub fn train_nll(
    ctx: &RecordContext,
    preds: &Predictions,
    dataset: &str,
    settings: &EvalSettings,
) -> Result<(Vec<MetricRecord>, Value), EvalError> {
    let inp = input(preds, &format!("{} on {dataset}/train", ctx.method))?;
    let mut records = Vec::new();
    let mut json = serde_json::Map::new();
    for (i, profile) in settings.profiles.iter().enumerate() {
        let s = evaluate_with(&inp, profile, EvalOptions::default());
        let def = format!(
            "{}; profile {}; {} training images incl. the validation part, un-augmented",
            s.definitions.nll,
            profile.name,
            preds.len()
        );
        records.push(ctx.record(
            "train",
            dataset,
            None,
            None,
            &key("nll", profile, i == 0),
            s.nll,
            &def,
        ));
        json.insert(
            profile.name.clone(),
            json!({"nll": s.nll, "accuracy": s.accuracy, "n": s.n}),
        );
    }
    Ok((records, Value::Object(json)))
}

/// Per-example OOD scores: `(key suffix, description, scores)` per score; larger = more in-distribution.
pub type ScoreSet = Vec<(&'static str, &'static str, Vec<f64>)>;

/// Scores of one OOD target (a set or the pooled sets): `(key suffix, scores)` per score.
type TargetScores = (String, Vec<(&'static str, Vec<f64>)>);

/// Per-example OOD scores of a prediction set: `(key suffix, description, scores)`; larger = more ID.
pub fn ood_scores(preds: &Predictions) -> ScoreSet {
    let k = preds.num_classes;
    let probs = preds.probabilities();
    let mut out = vec![
        (
            "",
            "maximum softmax probability (MSP) of the predictive distribution",
            scores::msp(&probs, k),
        ),
        (
            "_negentropy",
            "negative entropy of the predictive distribution",
            scores::neg_entropy(&probs, k),
        ),
    ];
    if preds.kind == LogitKind::Logits {
        out.push((
            "_maxlogit",
            "maximum logit",
            scores::max_logit(&preds.logits, k),
        ));
        out.push((
            "_energy",
            "energy T·logsumexp(z/T), T = 1",
            scores::energy(&preds.logits, k, 1.0),
        ));
    }
    if let Some(mi) = &preds.neg_mutual_information {
        out.push((
            "_negmi",
            "negative mutual information (BALD) over the MC samples",
            mi.clone(),
        ));
    }
    out
}

/// OOD detection of `id` (the in-distribution test predictions) against each OOD set and all of them
/// pooled (`dataset = "pooled"`, only when there are two or more sets).
pub fn ood(
    ctx: &RecordContext,
    id: &Predictions,
    sets: &[(String, Predictions)],
) -> (Vec<MetricRecord>, Value) {
    let id_scores = ood_scores(id);
    let mut records = Vec::new();
    let mut json = serde_json::Map::new();
    let per_set: Vec<(String, ScoreSet)> = sets
        .iter()
        .map(|(name, p)| (name.clone(), ood_scores(p)))
        .collect();
    let mut targets: Vec<TargetScores> = per_set
        .iter()
        .map(|(name, s)| {
            (
                name.clone(),
                s.iter().map(|(k, _, v)| (*k, v.clone())).collect(),
            )
        })
        .collect();
    if sets.len() >= 2 {
        let pooled: Vec<(&'static str, Vec<f64>)> = id_scores
            .iter()
            .map(|(suffix, _, _)| {
                let all: Vec<f64> = per_set
                    .iter()
                    .flat_map(|(_, s)| {
                        s.iter()
                            .filter(|(k, _, _)| k == suffix)
                            .flat_map(|(_, _, v)| v.iter().copied())
                    })
                    .collect();
                (*suffix, all)
            })
            .collect();
        targets.push(("pooled".to_string(), pooled));
    }
    for (dataset, scores_ood) in &targets {
        let mut entry = serde_json::Map::new();
        for (suffix, desc, s_id) in &id_scores {
            let Some((_, s_ood)) = scores_ood.iter().find(|(k, _)| k == suffix) else {
                continue;
            };
            if s_ood.is_empty() {
                continue;
            }
            let base = format!(
                "score: {desc}; ID = {} test images positive, OOD = {} images of {dataset}",
                s_id.len(),
                s_ood.len()
            );
            let values = [
                (
                    "auroc",
                    ood::auroc(s_id, s_ood),
                    "AUROC (Mann-Whitney, ties count 1/2)",
                ),
                (
                    "fpr95",
                    ood::fpr95_idpos(s_id, s_ood),
                    "FPR at 95% TPR, ID positive, exact k-th largest ID score threshold",
                ),
                (
                    "fpr95_interp",
                    ood::fpr95_idpos_interp(s_id, s_ood),
                    "FPR at 95% TPR, ID positive, np.interp on the ROC (ood_metrics; the paper)",
                ),
                (
                    "aupr_in",
                    ood::aupr_in(s_id, s_ood, PrEstimator::AveragePrecision),
                    "AUPR-In, average precision",
                ),
                (
                    "aupr_out",
                    ood::aupr_out(s_id, s_ood, PrEstimator::AveragePrecision),
                    "AUPR-Out, average precision",
                ),
            ];
            let score_name = if suffix.is_empty() {
                "msp"
            } else {
                &suffix[1..]
            };
            let mut score_json = serde_json::Map::new();
            for (metric, value, def) in values {
                records.push(ctx.record(
                    "ood",
                    dataset,
                    None,
                    None,
                    &format!("{metric}{suffix}"),
                    value,
                    &format!("{def}; {base}"),
                ));
                score_json.insert(metric.to_string(), json!(value));
            }
            entry.insert(score_name.to_string(), Value::Object(score_json));
        }
        json.insert(dataset.clone(), Value::Object(entry));
    }
    (records, Value::Object(json))
}

/// The seed's MSP: the maximum of the float32 softmax (`torch.softmax` on float32 logits, emulated by
/// `decal_metrics::summary::softmax_f32_into`), as `decal metrics --profile paper` scores OOD. Rows of
/// log-probabilities (sampled V-TST) are the predictive already: their softmax is taken the same way; a
/// calibrator's probabilities are read as float32.
pub fn msp_f32(preds: &Predictions) -> Vec<f64> {
    let k = preds.num_classes;
    if preds.kind == LogitKind::Probabilities {
        // A calibrator's probabilities, as float32 (the paper profile's reading of given probabilities).
        return preds
            .logits
            .chunks(k)
            .map(|p| {
                p.iter()
                    .map(|&v| f64::from(v as f32))
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .collect();
    }
    let mut row = vec![0.0; k];
    preds
        .logits
        .chunks(k)
        .map(|z| {
            decal_metrics::summary::softmax_f32_into(z, &mut row);
            row.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        })
        .collect()
}

/// OOD detection under the `paper` profile, as the seed computes it: the MSP of the float32 softmax
/// ([`msp_f32`]), AUROC, FPR@95TPR with the paper's ROC-interpolated estimator (ID positive) and AUPR by
/// the trapezoid rule; records `auroc_paper`, `fpr95_paper`, `aupr_in_paper`, `aupr_out_paper` per OOD set
/// (and pooled over two or more). The plain keys of [`ood`](fn@ood) keep the float64 softmax.
pub fn ood_paper(
    ctx: &RecordContext,
    id: &Predictions,
    sets: &[(String, Predictions)],
) -> (Vec<MetricRecord>, Value) {
    let s_id = msp_f32(id);
    let mut targets: Vec<(String, Vec<f64>)> = sets
        .iter()
        .map(|(name, p)| (name.clone(), msp_f32(p)))
        .collect();
    if sets.len() >= 2 {
        let pooled = targets
            .iter()
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        targets.push(("pooled".to_string(), pooled));
    }
    let mut records = Vec::new();
    let mut json = serde_json::Map::new();
    for (dataset, s_ood) in &targets {
        if s_ood.is_empty() {
            continue;
        }
        let base = format!(
            "profile paper; score: maximum of the float32 softmax (MSP, the seed's); ID = {} test images positive, OOD = {} images of {dataset}",
            s_id.len(),
            s_ood.len()
        );
        let values = [
            (
                "auroc",
                ood::auroc(&s_id, s_ood),
                "AUROC (Mann-Whitney, ties count 1/2)",
            ),
            (
                "fpr95",
                ood::fpr95_idpos_interp(&s_id, s_ood),
                "FPR at 95% TPR, ID positive, np.interp on the ROC (ood_metrics; the paper)",
            ),
            (
                "aupr_in",
                ood::aupr_in(&s_id, s_ood, PrEstimator::Trapezoid),
                "AUPR-In, trapezoid rule",
            ),
            (
                "aupr_out",
                ood::aupr_out(&s_id, s_ood, PrEstimator::Trapezoid),
                "AUPR-Out, trapezoid rule",
            ),
        ];
        let mut entry = serde_json::Map::new();
        for (metric, value, def) in values {
            records.push(ctx.record(
                "ood",
                dataset,
                None,
                None,
                &format!("{metric}_paper"),
                value,
                &format!("{def}; {base}"),
            ));
            entry.insert(metric.to_string(), json!(value));
        }
        json.insert(dataset.clone(), Value::Object(entry));
    }
    (records, Value::Object(json))
}

/// Which corruption-aggregation quirks of the seed to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShiftCompat {
    /// Divide the per-severity sums by this number instead of the number of corruptions evaluated (the seed
    /// divides CIFAR-100-C sums over 18 corruptions by 13: BUG-1). `None` = correct mean.
    pub severity_divisor: Option<usize>,
}

/// (corruption, severity, accuracy, ece, mce, nll) of one corruption cell.
type CellStat = (String, u8, f64, f64, f64, f64);

/// Streaming corruption sweep of one method: add cells one at a time; memory is O(cells + M·K), not
/// O(predictions).
#[derive(Debug, Clone)]
pub struct ShiftSweep {
    ctx: RecordContext,
    dataset: String,
    profile: Profile,
    compat: ShiftCompat,
    pooled: Option<SummaryAccumulator>,
    /// (corruption, severity, accuracy, ece, mce, nll) per cell.
    cells: Vec<CellStat>,
    records: Vec<MetricRecord>,
}

impl ShiftSweep {
    /// A sweep for `ctx.method` on corrupted `dataset` under `profile`.
    pub fn new(ctx: RecordContext, dataset: &str, profile: Profile, compat: ShiftCompat) -> Self {
        ShiftSweep {
            ctx,
            dataset: dataset.to_string(),
            profile,
            compat,
            pooled: None,
            cells: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Adds one (corruption, severity) cell.
    pub fn add_cell(
        &mut self,
        corruption: &str,
        severity: u8,
        preds: &Predictions,
    ) -> Result<(), EvalError> {
        let what = format!(
            "{} on {}/{corruption}/{severity}",
            self.ctx.method, self.dataset
        );
        let inp = input(preds, &what)?;
        let summary = evaluate_with(&inp, &self.profile, EvalOptions::default());
        for (metric, value, def) in [
            ("accuracy", summary.accuracy, &summary.definitions.accuracy),
            ("ece", summary.ece, &summary.definitions.ece),
            ("mce", summary.mce, &summary.definitions.mce),
            ("nll", summary.nll, &summary.definitions.nll),
            ("brier", summary.brier, &summary.definitions.brier),
        ] {
            let def = format!("{def}; profile {}; one corruption cell", self.profile.name);
            self.records.push(self.ctx.record(
                "shift",
                &self.dataset,
                Some(corruption),
                Some(severity),
                metric,
                value,
                &def,
            ));
        }
        self.cells.push((
            corruption.to_string(),
            severity,
            summary.accuracy,
            summary.ece,
            summary.mce,
            summary.nll,
        ));
        let values = Values::F64(&preds.logits);
        let acc = self.pooled.get_or_insert_with(|| {
            SummaryAccumulator::new(
                &self.profile,
                preds.kind.score_kind(),
                preds.num_classes,
                KeepRows::default(),
            )
        });
        acc.add(values, &preds.labels)
            .map_err(|source| EvalError::Metrics { what, source })?;
        Ok(())
    }

    /// Number of cells added.
    pub fn num_cells(&self) -> usize {
        self.cells.len()
    }

    /// Per-cell, per-severity and pooled records, and the nested JSON.
    pub fn finish(mut self) -> (Vec<MetricRecord>, Value) {
        let Some(pooled) = self.pooled.take() else {
            return (Vec::new(), json!({}));
        };
        let pooled = pooled.finish(None, EvalOptions::default());
        let n_cells = self.cells.len();
        let pooled_def = |d: &str| {
            format!("{d}; profile {}; pooled over all {n_cells} corruption cells (seed's SHIFT aggregation)", self.profile.name)
        };
        let mut records = std::mem::take(&mut self.records);
        for (metric, value, def) in [
            ("accuracy", pooled.accuracy, &pooled.definitions.accuracy),
            ("ece", pooled.ece, &pooled.definitions.ece),
            ("mce", pooled.mce, &pooled.definitions.mce),
            ("nll", pooled.nll, &pooled.definitions.nll),
        ] {
            records.push(self.ctx.record(
                "shift",
                &self.dataset,
                None,
                None,
                metric,
                value,
                &pooled_def(def),
            ));
        }
        let mean =
            |f: &dyn Fn(&CellStat) -> f64| self.cells.iter().map(f).sum::<f64>() / n_cells as f64;
        for (metric, value) in [
            ("mean_cell_accuracy", mean(&|c| c.2)),
            ("mean_cell_ece", mean(&|c| c.3)),
            ("mean_cell_nll", mean(&|c| c.5)),
        ] {
            records.push(self.ctx.record(
                "shift",
                &self.dataset,
                None,
                None,
                metric,
                value,
                &format!(
                    "mean over {n_cells} corruption cells of the per-cell value; profile {}",
                    self.profile.name
                ),
            ));
        }
        let mut severities: Vec<u8> = self.cells.iter().map(|c| c.1).collect();
        severities.sort_unstable();
        severities.dedup();
        let mut per_severity = serde_json::Map::new();
        for s in severities {
            let cells: Vec<_> = self.cells.iter().filter(|c| c.1 == s).collect();
            let divisor = self.compat.severity_divisor.unwrap_or(cells.len());
            let def = match self.compat.severity_divisor {
                Some(d) => format!("sum over {} corruptions at severity {s} divided by {d} (seed compat, BUG-1); profile {}", cells.len(), self.profile.name),
                None => format!("mean over {} corruptions at severity {s}; profile {}", cells.len(), self.profile.name),
            };
            let mut sev = serde_json::Map::new();
            for (metric, idx) in [("ece", 3usize), ("mce", 4), ("accuracy", 2)] {
                let sum: f64 = cells.iter().map(|c| [c.2, c.3, c.4][idx - 2]).sum();
                let value = sum / divisor as f64;
                records.push(self.ctx.record(
                    "shift",
                    &self.dataset,
                    None,
                    Some(s),
                    metric,
                    value,
                    &def,
                ));
                sev.insert(metric.to_string(), json!(value));
            }
            per_severity.insert(s.to_string(), Value::Object(sev));
        }
        let json = json!({
            "profile": self.profile.name,
            "cells": n_cells,
            "pooled": {"accuracy": pooled.accuracy, "ece": pooled.ece, "mce": pooled.mce, "nll": pooled.nll},
            "per_severity": per_severity,
            "per_cell": self.cells.iter().map(|c| json!({"corruption": c.0, "severity": c.1, "accuracy": c.2, "ece": c.3, "mce": c.4, "nll": c.5})).collect::<Vec<_>>(),
        });
        (records, json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RecordContext {
        RecordContext {
            run: "r".into(),
            seed: Some(1),
            method: "TST".into(),
        }
    }

    /// Confident-and-right predictions plus a constant offset cell, in logits.
    fn preds(logits: Vec<f64>, labels: Vec<i64>) -> Predictions {
        Predictions {
            num_classes: 2,
            logits,
            kind: LogitKind::Logits,
            labels,
            neg_mutual_information: None,
        }
    }

    #[test]
    fn in_distribution_has_primary_and_suffixed_profile_keys() {
        let p = preds(
            vec![2.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 3.0],
            vec![0, 1, 1, 1],
        );
        let r = in_distribution(&ctx(), &p, "test", "toy", &EvalSettings::default()).unwrap();
        let metrics: Vec<&str> = r.records.iter().map(|r| r.metric.as_str()).collect();
        for m in [
            "accuracy",
            "ece",
            "nll",
            "brier",
            "brier_div_k",
            "ece_paper",
            "nll_paper",
            "ece_ci_lower",
        ] {
            assert!(metrics.contains(&m), "{m} missing from {metrics:?}");
        }
        let acc = r.records.iter().find(|r| r.metric == "accuracy").unwrap();
        assert_eq!(acc.value, 0.75);
        assert!(r.json.get("paper").is_some() && r.json.get("default").is_some());
    }

    /// A perfectly separating score gives AUROC 1 and FPR95 0; pooled appears with two sets.
    #[test]
    fn ood_records_per_set_and_pooled() {
        let id = preds(vec![5.0, 0.0, 0.0, 5.0, 4.0, 0.0], vec![0, 1, 0]);
        let far = preds(vec![0.1, 0.0, 0.0, 0.2], vec![0, 0]);
        let near = preds(vec![0.3, 0.0], vec![0]);
        let (records, json) = ood(&ctx(), &id, &[("a".into(), far), ("b".into(), near)]);
        let get = |d: &str, m: &str| {
            records
                .iter()
                .find(|r| r.dataset == d && r.metric == m)
                .unwrap()
                .value
        };
        assert_eq!(get("a", "auroc"), 1.0);
        assert_eq!(get("pooled", "auroc"), 1.0);
        assert_eq!(get("pooled", "fpr95"), 0.0);
        assert!(records.iter().any(|r| r.metric == "auroc_energy"));
        assert!(json["pooled"]["msp"]["auroc"].is_number());
    }

    /// The per-severity value is the mean over corruptions, or the seed's ÷13 with the compat flag.
    #[test]
    fn severity_divisor_flag() {
        let cell = |off: f64| preds(vec![2.0 + off, 0.0, 0.0, 1.0, 1.0, 0.0], vec![0, 1, 1]);
        let run = |compat| {
            let mut sweep = ShiftSweep::new(ctx(), "toy-c", Profile::paper(), compat);
            for (i, c) in ["a", "b", "c"].iter().enumerate() {
                sweep.add_cell(c, 1, &cell(i as f64)).unwrap();
            }
            let (records, _) = sweep.finish();
            records
        };
        let fixed = run(ShiftCompat::default());
        let seed = run(ShiftCompat {
            severity_divisor: Some(13),
        });
        let sev = |r: &[MetricRecord]| {
            r.iter()
                .find(|x| x.severity == Some(1) && x.corruption.is_none() && x.metric == "ece")
                .unwrap()
                .value
        };
        let cells: Vec<f64> = fixed
            .iter()
            .filter(|x| x.corruption.is_some() && x.metric == "ece")
            .map(|x| x.value)
            .collect();
        assert_eq!(cells.len(), 3);
        let mean = cells.iter().sum::<f64>() / 3.0;
        assert!((sev(&fixed) - mean).abs() < 1e-15);
        assert!((sev(&seed) - mean * 3.0 / 13.0).abs() < 1e-15);
        // Pooled accuracy over 9 predictions: cells are identical in argmax → 2/3.
        let pooled = fixed
            .iter()
            .find(|x| x.corruption.is_none() && x.severity.is_none() && x.metric == "accuracy")
            .unwrap();
        assert!((pooled.value - 2.0 / 3.0).abs() < 1e-15);
    }
}
