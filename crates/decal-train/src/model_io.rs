//! Writing the stage-1 `best/` classifier checkpoint.
//!
//! The directory holds the architecture (`config.json`, a serialised `decal_models::ArchConfig`), the
//! weights (`model.safetensors`: every VarStore variable, BatchNorm running statistics included, under
//! the seed's PyTorch state_dict names), and `meta.json` ([`crate::stage1::BestMeta`]: run, epoch,
//! selection value and the input normalisation the model was trained with). `decal eval` and stage 2
//! rebuild the classifier from `config.json` alone; nothing depends on file names (seed BUG-8).

use std::path::Path;
use tch::nn::VarStore;

use crate::checkpoint::CheckpointError;
use crate::stage1::BestMeta;
use decal_models::ArchConfig;

/// Architecture file name.
pub const CONFIG_FILE: &str = "config.json";
/// Weights file name.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Training metadata file name.
pub const META_FILE: &str = "meta.json";

/// Writes `config.json`, `model.safetensors` and `meta.json` into `dir` (which must exist). The caller
/// makes the directory appear atomically ([`crate::checkpoint::replace_dir_atomically`]).
pub fn save_classifier(dir: &Path, vs: &VarStore, arch: &ArchConfig, meta: &BestMeta) -> Result<(), CheckpointError> {
    let weights = dir.join(WEIGHTS_FILE);
    vs.save(&weights).map_err(|source| CheckpointError::Torch { path: weights.clone(), source })?;
    std::fs::OpenOptions::new()
        .read(true)
        .open(&weights)
        .and_then(|f| f.sync_all())
        .map_err(|source| CheckpointError::Io { path: weights.clone(), source })?;
    decal_core::write_json_atomic(&dir.join(CONFIG_FILE), arch)?;
    decal_core::write_json_atomic(&dir.join(META_FILE), meta)?;
    Ok(())
}
