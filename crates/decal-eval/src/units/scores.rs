//! Scoring units: `eval` (one method row × seed on the test split) and `ood` (that row against one OOD set,
//! or the row's OOD sets pooled).
//!
//! Per row × seed of [`PlanCtx::rows`] (table order):
//! - `eval/<method-slug>[/seed-<s>]` (inputs: `model`, `temperature` if the row has one, features `test`,
//!   and `train` + `val` with `[eval] train_nll`): the in-distribution metrics under every profile (with the
//!   bootstrap on the primary one), the train NLL over the train + validation predictions, and the
//!   reliability bins. Writes `eval.json` (`method, seed, num_samples, temperature, head, records, results
//!   {test, train}, reliability`), the test predictions exactly (`test_logits.npy` f64 `[N, K]`,
//!   `test_labels.npy`, `test_negmi.npy` for V-TST m ≥ 2, `test_predictions.json`; the OOD units score
//!   against them) and, with `[eval] save_predictions`, `predictions/test_probs.npy` (float32) +
//!   `predictions/test_labels.npy` (the report republishes them as `predictions/<row>[-seed<s>]/`).
//! - `ood/<method-slug>[/seed-<s>]/<set-slug>` per `[[ood]]` set (inputs: `eval`, `model`, `temperature`,
//!   `features` = the row's `ood:<name>` features): MSP / negative entropy / max-logit / energy / −MI
//!   detection of the test split against that set (and the paper profile's float32 MSP records when the
//!   `paper` profile is on). Writes `ood.json` (`records`, `records_paper`, `ood`, `ood_paper`) and the
//!   set's predictions (`ood_*`).
//! - `ood/<method-slug>[/seed-<s>]/pooled` when there are two or more sets (the `pooled` records) or the row
//!   draws the OOD histogram (baseline rows and the smallest stage-2 seed, as before): inputs `eval` and each
//!   set unit (role `ood:<name>`); writes `ood.json` like a set unit and `ood_histogram.csv` (the MSP
//!   histogram of the test split and every set; the report republishes it as
//!   `ood_histograms/<row>.csv`).
//!
//! The numbers are the old run's: the row's evaluation seed ([`super::heads::row_eval_seed`]) salted with 1 (test),
//! 2 (train), 3 (validation) and 100 + the set's index in `[[ood]]`. Adding an OOD set adds its `ood` units
//! and changes only the `pooled` units (whose numbers depend on every set) and the report; the `eval`
//! units keep their ids. [`files::merge_row`] turns a row's outputs back into its records (old order)
//! and `results.json` entry. Every `eval` and `ood` unit is a report input: roles `eval/<row>` and
//! `ood/<row>/<set-slug>` / `ood/<row>/pooled`, with `<row>` = `<method-slug>[/seed-<s>]`.

mod detect;
mod eval;
pub mod files;
mod ood;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::heads::{self, RowModel};
use super::{data, UnitContext, UnitError, UnitResult, UnitSpec};
use crate::plan::build::{MethodRow, PlanCtx};
use crate::plan::store::Outcome;
use crate::plan::{PlanError, Resource, Unit, UnitId};
use crate::predict::{predict, Predictions};
use crate::suite::RecordContext;

/// Name of the unit (and records' dataset) holding a row's OOD sets pooled; no `[[ood]]` set may be named so.
pub const POOLED: &str = "pooled";

/// Who a row × seed's records belong to and how it predicts (shared by `eval` and `ood` specs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowSpec {
    /// The experiment's name (the records' `run`).
    pub run: String,
    /// Row name (`Baseline`, `TS`, `V-TST m=10`, `TS + TST`, …).
    pub method: String,
    /// Stage-2 seed (None for the baseline rows).
    pub seed: Option<u64>,
    /// Monte-Carlo samples m (0 for deterministic rows).
    pub num_samples: usize,
    /// The `[[heads]]` name (None for the baseline rows).
    pub head: Option<String>,
    /// The row's evaluation seed ([`super::heads::row_eval_seed`]); each split salts it.
    pub eval_seed: u64,
    /// Display name of the in-distribution dataset (the records' `dataset`).
    pub dataset: String,
}

/// The `[eval]` settings that change an `eval` unit's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettingsSpec {
    /// Metric profiles, the primary first.
    pub profiles: Vec<String>,
    /// Bootstrap resamples (0 = none).
    pub bootstrap: usize,
    /// `[eval] eval_seed` (the bootstrap's seed).
    pub eval_seed: u64,
    /// NLL on train + validation.
    pub train_nll: bool,
    /// Export the test probabilities.
    pub save_predictions: bool,
}

/// One row × seed on the test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSpec {
    /// The row.
    pub row: RowSpec,
    /// The evaluation settings.
    pub settings: EvalSettingsSpec,
}

/// What an `ood` unit scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "kebab-case")]
pub enum OodTarget {
    /// One `[[ood]]` set.
    Set {
        /// Its name (the records' `dataset`).
        name: String,
        /// Its index in `[[ood]]` (prediction salt 100 + index).
        index: usize,
    },
    /// Every set of the row pooled (records when two or more) and the OOD histogram.
    Pooled {
        /// The sets, in `[[ood]]` order.
        sets: Vec<String>,
        /// Whether this row × seed draws the MSP histogram.
        histogram: bool,
    },
}

/// One row × seed against one OOD set (or its sets pooled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OodScoreSpec {
    /// The row.
    pub row: RowSpec,
    /// Whether the `paper` profile is on (the float32-MSP records).
    pub paper: bool,
    /// What is scored.
    pub target: OodTarget,
}

/// `<method-slug>[/seed-<s>]`: the row's part of its units' names and report roles.
pub fn row_name(row: &MethodRow) -> String {
    let method = decal_report::slug(&row.method);
    match row.seed {
        Some(s) => format!("{method}/seed-{s}"),
        None => method,
    }
}

fn row_features(row: &MethodRow, set: &str, unit: &str) -> Result<UnitId, PlanError> {
    row.features
        .get(set)
        .cloned()
        .ok_or_else(|| PlanError::Input {
            what: unit.to_string(),
            problem: format!("no {set:?} features were planned for this row"),
        })
}

fn model_deps(row: &MethodRow) -> BTreeMap<String, UnitId> {
    let mut deps = BTreeMap::from([("model".to_string(), row.model.clone())]);
    if let Some(t) = &row.temperature {
        deps.insert("temperature".into(), t.clone());
    }
    if let Some(c) = &row.calibrator {
        deps.insert("calibrator".into(), c.clone());
    }
    deps
}

/// Plans every row's `eval` and `ood` units and registers them as report inputs.
pub fn plan(ctx: &mut PlanCtx<'_>) -> Result<(), PlanError> {
    let config = ctx.config;
    for (i, o) in config.ood.iter().enumerate() {
        if decal_report::slug(&o.name) == POOLED {
            return Err(PlanError::Config {
                key: format!("ood[{i}].name"),
                problem: format!(
                    "{:?} is reserved: the records of every OOD set pooled carry that name",
                    o.name
                ),
            });
        }
    }
    let settings = EvalSettingsSpec {
        profiles: config.eval.profiles.clone(),
        bootstrap: config.eval.bootstrap,
        eval_seed: config.eval.eval_seed,
        train_nll: config.eval.train_nll,
        save_predictions: config.eval.save_predictions,
    };
    if ctx.rows.is_empty() {
        return Err(PlanError::Config {
            key: "heads".into(),
            problem: "nothing to evaluate: no [[heads]] and no baseline (feature files: give \
                      features.test_logits for the model's own row)"
                .into(),
        });
    }
    let dataset = ctx.dataset.clone();
    // One OOD histogram per method: the baseline rows and the smallest stage-2 seed (the old rule).
    let histogram_seed = ctx.rows.iter().filter_map(|r| r.seed).min();
    // The sets the data planner kept (one whose directory is missing is left out with a warning); a set's
    // index among them salts its predictions, as its index among the loaded sets did.
    let sets = ctx.ood_sets.clone();
    for row in ctx.rows.clone() {
        let spec = RowSpec {
            run: config.name.clone(),
            method: row.method.clone(),
            seed: row.seed,
            num_samples: row.num_samples,
            head: row.head.clone(),
            eval_seed: heads::row_eval_seed(config.eval.eval_seed, row.seed),
            dataset: dataset.clone(),
        };
        let histogram = row.seed.is_none() || row.seed == histogram_seed;
        plan_row(ctx, &row, spec, &settings, &sets, histogram)?;
    }
    Ok(())
}

fn plan_row(
    ctx: &mut PlanCtx<'_>,
    row: &MethodRow,
    spec: RowSpec,
    settings: &EvalSettingsSpec,
    ood_sets: &[String],
    histogram: bool,
) -> Result<(), PlanError> {
    let base = row_name(row);
    let eval_name = format!("eval/{base}");
    let mut deps = model_deps(row);
    // The train NLL needs the row's train and validation predictions (given logits may lack them).
    let mut settings = settings.clone();
    settings.train_nll &= ["train", "val"]
        .iter()
        .all(|s| row.features.contains_key(*s));
    let sets: &[&str] = if settings.train_nll {
        &["test", "train", "val"]
    } else {
        &["test"]
    };
    for set in sets {
        deps.insert(set.to_string(), row_features(row, set, &eval_name)?);
    }
    let eval_spec = UnitSpec::Eval(EvalSpec {
        row: spec.clone(),
        settings: settings.clone(),
    });
    let eval_id = ctx
        .plan
        .add(eval_name.clone(), eval_spec, deps, Resource::Cpu)?;
    ctx.report_inputs.insert(eval_name, eval_id.clone());
    let paper = settings.profiles.iter().any(|p| p == "paper");
    let mut pooled_deps = BTreeMap::from([("eval".to_string(), eval_id.clone())]);
    // A set's index among all planned sets salts its predictions; a row scores the sets it has features
    // of (given logits may cover only some).
    let ood_sets: Vec<(usize, &String)> = ood_sets
        .iter()
        .enumerate()
        .filter(|(_, set)| row.features.contains_key(&format!("ood:{set}")))
        .collect();
    for &(index, set) in &ood_sets {
        let name = format!("ood/{base}/{}", decal_report::slug(set));
        let mut deps = model_deps(row);
        deps.insert("eval".into(), eval_id.clone());
        let key = format!("ood:{set}");
        deps.insert("features".into(), row_features(row, &key, &name)?);
        let target = OodTarget::Set {
            name: set.clone(),
            index,
        };
        let unit_spec = UnitSpec::Ood(OodScoreSpec {
            row: spec.clone(),
            paper,
            target,
        });
        let id = ctx.plan.add(name.clone(), unit_spec, deps, Resource::Cpu)?;
        ctx.report_inputs.insert(name, id.clone());
        pooled_deps.insert(key, id);
    }
    let histogram = histogram && !ood_sets.is_empty();
    if ood_sets.len() >= 2 || histogram {
        let name = format!("ood/{base}/{POOLED}");
        let target = OodTarget::Pooled {
            sets: ood_sets.iter().map(|(_, set)| (*set).clone()).collect(),
            histogram,
        };
        let unit_spec = UnitSpec::Ood(OodScoreSpec {
            row: spec,
            paper,
            target,
        });
        let id = ctx
            .plan
            .add(name.clone(), unit_spec, pooled_deps, Resource::Cpu)?;
        ctx.report_inputs.insert(name, id);
    }
    Ok(())
}

/// Runs an `eval` unit.
pub fn run_eval(
    s: &EvalSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    eval::run(s, unit, ctx, dir)
}

/// Runs an `ood` unit.
pub fn run_ood(
    s: &OodScoreSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    ood::run(s, unit, ctx, dir)
}

/// A row's model with its temperature, predicting the unit's feature inputs (the old `make_predictor` +
/// `pred` closure).
struct RowPredictor {
    model: RowModel,
    temperature: Option<f64>,
    num_samples: usize,
    eval_seed: u64,
    method: String,
}

impl RowPredictor {
    /// `Ok(Err(reason))` when the row's calibrator fit was skipped.
    fn load(
        ctx: &mut UnitContext<'_>,
        unit: &Unit,
        row: &RowSpec,
        temperature: Option<f64>,
    ) -> Result<Result<Self, String>, UnitError> {
        let model = match heads::load_row_model(ctx, unit)? {
            Ok(m) => m,
            Err(reason) => return Ok(Err(reason)),
        };
        Ok(Ok(RowPredictor {
            model,
            temperature,
            num_samples: row.num_samples,
            eval_seed: row.eval_seed,
            method: row.method.clone(),
        }))
    }

    /// Predictions on the features of input `role`, the ε stream salted with `salt`.
    fn predict(
        &self,
        ctx: &mut UnitContext<'_>,
        unit: &Unit,
        role: &str,
        salt: u64,
    ) -> Result<Predictions, UnitError> {
        let features = data::load_features(ctx, unit.dep(role)?)?;
        let predictor =
            self.model
                .predictor(self.temperature, self.num_samples, self.eval_seed ^ salt);
        predict(&predictor, &features, ctx.options.device).map_err(UnitError::failed(
            unit,
            format!("predicting its {role} input with {}", self.method),
        ))
    }
}

/// The row's temperature: `Ok(None)` without one, `Err(reason)` when its fit was skipped.
fn temperature(
    ctx: &UnitContext<'_>,
    unit: &Unit,
) -> Result<Result<Option<f64>, String>, UnitError> {
    let Some(id) = unit.deps.get("temperature") else {
        return Ok(Ok(None));
    };
    Ok(match heads::load_temperature(ctx, id)? {
        Some(t) => Ok(Some(t)),
        None => {
            Err(skipped_input(ctx, unit, "temperature")
                .unwrap_or_else(|| "no reason recorded".into()))
        }
    })
}

fn record_context(row: &RowSpec) -> RecordContext {
    RecordContext {
        run: row.run.clone(),
        seed: row.seed,
        method: row.method.clone(),
    }
}

/// `<method>[ seed <s>]` for log lines and skip reasons.
fn row_label(row: &RowSpec) -> String {
    match row.seed {
        Some(s) => format!("{} seed {s}", row.method),
        None => row.method.clone(),
    }
}

/// The reason an input of `unit` (role) decided to skip, if it did.
fn skipped_input(ctx: &UnitContext<'_>, unit: &Unit, role: &str) -> Option<String> {
    let id = unit.deps.get(role)?;
    match ctx.store.record(id)?.outcome {
        Outcome::Skipped { reason } => Some(reason),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_e2e;
