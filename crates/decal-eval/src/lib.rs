//! Evaluation suite: turns trained artifacts (features + heads) into metric records.
//!
//! - [`predict`]: every method's predictive distribution on a [`decal_train::features::FeatureSet`]
//!   (baseline linear head, TST, V-TST with m samples, REINIT, each optionally temperature-scaled — for V-TST
//!   every sample's logits divided by T), the per-sample logits temperatures are fitted on, plus the
//!   per-example OOD scores that need more than probabilities (max logit, energy, V-TST mutual information).
//! - [`suite`]: in-distribution metrics under named profiles (with bootstrap intervals), train-set NLL,
//!   OOD detection per OOD set and pooled for every score, and the corruption sweep (per cell, per severity,
//!   pooled "SHIFT" figures; streamed cell by cell so memory does not grow with the sweep).
//!
//! Every number goes out as a [`decal_report::record::MetricRecord`] carrying its definition, and as
//! nested JSON. No metric is computed here: all of them come from `decal-metrics`.
#![warn(missing_docs)]

pub mod config_check;
pub mod drift;
pub mod experiment;
pub mod feature_files;
pub mod plan;
pub mod predict;
pub mod recipe;
pub mod runner;
pub mod slurm;
pub mod suite;
pub mod units;
pub mod validation;

/// Errors of the evaluation suite.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A metric could not be computed (shape, labels, non-finite values).
    #[error("{what}: {source}")]
    Metrics {
        /// Which evaluation (method, split).
        what: String,
        /// The underlying error.
        #[source]
        source: decal_metrics::error::MetricsError,
    },
    /// Writing results failed.
    #[error(transparent)]
    Core(#[from] decal_core::CoreError),
    /// Writing an array failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: decal_io::IoError,
    },
    /// Writing records or reliability data failed.
    #[error(transparent)]
    Report(#[from] decal_report::ReportError),
    /// Inputs do not fit together.
    #[error("{0}")]
    Mismatch(String),
}
