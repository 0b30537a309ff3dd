//! Whole-configuration checks of an experiment, so that `decal run` fails before working.
//!
//! Two layers, both returning `key: problem` with the config key spelled as in the TOML file
//! (`heads[1].latent_dim`, `ood[0].dataset`, `backbone.train.epochs`), which the caller prefixes with the
//! config file:
//! - [`check_keys`] needs nothing but the config (called by [`ExperimentConfig::validate`], so it also
//!   runs for `--print-config` and on configs whose data is elsewhere): dataset and split names, head sizes,
//!   epochs, batch sizes, learning rates, sample counts, the stage-1 plan of a trained backbone, and the
//!   head feature widths against the width the trained backbone's architecture gives (without training);
//! - [`check_inputs`] looks at the file system (called by `decal run` and [`crate::experiment::run`] before
//!   anything is loaded, trained or written): the data directory, the backbone checkpoint and its
//!   `config.json`, whose architecture gives the feature width every `[[heads]]` `feature_dim` must match.
//!
//! Missing OOD sets and corruption directories stay warnings at the end of the run (optional inputs); an
//! unknown OOD *dataset name* is a typo and an error here.

use std::path::Path;

use decal_data::{DatasetName, SplitName};
use decal_models::heads::HeadKind;
use decal_models::ArchConfig;

use crate::experiment::ExperimentConfig;

fn key(name: impl std::fmt::Display, problem: impl std::fmt::Display) -> String {
    format!("{name}: {problem}")
}

/// Feature width of a stage-1 model preset (the architecture alone; nothing is trained or built).
pub(crate) fn preset_feature_dim(model: &str) -> Result<i64, String> {
    ArchConfig::preset(model, 10)
        .map(|a| a.feature_dim())
        .map_err(|e| e.to_string())
}

/// Checks that need only the config (see the module doc).
pub fn check_keys(c: &ExperimentConfig) -> Result<(), String> {
    let features_run = c.backbone.features.is_some();
    if !features_run {
        DatasetName::parse(&c.data.dataset).map_err(|e| key("data.dataset", e))?;
    }
    if let Some(f) = c.data.train_fraction {
        if !(f > 0.0 && f < 1.0) {
            return Err(key("data.train_fraction", format!("{f} must be in (0, 1)")));
        }
    }
    if c.features.batch_size == 0 {
        return Err(key("features.batch_size", "must be at least 1"));
    }
    let mut backbone_width = None;
    if let Some(plan) = &c.backbone.train {
        let width = preset_feature_dim(&plan.model).map_err(|e| key("backbone.train.model", e))?;
        backbone_width = Some(width);
        if plan.epochs == 0 {
            return Err(key("backbone.train.epochs", "must be at least 1"));
        }
        let mut named = plan.clone();
        named.name = "backbone".into();
        if let Some(f) = c.data.train_fraction {
            named.train_fraction = f;
        }
        named.validate().map_err(|e| key("backbone.train", e))?;
    }
    for (i, h) in c.heads.iter().enumerate() {
        let k = |field: &str| format!("heads[{i}].{field}");
        if h.epochs == 0 {
            return Err(key(k("epochs"), "must be at least 1"));
        }
        if h.batch_size == 0 {
            return Err(key(k("batch_size"), "must be at least 1"));
        }
        if !(h.lr.is_finite() && h.lr > 0.0) {
            return Err(key(k("lr"), format!("{} must be a positive number", h.lr)));
        }
        if h.kind != HeadKind::Reinit {
            if h.latent_dim < 1 {
                return Err(key(
                    k("latent_dim"),
                    format!("{} must be at least 1", h.latent_dim),
                ));
            }
            if !(3..=5).contains(&h.mlp_size) {
                return Err(key(
                    k("mlp_size"),
                    format!("{} must be 3, 4 or 5", h.mlp_size),
                ));
            }
        }
        if h.kind == HeadKind::Vtst {
            if h.train_samples == 0 {
                return Err(key(k("train_samples"), "must be at least 1"));
            }
            if h.val_samples == 0 {
                return Err(key(k("val_samples"), "must be at least 1"));
            }
        }
        if let Some(f) = h.feature_dim {
            if f < 1 {
                return Err(key(k("feature_dim"), format!("{f} must be at least 1")));
            }
            if let (Some(width), Some(plan)) = (backbone_width, &c.backbone.train) {
                if f != width {
                    return Err(key(
                        k("feature_dim"),
                        format!(
                            "{f} does not match the backbone: backbone.train.model {:?} has {width}-wide features",
                            plan.model
                        ),
                    ));
                }
            }
        }
    }
    for (i, o) in c.ood.iter().enumerate() {
        DatasetName::parse(&o.dataset).map_err(|e| key(format!("ood[{i}].dataset"), e))?;
        SplitName::parse(&o.split).map_err(|e| key(format!("ood[{i}].split"), e))?;
        if o.name.is_empty() {
            return Err(key(format!("ood[{i}].name"), "must not be empty"));
        }
    }
    if let Some(s) = &c.shift {
        if s.every == 0 {
            return Err(key("shift.every", "must be at least 1"));
        }
    }
    Ok(())
}

/// Feature width recorded in a backbone checkpoint's `config.json` (a decal checkpoint, or a bare
/// architecture config of an older stage-1 `best/`), without reading the weights.
pub(crate) fn checkpoint_feature_dim(dir: &Path) -> Result<i64, String> {
    if !dir.is_dir() {
        return Err(format!(
            "{} does not exist or is not a directory",
            dir.display()
        ));
    }
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(format!(
            "{} has no config.json: not a decal checkpoint (make one with `decal import` or `decal train`)",
            dir.display()
        ));
    }
    match decal_models::checkpoint::read_meta(dir) {
        Ok(meta) => Ok(meta.arch.feature_dim()),
        Err(meta_err) => {
            let text = std::fs::read_to_string(&config)
                .map_err(|e| format!("{}: {e}", config.display()))?;
            match serde_json::from_str::<ArchConfig>(&text) {
                Ok(arch) => Ok(arch.feature_dim()),
                Err(_) => Err(meta_err.to_string()),
            }
        }
    }
}

/// Checks the inputs on disk (see the module doc). Runs [`check_keys`] first.
pub fn check_inputs(c: &ExperimentConfig) -> Result<(), String> {
    check_keys(c)?;
    if c.backbone.features.is_some() {
        return Ok(());
    }
    if !c.data.dir.is_dir() {
        return Err(key(
            "data.dir",
            format!(
                "{} does not exist or is not a directory",
                c.data.dir.display()
            ),
        ));
    }
    if let Some(dir) = &c.backbone.checkpoint {
        let width = checkpoint_feature_dim(dir).map_err(|e| key("backbone.checkpoint", e))?;
        for (i, h) in c.heads.iter().enumerate() {
            if let Some(f) = h.feature_dim {
                if f != width {
                    return Err(key(
                        format!("heads[{i}].feature_dim"),
                        format!(
                            "{f} does not match the backbone: {} has {width}-wide features",
                            dir.join("config.json").display()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}
