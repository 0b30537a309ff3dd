//! The planner: an experiment config in, the whole [`Plan`] out, before any work.
//!
//! Each unit module plans its own kinds from the config and what earlier modules planned (recorded in
//! [`PlanCtx`]): [`crate::units::data`] the split, backbone, features and views; [`crate::units::heads`]
//! the heads, temperature fits and the method rows; [`crate::units::scores`] the test and OOD scoring;
//! [`crate::units::shift`] the corruption sweep; [`crate::units::report`] the report over all of them.
//! Whole-config validation happens here, with errors naming the key.

use std::collections::BTreeMap;

use super::{Plan, PlanError, UnitId};
use crate::experiment::ExperimentConfig;

/// One row of the results table × seed: what predicts it and with which temperature.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodRow {
    /// Row name (`Baseline`, `TS`, `TST`, `V-TST m=10`, `TS + TST`, …).
    pub method: String,
    /// Stage-2 seed (None for the baseline rows).
    pub seed: Option<u64>,
    /// Monte-Carlo samples (V-TST rows; 0 for deterministic rows, 0 with a V-TST head = its mean latent).
    pub num_samples: usize,
    /// The unit whose weights predict: the backbone (its linear head) or a head unit.
    pub model: UnitId,
    /// The temperature fit applied, if any.
    pub temperature: Option<UnitId>,
    /// The post-hoc calibrator applied to the model's logits, if any (`calibrator` unit: vector scaling,
    /// histogram binning, isotonic regression); the row then predicts probabilities.
    pub calibrator: Option<UnitId>,
    /// Feature units this row is scored on, by set (`train`, `val`, `test`, `ood:<name>`): the shared
    /// ones, or a drifted head's own.
    pub features: BTreeMap<String, UnitId>,
    /// The `[[heads]]` name of the head (None for the baseline rows).
    pub head: Option<String>,
}

/// What the planners of the unit modules share while building a plan.
pub struct PlanCtx<'a> {
    /// The experiment.
    pub config: &'a ExperimentConfig,
    /// Device kind (`cpu`, `cuda`, `mps`): part of the ids of units whose numbers depend on the backend.
    pub device_kind: String,
    /// The plan so far.
    pub plan: Plan,
    /// The backbone unit (None for an experiment on feature files).
    pub backbone: Option<UnitId>,
    /// The split unit (None for an experiment on feature files).
    pub split: Option<UnitId>,
    /// Shared feature units by set: `train`, `val`, `test`, `fit` (the set every fit uses), `ood:<name>`.
    pub features: BTreeMap<String, UnitId>,
    /// The model's own logits by set (experiments on feature files that give them: the baseline rows).
    pub logits: BTreeMap<String, UnitId>,
    /// The augmented training views, if the heads train on views.
    pub views: Option<UnitId>,
    /// The OOD sets planned, in order (a set's index salts its predictions: 100 + index).
    pub ood_sets: Vec<String>,
    /// Display name of the in-distribution dataset (the records' `dataset`).
    pub dataset: String,
    /// Feature width of the backbone (known at plan time from the architecture).
    pub feature_dim: i64,
    /// Number of classes.
    pub num_classes: i64,
    /// Every method row × seed, in table order.
    pub rows: Vec<MethodRow>,
    /// Every unit the report reads, by role (`eval/<row>/<seed>`, `ood/…`, `shift`, `temperature/…`).
    pub report_inputs: BTreeMap<String, UnitId>,
    /// What the planner decided to leave out, and why (e.g. an `[[ood]]` set whose directory is missing):
    /// skipped at plan time, shown by `--plan` and in the report's warnings.
    pub warnings: Vec<String>,
}

/// Plans `config` for a device of kind `device_kind` (`cpu`, `cuda`, `mps`).
pub fn build(config: &ExperimentConfig, device_kind: &str) -> Result<Plan, PlanError> {
    config.validate().map_err(PlanError::Invalid)?;
    crate::config_check::check_inputs(config).map_err(PlanError::Invalid)?;
    let mut ctx = PlanCtx {
        config,
        device_kind: device_kind.to_string(),
        plan: Plan::default(),
        backbone: None,
        split: None,
        features: BTreeMap::new(),
        logits: BTreeMap::new(),
        views: None,
        ood_sets: Vec::new(),
        dataset: String::new(),
        feature_dim: 0,
        num_classes: 0,
        rows: Vec::new(),
        report_inputs: BTreeMap::new(),
        warnings: Vec::new(),
    };
    crate::units::data::plan(&mut ctx)?;
    crate::units::heads::plan(&mut ctx)?;
    crate::units::scores::plan(&mut ctx)?;
    crate::units::shift::plan(&mut ctx)?;
    crate::units::report::plan(&mut ctx)?;
    ctx.plan.warnings = ctx.warnings;
    Ok(ctx.plan)
}

/// The device kind (`cpu`, `cuda`, `mps`) of a device: the index never changes what a unit computes, so
/// `--device cuda` and `--device cuda:0` plan the same units.
pub fn device_kind(device: tch::Device) -> &'static str {
    match device {
        tch::Device::Cpu => "cpu",
        tch::Device::Cuda(_) => "cuda",
        tch::Device::Mps => "mps",
        tch::Device::Vulkan => "vulkan",
    }
}
