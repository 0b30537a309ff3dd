//! The `backbone` unit: stage 1 trained into the unit's directory (resumed from `last/`), or an imported
//! checkpoint verified against the SHA-256 its spec took at plan time; and [`load_backbone`].

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use decal_core::sha256_file;
use decal_data::SplitName;
use decal_models::{ArchConfig, Classifier};
use decal_train::stage1::{self, Stage1Data};
use serde_json::json;
use tch::{nn, Device};

use super::inputs::read_split;
use super::BackboneSpec;
use crate::drift::BodyState;
use crate::plan::{Unit, UnitId};
use crate::units::{UnitContext, UnitError, UnitResult, UnitSpec};

/// What an import unit writes.
pub const BACKBONE_FILE: &str = "backbone.json";

/// The frozen backbone with the stage-1 linear head, as loaded by [`load_backbone`].
///
/// Shared between the units of one process: a unit that changes its BatchNorm statistics (a drifted
/// body) restores [`Backbone::undrifted`] before it returns, error or not.
pub struct Backbone {
    /// The variables (on the run's device).
    pub vs: nn::VarStore,
    /// Body and linear head.
    pub classifier: Classifier,
    /// The architecture.
    pub arch: ArchConfig,
    /// SHA-256 of the weights file.
    pub hash: String,
    /// Per-channel normalisation mean.
    pub mean: Vec<f32>,
    /// Per-channel normalisation std.
    pub std: Vec<f32>,
    /// The body's BatchNorm statistics as loaded (`crate::drift`).
    pub undrifted: BodyState,
}

impl Backbone {
    /// The device its variables live on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Feature width of the body.
    pub fn feature_dim(&self) -> i64 {
        self.classifier.body.feature_dim()
    }

    /// The transform before the body, as feature cache keys record it.
    pub fn transform(&self) -> String {
        format!(
            "to-tensor, normalize(mean={:?}, std={:?})",
            self.mean, self.std
        )
    }
}

/// Loads a classifier from either checkpoint layout: `decal_models::checkpoint` (config.json =
/// `CheckpointMeta`) or a stage-1 `best/` (config.json = `ArchConfig`, meta.json = `BestMeta`).
fn load_classifier(dir: &Path, device: Device, dataset: &str) -> Result<Backbone, String> {
    let weights = dir.join("model.safetensors");
    let hash = sha256_file(&weights).map_err(|e| e.to_string())?;
    // A decal checkpoint (its config.json parses as one) is loaded strictly: a tensor that does not match
    // the architecture in config.json is that error, not a fallback to the older bare-architecture layout.
    let meta_error = decal_models::checkpoint::read_meta(dir).err();
    if meta_error.is_none() {
        let loaded = decal_models::checkpoint::load(dir, device).map_err(|e| e.to_string())?;
        let channels = loaded.meta.arch.input_shape().0 as usize;
        let (mean, std) = match &loaded.meta.normalization {
            Some(n) => (
                n.mean.iter().map(|&v| v as f32).collect(),
                n.std.iter().map(|&v| v as f32).collect(),
            ),
            None => normalization(dataset, channels),
        };
        let undrifted = BodyState::capture(&loaded.vs);
        return Ok(Backbone {
            arch: loaded.meta.arch.clone(),
            vs: loaded.vs,
            classifier: loaded.classifier,
            hash,
            mean,
            std,
            undrifted,
        });
    }
    let config = dir.join("config.json");
    let text =
        std::fs::read_to_string(&config).map_err(|e| format!("{}: {e}", config.display()))?;
    let meta_error = meta_error.map(|e| e.to_string()).unwrap_or_default();
    // A config.json that records its own checksum is a decal checkpoint: its error (e.g. the checksum
    // mismatch of a damaged file) is the cause, not a failed parse as the older bare-architecture layout.
    if text.contains(decal_models::checkpoint::CONFIG_CHECKSUM_KEY) {
        return Err(meta_error);
    }
    let arch: ArchConfig = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: neither a decal checkpoint ({meta_error}) nor a bare architecture ({e})",
            config.display()
        )
    })?;
    let vs = nn::VarStore::new(device);
    let classifier =
        decal_models::try_build_classifier(&vs.root(), &arch).map_err(|e| e.to_string())?;
    // Strict: every tensor named and shaped as config.json's architecture says (no broadcasting).
    let tensors = tch::Tensor::read_safetensors(&weights)
        .map_err(|e| format!("{}: {e}", weights.display()))?;
    decal_models::checkpoint::copy_into(&vs, tensors, &weights, |_| false)
        .map_err(|e| e.to_string())?;
    let (mean, std) = match std::fs::read_to_string(dir.join("meta.json")) {
        Ok(t) => {
            let meta: stage1::BestMeta = serde_json::from_str(&t)
                .map_err(|e| format!("{}: {e}", dir.join("meta.json").display()))?;
            (meta.mean, meta.std)
        }
        Err(_) => normalization(dataset, arch.input_shape().0 as usize),
    };
    let undrifted = BodyState::capture(&vs);
    Ok(Backbone {
        vs,
        classifier,
        arch,
        hash,
        mean,
        std,
        undrifted,
    })
}

/// The one normalisation fallback for a checkpoint that records none (`Normalize::for_dataset`).
fn normalization(dataset: &str, channels: usize) -> (Vec<f32>, Vec<f32>) {
    let n = decal_data::transforms::Normalize::for_dataset(dataset, channels);
    (n.mean, n.std)
}

struct Stage1Progress<'a> {
    log: &'a mut dyn FnMut(&str),
    started: Instant,
}

impl stage1::Progress for Stage1Progress<'_> {
    fn message(&mut self, text: &str) {
        (self.log)(&format!("  stage 1: {text}"));
    }
    fn epoch_end(&mut self, r: &decal_train::checkpoint::EpochRecord) {
        (self.log)(&format!(
            "  stage 1 epoch {:>3}: train loss {:.4}, val NLL {:.4}, val acc {:.2}%{} [{:.0}s]",
            r.epoch + 1,
            r.train_loss,
            r.val_nll,
            100.0 * r.val_accuracy,
            if r.is_best { " (best)" } else { "" },
            self.started.elapsed().as_secs_f64()
        ));
    }
}

/// Runs a `backbone` unit: trains stage 1 into `dir` (continuing from `dir/last` when an earlier attempt
/// left one), or checks an imported checkpoint and records it in `backbone.json`.
pub fn run_backbone(
    s: &BackboneSpec,
    unit: &Unit,
    ctx: &mut UnitContext<'_>,
    dir: &Path,
) -> Result<UnitResult, UnitError> {
    let device = ctx.options.device;
    match s {
        BackboneSpec::Import {
            checkpoint,
            weights_sha256,
            dataset,
        } => {
            (ctx.log)(&format!("importing backbone from {}", checkpoint.display()));
            let what = format!("loading backbone checkpoint {}", checkpoint.display());
            let b = load_classifier(checkpoint, Device::Cpu, dataset)
                .map_err(UnitError::failed(unit, what))?;
            check_hash(unit, checkpoint, &b.hash, weights_sha256)?;
            let record = json!({
                "checkpoint": checkpoint, "weights_sha256": b.hash, "arch": b.arch,
                "feature_dim": b.feature_dim(), "mean": b.mean, "std": b.std,
            });
            decal_core::write_json_atomic(&dir.join(BACKBONE_FILE), &record)
                .map_err(UnitError::failed(unit, BACKBONE_FILE))?;
            Ok(UnitResult::done(json!({
                "source": "import", "family": b.arch.family(), "weights_sha256": b.hash,
            })))
        }
        BackboneSpec::Train { plan, data } => {
            plan.precision
                .check_device(device)
                .map_err(UnitError::failed(unit, "[backbone.train] precision"))?;
            let set = read_split(data, SplitName::Train).map_err(UnitError::failed(
                unit,
                format!(
                    "loading {} training split from {}",
                    data.dataset,
                    data.dir.display()
                ),
            ))?;
            let resume = dir.join(stage1::files::LAST).exists();
            (ctx.log)(&format!(
                "stage 1: training {} for {} epochs on {} ({})",
                plan.model,
                plan.epochs,
                plan.dataset,
                if resume { "resuming" } else { "from scratch" }
            ));
            if !resume {
                // What an attempt left before its first `last/` is never mixed into this one.
                for entry in std::fs::read_dir(dir)
                    .map_err(UnitError::failed(unit, format!("{}", dir.display())))?
                {
                    let path = entry
                        .map_err(UnitError::failed(unit, format!("{}", dir.display())))?
                        .path();
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    removed.map_err(UnitError::failed(unit, format!("{}", path.display())))?;
                }
            }
            let data =
                Stage1Data::from_set(set, plan).map_err(UnitError::failed(unit, "stage 1 data"))?;
            let mut progress = Stage1Progress {
                log: &mut *ctx.log,
                started: Instant::now(),
            };
            let summary = stage1::train(plan, &data, dir, device, resume, &mut progress)
                .map_err(UnitError::failed(unit, "stage 1"))?;
            Ok(UnitResult::done(json!({
                "source": "train", "model": plan.model, "epochs_run": summary.epochs_run,
                "best_epoch": summary.best_epoch, "best_value": summary.best_value,
                "stopped_early": summary.stopped_early,
            })))
        }
    }
}

fn check_hash(unit: &Unit, checkpoint: &Path, got: &str, want: &str) -> Result<(), UnitError> {
    if got == want {
        return Ok(());
    }
    Err(UnitError::Input {
        unit: unit.name.clone(),
        problem: format!(
            "{} changed since the plan was made (SHA-256 {}, planned {}); plan again",
            checkpoint.join("model.safetensors").display(),
            &got[..got.len().min(12)],
            &want[..want.len().min(12)]
        ),
    })
}

/// The checkpoint directory a backbone unit's weights are loaded from: the imported checkpoint, or the
/// unit's own `best/`.
fn checkpoint_dir(ctx: &UnitContext<'_>, id: &UnitId, spec: &BackboneSpec) -> PathBuf {
    match spec {
        BackboneSpec::Import { checkpoint, .. } => checkpoint.clone(),
        BackboneSpec::Train { .. } => ctx.store.unit_dir(id).join(stage1::files::BEST),
    }
}

/// The backbone of the backbone unit `backbone` on the run's device (cached per process). An imported
/// checkpoint is checked against the SHA-256 its unit verified.
pub fn load_backbone(
    ctx: &mut UnitContext<'_>,
    backbone: &UnitId,
) -> Result<Rc<Backbone>, UnitError> {
    let unit = ctx
        .plan
        .find(backbone)
        .ok_or_else(|| UnitError::Input {
            unit: "backbone".into(),
            problem: format!("unit {backbone} is not in the plan"),
        })?
        .clone();
    let UnitSpec::Backbone(spec) = &unit.spec else {
        return Err(UnitError::Input {
            unit: unit.name.clone(),
            problem: format!("expected a backbone unit, found a {} unit", unit.kind()),
        });
    };
    let dir = checkpoint_dir(ctx, backbone, spec);
    let dataset = match spec {
        BackboneSpec::Import { dataset, .. } => dataset.clone(),
        BackboneSpec::Train { plan, .. } => plan.dataset.clone(),
    };
    let device = ctx.options.device;
    ctx.resources.cached(&format!("backbone:{backbone}"), || {
        let what = format!("loading backbone checkpoint {}", dir.display());
        let b = load_classifier(&dir, device, &dataset).map_err(UnitError::failed(&unit, what))?;
        if let BackboneSpec::Import { weights_sha256, .. } = spec {
            check_hash(&unit, &dir, &b.hash, weights_sha256)?;
        }
        Ok(b)
    })
}
