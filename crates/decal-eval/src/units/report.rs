//! The `report` unit: every report input's records put together in table order — `metrics.jsonl`,
//! `metrics.csv`, `results.json`, `reliability/<method>.csv` (each method's bins pooled over seeds),
//! `ood_histograms/`, `predictions/`, the report in `report/` ([`decal_report::generate`]) and
//! `results.md` (the comparison table `decal run` prints) — written into its own unit directory.
//! [`publish`] copies them to the run directory's top level, where users find them.
//!
//! Inputs: every [`PlanCtx::report_inputs`] entry (`eval/<row>`, `ood/<row>/<set>`, `shift`, …), every row's
//! `temperature` fit (role `temperature/<row>`), and `backbone` + `split` for the facts of `results.json`
//! (for an experiment on feature files: every `features:<set>` input and the given `views`).
//! An input that skipped (its reason) or did not complete (`--keep-going`: it or one of its inputs failed)
//! is named in the report's Warnings section and in `results.json` `"warnings"`; the rest is reported.

mod collect;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{UnitContext, UnitError, UnitResult, UnitSpec};
use crate::experiment::ExperimentConfig;
use crate::plan::build::PlanCtx;
use crate::plan::{PlanError, Resource, Unit};

pub use write::{publish, summary, PUBLISHED};

/// One row × seed of the table, in table order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRow {
    /// Row name.
    pub method: String,
    /// Stage-2 seed.
    pub seed: Option<u64>,
    /// `<method-slug>[/seed-<s>]`: the row's part of its input roles.
    pub name: String,
}

/// The report: the experiment (titles, notes, `results.json` `config`) and its rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSpec {
    /// The experiment config (as `results.json` records it; boxed: it is large).
    pub config: Box<ExperimentConfig>,
    /// Every row × seed, table order.
    pub rows: Vec<ReportRow>,
    /// What the planner left out and why (e.g. an `[[ood]]` set whose directory is missing).
    pub plan_warnings: Vec<String>,
    /// F, the feature width (`results.json` facts of an experiment on feature files).
    pub feature_dim: i64,
    /// K.
    pub num_classes: i64,
}

/// Plans the one `report` unit (last).
pub fn plan(ctx: &mut PlanCtx<'_>) -> Result<(), PlanError> {
    let mut deps: BTreeMap<String, String> = ctx.report_inputs.clone();
    for (role, id) in [("backbone", &ctx.backbone), ("split", &ctx.split)] {
        if let Some(id) = id {
            deps.insert(role.to_string(), id.clone());
        }
    }
    let files = ctx.config.backbone.features.is_some();
    for (set, id) in &ctx.features {
        if ["train", "val", "test", "fit"].contains(&set.as_str())
            || (files && set.starts_with("ood:"))
        {
            deps.insert(format!("features:{set}"), id.clone());
        }
    }
    if let Some(v) = &ctx.views {
        deps.insert("views".into(), v.clone());
    }
    let mut rows = Vec::new();
    for row in &ctx.rows {
        let name = super::shift::row_name(&row.method, row.seed);
        if let Some(t) = &row.temperature {
            if !deps.values().any(|d| d == t) {
                deps.insert(format!("temperature/{name}"), t.clone());
            }
        }
        if let Some(k) = &row.calibrator {
            if !deps.values().any(|d| d == k) {
                deps.insert(format!("calibrator/{name}"), k.clone());
            }
        }
        rows.push(ReportRow {
            method: row.method.clone(),
            seed: row.seed,
            name,
        });
    }
    let spec = ReportSpec {
        config: Box::new(ctx.config.clone()),
        rows,
        plan_warnings: ctx.warnings.clone(),
        feature_dim: ctx.feature_dim,
        num_classes: ctx.num_classes,
    };
    ctx.plan
        .add("report", UnitSpec::Report(spec), deps, Resource::Cpu)?;
    Ok(())
}

/// Runs the `report` unit.
pub fn run_report(
    s: &ReportSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let collected = collect::collect(s, unit, ctx, dir)?;
    let facts = collect::facts(s, unit, ctx)?;
    let outcome = write::write(s, unit, dir, collected, facts)?;
    let mut result = UnitResult::done(serde_json::json!({
        "records": outcome.records, "methods": outcome.methods, "warnings": outcome.warnings.len(),
    }));
    result.warnings = outcome.warnings;
    Ok(result)
}

/// The files of a report unit's directory that [`publish`] copies, relative to it.
pub fn outputs(dir: &Path) -> Vec<PathBuf> {
    PUBLISHED
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.exists())
        .collect()
}

#[cfg(test)]
mod tests;
