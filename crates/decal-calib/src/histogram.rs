//! Histogram binning (Zadrozny & Elkan 2001), **one-vs-rest**: for each class k the validation probabilities
//! `p_ik` are put into `M` equal-width bins (`[lo, hi)`, the last bin closed, i.e. decal's `histogram` membership)
//! and each bin's calibrated value is the fraction of its examples whose label is k; an empty bin keeps its
//! midpoint. Applying maps every `p_ik` to its bin's value and renormalises each row to sum to 1 (a row whose
//! values are all 0 becomes uniform).

use serde::{Deserialize, Serialize};

use crate::error::{check_inputs, CalibError};

/// Fitted per-class bin values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramBinning {
    /// Number of bins M.
    pub num_bins: usize,
    /// Number of classes K.
    pub num_classes: usize,
    /// `values[k][m]`: calibrated probability of class k for bin m.
    pub values: Vec<Vec<f64>>,
    /// `counts[k][m]`: validation examples in the bin.
    pub counts: Vec<Vec<u64>>,
}

fn bin_of(p: f64, m: usize) -> usize {
    ((p * m as f64) as usize).min(m - 1)
}

impl HistogramBinning {
    /// Fits on validation probabilities `[N, K]`.
    pub fn fit(
        probs: &[f64],
        labels: &[i64],
        num_classes: usize,
        num_bins: usize,
    ) -> Result<Self, CalibError> {
        if num_bins == 0 {
            return Err(CalibError::Invalid(
                "histogram binning needs at least one bin".into(),
            ));
        }
        check_inputs("validation probabilities", probs, Some(labels), num_classes)?;
        let (k, m) = (num_classes, num_bins);
        let mut hits = vec![vec![0u64; m]; k];
        let mut counts = vec![vec![0u64; m]; k];
        for (row, &y) in probs.chunks_exact(k).zip(labels) {
            for (c, &p) in row.iter().enumerate() {
                let j = bin_of(p.clamp(0.0, 1.0), m);
                counts[c][j] += 1;
                hits[c][j] += (c as i64 == y) as u64;
            }
        }
        let values = (0..k)
            .map(|c| {
                (0..m)
                    .map(|j| {
                        if counts[c][j] == 0 {
                            (j as f64 + 0.5) / m as f64
                        } else {
                            hits[c][j] as f64 / counts[c][j] as f64
                        }
                    })
                    .collect()
            })
            .collect();
        Ok(HistogramBinning {
            num_bins: m,
            num_classes: k,
            values,
            counts,
        })
    }

    /// Calibrated, renormalised probabilities for probabilities `[N, K]`.
    pub fn apply(&self, probs: &[f64]) -> Result<Vec<f64>, CalibError> {
        let k = self.num_classes;
        check_inputs("probabilities", probs, None, k)?;
        let mut out = vec![0.0; probs.len()];
        for (row, o) in probs.chunks_exact(k).zip(out.chunks_exact_mut(k)) {
            for c in 0..k {
                o[c] = self.values[c][bin_of(row[c].clamp(0.0, 1.0), self.num_bins)];
            }
            crate::renormalise(o);
        }
        Ok(out)
    }
}
