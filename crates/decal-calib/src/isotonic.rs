//! Isotonic-regression calibration (Zadrozny & Elkan 2002), **one-vs-rest**: for each class k a non-decreasing
//! map from `p_ik` to `P(y = k)` is fitted by pool-adjacent-violators on the validation set, exactly as
//! scikit-learn's `IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")`: equal inputs are merged first
//! (inputs within 1e-15 of each other; their targets averaged, weighted by count), PAV is run on the unique sorted inputs, and prediction linearly
//! interpolates between the fitted points, clipping outside the fitted range. The K calibrated columns are then
//! renormalised per row (a row of zeros becomes uniform).

use serde::{Deserialize, Serialize};

use crate::error::{check_inputs, CalibError};

/// One fitted non-decreasing piecewise-linear map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsotonicMap {
    /// Increasing input thresholds.
    pub x: Vec<f64>,
    /// Non-decreasing fitted values at the thresholds.
    pub y: Vec<f64>,
}

impl IsotonicMap {
    /// Fits `y ≈ f(x)` with `f` non-decreasing, minimising squared error (PAV).
    pub fn fit(x: &[f64], target: &[f64]) -> Self {
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
        // Merge ties: (x, weighted mean of y, weight). Like sklearn's `_make_unique`, inputs closer than
        // `finfo(float64).resolution` = 1e-15 to the first input of a run count as equal (this matters for the
        // many near-zero probabilities of confident softmax outputs).
        const RESOLUTION: f64 = 1e-15;
        let mut ux: Vec<f64> = Vec::new();
        let mut uy: Vec<f64> = Vec::new();
        let mut uw: Vec<f64> = Vec::new();
        for &i in &order {
            match ux.last() {
                Some(&first) if x[i] - first < RESOLUTION => {
                    let j = ux.len() - 1;
                    uy[j] += target[i];
                    uw[j] += 1.0;
                }
                _ => {
                    ux.push(x[i]);
                    uy.push(target[i]);
                    uw.push(1.0);
                }
            }
        }
        for (y, w) in uy.iter_mut().zip(&uw) {
            *y /= w;
        }
        // Pool adjacent violators over blocks (value, weight, length).
        let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(ux.len());
        for (&y, &w) in uy.iter().zip(&uw) {
            blocks.push((y, w, 1));
            while blocks.len() > 1 {
                let n = blocks.len();
                if blocks[n - 2].0 <= blocks[n - 1].0 {
                    break;
                }
                let (v2, w2, l2) = blocks.pop().expect("len > 1");
                let (v1, w1, l1) = blocks.pop().expect("len > 1");
                blocks.push(((v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, l1 + l2));
            }
        }
        let mut fitted = Vec::with_capacity(ux.len());
        for (v, _, l) in blocks {
            fitted.extend(std::iter::repeat_n(v.clamp(0.0, 1.0), l));
        }
        IsotonicMap { x: ux, y: fitted }
    }

    /// `np.interp(v, x, y)` with clipping outside `[x_0, x_last]`.
    pub fn predict(&self, v: f64) -> f64 {
        let n = self.x.len();
        if n == 0 {
            return 0.0;
        }
        if v <= self.x[0] {
            return self.y[0];
        }
        if v >= self.x[n - 1] {
            return self.y[n - 1];
        }
        let j = self.x.partition_point(|&t| t <= v) - 1;
        if self.x[j] == v {
            return self.y[j];
        }
        let slope = (self.y[j + 1] - self.y[j]) / (self.x[j + 1] - self.x[j]);
        slope * (v - self.x[j]) + self.y[j]
    }
}

/// Fitted one-vs-rest isotonic calibrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsotonicCalibrator {
    /// Number of classes K.
    pub num_classes: usize,
    /// One map per class.
    pub maps: Vec<IsotonicMap>,
}

impl IsotonicCalibrator {
    /// Fits on validation probabilities `[N, K]`.
    pub fn fit(probs: &[f64], labels: &[i64], num_classes: usize) -> Result<Self, CalibError> {
        let n = check_inputs("validation probabilities", probs, Some(labels), num_classes)?;
        let k = num_classes;
        let maps = (0..k)
            .map(|c| {
                let x: Vec<f64> = (0..n).map(|i| probs[i * k + c]).collect();
                let t: Vec<f64> = labels
                    .iter()
                    .map(|&y| (y == c as i64) as u8 as f64)
                    .collect();
                IsotonicMap::fit(&x, &t)
            })
            .collect();
        Ok(IsotonicCalibrator {
            num_classes: k,
            maps,
        })
    }

    /// Calibrated columns before renormalisation (what sklearn's `predict` returns per class).
    pub fn apply_unnormalised(&self, probs: &[f64]) -> Result<Vec<f64>, CalibError> {
        let k = self.num_classes;
        check_inputs("probabilities", probs, None, k)?;
        Ok(probs
            .iter()
            .enumerate()
            .map(|(i, &p)| self.maps[i % k].predict(p))
            .collect())
    }

    /// Calibrated, renormalised probabilities.
    pub fn apply(&self, probs: &[f64]) -> Result<Vec<f64>, CalibError> {
        let mut out = self.apply_unnormalised(probs)?;
        for row in out.chunks_exact_mut(self.num_classes) {
            crate::renormalise(row);
        }
        Ok(out)
    }
}
