//! Seeded percentile-bootstrap confidence intervals for ECE, NLL, Brier and accuracy.
//!
//! Each resample draws N rows with replacement (xoshiro256++ seeded through SplitMix64, indices by Lemire's
//! unbiased multiply-shift rejection method), recomputes the metric on the resample with the same bins and
//! definitions, and the interval is the `(α/2, 1 − α/2)` percentiles of the resampled values with numpy's
//! default linear interpolation. The generator is decal's own, so intervals are reproducible given the seed
//! but not identical to numpy/scipy bootstrap output.

use serde::{Deserialize, Serialize};

/// How to bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    /// Number of resamples B.
    pub resamples: usize,
    /// Generator seed.
    pub seed: u64,
    /// Confidence level, e.g. 0.95.
    pub confidence: f64,
}

/// A percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower percentile.
    #[serde(with = "crate::json::float")]
    pub lower: f64,
    /// Upper percentile.
    #[serde(with = "crate::json::float")]
    pub upper: f64,
    /// Standard deviation of the resampled values (bootstrap standard error).
    #[serde(with = "crate::json::float")]
    pub std_error: f64,
}

/// Bootstrap intervals of the headline metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapSummary {
    /// The configuration used.
    pub config: BootstrapConfig,
    /// Method description.
    pub method: String,
    /// Accuracy interval.
    pub accuracy: Interval,
    /// ECE interval (same bins as the point estimate).
    pub ece: Interval,
    /// NLL interval (same NLL variant as the point estimate).
    pub nll: Interval,
    /// Canonical Brier interval.
    pub brier: Interval,
    /// Brier/K interval.
    pub brier_div_k: Interval,
}

/// Per-row values the bootstrap resamples.
#[derive(Debug, Clone, Default)]
pub struct BootstrapRows {
    /// Bin slot of each row (`u32::MAX` when in no bin).
    pub slot: Vec<u32>,
    /// Confidence of each row.
    pub conf: Vec<f64>,
    /// Correctness of each row.
    pub correct: Vec<bool>,
    /// Per-row NLL.
    pub nll: Vec<f64>,
    /// Per-row canonical Brier.
    pub brier: Vec<f64>,
}

/// The bootstrap's generator: xoshiro256++ seeded through SplitMix64 (shared with the rest of decal).
pub use decal_core::rng::Xoshiro256pp as Rng;

/// numpy `percentile(values, q·100)` with linear interpolation; `sorted` must be ascending.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = q * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

fn interval(mut values: Vec<f64>, confidence: f64) -> Interval {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0).max(1.0);
    values.sort_by(f64::total_cmp);
    let alpha = 1.0 - confidence;
    Interval {
        lower: percentile_sorted(&values, alpha / 2.0),
        upper: percentile_sorted(&values, 1.0 - alpha / 2.0),
        std_error: var.sqrt(),
    }
}

/// Runs the bootstrap over `rows` with `num_slots` bin slots and K classes.
pub fn bootstrap(
    rows: &BootstrapRows,
    num_slots: usize,
    num_classes: usize,
    config: BootstrapConfig,
) -> BootstrapSummary {
    let n = rows.conf.len();
    let mut rng = Rng::new(config.seed);
    let (mut accs, mut eces, mut nlls, mut briers) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut count = vec![0u64; num_slots];
    let mut sum_conf = vec![0.0f64; num_slots];
    let mut sum_correct = vec![0u64; num_slots];
    for _ in 0..config.resamples {
        count.iter_mut().for_each(|c| *c = 0);
        sum_conf.iter_mut().for_each(|c| *c = 0.0);
        sum_correct.iter_mut().for_each(|c| *c = 0);
        let (mut hits, mut nll, mut brier) = (0u64, 0.0f64, 0.0f64);
        for _ in 0..n {
            let i = rng.below(n as u64) as usize;
            let s = rows.slot[i];
            if s != u32::MAX {
                count[s as usize] += 1;
                sum_conf[s as usize] += rows.conf[i];
                sum_correct[s as usize] += rows.correct[i] as u64;
            }
            hits += rows.correct[i] as u64;
            nll += rows.nll[i];
            brier += rows.brier[i];
        }
        let nf = n as f64;
        let ece: f64 = (0..num_slots)
            .filter(|&s| count[s] > 0)
            .map(|s| {
                let c = count[s] as f64;
                c / nf * (sum_correct[s] as f64 / c - sum_conf[s] / c).abs()
            })
            .sum();
        accs.push(hits as f64 / nf);
        eces.push(ece);
        nlls.push(nll / nf);
        briers.push(brier / nf);
    }
    let brier_k: Vec<f64> = briers.iter().map(|b| b / num_classes as f64).collect();
    BootstrapSummary {
        config,
        method: format!(
            "percentile bootstrap, {} resamples of {n} rows with replacement, xoshiro256++ seed {}, {}% interval (numpy linear percentiles)",
            config.resamples,
            config.seed,
            config.confidence * 100.0
        ),
        accuracy: interval(accs, config.confidence),
        ece: interval(eces, config.confidence),
        nll: interval(nlls, config.confidence),
        brier: interval(briers, config.confidence),
        brier_div_k: interval(brier_k, config.confidence),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_seeded_and_uniform_enough() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[a.below(10) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile([1, 2, 3, 4], 25) == 1.75
        assert_eq!(percentile_sorted(&[1.0, 2.0, 3.0, 4.0], 0.25), 1.75);
        assert_eq!(percentile_sorted(&[1.0, 2.0, 3.0, 4.0], 1.0), 4.0);
    }
}
