//! Data-side units: `split`, `backbone`, `features`, `views` (being ported from `experiment::run`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{UnitContext, UnitError, UnitResult};
use crate::plan::build::PlanCtx;
use crate::plan::{PlanError, Unit};

/// Which images form each split, and where the validation images come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    /// Dataset name.
    pub dataset: String,
    /// Its directory.
    pub dir: PathBuf,
}

/// Stage 1 (resumable) or an imported checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackboneSpec {
    /// Checkpoint directory (import) or None (train).
    pub checkpoint: Option<PathBuf>,
}

/// Features of one split or OOD set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturesSpec {
    /// The set (`train`, `val`, `test`, `calibration`, `ood:<name>`).
    pub set: String,
}

/// Augmented views of the training images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewsSpec {
    /// Number of views.
    pub views: usize,
}

fn not_ported(unit: &Unit) -> UnitError {
    UnitError::Input {
        unit: unit.name.clone(),
        problem: "this unit kind is being ported".into(),
    }
}

/// Plans the data-side units.
pub fn plan(_ctx: &mut PlanCtx<'_>) -> Result<(), PlanError> {
    Ok(())
}

/// Runs a `split` unit.
pub fn run_split(
    _s: &SplitSpec,
    unit: &Unit,
    _ctx: &mut UnitContext<'_>,
    _dir: &Path,
) -> Result<UnitResult, UnitError> {
    Err(not_ported(unit))
}
/// Runs a `backbone` unit.
pub fn run_backbone(
    _s: &BackboneSpec,
    unit: &Unit,
    _ctx: &mut UnitContext<'_>,
    _dir: &Path,
) -> Result<UnitResult, UnitError> {
    Err(not_ported(unit))
}
/// Runs a `features` unit.
pub fn run_features(
    _s: &FeaturesSpec,
    unit: &Unit,
    _ctx: &mut UnitContext<'_>,
    _dir: &Path,
) -> Result<UnitResult, UnitError> {
    Err(not_ported(unit))
}
/// Runs a `views` unit.
pub fn run_views(
    _s: &ViewsSpec,
    unit: &Unit,
    _ctx: &mut UnitContext<'_>,
    _dir: &Path,
) -> Result<UnitResult, UnitError> {
    Err(not_ported(unit))
}
