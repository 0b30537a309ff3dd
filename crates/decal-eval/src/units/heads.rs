//! Model-side units: `exact-epochs` (one stage-2 seed's body passes in exact mode, shared by the exact
//! heads of that seed: `epochs`), `head` (one `[[heads]]` table × one stage-2 seed) and `temperature` (one
//! temperature fit), and the method rows of the results table ([`plan`]).
//!
//! Ported from `experiment::run`'s stage 2:
//! - a `head` unit trains one seed. With cached features (augmented views or un-augmented features) it uses
//!   the batched trainer ([`decal_train::stage2_batched::train_batched`]) with that one seed, as the old run
//!   trained all its seeds in one batched model (per seed, the results agree within float tolerance, not
//!   bit for bit: see that module's docs); in `exact` mode it runs the seed's loop on its seed's
//!   `exact-epochs` unit (freshly augmented training images through the body every epoch), and with
//!   `body = "seed-bn-drift"` saves the selected
//!   epoch's drifted BatchNorm statistics ([`BODY_STATE_FILE`]) beside the head, from which the data units
//!   extract that head's own features;
//! - a `temperature` unit fits one temperature: the baseline's `TS` (exact) and `TS (seed LBFGS)`, or a
//!   head row's `TS + <row>` / `TS (seed LBFGS) + <row>` on the row's own predictive (V-TST: its m and its ε
//!   stream, salt 3). A fit without a finite optimum is a skipped unit (the row is left out with the reason);
//!   [`load_temperature`] then gives `None` and the row's scoring units skip too.
//!
//! Exports for the scoring units: [`load_head`], [`load_temperature`], [`load_model`] and
//! [`RowModel::predictor`] (the old `make_predictor`), [`row_eval_seed`].

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use decal_calib::TemperatureScaler;
use decal_models::heads::HeadKind;
use decal_train::features::BodyMode;
use decal_train::features::FeatureSet;
use decal_train::stage2::{self, Stage2Config};
use decal_train::stage2_batched::{train_batched, BatchedSource};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Instant;

use super::{data, UnitContext, UnitError, UnitResult, UnitSpec};
use crate::experiment::{stage2_config, HeadSpec};
use crate::plan::build::{MethodRow, PlanCtx};
use crate::plan::store::Outcome;
use crate::plan::{PlanError, Resource, Unit, UnitId};
use crate::predict::{predict, Predictor};

pub use crate::drift::BODY_STATE_FILE;

mod epochs;
mod exact;
pub mod journal;

pub use epochs::{run_exact_epochs, ExactEpochsSpec};
#[cfg(test)]
mod measure;
#[cfg(test)]
mod tests;

/// File of a `temperature` unit: the fitted [`decal_calib::TemperatureScaler`].
pub const SCALER_FILE: &str = "scaler.json";

/// Where a head's training features come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum HeadFeatures {
    /// The same un-augmented training features every epoch (`unaugmented`, or `augmented` on a dataset
    /// without training augmentation): input `train`.
    Unaugmented,
    /// Augmented views of every training image (`augmented`): input `views`, one view per image per epoch.
    Views,
    /// The seed's loop (`exact`): freshly augmented training images through the body every epoch.
    Exact {
        /// `frozen` or `seed-bn-drift` (the head saves its drifted body state).
        body: BodyMode,
        /// Whether the dataset's training images are augmented (crop + flip) at all.
        augment: bool,
        /// `[features] augment_val`: the validation images augmented every epoch as the seed (BUG-6).
        /// Absent from the spec when false, so earlier plans keep their ids.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        augment_val: bool,
        /// Validation through the drifted body every epoch (set with `seed-bn-drift`; before, drifting heads
        /// selected their epoch on the undrifted body's features). In the spec so that such heads, whose
        /// selection changed, get new ids.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        drifted_val: bool,
    },
}

/// One head × seed: everything that changes the trained weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadUnitSpec {
    /// The `[[heads]]` name.
    pub head: String,
    /// The resolved stage-2 config (its seed included).
    pub stage2: Stage2Config,
    /// Training features.
    pub features: HeadFeatures,
    /// Device kind the head trains on (`cpu`, `cuda`, `mps`).
    pub device: String,
}

/// How a temperature is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TemperatureFit {
    /// The exact NLL optimum (of the row's own predictive: m-sample for sampled V-TST rows).
    Exact,
    /// The seed's single LBFGS step from T = 1.5 on one sample's logits.
    SeedLbfgs,
}

/// What the fitted temperature scales.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "kebab-case")]
pub enum TemperatureTarget {
    /// The backbone's linear head (input `model` is the backbone).
    Baseline,
    /// A head row (input `model` is the head unit).
    Head {
        /// The row's m (0 for deterministic rows and V-TST `mean`).
        num_samples: usize,
        /// The row's evaluation seed ([`row_eval_seed`]); the fit draws its ε with salt 3, as the row's
        /// own validation predictions.
        eval_seed: u64,
    },
}

/// One temperature fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemperatureSpec {
    /// The temperature-scaled row (`TS`, `TS (seed LBFGS)`, `TS + <row>`, `TS (seed LBFGS) + <row>`).
    pub method: String,
    /// The row's stage-2 seed (None for the baseline's fits).
    pub seed: Option<u64>,
    /// How.
    pub fit: TemperatureFit,
    /// Of what.
    pub target: TemperatureTarget,
    /// Device kind the logits are computed on.
    pub device: String,
}

/// One post-hoc calibrator of the baseline (vector scaling, histogram binning, isotonic regression), fitted on
/// the baseline's logits of the set every fit uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibratorSpec {
    /// The row (`VS`, `Histogram binning`, `Isotonic`).
    pub method: String,
    /// Which calibrator.
    pub calibrator: decal_calib::Method,
    /// Device kind the logits are computed on.
    pub device: String,
}

/// File of a `calibrator` unit: the fitted [`decal_calib::Calibrator`].
pub const CALIBRATOR_FILE: &str = "calibrator.json";

/// The evaluation ε seed of a stage-2 seed's rows (the test split adds salt 1, the training part 2, the
/// validation part and every temperature fit 3, OOD set `i` 100 + i) — as the old run.
pub fn row_eval_seed(base: u64, seed: Option<u64>) -> u64 {
    base ^ seed.unwrap_or(0).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The table rows of one head for one evaluation: `(row name, m)` — V-TST gives one per `eval_samples`
/// (`<name> m=<m>`, `<name> mean` for m = 0), every other kind one row with m = 0.
pub fn head_rows(spec: &HeadSpec) -> Vec<(String, usize)> {
    if spec.kind == HeadKind::Vtst {
        spec.eval_samples
            .iter()
            .map(|&m| {
                let name = if m == 0 {
                    format!("{} mean", spec.name)
                } else {
                    format!("{} m={m}", spec.name)
                };
                (name, m)
            })
            .collect()
    } else {
        vec![(spec.name.clone(), 0)]
    }
}

/// The temperature fits of one head row: `(prefix, fit)`.
fn row_fits(spec: &HeadSpec, m: usize) -> Vec<(&'static str, TemperatureFit)> {
    let mut fits = Vec::new();
    if spec.temperature_scaling {
        fits.push(("TS", TemperatureFit::Exact));
    }
    let single = spec.kind != HeadKind::Vtst || m == 1;
    if spec.temperature_scaling_seed_lbfgs && single {
        fits.push(("TS (seed LBFGS)", TemperatureFit::SeedLbfgs));
    }
    fits
}

fn planned<'m>(
    features: &'m BTreeMap<String, UnitId>,
    set: &str,
    for_what: &str,
) -> Result<&'m UnitId, PlanError> {
    features.get(set).ok_or_else(|| PlanError::Input {
        what: for_what.to_string(),
        problem: format!("the plan has no {set:?} features (a planner bug)"),
    })
}

fn deps(pairs: &[(&str, &UnitId)]) -> BTreeMap<String, UnitId> {
    pairs
        .iter()
        .map(|(role, id)| (role.to_string(), (*id).clone()))
        .collect()
}

/// The features a row is scored on: every shared set but `fit`.
fn scored_sets(features: &BTreeMap<String, UnitId>) -> BTreeMap<String, UnitId> {
    features
        .iter()
        .filter(|(set, _)| set.as_str() != "fit")
        .map(|(s, id)| (s.clone(), id.clone()))
        .collect()
}

/// How the heads of this config get their training features.
fn head_features(ctx: &PlanCtx<'_>) -> HeadFeatures {
    let f = &ctx.config.features;
    if f.mode == "exact" {
        let mut split_plan = decal_train::stage1::Stage1Plan {
            dataset: ctx.config.data.dataset.clone(),
            ..Default::default()
        };
        split_plan.apply_dataset_defaults();
        HeadFeatures::Exact {
            body: f.body,
            augment: split_plan.augment,
            augment_val: f.augment_val && split_plan.augment,
            drifted_val: f.body == BodyMode::SeedBnDrift,
        }
    } else if ctx.views.is_some() {
        HeadFeatures::Views
    } else {
        HeadFeatures::Unaugmented
    }
}

/// Plans the heads, the temperature fits and the method rows (after [`super::data::plan`]).
pub fn plan(ctx: &mut PlanCtx<'_>) -> Result<(), PlanError> {
    plan_baseline(ctx)?;
    let config = ctx.config;
    for (i, spec) in config.heads.iter().enumerate() {
        let key = |k: &str| format!("heads[{i}].{k}");
        // The head's own `feature_dim` (if given) must be the backbone's.
        crate::experiment::head_config(
            spec,
            spec.feature_dim.unwrap_or(ctx.feature_dim),
            ctx.num_classes,
        )
        .check_feature_dim(ctx.feature_dim)
        .map_err(|e| PlanError::Config {
            key: key("feature_dim"),
            problem: e.to_string(),
        })?;
        for &seed in &config.seeds {
            plan_head_seed(ctx, i, spec, seed)?;
        }
    }
    Ok(())
}

/// The baseline row and its temperature-scaled rows: the backbone's linear head on the shared features,
/// or (feature files) the model's own logits where they are given — the row's model is then the test
/// logits unit, its inputs the `logits/…` units, and its temperature is fitted on the validation logits.
fn plan_baseline(ctx: &mut PlanCtx<'_>) -> Result<(), PlanError> {
    let (backbone, sets) = match (&ctx.backbone, ctx.logits.get("test")) {
        (Some(b), _) => (b.clone(), ctx.features.clone()),
        (None, Some(test)) => (test.clone(), ctx.logits.clone()),
        (None, None) => return Ok(()),
    };
    let scored = scored_sets(&sets);
    ctx.rows.push(MethodRow {
        method: "Baseline".into(),
        seed: None,
        num_samples: 0,
        model: backbone.clone(),
        temperature: None,
        calibrator: None,
        features: scored.clone(),
        head: None,
    });
    if ctx.config.temperature_scaling {
        plan_baseline_ts(ctx, &backbone, &sets)?;
    }
    plan_calibrators(ctx, &backbone, &sets)
}

/// The baseline's temperature-scaled rows (`TS`, `TS (seed LBFGS)`).
fn plan_baseline_ts(
    ctx: &mut PlanCtx<'_>,
    backbone: &UnitId,
    sets: &BTreeMap<String, UnitId>,
) -> Result<(), PlanError> {
    let scored = scored_sets(sets);
    let fit = planned(sets, "fit", "temperature_scaling")?.clone();
    for (method, how) in [
        ("TS", TemperatureFit::Exact),
        ("TS (seed LBFGS)", TemperatureFit::SeedLbfgs),
    ] {
        let spec = TemperatureSpec {
            method: method.into(),
            seed: None,
            fit: how,
            target: TemperatureTarget::Baseline,
            device: ctx.device_kind.clone(),
        };
        let id = ctx.plan.add(
            format!("temperature/{}", decal_report::slug(method)),
            UnitSpec::Temperature(spec),
            deps(&[("model", backbone), ("fit", &fit)]),
            Resource::Cpu,
        )?;
        ctx.rows.push(MethodRow {
            method: method.into(),
            seed: None,
            num_samples: 0,
            model: backbone.clone(),
            temperature: Some(id),
            calibrator: None,
            features: scored.clone(),
            head: None,
        });
    }
    Ok(())
}

/// The row name and method of a `calibrators` entry (None for an unknown name).
pub fn calibrator_row(name: &str) -> Option<(&'static str, decal_calib::Method)> {
    Some(match name {
        "vector" => ("VS", decal_calib::Method::Vector),
        "histogram" => ("Histogram binning", decal_calib::Method::Histogram),
        "isotonic" => ("Isotonic", decal_calib::Method::Isotonic),
        _ => return None,
    })
}

/// The baseline's rows of the other post-hoc calibrators (`calibrators = [...]`), each fitted by a
/// `calibrator` unit on the set every fit uses.
fn plan_calibrators(
    ctx: &mut PlanCtx<'_>,
    backbone: &UnitId,
    sets: &BTreeMap<String, UnitId>,
) -> Result<(), PlanError> {
    let scored = scored_sets(sets);
    for (i, name) in ctx.config.calibrators.iter().enumerate() {
        let (row, method) = calibrator_row(name).ok_or_else(|| PlanError::Config {
            key: format!("calibrators[{i}]"),
            problem: format!("unknown calibrator {name:?}"),
        })?;
        let fit = planned(sets, "fit", "calibrators")?.clone();
        let spec = CalibratorSpec {
            method: row.to_string(),
            calibrator: method,
            device: ctx.device_kind.clone(),
        };
        let id = ctx.plan.add(
            format!("calibrator/{}", decal_report::slug(row)),
            UnitSpec::Calibrator(spec),
            deps(&[("model", backbone), ("fit", &fit)]),
            Resource::Cpu,
        )?;
        ctx.rows.push(MethodRow {
            method: row.into(),
            seed: None,
            num_samples: 0,
            model: backbone.clone(),
            temperature: None,
            calibrator: Some(id),
            features: scored.clone(),
            head: None,
        });
    }
    Ok(())
}

/// One head × seed: its unit, its drifted features (seed-bn-drift), its rows and their temperature fits.
fn plan_head_seed(
    ctx: &mut PlanCtx<'_>,
    index: usize,
    spec: &HeadSpec,
    seed: u64,
) -> Result<(), PlanError> {
    let stage2 = stage2_config(spec, ctx.feature_dim, ctx.num_classes, seed);
    stage2.validate().map_err(|e| PlanError::Config {
        key: format!("heads[{index}]"),
        problem: e.to_string(),
    })?;
    let features = head_features(ctx);
    let what = format!("heads[{index}]");
    let fit = planned(&ctx.features, "fit", &what)?.clone();
    let (inputs, resource) = head_inputs(ctx, &features, &stage2, &fit, &what)?;
    let drift = matches!(
        features,
        HeadFeatures::Exact {
            body: BodyMode::SeedBnDrift,
            ..
        }
    );
    let unit_spec = HeadUnitSpec {
        head: spec.name.clone(),
        stage2,
        features,
        device: ctx.device_kind.clone(),
    };
    let head_name = format!("head/{}/seed-{seed}", decal_report::slug(&spec.name));
    let head = ctx.plan.add(
        head_name,
        UnitSpec::Head(unit_spec),
        inputs
            .into_iter()
            .map(|(r, id)| (r.to_string(), id))
            .collect(),
        resource,
    )?;
    // A drifted head is scored (and its temperatures fitted) on features through its own body.
    let (scored, fit) = if drift {
        let wants_fit = spec.temperature_scaling || spec.temperature_scaling_seed_lbfgs;
        let sets: Vec<String> = ctx
            .features
            .keys()
            .filter(|s| wants_fit || s.as_str() != "fit")
            .cloned()
            .collect();
        let own = drifted_features(ctx, &head, &spec.name, seed, &sets)?;
        let fit = match own.get("fit") {
            Some(f) => f.clone(),
            None => fit,
        };
        (scored_sets(&own), fit)
    } else {
        (scored_sets(&ctx.features), fit)
    };
    plan_head_rows(ctx, spec, seed, &head, &scored, &fit)
}

/// A head unit's inputs: (role, unit id).
type HeadInputs = Vec<(&'static str, UnitId)>;

/// A head unit's inputs by role (the fit features plus its training source) and its resource. An exact
/// head's source is the `exact-epochs` unit of its seed and settings, planned here unless another head of
/// the seed already did (they share it).
fn head_inputs(
    ctx: &mut PlanCtx<'_>,
    features: &HeadFeatures,
    stage2: &Stage2Config,
    fit: &UnitId,
    what: &str,
) -> Result<(HeadInputs, Resource), PlanError> {
    let mut inputs: HeadInputs = vec![("fit", fit.clone())];
    let resource = match features {
        HeadFeatures::Exact { .. } => {
            let backbone = ctx.backbone.clone().ok_or_else(|| PlanError::Config {
                key: "features.mode".into(),
                problem: "\"exact\" needs images and a backbone, not feature files".into(),
            })?;
            let split = ctx.split.clone().ok_or_else(|| PlanError::Config {
                key: "features.mode".into(),
                problem: "\"exact\" needs images and a backbone, not feature files".into(),
            })?;
            let spec = ExactEpochsSpec {
                seed: stage2.seed,
                epochs: stage2.epochs,
                batch_size: stage2.batch_size,
                shuffle: stage2.shuffle,
                features: features.clone(),
                device: ctx.device_kind.clone(),
            };
            let epochs = ctx.plan.add_shared(
                format!("exact-epochs/seed-{}", stage2.seed),
                UnitSpec::ExactEpochs(spec),
                deps(&[("backbone", &backbone), ("split", &split), ("fit", fit)]),
                Resource::Device,
            )?;
            inputs.push(("epochs", epochs));
            inputs.push(("backbone", backbone));
            Resource::Cpu
        }
        HeadFeatures::Views => {
            let views = ctx
                .views
                .clone()
                .expect("HeadFeatures::Views only with views");
            inputs.push(("views", views));
            Resource::Cpu
        }
        HeadFeatures::Unaugmented => {
            inputs.push(("train", planned(&ctx.features, "train", what)?.clone()));
            Resource::Cpu
        }
    };
    Ok((inputs, resource))
}

/// The rows of one head × seed (one per m) and their temperature fits.
fn plan_head_rows(
    ctx: &mut PlanCtx<'_>,
    spec: &HeadSpec,
    seed: u64,
    head: &UnitId,
    scored: &BTreeMap<String, UnitId>,
    fit: &UnitId,
) -> Result<(), PlanError> {
    let eval_seed = row_eval_seed(ctx.config.eval.eval_seed, Some(seed));
    for (method, m) in head_rows(spec) {
        ctx.rows.push(MethodRow {
            method: method.clone(),
            seed: Some(seed),
            num_samples: m,
            model: head.clone(),
            temperature: None,
            calibrator: None,
            features: scored.clone(),
            head: Some(spec.name.clone()),
        });
        for (prefix, how) in row_fits(spec, m) {
            let ts_method = format!("{prefix} + {method}");
            let t = TemperatureSpec {
                method: ts_method.clone(),
                seed: Some(seed),
                fit: how,
                target: TemperatureTarget::Head {
                    num_samples: m,
                    eval_seed,
                },
                device: ctx.device_kind.clone(),
            };
            let id = ctx.plan.add(
                format!("temperature/{}/seed-{seed}", decal_report::slug(&ts_method)),
                UnitSpec::Temperature(t),
                deps(&[("model", head), ("fit", fit)]),
                Resource::Cpu,
            )?;
            ctx.rows.push(MethodRow {
                method: ts_method,
                seed: Some(seed),
                num_samples: m,
                model: head.clone(),
                temperature: Some(id),
                calibrator: None,
                features: scored.clone(),
                head: Some(spec.name.clone()),
            });
        }
    }
    Ok(())
}

/// The feature units through a drifted head's own body, by set (planned by the data module).
fn drifted_features(
    ctx: &mut PlanCtx<'_>,
    head: &UnitId,
    name: &str,
    seed: u64,
    sets: &[String],
) -> Result<BTreeMap<String, UnitId>, PlanError> {
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    super::data::plan_drifted_features(ctx, head, name, seed, &sets)
}

/// A loaded stage-2 head (cached per process by unit id; never mutated).
pub struct LoadedHead {
    /// Its variables.
    pub vs: tch::nn::VarStore,
    /// The head.
    pub head: decal_models::heads::Head,
    /// Its checkpoint metadata (the resolved stage-2 config, selected epoch, history).
    pub meta: stage2::HeadCheckpointMeta,
    /// SHA-256 of its weights file.
    pub weights_sha256: String,
}

fn plan_unit<'p>(ctx: &'p UnitContext<'_>, id: &str, what: &str) -> Result<&'p Unit, UnitError> {
    ctx.plan.find(id).ok_or_else(|| UnitError::Input {
        unit: what.to_string(),
        problem: format!("unit {id} is not in the plan"),
    })
}

/// The head trained by `head` unit `id`, on the run's device (loaded once per process).
pub fn load_head(ctx: &mut UnitContext<'_>, id: &UnitId) -> Result<Rc<LoadedHead>, UnitError> {
    let unit = plan_unit(ctx, id, "load_head")?.clone();
    if !matches!(unit.spec, UnitSpec::Head(_)) {
        return Err(UnitError::Input {
            unit: unit.name,
            problem: "is not a head unit".into(),
        });
    }
    let dir = ctx.store.unit_dir(id);
    let device = ctx.options.device;
    ctx.resources.cached(&format!("head:{id}"), || {
        let weights = dir.join(stage2::HEAD_WEIGHTS);
        let weights_sha256 = decal_core::sha256_file(&weights).map_err(UnitError::failed(
            &unit,
            format!("reading {}", weights.display()),
        ))?;
        let (vs, head, meta) = stage2::load_head(&dir, device).map_err(UnitError::failed(
            &unit,
            format!("loading head {}", dir.display()),
        ))?;
        Ok(LoadedHead {
            vs,
            head,
            meta,
            weights_sha256,
        })
    })
}

/// What fit unit `id` (a `temperature` or `calibrator` unit) stored in its `file`; None when that unit
/// skipped its fit (the row it serves is left out, and its scoring units must skip too).
fn load_fitted<T: serde::de::DeserializeOwned>(
    ctx: &UnitContext<'_>,
    id: &UnitId,
    file: &str,
) -> Result<Option<(T, std::path::PathBuf)>, UnitError> {
    let unit = plan_unit(ctx, id, "load_fitted")?;
    let record = ctx.store.record(id).ok_or_else(|| UnitError::Input {
        unit: unit.name.clone(),
        problem: "has no completion record".into(),
    })?;
    if let Outcome::Skipped { .. } = record.outcome {
        return Ok(None);
    }
    let path = ctx.store.unit_dir(id).join(file);
    let text = std::fs::read_to_string(&path).map_err(UnitError::failed(
        unit,
        format!("reading {}", path.display()),
    ))?;
    let value = serde_json::from_str(&text).map_err(UnitError::failed(
        unit,
        format!("parsing {}", path.display()),
    ))?;
    Ok(Some((value, path)))
}

/// The temperature fitted by `temperature` unit `id`; None when that unit skipped its fit (no finite
/// optimum): the row it scales is left out, and its scoring units must skip too.
pub fn load_temperature(ctx: &UnitContext<'_>, id: &UnitId) -> Result<Option<f64>, UnitError> {
    Ok(load_fitted::<TemperatureScaler>(ctx, id, SCALER_FILE)?.map(|(s, _)| s.temperature))
}

/// The weights that predict a method row: the backbone's linear head or a stage-2 head.
pub enum RowModel {
    /// The backbone's linear head (`[K, F]` weight, `[K]` bias; shallow copies of the loaded backbone's).
    Linear {
        /// `[K, F]`.
        weight: tch::Tensor,
        /// `[K]`.
        bias: Option<tch::Tensor>,
    },
    /// A head unit's head.
    Head(Rc<LoadedHead>),
    /// The model's own logits, given as files: the row's feature inputs are `logits` units.
    Given,
    /// A post-hoc calibrator on another model's logits (the row predicts its probabilities).
    Calibrated(Box<RowModel>, Rc<decal_calib::Calibrator>),
}

impl RowModel {
    /// The row's predictor (the old `make_predictor`): `temperature` None = 1; `num_samples` is the row's m
    /// (heads only); `eval_seed` the row's evaluation seed with the split's salt already applied.
    pub fn predictor(
        &self,
        temperature: Option<f64>,
        num_samples: usize,
        eval_seed: u64,
    ) -> Predictor<'_> {
        let temperature = temperature.unwrap_or(1.0);
        match self {
            RowModel::Head(h) => Predictor::Head {
                head: &h.head,
                num_samples,
                eval_seed,
                temperature,
            },
            RowModel::Linear { weight, bias } => Predictor::Linear {
                weight,
                bias: bias.as_ref(),
                temperature,
            },
            RowModel::Given => Predictor::Given { temperature },
            RowModel::Calibrated(base, calibrator) => Predictor::Calibrated {
                base: Box::new(base.predictor(Some(temperature), num_samples, eval_seed)),
                calibrator,
            },
        }
    }
}

/// The weights that predict the row whose model is unit `id` (a backbone, a head unit, or a `logits/…`
/// unit of given logits).
pub fn load_model(ctx: &mut UnitContext<'_>, id: &UnitId) -> Result<RowModel, UnitError> {
    let unit = plan_unit(ctx, id, "load_model")?;
    match &unit.spec {
        UnitSpec::Head(_) => Ok(RowModel::Head(load_head(ctx, id)?)),
        UnitSpec::Backbone(_) => {
            let bb = data::load_backbone(ctx, id)?;
            Ok(RowModel::Linear {
                weight: bb.classifier.head.ws.shallow_clone(),
                bias: bb.classifier.head.bs.as_ref().map(|b| b.shallow_clone()),
            })
        }
        UnitSpec::FeaturesFile(f) if f.content == data::files::FileContent::Logits => {
            Ok(RowModel::Given)
        }
        other => Err(UnitError::Input {
            unit: unit.name.clone(),
            problem: format!("a {} unit predicts no method row", other.kind()),
        }),
    }
}

/// The model of the row scored by `unit` (its `model` input, under its `calibrator` input if it has one);
/// `Ok(Err(reason))` when that calibrator's fit was skipped (the row has no results).
pub fn load_row_model(
    ctx: &mut UnitContext<'_>,
    unit: &Unit,
) -> Result<Result<RowModel, String>, UnitError> {
    let model = load_model(ctx, unit.dep("model")?)?;
    let Some(id) = unit.deps.get("calibrator") else {
        return Ok(Ok(model));
    };
    Ok(match load_calibrator(ctx, id)? {
        Some(c) => Ok(RowModel::Calibrated(Box::new(model), Rc::new(c))),
        None => {
            let reason = match ctx.store.record(id).map(|r| r.outcome) {
                Some(Outcome::Skipped { reason }) => reason,
                _ => "its calibrator fit was skipped".into(),
            };
            Err(reason)
        }
    })
}

/// Runs a `head` unit: trains one seed and saves it (`stage2::save_head`; with `seed-bn-drift` also the
/// selected epoch's body state, [`BODY_STATE_FILE`]).
pub fn run_head(
    s: &HeadUnitSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let started = Instant::now();
    let fit = data::load_features(ctx, unit.dep("fit")?)?;
    let what = format!("stage 2: {} seed {}", s.head, s.stage2.seed);
    let (trained, body) = match &s.features {
        HeadFeatures::Unaugmented | HeadFeatures::Views => {
            let trained = match ctx
                .resources
                .take::<stage2::TrainedHead>(&prefetch_key(&unit.id))
            {
                Some(t) => t,
                None => train_with_siblings(s, unit, ctx, &fit, &what)?,
            };
            (trained, None)
        }
        HeadFeatures::Exact { body, .. } => {
            let per_epoch_val = epochs::per_epoch_validation(&s.features);
            let (t, body) = exact::train(&s.stage2, *body, per_epoch_val, &fit, unit, ctx)?;
            (Rc::new(t), body)
        }
    };
    if let Some(state) = body {
        state
            .save(&dir.join(BODY_STATE_FILE))
            .map_err(UnitError::failed(unit, "saving the drifted body state"))?;
    }
    // What the head was trained on, by input role and unit id (never a path of another unit).
    let features = json!({"mode": s.features, "inputs": unit.deps});
    stage2::save_head(dir, &trained, features).map_err(UnitError::failed(
        unit,
        format!("saving the head in {}", dir.display()),
    ))?;
    let best = &trained.history[trained.best_epoch];
    let last = trained.history.last().unwrap_or(best);
    (ctx.log)(&format!(
        "{what}: best epoch {} of {} (val NLL {:.4}); last epoch: train loss {:.4}, val NLL {:.4}, val acc {:.2}% [{:.1}s]",
        trained.best_epoch + 1,
        s.stage2.epochs,
        best.val_nll,
        last.train_loss,
        last.val_nll,
        100.0 * last.val_accuracy,
        started.elapsed().as_secs_f64()
    ));
    Ok(UnitResult::done(json!({
        "best_epoch": trained.best_epoch, "epochs": s.stage2.epochs, "val_nll": best.val_nll,
        "val_accuracy": best.val_accuracy,
    })))
}

/// Where a head trained ahead of its unit waits (in this process's resources) for that unit.
fn prefetch_key(id: &UnitId) -> String {
    format!("prefetched-head:{id}")
}

/// The head units of the plan that differ from `unit` only in their stage-2 seed (same head, settings,
/// features and inputs) and have no completion record yet, with their configs.
fn dirty_siblings(
    s: &HeadUnitSpec,
    unit: &Unit,
    ctx: &UnitContext<'_>,
) -> Vec<(UnitId, Stage2Config)> {
    ctx.plan
        .units
        .iter()
        .filter(|u| u.id != unit.id && u.deps == unit.deps)
        .filter_map(|u| match &u.spec {
            UnitSpec::Head(h) => {
                let mut same = h.clone();
                same.stage2.seed = s.stage2.seed;
                (same == *s).then(|| (u.id.clone(), h.stage2.clone()))
            }
            _ => None,
        })
        .filter(|(id, _)| ctx.store.record(id).is_none())
        .collect()
}

/// Trains this unit's seed on cached features together with its dirty siblings (one batched model; each
/// seed's result is the one it gets trained alone, see `decal_train::stage2_batched`), keeping the
/// siblings' heads for their own units in this process (`--jobs` and Slurm run each unit alone).
///
/// Measured on the seed CNN's CIFAR-10 features (3 TST seeds, 10 epochs, one head thread, loaded 2-core
/// machine): 15.7 / 17.0 s batched against 14.7 / 16.7 s one seed at a time, with bit-identical records —
/// on the CPU the work is the same FLOPs either way. Batching is for GPUs, where a small head's kernels are
/// launch-bound (not measured yet: no GPU has been lent).
fn train_with_siblings(
    s: &HeadUnitSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    fit: &FeatureSet,
    what: &str,
) -> Result<Rc<stage2::TrainedHead>, UnitError> {
    let device = ctx.options.device;
    let siblings = if ctx.options.batch_siblings {
        dirty_siblings(s, unit, ctx)
    } else {
        Vec::new()
    };
    let mut configs = vec![s.stage2.clone()];
    configs.extend(siblings.iter().map(|(_, c)| c.clone()));
    let mut trained = match &s.features {
        HeadFeatures::Views => {
            let views = data::load_views(ctx, unit.dep("views")?)?;
            train_cached(&configs, views.source(), fit, device, unit, what)?
        }
        _ => {
            let train = data::load_features(ctx, unit.dep("train")?)?;
            train_cached(
                &configs,
                BatchedSource::Fixed(&train),
                fit,
                device,
                unit,
                what,
            )?
        }
    };
    if !siblings.is_empty() {
        (ctx.log)(&format!(
            "{what}: trained together with seed(s) {} (one batched model; each keeps its own result)",
            siblings
                .iter()
                .map(|(_, c)| c.seed.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let rest = trained.split_off(1);
    for ((id, _), head) in siblings.iter().zip(rest) {
        ctx.resources.put(&prefetch_key(id), head);
    }
    trained.pop().map(Rc::new).ok_or_else(|| UnitError::Input {
        unit: unit.name.clone(),
        problem: "the batched trainer returned no head".into(),
    })
}

/// Seeds on cached features: the batched trainer (per seed the results are those of training it alone, see
/// `decal_train::stage2_batched`).
fn train_cached(
    configs: &[Stage2Config],
    source: BatchedSource<'_>,
    fit: &FeatureSet,
    device: tch::Device,
    unit: &Unit,
    what: &str,
) -> Result<Vec<stage2::TrainedHead>, UnitError> {
    let trained = train_batched(configs, source, fit, device, &mut |_, _| {})
        .map_err(UnitError::failed(unit, what))?;
    if trained.len() != configs.len() {
        return Err(UnitError::Input {
            unit: unit.name.clone(),
            problem: format!(
                "the batched trainer returned {} heads for {} seeds",
                trained.len(),
                configs.len()
            ),
        });
    }
    Ok(trained)
}

/// Runs a `temperature` unit: fits the temperature and writes [`SCALER_FILE`]; a fit without a finite
/// optimum skips the unit (and so the row) with the reason.
pub fn run_temperature(
    s: &TemperatureSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let started = Instant::now();
    let device = ctx.options.device;
    let fit = data::load_features(ctx, unit.dep("fit")?)?;
    let model = load_model(ctx, unit.dep("model")?)?;
    let what = format!("temperature scaling of {}", row_label(s));
    let fitted = match (&s.target, &model) {
        (TemperatureTarget::Baseline, RowModel::Linear { .. } | RowModel::Given) => {
            let logits = predict(&model.predictor(None, 0, 0), &fit, device)
                .map_err(UnitError::failed(unit, &what))?;
            let (z, y, k) = (&logits.logits, &logits.labels, logits.num_classes);
            match s.fit {
                TemperatureFit::Exact => TemperatureScaler::fit_exact(z, y, k),
                TemperatureFit::SeedLbfgs => TemperatureScaler::fit_seed_lbfgs(z, y, k),
            }
        }
        (
            TemperatureTarget::Head {
                num_samples,
                eval_seed,
            },
            RowModel::Head(h),
        ) => {
            let m = *num_samples;
            let (z, k) = crate::predict::sample_logits(&h.head, m, eval_seed ^ 3, &fit, device)
                .map_err(UnitError::failed(unit, &what))?;
            // Sampled V-TST rows (m ≥ 1) are fitted on their m-sample predictive; deterministic rows on
            // their logits; the seed's LBFGS on one sample's logits.
            let y = &fit.labels;
            match s.fit {
                TemperatureFit::SeedLbfgs => {
                    TemperatureScaler::fit_seed_lbfgs(&z[..fit.len() * k], y, k)
                }
                TemperatureFit::Exact if h.head.is_stochastic() && m > 0 => {
                    TemperatureScaler::fit_sampled(&z, m, y, k)
                }
                TemperatureFit::Exact => TemperatureScaler::fit_exact(&z, y, k),
            }
        }
        _ => {
            return Err(UnitError::Input {
                unit: unit.name.clone(),
                problem: "its model input does not fit its target (a planner bug)".into(),
            })
        }
    };
    let scaler = match fitted {
        Ok(scaler) => scaler,
        // The fit's own failure (no finite optimum) is the row's, not the run's.
        Err(e) => {
            let reason = format!(
                "method {} skipped: its temperature fit on the validation split failed: {e}",
                row_label(s)
            );
            (ctx.log)(&format!("warning: {reason}"));
            return Ok(UnitResult::skipped(reason));
        }
    };
    let path = dir.join(SCALER_FILE);
    decal_core::write_json_atomic(&path, &scaler).map_err(UnitError::failed(
        unit,
        format!("writing {}", path.display()),
    ))?;
    log_fit(ctx, s, &scaler, fit.len(), started);
    Ok(UnitResult::done(
        serde_json::to_value(&scaler).unwrap_or_default(),
    ))
}

/// Runs a `calibrator` unit: fits it on the model's logits of the fit set and writes [`CALIBRATOR_FILE`];
/// a fit the calibrator refuses (e.g. vector scaling with a class absent from the fit set) skips the unit,
/// and so the row, with the reason.
pub fn run_calibrator(
    s: &CalibratorSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let started = Instant::now();
    let device = ctx.options.device;
    let fit = data::load_features(ctx, unit.dep("fit")?)?;
    let model = load_model(ctx, unit.dep("model")?)?;
    let what = format!("{} (post-hoc calibrator)", s.method);
    let logits = predict(&model.predictor(None, 0, 0), &fit, device)
        .map_err(UnitError::failed(unit, &what))?;
    let fitted = decal_calib::Calibrator::fit(
        s.calibrator,
        &logits.logits,
        &logits.labels,
        logits.num_classes,
    );
    let calibrator = match fitted {
        Ok(c) => c,
        Err(e) => {
            let reason = format!(
                "method {} skipped: its fit on the validation split failed: {e}",
                s.method
            );
            (ctx.log)(&format!("warning: {reason}"));
            return Ok(UnitResult::skipped(reason));
        }
    };
    let path = dir.join(CALIBRATOR_FILE);
    decal_core::write_json_atomic(&path, &calibrator).map_err(UnitError::failed(
        unit,
        format!("writing {}", path.display()),
    ))?;
    (ctx.log)(&format!(
        "{}: {} on {} images [{:.1}s]",
        s.method,
        calibrator.describe(),
        fit.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(UnitResult::done(
        serde_json::to_value(&calibrator).unwrap_or_default(),
    ))
}

/// The calibrator fitted by `calibrator` unit `id` (checked); None when that unit skipped its fit.
pub fn load_calibrator(
    ctx: &UnitContext<'_>,
    id: &UnitId,
) -> Result<Option<decal_calib::Calibrator>, UnitError> {
    let Some((calibrator, path)) =
        load_fitted::<decal_calib::Calibrator>(ctx, id, CALIBRATOR_FILE)?
    else {
        return Ok(None);
    };
    calibrator.validate().map_err(UnitError::failed(
        plan_unit(ctx, id, "load_calibrator")?,
        format!("checking {}", path.display()),
    ))?;
    Ok(Some(calibrator))
}

/// The log line of a finished temperature fit.
fn log_fit(
    ctx: &mut UnitContext<'_>,
    s: &TemperatureSpec,
    scaler: &TemperatureScaler,
    images: usize,
    started: Instant,
) {
    (ctx.log)(&format!(
        "{}: T = {:.4} (validation NLL {:.4} → {:.4}, {}{} on {} images) [{:.1}s]",
        row_label(s),
        scaler.temperature,
        scaler.nll_before,
        scaler.nll_after,
        scaler.fit_method,
        if scaler.num_samples > 1 {
            format!(", m = {}", scaler.num_samples)
        } else {
            String::new()
        },
        images,
        started.elapsed().as_secs_f64()
    ));
}

/// `<method>[ seed <s>]`, as the old run's warnings and `results.json` calibration keys.
fn row_label(s: &TemperatureSpec) -> String {
    match s.seed {
        Some(seed) => format!("{} seed {seed}", s.method),
        None => s.method.clone(),
    }
}
