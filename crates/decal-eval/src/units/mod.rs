//! The unit kinds of an experiment plan ([`crate::plan`]) and how each one runs.
//!
//! Every kind has a resolved spec (serialised into the plan and hashed into the unit's id) and a `run`
//! function that reads only its spec and its inputs' outputs (through [`UnitContext::input_dir`]) and
//! writes only its own directory. Kinds, by module:
//! - [`data`]: `split` (which images are train / validation / test / held-out calibration, and why),
//!   `backbone` (stage 1, resumable, or an imported checkpoint), `features` (one split or OOD set through the
//!   frozen — or a head's drifted — body), `views` (augmented training views), and for experiments on
//!   feature files `features-file` (one given matrix: a set's features or the model's logits) and
//!   `views-file` (given augmented training views);
//! - [`heads`]: `exact-epochs` (one seed's body passes in exact mode, shared by its heads), `head` (one
//!   head × seed of stage 2), `temperature` (one temperature fit), `calibrator`
//!   (vector scaling, histogram binning or isotonic regression of the baseline);
//! - [`scores`]: `eval` (one method row × seed on the test split, its test probabilities and train NLL),
//!   `ood` (that row against one OOD set);
//! - [`shift`]: `shift-cell` (features of one corruption × severity), `shift-score` (one row × seed on one
//!   corruption's cells), `shift` (the sweep's reductions);
//! - [`report`]: `report` (records, results.json, tables, plots; published to the run directory).

pub mod data;
pub mod heads;
pub mod report;
pub mod scores;
pub mod shift;

use std::any::Any;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::store::{Outcome, Store, StoreError};
use crate::plan::{Plan, Unit};

/// A unit's resolved spec, tagged by kind. (A plan holds at most a few thousand specs, built once: their
/// size does not matter, so the large variants are not boxed.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum UnitSpec {
    /// Which images form each split.
    Split(data::SplitSpec),
    /// Stage 1 or an imported checkpoint.
    Backbone(data::BackboneSpec),
    /// Features of one split or OOD set.
    Features(data::FeaturesSpec),
    /// Augmented views of the training images.
    Views(data::ViewsSpec),
    /// One given matrix (features or the model's logits) of one set (experiments on feature files).
    FeaturesFile(data::FeaturesFileSpec),
    /// Given augmented views of the training features (experiments on feature files).
    ViewsFile(data::ViewsFileSpec),
    /// One stage-2 seed's body passes in exact mode (shared by the exact heads of that seed).
    ExactEpochs(heads::ExactEpochsSpec),
    /// One head × seed.
    Head(heads::HeadUnitSpec),
    /// One temperature fit.
    Temperature(heads::TemperatureSpec),
    /// One other post-hoc calibrator of the baseline (vector scaling, histogram binning, isotonic).
    Calibrator(heads::CalibratorSpec),
    /// One method row × seed on the test split.
    Eval(scores::EvalSpec),
    /// One method row × seed against one OOD set.
    Ood(scores::OodScoreSpec),
    /// Features of one corruption × severity cell.
    ShiftCell(shift::ShiftCellSpec),
    /// One method row × seed on one corruption.
    ShiftScore(shift::ShiftScoreSpec),
    /// The corruption sweep's reductions.
    Shift(shift::ShiftReduceSpec),
    /// The report.
    Report(report::ReportSpec),
}

impl UnitSpec {
    /// The kind's name (as serialised).
    pub fn kind(&self) -> &'static str {
        match self {
            UnitSpec::Split(_) => "split",
            UnitSpec::Backbone(_) => "backbone",
            UnitSpec::Features(_) => "features",
            UnitSpec::Views(_) => "views",
            UnitSpec::FeaturesFile(_) => "features-file",
            UnitSpec::ViewsFile(_) => "views-file",
            UnitSpec::ExactEpochs(_) => "exact-epochs",
            UnitSpec::Head(_) => "head",
            UnitSpec::Temperature(_) => "temperature",
            UnitSpec::Calibrator(_) => "calibrator",
            UnitSpec::Eval(_) => "eval",
            UnitSpec::Ood(_) => "ood",
            UnitSpec::ShiftCell(_) => "shift-cell",
            UnitSpec::ShiftScore(_) => "shift-score",
            UnitSpec::Shift(_) => "shift",
            UnitSpec::Report(_) => "report",
        }
    }

    /// Kinds whose interrupted directory is resumed rather than emptied (stage 1, the view cache, the
    /// exact-mode epoch journal).
    pub fn resumes(&self) -> bool {
        matches!(
            self,
            UnitSpec::Backbone(_) | UnitSpec::Views(_) | UnitSpec::ExactEpochs(_)
        )
    }

    /// Kinds that still run when some inputs failed (`--keep-going`), saying what is missing.
    pub fn tolerates_missing_inputs(&self) -> bool {
        matches!(self, UnitSpec::Report(_))
    }
}

/// Errors of running a unit: the unit's name, what failed, and the cause.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// An input is missing or does not fit.
    #[error("{unit}: {problem}")]
    Input {
        /// The unit's name.
        unit: String,
        /// What is wrong.
        problem: String,
    },
    /// A step of the unit failed.
    #[error("{unit}: {what}: {source}")]
    Failed {
        /// The unit's name.
        unit: String,
        /// Which step (and file).
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl UnitError {
    /// `map_err(UnitError::failed(unit, "what"))`: wraps any error with the unit and the step.
    pub fn failed<E>(unit: &Unit, what: impl Into<String>) -> impl FnOnce(E) -> UnitError
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (unit, what) = (unit.name.clone(), what.into());
        move |e| UnitError::Failed {
            unit,
            what,
            source: e.into(),
        }
    }
}

/// What a unit returns; the executor turns it into the completion record.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitResult {
    /// Done, or skipped with the unit's reason.
    pub outcome: Outcome,
    /// Warnings for the report.
    pub warnings: Vec<String>,
    /// A small summary (shown in logs, kept in the record).
    pub summary: Value,
}

impl UnitResult {
    /// Done, with a summary.
    pub fn done(summary: Value) -> Self {
        UnitResult {
            outcome: Outcome::Done,
            warnings: Vec::new(),
            summary,
        }
    }

    /// Skipped, with the reason (the report lists it).
    pub fn skipped(reason: impl Into<String>) -> Self {
        UnitResult {
            outcome: Outcome::Skipped {
                reason: reason.into(),
            },
            warnings: Vec::new(),
            summary: Value::Null,
        }
    }
}

/// Things loaded once per process and shared by the units it runs (images, a backbone): a cache only, so
/// a unit's result never depends on what ran before it in the same process.
#[derive(Default)]
pub struct Resources {
    items: BTreeMap<String, Rc<dyn Any>>,
}

impl Resources {
    /// The cached value under `key`, made by `make` the first time.
    pub fn cached<T: 'static>(
        &mut self,
        key: &str,
        make: impl FnOnce() -> Result<T, UnitError>,
    ) -> Result<Rc<T>, UnitError> {
        if let Some(v) = self.items.get(key) {
            if let Ok(v) = Rc::clone(v).downcast::<T>() {
                return Ok(v);
            }
        }
        let v = Rc::new(make()?);
        self.items.insert(key.to_string(), v.clone());
        Ok(v)
    }

    /// Keeps `value` under `key` until [`Self::take`] (work done ahead for a later unit of this process).
    pub fn put<T: 'static>(&mut self, key: &str, value: T) {
        self.items.insert(key.to_string(), Rc::new(value));
    }

    /// Removes and returns the value kept under `key`, if it has type `T`.
    pub fn take<T: 'static>(&mut self, key: &str) -> Option<Rc<T>> {
        let v = self.items.remove(key)?;
        Rc::clone(&v).downcast::<T>().ok()
    }

    /// Drops every cached value whose key starts with `prefix` (memory).
    pub fn forget(&mut self, prefix: &str) {
        self.items.retain(|k, _| !k.starts_with(prefix));
    }
}

/// Execution options that are not part of any unit's identity.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Device units run on (its kind — cpu / cuda / mps — is part of the plan; the index is not).
    pub device: tch::Device,
    /// libtorch threads for stage 1 and feature extraction (None: all cores).
    pub threads: Option<usize>,
    /// libtorch threads for heads, temperature fits and scoring (small matrices).
    pub head_threads: Option<usize>,
    /// Whether a head unit may train its dirty sibling seeds along with it (in one batched model, kept
    /// for their units): true where they will run in this process (the serial executor), false in a
    /// `decal unit run` process, which runs one unit.
    pub batch_siblings: bool,
}

/// What a running unit sees.
pub struct UnitContext<'a> {
    /// The run's store.
    pub store: &'a Store,
    /// The whole plan (to look up inputs' specs).
    pub plan: &'a Plan,
    /// Device and threads.
    pub options: &'a ExecOptions,
    /// Per-process cache.
    pub resources: &'a mut Resources,
    /// Progress lines.
    pub log: &'a mut dyn FnMut(&str),
}

impl UnitContext<'_> {
    /// The output directory of `unit`'s input in `role`.
    pub fn input_dir(&self, unit: &Unit, role: &str) -> Result<PathBuf, UnitError> {
        Ok(self.store.unit_dir(unit.dep(role)?))
    }

    /// The unit of `unit`'s input in `role`.
    pub fn input<'p>(&'p self, unit: &Unit, role: &str) -> Result<&'p Unit, UnitError> {
        let id = unit.dep(role)?;
        self.plan.find(id).ok_or_else(|| UnitError::Input {
            unit: unit.name.clone(),
            problem: format!("its {role:?} input {id} is not in the plan"),
        })
    }
}

/// Runs one unit (its directory is prepared by the executor) and returns what it decided.
pub fn run_unit(unit: &Unit, ctx: &mut UnitContext<'_>) -> Result<UnitResult, UnitError> {
    let dir = ctx.store.unit_dir(&unit.id);
    match &unit.spec {
        UnitSpec::Split(s) => data::run_split(s, unit, ctx, &dir),
        UnitSpec::Backbone(s) => data::run_backbone(s, unit, ctx, &dir),
        UnitSpec::Features(s) => data::run_features(s, unit, ctx, &dir),
        UnitSpec::Views(s) => data::run_views(s, unit, ctx, &dir),
        UnitSpec::FeaturesFile(s) => data::run_features_file(s, unit, ctx, &dir),
        UnitSpec::ViewsFile(s) => data::run_views_file(s, unit, ctx, &dir),
        UnitSpec::ExactEpochs(s) => heads::run_exact_epochs(s, unit, ctx, &dir),
        UnitSpec::Head(s) => heads::run_head(s, unit, ctx, &dir),
        UnitSpec::Temperature(s) => heads::run_temperature(s, unit, ctx, &dir),
        UnitSpec::Calibrator(s) => heads::run_calibrator(s, unit, ctx, &dir),
        UnitSpec::Eval(s) => scores::run_eval(s, unit, ctx, &dir),
        UnitSpec::Ood(s) => scores::run_ood(s, unit, ctx, &dir),
        UnitSpec::ShiftCell(s) => shift::run_cell(s, unit, ctx, &dir),
        UnitSpec::ShiftScore(s) => shift::run_score(s, unit, ctx, &dir),
        UnitSpec::Shift(s) => shift::run_reduce(s, unit, ctx, &dir),
        UnitSpec::Report(s) => report::run_report(s, unit, ctx, &dir),
    }
}
