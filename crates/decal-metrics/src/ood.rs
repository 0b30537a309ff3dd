//! Out-of-distribution detection metrics from two score sets (metrics.md §3.5). Scores follow the convention
//! **larger = more in-distribution**; "ID-positive" metrics treat in-distribution as the positive class with
//! score `s`, "OOD-positive" ones treat OOD as positive with score `−s`.
//!
//! - [`auroc`]: `P(s_in > s_out) + ½ P(s_in = s_out)` exactly (Mann–Whitney U via one sort). This equals the
//!   trapezoidal area under sklearn's `roc_curve` (what `ood_metrics.auroc` returns) up to rounding.
//! - [`aupr_in`] / [`aupr_out`] with [`PrEstimator::AveragePrecision`] (sklearn `average_precision_score`,
//!   torchmetrics, TU) or [`PrEstimator::Trapezoid`] (`auc(recall, precision)` on sklearn 1.1.3's
//!   `precision_recall_curve`: OpenOOD, ood_metrics).
//! - FPR at 95 % TPR, three conventions: [`fpr95_idpos`] (exact k-th largest ID score threshold),
//!   [`fpr95_idpos_interp`] (the paper's `ood_metrics.fpr_at_95_tpr`: `np.interp(0.95, tpr, fpr)` on sklearn's
//!   `roc_curve` with `drop_intermediate=True`), [`fpr95_oodpos`] (OpenOOD: first ROC point with TPR ≥ 0.95,
//!   OOD positive).
//! - [`scores`]: MSP, max logit, energy, negative entropy, negative mutual information.

use serde::{Deserialize, Serialize};

/// AUPR estimator (metrics.md §3.5; named `aupr_*_ap` / `aupr_*_trapz` in outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrEstimator {
    /// Average precision `Σ_n (R_n − R_{n−1}) P_n` (sklearn `average_precision_score`).
    AveragePrecision,
    /// Trapezoidal `auc(recall, precision)` on sklearn 1.1.3's `precision_recall_curve`.
    Trapezoid,
}

/// A ROC curve as sklearn `roc_curve` returns it (thresholds decreasing; first point `(0, 0)`).
#[derive(Debug, Clone, PartialEq)]
pub struct RocCurve {
    /// False-positive rates, non-decreasing.
    pub fpr: Vec<f64>,
    /// True-positive rates, non-decreasing.
    pub tpr: Vec<f64>,
    /// Decision thresholds (`score ≥ threshold` is predicted positive); the first is `max + 1` (sklearn 1.1.3).
    pub thresholds: Vec<f64>,
}

/// sklearn `_binary_clf_curve`: for each distinct score (descending), cumulative true and false positives.
/// Returns `(fps, tps, thresholds)`.
fn binary_clf_curve(pos: &[f64], neg: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut all: Vec<(f64, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut fps, mut tps, mut thr) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tp, mut fp) = (0u64, 0u64);
    for i in 0..all.len() {
        if all[i].1 {
            tp += 1;
        } else {
            fp += 1;
        }
        if i + 1 == all.len() || all[i + 1].0 != all[i].0 {
            fps.push(fp as f64);
            tps.push(tp as f64);
            thr.push(all[i].0);
        }
    }
    (fps, tps, thr)
}

/// sklearn 1.1.3 `roc_curve(y, score)` with positives `pos` and negatives `neg`.
/// `drop_intermediate` removes points whose second differences in both fps and tps are zero.
pub fn roc_curve(pos: &[f64], neg: &[f64], drop_intermediate: bool) -> RocCurve {
    let (mut fps, mut tps, mut thr) = binary_clf_curve(pos, neg);
    if drop_intermediate && fps.len() > 2 {
        let n = fps.len();
        let keep: Vec<usize> = (0..n)
            .filter(|&i| {
                i == 0
                    || i == n - 1
                    || (fps[i + 1] - 2.0 * fps[i] + fps[i - 1]) != 0.0
                    || (tps[i + 1] - 2.0 * tps[i] + tps[i - 1]) != 0.0
            })
            .collect();
        fps = keep.iter().map(|&i| fps[i]).collect();
        tps = keep.iter().map(|&i| tps[i]).collect();
        thr = keep.iter().map(|&i| thr[i]).collect();
    }
    let first = thr.first().map(|t| t + 1.0).unwrap_or(1.0);
    thr.insert(0, first);
    fps.insert(0, 0.0);
    tps.insert(0, 0.0);
    let (fl, tl) = (
        *fps.last().expect("non-empty"),
        *tps.last().expect("non-empty"),
    );
    RocCurve {
        fpr: fps.iter().map(|&f| f / fl).collect(),
        tpr: tps.iter().map(|&t| t / tl).collect(),
        thresholds: thr,
    }
}

/// AUROC with ID as positive: `P(s_in > s_out) + ½ P(s_in = s_out)`. NaN when either set is empty.
pub fn auroc(id_scores: &[f64], ood_scores: &[f64]) -> f64 {
    let (n_in, n_out) = (id_scores.len(), ood_scores.len());
    if n_in == 0 || n_out == 0 {
        return f64::NAN;
    }
    let mut all: Vec<(f64, bool)> = id_scores
        .iter()
        .map(|&s| (s, true))
        .chain(ood_scores.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // U = Σ over ID items of (#OOD strictly below + ½ #OOD tied), accumulated per tie group.
    let (mut u, mut out_below) = (0.0f64, 0u64);
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        let (mut tin, mut tout) = (0u64, 0u64);
        while j < all.len() && all[j].0 == all[i].0 {
            if all[j].1 {
                tin += 1;
            } else {
                tout += 1;
            }
            j += 1;
        }
        u += tin as f64 * (out_below as f64 + 0.5 * tout as f64);
        out_below += tout;
        i = j;
    }
    u / (n_in as f64 * n_out as f64)
}

fn average_precision(pos: &[f64], neg: &[f64]) -> f64 {
    let (fps, tps, _) = binary_clf_curve(pos, neg);
    let total = *tps.last().unwrap_or(&0.0);
    if total == 0.0 {
        return f64::NAN;
    }
    let (mut ap, mut prev_recall) = (0.0, 0.0);
    for (f, t) in fps.iter().zip(&tps) {
        let recall = t / total;
        let precision = t / (t + f);
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    ap
}

fn trapezoid_pr(pos: &[f64], neg: &[f64]) -> f64 {
    let (fps, tps, _) = binary_clf_curve(pos, neg);
    let total = *tps.last().unwrap_or(&0.0);
    if total == 0.0 {
        return f64::NAN;
    }
    // sklearn 1.1.3 precision_recall_curve: every distinct threshold, reversed so recall decreases, then the
    // point (precision 1, recall 0) appended. (Older sklearn stopped at the first full-recall point; 1.1.3 does not.)
    let mut recall: Vec<f64> = tps.iter().rev().map(|t| t / total).collect();
    let mut precision: Vec<f64> = tps
        .iter()
        .zip(&fps)
        .rev()
        .map(|(t, f)| t / (t + f))
        .collect();
    recall.push(0.0);
    precision.push(1.0);
    // sklearn `auc` with decreasing x: area = −trapz(y, x).
    let mut area = 0.0;
    for i in 1..recall.len() {
        area += (recall[i - 1] - recall[i]) * (precision[i - 1] + precision[i]) / 2.0;
    }
    area
}

/// Area under the precision–recall curve with ID as positive (score `s`).
pub fn aupr_in(id_scores: &[f64], ood_scores: &[f64], estimator: PrEstimator) -> f64 {
    match estimator {
        PrEstimator::AveragePrecision => average_precision(id_scores, ood_scores),
        PrEstimator::Trapezoid => trapezoid_pr(id_scores, ood_scores),
    }
}

/// Area under the precision–recall curve with OOD as positive (score `−s`).
pub fn aupr_out(id_scores: &[f64], ood_scores: &[f64], estimator: PrEstimator) -> f64 {
    let neg_in: Vec<f64> = id_scores.iter().map(|s| -s).collect();
    let neg_out: Vec<f64> = ood_scores.iter().map(|s| -s).collect();
    aupr_in(&neg_out, &neg_in, estimator)
}

/// FPR at 95 % TPR, ID positive, exact definition (metrics.md §3.5): sort ID scores descending,
/// `k = ⌈0.95·N_in⌉`, `τ` = the k-th largest ID score, FPR = fraction of OOD scores `≥ τ`.
pub fn fpr95_idpos(id_scores: &[f64], ood_scores: &[f64]) -> f64 {
    if id_scores.is_empty() || ood_scores.is_empty() {
        return f64::NAN;
    }
    let mut sorted = id_scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    // ⌈0.95 N⌉ in integers, avoiding 0.95·N rounding in binary floating point.
    let k = (95 * sorted.len()).div_ceil(100);
    let tau = sorted[k.max(1) - 1];
    ood_scores.iter().filter(|&&s| s >= tau).count() as f64 / ood_scores.len() as f64
}

/// `numpy.interp(x, xp, fp)` for non-decreasing `xp` (numpy's rule for repeated `xp`: the last index `j` with
/// `xp[j] ≤ x` is used, and an exact match returns `fp[j]`).
pub fn np_interp(x: f64, xp: &[f64], fp: &[f64]) -> f64 {
    let n = xp.len();
    if x < xp[0] {
        return fp[0];
    }
    if x > xp[n - 1] {
        return fp[n - 1];
    }
    let j = xp.partition_point(|&v| v <= x) - 1;
    if j == n - 1 {
        return fp[n - 1];
    }
    if xp[j] == x {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    let r = slope * (x - xp[j]) + fp[j];
    if r.is_nan() {
        let r2 = slope * (x - xp[j + 1]) + fp[j + 1];
        if r2.is_nan() && fp[j] == fp[j + 1] {
            return fp[j];
        }
        return r2;
    }
    r
}

/// The paper's FPR@95TPR (`ood_metrics.fpr_at_95_tpr`, ID positive): on sklearn's `roc_curve`
/// (`drop_intermediate=True`), 0 if every TPR < 0.95, the minimum FPR among points if every TPR ≥ 0.95,
/// otherwise `np.interp(0.95, tpr, fpr)`.
pub fn fpr95_idpos_interp(id_scores: &[f64], ood_scores: &[f64]) -> f64 {
    if id_scores.is_empty() || ood_scores.is_empty() {
        return f64::NAN;
    }
    let roc = roc_curve(id_scores, ood_scores, true);
    if roc.tpr.iter().all(|&t| t < 0.95) {
        0.0
    } else if roc.tpr.iter().all(|&t| t >= 0.95) {
        roc.fpr.iter().copied().fold(f64::INFINITY, f64::min)
    } else {
        np_interp(0.95, &roc.tpr, &roc.fpr)
    }
}

/// OpenOOD's FPR@95TPR (OOD positive, score `−s`): the FPR (fraction of ID flagged as OOD) at the first point of
/// sklearn's `roc_curve` (`drop_intermediate=True`) whose TPR is ≥ 0.95.
pub fn fpr95_oodpos(id_scores: &[f64], ood_scores: &[f64]) -> f64 {
    if id_scores.is_empty() || ood_scores.is_empty() {
        return f64::NAN;
    }
    let neg_in: Vec<f64> = id_scores.iter().map(|s| -s).collect();
    let neg_out: Vec<f64> = ood_scores.iter().map(|s| -s).collect();
    let roc = roc_curve(&neg_out, &neg_in, true);
    let i = roc.tpr.iter().position(|&t| t >= 0.95).unwrap_or(0);
    roc.fpr[i]
}

pub mod scores {
    //! Per-example OOD scores, larger = more in-distribution (metrics.md §3.5).

    use crate::scoring::logsumexp;

    /// Maximum softmax probability of each row of probabilities `[N, K]`.
    pub fn msp(probs: &[f64], num_classes: usize) -> Vec<f64> {
        probs
            .chunks_exact(num_classes)
            .map(|r| r.iter().copied().fold(f64::NEG_INFINITY, f64::max))
            .collect()
    }

    /// Maximum logit of each row `[N, K]`.
    pub fn max_logit(logits: &[f64], num_classes: usize) -> Vec<f64> {
        msp(logits, num_classes)
    }

    /// Energy score `T · logsumexp(z / T)` (Liu et al. 2020; the negative free energy).
    pub fn energy(logits: &[f64], num_classes: usize, temperature: f64) -> Vec<f64> {
        let mut buf = vec![0.0; num_classes];
        logits
            .chunks_exact(num_classes)
            .map(|z| {
                for (b, &v) in buf.iter_mut().zip(z) {
                    *b = v / temperature;
                }
                temperature * logsumexp(&buf)
            })
            .collect()
    }

    /// Negative entropy `Σ_k p_k ln p_k` (with `0 ln 0 = 0`) of each probability row.
    pub fn neg_entropy(probs: &[f64], num_classes: usize) -> Vec<f64> {
        probs
            .chunks_exact(num_classes)
            .map(neg_entropy_row)
            .collect()
    }

    /// `Σ_k p_k ln p_k` of one row.
    pub fn neg_entropy_row(p: &[f64]) -> f64 {
        p.iter()
            .map(|&x| if x > 0.0 { x * x.ln() } else { 0.0 })
            .sum()
    }

    /// Negative mutual information (BALD) from Monte-Carlo probabilities `[S, N, K]`:
    /// `−MI = −(H(mean_s p_s) − mean_s H(p_s))`. Larger = more in-distribution (lower epistemic uncertainty).
    pub fn neg_mutual_information(
        sample_probs: &[f64],
        num_samples: usize,
        num_classes: usize,
    ) -> Vec<f64> {
        let n = sample_probs.len() / (num_samples * num_classes);
        let mut mean = vec![0.0; num_classes];
        (0..n)
            .map(|i| {
                mean.iter_mut().for_each(|m| *m = 0.0);
                let mut expected_entropy = 0.0;
                for s in 0..num_samples {
                    let row =
                        &sample_probs[(s * n + i) * num_classes..(s * n + i + 1) * num_classes];
                    for (m, &p) in mean.iter_mut().zip(row) {
                        *m += p / num_samples as f64;
                    }
                    expected_entropy -= neg_entropy_row(row) / num_samples as f64;
                }
                let total_entropy = -neg_entropy_row(&mean);
                -(total_entropy - expected_entropy)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_counts_ties_half() {
        assert_eq!(auroc(&[1.0, 2.0], &[0.0]), 1.0);
        assert_eq!(auroc(&[1.0], &[1.0]), 0.5);
        assert_eq!(
            auroc(&[1.0, 3.0], &[2.0, 1.0]),
            (0.5 + 0.0 + 1.0 + 1.0) / 4.0
        );
    }

    #[test]
    fn fpr95_exact_threshold() {
        // 20 ID scores 1..=20: k = 19, τ = 2; OOD ≥ 2 → 2 of 4.
        let id: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(fpr95_idpos(&id, &[0.0, 1.5, 2.0, 30.0]), 0.5);
    }

    #[test]
    fn np_interp_matches_numpy_on_repeated_xp() {
        // numpy: np.interp(0.5, [0, 0.5, 0.5, 1], [0, 1, 2, 3]) == 2.0
        assert_eq!(
            np_interp(0.5, &[0.0, 0.5, 0.5, 1.0], &[0.0, 1.0, 2.0, 3.0]),
            2.0
        );
        assert_eq!(
            np_interp(0.25, &[0.0, 0.5, 0.5, 1.0], &[0.0, 1.0, 2.0, 3.0]),
            0.5
        );
        assert_eq!(np_interp(1.0, &[0.0, 1.0], &[0.0, 7.0]), 7.0);
    }

    #[test]
    fn perfect_separation() {
        let id = [0.9, 0.8, 0.95];
        let ood = [0.1, 0.2];
        assert_eq!(auroc(&id, &ood), 1.0);
        assert_eq!(aupr_in(&id, &ood, PrEstimator::AveragePrecision), 1.0);
        assert_eq!(aupr_out(&id, &ood, PrEstimator::Trapezoid), 1.0);
        assert_eq!(fpr95_idpos(&id, &ood), 0.0);
        assert_eq!(fpr95_idpos_interp(&id, &ood), 0.0);
        assert_eq!(fpr95_oodpos(&id, &ood), 0.0);
    }

    #[test]
    fn mutual_information_of_agreeing_samples_is_zero() {
        let p = [0.7, 0.3, 0.7, 0.3];
        let mi = scores::neg_mutual_information(&p, 2, 2);
        assert!(mi[0].abs() < 1e-15);
        let q = [1.0, 0.0, 0.0, 1.0];
        let mi = scores::neg_mutual_information(&q, 2, 2);
        assert!((mi[0] + std::f64::consts::LN_2).abs() < 1e-15);
    }
}
