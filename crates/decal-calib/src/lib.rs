//! Post-hoc calibrators fitted on validation predictions: temperature, vector, histogram, isotonic (no tensors).
//!
//! Fit on a validation split **disjoint from test**, then apply to test predictions. Every fitted calibrator
//! serialises to JSON ([`Calibrator`], tagged by `method`) and can be re-applied later with
//! [`Calibrator::apply`], which takes logits `[N, K]` and returns calibrated probabilities `[N, K]`.
//!
//! | method               | input it calibrates | fitted by |
//! |----------------------|---------------------|-----------|
//! | `temperature`        | logits              | exact NLL optimum over T (Newton + bisection on β = 1/T) |
//! | `temperature-lbfgs`  | logits              | the seed's `torch.optim.LBFGS` (T₀ 1.5, lr 0.01, 50 iterations) |
//! | (library only) [`TemperatureScaler::fit_sampled`] | per-sample logits `[m, N, K]` of a Monte-Carlo predictive (V-TST) | NLL of `(1/m) Σ_s softmax(z_s / T)`: grid scan + safeguarded Newton on log T |
//! | `vector`             | logits              | per-class scale and bias, Newton on the NLL |
//! | `histogram`          | softmax probabilities | one-vs-rest equal-width histogram binning (15 bins) |
//! | `isotonic`           | softmax probabilities | one-vs-rest isotonic regression (sklearn semantics) |
//!
//! All calibrators refuse empty or single-class fitting sets, non-finite values and out-of-range labels.
#![warn(missing_docs)]

pub mod error;
pub mod histogram;
pub mod isotonic;
pub mod temperature;
pub mod validate;
pub mod vector;

use serde::{Deserialize, Serialize};

pub use error::CalibError;
pub use histogram::HistogramBinning;
pub use isotonic::IsotonicCalibrator;
pub use temperature::{LbfgsConfig, TemperatureScaler};
pub use vector::VectorScaler;

/// Row-wise softmax of `[N, K]` logits.
pub fn softmax_rows(logits: &[f64], num_classes: usize) -> Vec<f64> {
    let mut out = vec![0.0; logits.len()];
    for (z, o) in logits
        .chunks_exact(num_classes)
        .zip(out.chunks_exact_mut(num_classes))
    {
        decal_metrics::scoring::softmax_into(z, o);
    }
    out
}

/// Divides a row by its sum; a row summing to 0 becomes uniform.
pub(crate) fn renormalise(row: &mut [f64]) {
    let s: f64 = row.iter().sum();
    if s > 0.0 {
        row.iter_mut().for_each(|v| *v /= s);
    } else {
        let u = 1.0 / row.len() as f64;
        row.iter_mut().for_each(|v| *v = u);
    }
}

/// Calibration methods (the `--method` values of `decal calibrate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Exact temperature scaling.
    Temperature,
    /// The seed's LBFGS temperature scaling.
    TemperatureLbfgs,
    /// Vector scaling.
    Vector,
    /// One-vs-rest histogram binning.
    Histogram,
    /// One-vs-rest isotonic regression.
    Isotonic,
}

impl Method {
    /// Parses a method name.
    pub fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "temperature" => Method::Temperature,
            "temperature-lbfgs" => Method::TemperatureLbfgs,
            "vector" => Method::Vector,
            "histogram" => Method::Histogram,
            "isotonic" => Method::Isotonic,
            _ => return None,
        })
    }
}

/// A fitted calibrator of any method; serialises as JSON with a `method` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum Calibrator {
    /// Temperature scaling (exact or LBFGS; see `fit_method`).
    Temperature(TemperatureScaler),
    /// Vector scaling.
    Vector(VectorScaler),
    /// Histogram binning.
    Histogram(HistogramBinning),
    /// Isotonic regression.
    Isotonic(IsotonicCalibrator),
}

/// Default number of bins for histogram binning.
pub const DEFAULT_HISTOGRAM_BINS: usize = 15;

impl Calibrator {
    /// Fits `method` on validation logits `[N, K]` and labels.
    pub fn fit(
        method: Method,
        logits: &[f64],
        labels: &[i64],
        num_classes: usize,
    ) -> Result<Self, CalibError> {
        Ok(match method {
            Method::Temperature => {
                Calibrator::Temperature(TemperatureScaler::fit_exact(logits, labels, num_classes)?)
            }
            Method::TemperatureLbfgs => Calibrator::Temperature(TemperatureScaler::fit_seed_lbfgs(
                logits,
                labels,
                num_classes,
            )?),
            Method::Vector => Calibrator::Vector(VectorScaler::fit(logits, labels, num_classes)?),
            Method::Histogram => {
                error::check_inputs("validation logits", logits, Some(labels), num_classes)?;
                let probs = softmax_rows(logits, num_classes);
                Calibrator::Histogram(HistogramBinning::fit(
                    &probs,
                    labels,
                    num_classes,
                    DEFAULT_HISTOGRAM_BINS,
                )?)
            }
            Method::Isotonic => {
                error::check_inputs("validation logits", logits, Some(labels), num_classes)?;
                let probs = softmax_rows(logits, num_classes);
                Calibrator::Isotonic(IsotonicCalibrator::fit(&probs, labels, num_classes)?)
            }
        })
    }

    /// Number of classes the calibrator was fitted for.
    pub fn num_classes(&self) -> usize {
        match self {
            Calibrator::Temperature(t) => t.num_classes,
            Calibrator::Vector(v) => v.scale.len(),
            Calibrator::Histogram(h) => h.num_classes,
            Calibrator::Isotonic(i) => i.num_classes,
        }
    }

    /// Calibrated probabilities for logits `[N, K]` (K must equal the fitted K).
    pub fn apply(&self, logits: &[f64], num_classes: usize) -> Result<Vec<f64>, CalibError> {
        if num_classes != self.num_classes() {
            return Err(CalibError::ClassMismatch {
                fitted: self.num_classes(),
                given: num_classes,
            });
        }
        match self {
            Calibrator::Temperature(t) => t.apply(logits),
            Calibrator::Vector(v) => v.apply(logits),
            Calibrator::Histogram(h) => {
                error::check_inputs("logits", logits, None, num_classes)?;
                h.apply(&softmax_rows(logits, num_classes))
            }
            Calibrator::Isotonic(i) => {
                error::check_inputs("logits", logits, None, num_classes)?;
                i.apply(&softmax_rows(logits, num_classes))
            }
        }
    }

    /// One-line description for printing (method and key parameters).
    pub fn describe(&self) -> String {
        match self {
            Calibrator::Temperature(t) => format!(
                "temperature ({}{}): T = {:.6}, {} iterations, converged = {}, val NLL {:.6} -> {:.6}",
                t.fit_method,
                if t.num_samples > 1 { format!(", {}-sample predictive", t.num_samples) } else { String::new() },
                t.temperature, t.iterations, t.converged, t.nll_before, t.nll_after
            ),
            Calibrator::Vector(v) => format!(
                "vector scaling: {} classes, {} Newton iterations, converged = {}, val NLL {:.6} -> {:.6}",
                v.scale.len(), v.iterations, v.converged, v.nll_before, v.nll_after
            ),
            Calibrator::Histogram(h) => format!("histogram binning (one-vs-rest, {} equal-width bins, rows renormalised)", h.num_bins),
            Calibrator::Isotonic(i) => format!("isotonic regression (one-vs-rest PAV, sklearn semantics, rows renormalised), {} classes", i.num_classes),
        }
    }
}
