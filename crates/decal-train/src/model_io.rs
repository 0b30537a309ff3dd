//! Writing the stage-1 `best/` classifier checkpoint as a `decal_models::checkpoint` directory.
//!
//! The directory is a standard decal checkpoint (`model.safetensors` + `config.json` with the architecture,
//! K, dataset, input normalisation, seed, epoch and selection criterion), so `decal eval`, stage 2 and
//! `decal_models::checkpoint::load` rebuild the classifier from it alone; nothing depends on file names
//! (seed BUG-8). Stage-1 specifics (run name, loss) go into `extra`.

use std::path::Path;
use tch::nn::VarStore;

use crate::checkpoint::CheckpointError;
use crate::stage1::{BestMeta, Selection};
use decal_models::checkpoint::{self as mcheckpoint, CheckpointMeta, Normalization};
use decal_models::ArchConfig;

/// Writes the checkpoint into `dir`. The caller makes the directory appear atomically
/// ([`crate::checkpoint::replace_dir_atomically`]).
pub fn save_classifier(
    dir: &Path,
    vs: &VarStore,
    arch: &ArchConfig,
    meta: &BestMeta,
) -> Result<(), CheckpointError> {
    let mut m = CheckpointMeta::new(arch.clone(), "stage1");
    m.dataset = Some(meta.dataset.clone());
    m.normalization = Some(Normalization {
        mean: meta.mean.iter().map(|&v| v as f64).collect(),
        std: meta.std.iter().map(|&v| v as f64).collect(),
    });
    m.seed = Some(meta.seed);
    m.epoch = Some(meta.epoch as u64);
    m.selection = Some(mcheckpoint::Selection {
        criterion: match meta.selection {
            Selection::ValNll => "valid_nll".into(),
            Selection::ValLoss => "valid_loss".into(),
        },
        value: meta.value,
    });
    m.extra
        .insert("run".into(), serde_json::Value::String(meta.run.clone()));
    m.extra
        .insert("loss".into(), serde_json::Value::String(meta.loss.clone()));
    mcheckpoint::save(dir, vs, &m).map_err(|e| CheckpointError::Invalid {
        path: dir.to_path_buf(),
        problem: e.to_string(),
    })?;
    Ok(())
}
