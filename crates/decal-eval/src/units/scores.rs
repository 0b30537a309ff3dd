//! Scoring units: `eval` (one row × seed on the test split) and `ood` (against one OOD set) (being ported from `experiment::run`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{UnitContext, UnitError, UnitResult};
use crate::plan::build::PlanCtx;
use crate::plan::{PlanError, Unit};

/// One row × seed on the test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSpec {
    /// The method row or name.
    pub name: String,
}

/// One row × seed against one OOD set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OodScoreSpec {
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
pub fn run_eval(
    _s: &EvalSpec,
    unit: &Unit,
    _ctx: &mut UnitContext<'_>,
    _dir: &Path,
) -> Result<UnitResult, UnitError> {
    Err(not_ported(unit))
}
/// Runs a unit of this kind.
pub fn run_ood(
    _s: &OodScoreSpec,
    unit: &Unit,
    _ctx: &mut UnitContext<'_>,
    _dir: &Path,
) -> Result<UnitResult, UnitError> {
    Err(not_ported(unit))
}
