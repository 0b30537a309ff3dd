//! Model-side units: `head` (one head × seed) and `temperature` (one fit) (being ported from `experiment::run`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{UnitContext, UnitError, UnitResult};
use crate::plan::build::PlanCtx;
use crate::plan::{PlanError, Unit};

/// One head × seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadUnitSpec {
    /// The method row or name.
    pub name: String,
}

/// One temperature fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemperatureSpec {
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
pub fn run_head(
    _s: &HeadUnitSpec,
    unit: &Unit,
    _ctx: &mut UnitContext<'_>,
    _dir: &Path,
) -> Result<UnitResult, UnitError> {
    Err(not_ported(unit))
}
/// Runs a unit of this kind.
pub fn run_temperature(
    _s: &TemperatureSpec,
    unit: &Unit,
    _ctx: &mut UnitContext<'_>,
    _dir: &Path,
) -> Result<UnitResult, UnitError> {
    Err(not_ported(unit))
}
