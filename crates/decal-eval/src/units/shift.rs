//! Corruption-sweep units: `shift-cell`, `shift-score`, `shift` (being ported from `experiment::run`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{UnitContext, UnitError, UnitResult};
use crate::plan::build::PlanCtx;
use crate::plan::{PlanError, Unit};

/// Features of one corruption × severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftCellSpec {
    /// The method row or name.
    pub name: String,
}

/// One row × seed on one corruption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftScoreSpec {
    /// The method row or name.
    pub name: String,
}

/// The sweep's reductions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftReduceSpec {
    /// The method row or name.
    pub name: String,
}

fn not_ported(unit: &Unit) -> UnitError {
    UnitError::Input {
        unit: unit.name.clone(),
        problem: "this unit kind is being ported".into(),
    }
}

/// Plans this module's units.
pub fn plan(_ctx: &mut PlanCtx<'_>) -> Result<(), PlanError> {
    Ok(())
}

/// Runs a unit of this kind.
pub fn run_cell(
    _s: &ShiftCellSpec,
    unit: &Unit,
    _ctx: &mut UnitContext<'_>,
    _dir: &Path,
) -> Result<UnitResult, UnitError> {
    Err(not_ported(unit))
}
/// Runs a unit of this kind.
pub fn run_score(
    _s: &ShiftScoreSpec,
    unit: &Unit,
    _ctx: &mut UnitContext<'_>,
    _dir: &Path,
) -> Result<UnitResult, UnitError> {
    Err(not_ported(unit))
}
/// Runs a unit of this kind.
pub fn run_reduce(
    _s: &ShiftReduceSpec,
    unit: &Unit,
    _ctx: &mut UnitContext<'_>,
    _dir: &Path,
) -> Result<UnitResult, UnitError> {
    Err(not_ported(unit))
}
