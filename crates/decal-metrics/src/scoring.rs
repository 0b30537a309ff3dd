//! Accuracy and proper scores (metrics.md §3.4, seed-system.md §10.5), per row and as a streaming,
//! mergeable accumulator. Everything is f64; logits go through an exact log-softmax.
//!
//! - Accuracy: `argmax_k p_ik = y_i` with ties → lowest index (torch/numpy `argmax`).
//! - NLL (`exact`): `−log softmax(z)_y` from logits, or `−ln p_y` from probabilities (∞ when `p_y = 0`).
//! - NLL (`sklearn-clipped`, the paper's `sklearn.metrics.log_loss` 1.1.3): clip to `[1e−15, 1 − 1e−15]`,
//!   renormalise each row to sum 1, then `−ln p_y`.
//! - Brier (canonical, Brier 1950): `Σ_k (p_ik − 1[y_i = k])²` per row, in `[0, 2]`; `brier_div_k` = that / K
//!   (the seed's `mean_squared_error` on one-hot targets, [BUG-3]).

use serde::{Deserialize, Serialize};

/// sklearn 1.1.3 `log_loss` default `eps`.
pub const SKLEARN_EPS: f64 = 1e-15;

/// Which NLL definition to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NllVariant {
    /// `−log p_y` from log-softmax of logits (or `−ln p_y` of given probabilities), no clipping.
    Exact,
    /// sklearn 1.1.3 `log_loss`: clip to `[1e−15, 1−1e−15]`, renormalise rows, `−ln p_y`.
    SklearnClipped,
}

impl NllVariant {
    /// The name used in `definitions`.
    pub fn name(self) -> &'static str {
        match self {
            NllVariant::Exact => "exact",
            NllVariant::SklearnClipped => "sklearn-clipped",
        }
    }
}

/// Index of the largest value, ties → lowest index.
#[inline]
pub fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (k, &v) in row.iter().enumerate().skip(1) {
        if v > row[best] {
            best = k;
        }
    }
    best
}

/// `log Σ_k exp(z_k)`, computed stably in f64.
#[inline]
pub fn logsumexp(z: &[f64]) -> f64 {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + z
        .iter()
        .map(|&v| crate::fastmath::exp(v - m))
        .sum::<f64>()
        .ln()
}

/// Writes `softmax(z)` into `out` and returns `logsumexp(z)` (so `log p_k = z_k − lse`).
#[inline]
pub fn softmax_into(z: &[f64], out: &mut [f64]) -> f64 {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for (o, &v) in out.iter_mut().zip(z) {
        *o = crate::fastmath::exp(v - m);
        s += *o;
    }
    for o in out.iter_mut() {
        *o /= s;
    }
    m + s.ln()
}

/// sklearn-1.1.3 clipped NLL of one probability row.
#[inline]
pub fn row_nll_sklearn(probs: &[f64], label: usize) -> f64 {
    let clip = |p: f64| p.clamp(SKLEARN_EPS, 1.0 - SKLEARN_EPS);
    let total: f64 = probs.iter().map(|&p| clip(p)).sum();
    -(clip(probs[label]) / total).ln()
}

/// Canonical Brier score of one probability row: `Σ_k (p_k − 1[k = y])²`.
#[inline]
pub fn row_brier(probs: &[f64], label: usize) -> f64 {
    probs
        .iter()
        .enumerate()
        .map(|(k, &p)| {
            let d = p - if k == label { 1.0 } else { 0.0 };
            d * d
        })
        .sum()
}

/// Streaming, mergeable accumulator of accuracy, NLL and Brier. Memory `O(1)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreAccumulator {
    /// Predictions added.
    pub count: u64,
    /// Correct predictions.
    pub correct: u64,
    /// Σ per-row NLL (nats).
    pub sum_nll: f64,
    /// Σ per-row canonical Brier.
    pub sum_brier: f64,
    /// Number of classes K (for `brier_div_k`); 0 until set.
    pub num_classes: usize,
}

impl ScoreAccumulator {
    /// An empty accumulator for K classes.
    pub fn new(num_classes: usize) -> Self {
        ScoreAccumulator {
            num_classes,
            ..Default::default()
        }
    }

    /// Adds one prediction's per-row values.
    #[inline]
    pub fn add(&mut self, correct: bool, nll: f64, brier: f64) {
        self.count += 1;
        self.correct += correct as u64;
        self.sum_nll += nll;
        self.sum_brier += brier;
    }

    /// Adds everything counted by `other`.
    pub fn merge(&mut self, other: &ScoreAccumulator) {
        self.count += other.count;
        self.correct += other.correct;
        self.sum_nll += other.sum_nll;
        self.sum_brier += other.sum_brier;
        self.num_classes = self.num_classes.max(other.num_classes);
    }

    /// Accuracy (fraction).
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count as f64
    }
    /// Mean NLL (nats).
    pub fn nll(&self) -> f64 {
        self.sum_nll / self.count as f64
    }
    /// Mean canonical Brier score.
    pub fn brier(&self) -> f64 {
        self.sum_brier / self.count as f64
    }
    /// Mean Brier score divided by K (the paper's variant).
    pub fn brier_div_k(&self) -> f64 {
        self.brier() / self.num_classes as f64
    }
}

/// Accuracy of row-major probabilities (or logits: argmax is the same) `[N, K]`.
pub fn accuracy(scores: &[f64], labels: &[usize], num_classes: usize) -> f64 {
    let hits = scores
        .chunks_exact(num_classes)
        .zip(labels)
        .filter(|(row, &y)| argmax(row) == y)
        .count();
    hits as f64 / labels.len() as f64
}

/// Exact mean NLL from logits `[N, K]` via log-softmax.
pub fn nll_from_logits(logits: &[f64], labels: &[usize], num_classes: usize) -> f64 {
    let sum: f64 = logits
        .chunks_exact(num_classes)
        .zip(labels)
        .map(|(z, &y)| logsumexp(z) - z[y])
        .sum();
    sum / labels.len() as f64
}

/// Exact mean NLL `−ln p_y` from probabilities `[N, K]` (∞ when some `p_y = 0`).
pub fn nll_from_probs(probs: &[f64], labels: &[usize], num_classes: usize) -> f64 {
    let sum: f64 = probs
        .chunks_exact(num_classes)
        .zip(labels)
        .map(|(p, &y)| -p[y].ln())
        .sum();
    sum / labels.len() as f64
}

/// sklearn-1.1.3 `log_loss` (clipped at 1e−15 and renormalised) from probabilities `[N, K]`.
pub fn nll_sklearn(probs: &[f64], labels: &[usize], num_classes: usize) -> f64 {
    let sum: f64 = probs
        .chunks_exact(num_classes)
        .zip(labels)
        .map(|(p, &y)| row_nll_sklearn(p, y))
        .sum();
    sum / labels.len() as f64
}

/// Exact NLL from Monte-Carlo logits `[S, N, K]`: `−log (1/S) Σ_s softmax(z_s)_y`, computed as a log-mean-exp
/// of per-sample log-softmax values (metrics.md §3.4), so tiny probabilities do not underflow.
pub fn nll_from_sample_logits(
    sample_logits: &[f64],
    num_samples: usize,
    labels: &[usize],
    num_classes: usize,
) -> f64 {
    let n = labels.len();
    let mut sum = 0.0;
    let mut lp = vec![0.0; num_samples];
    for (i, &y) in labels.iter().enumerate() {
        for (s, v) in lp.iter_mut().enumerate() {
            let z = &sample_logits[(s * n + i) * num_classes..(s * n + i + 1) * num_classes];
            *v = z[y] - logsumexp(z);
        }
        sum -= logsumexp(&lp) - (num_samples as f64).ln();
    }
    sum / n as f64
}

/// Mean canonical Brier score of probabilities `[N, K]`.
pub fn brier(probs: &[f64], labels: &[usize], num_classes: usize) -> f64 {
    let sum: f64 = probs
        .chunks_exact(num_classes)
        .zip(labels)
        .map(|(p, &y)| row_brier(p, y))
        .sum();
    sum / labels.len() as f64
}

/// The paper's Brier: canonical Brier / K (mean over all N·K entries).
pub fn brier_div_k(probs: &[f64], labels: &[usize], num_classes: usize) -> f64 {
    brier(probs, labels, num_classes) / num_classes as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_uncertainty_brier_examples() {
        // TU BrierScore docstring: 0.13 and 0.52 (metrics.md §3.7).
        assert!((brier(&[0.8, 0.2, 0.3, 0.7], &[0, 1], 2) - 0.13).abs() < 1e-12);
        assert!((brier(&[0.6, 0.3, 0.1, 0.2, 0.5, 0.3], &[0, 2], 3) - 0.52).abs() < 1e-12);
    }

    #[test]
    fn uniform_brier_div_k_is_0_09() {
        // seed-system.md §16: uniform prediction on K = 10 → (0.81 + 9·0.01)/10 = 0.09.
        let p = vec![0.1; 10];
        assert!((brier_div_k(&p, &[3], 10) - 0.09).abs() < 1e-15);
        assert_eq!(brier_div_k(&[0.0, 1.0, 0.0], &[1], 3), 0.0);
    }

    #[test]
    fn argmax_ties_take_lowest_index() {
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[0.5, 0.5]), 0);
    }

    #[test]
    fn logits_and_probs_nll_agree() {
        let z = [2.0, -1.0, 0.5, 0.0, 0.0, 3.0];
        let mut p = [0.0; 6];
        softmax_into(&z[..3], &mut p[..3]);
        softmax_into(&z[3..], &mut p[3..]);
        let a = nll_from_logits(&z, &[0, 1], 3);
        let b = nll_from_probs(&p, &[0, 1], 3);
        assert!((a - b).abs() < 1e-14);
        // One MC sample = the plain NLL.
        assert!((nll_from_sample_logits(&z, 1, &[0, 1], 3) - a).abs() < 1e-14);
    }

    #[test]
    fn sklearn_clip_bounds_zero_probability() {
        let v = row_nll_sklearn(&[1.0, 0.0], 1);
        assert!(
            (v - (-(1e-15f64 / (1.0 - 1e-15 + 1e-15)).ln())).abs() < 1e-9,
            "{v}"
        );
        assert!(nll_from_probs(&[1.0, 0.0], &[1], 2).is_infinite());
    }
}
