//! Calibration, proper-score and OOD metrics with named definition profiles (no tensors).
//!
//! Pure functions on plain slices plus streaming, mergeable accumulators; every definition follows
//! /work/shared/spec/metrics.md and seed-system.md §10.5 and is named in the output (`definitions`).
//!
//! - [`binning`]: equal-width bins, the `torchmetrics` / `guo` / `histogram` membership conventions.
//! - [`calibration`]: ECE / MCE / RMSCE, equal-mass ECE, classwise ECE, reliability bins.
//! - [`scoring`]: accuracy, NLL (exact and sklearn-clipped), Brier and Brier/K.
//! - [`ood`]: AUROC, AUPR-In/Out (AP and trapezoid), FPR@95TPR (three conventions), OOD scores.
//! - [`bootstrap`]: seeded percentile intervals.
//! - [`profile`]: the `paper` and `default` profiles and the `definitions` object.
//! - [`summary`]: `evaluate` / `SummaryAccumulator`, the single path every command uses.
//! - [`json`]: the JSON encoding of non-finite metric values (`"inf"`, `"-inf"`, `"NaN"`; never `null`).
#![warn(missing_docs)]

pub mod binning;
pub mod bootstrap;
pub mod calibration;
pub mod error;
pub mod fastmath;
pub mod json;
pub mod ood;
pub mod profile;
pub mod scoring;
pub mod summary;

pub use binning::{Bins, Membership};
pub use error::MetricsError;
pub use profile::{Definitions, Profile};
pub use summary::{
    evaluate, evaluate_with, EvalOptions, PredictionInput, ScoreKind, Summary, SummaryAccumulator,
    Values,
};
