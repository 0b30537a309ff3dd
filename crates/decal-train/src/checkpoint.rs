//! Resumable training-state checkpoints (`runs/<name>/last/`) with crash-safe replacement.
//!
//! A training-state checkpoint is a directory holding
//! - `model.safetensors`: every variable of the VarStore (parameters **and** BatchNorm running statistics),
//! - `optimizer.safetensors`: the optimiser's moment tensors ([`crate::optim::Optimizer::state_tensors`]),
//! - `state.json`: [`TrainState`] (epoch and step counters, best-so-far bookkeeping, per-epoch history)
//!   plus the SHA-256 of both tensor files.
//!
//! Invariant: no corrupt or partial checkpoint ever becomes `last/`. The new checkpoint is written to
//! `.last.tmp/` (every file fsynced, `state.json` written last), then `last/` is renamed to `last.prev/`,
//! `.last.tmp/` to `last/`, and only then is `last.prev/` deleted. If the process dies (or the disk
//! fills) at any point, either `last/` or `last.prev/` is a complete, checksummed checkpoint, and
//! [`load_latest`] finds it. RNG state needs no saving: the training loop reseeds every RNG at the start
//! of each epoch from `(seed, epoch)` (see `stage1`), so the epoch counter determines it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Tensor};

use crate::optim::Optimizer;

/// File names inside a training-state checkpoint directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// Optimiser-state file name.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Bookkeeping file name (written last; its presence and checksums mark the checkpoint complete).
pub const STATE_FILE: &str = "state.json";

/// Errors of training-state checkpoints; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// libtorch could not read or write a tensor file.
    #[error("{path}: {source}")]
    Torch {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: tch::TchError,
    },
    /// A checkpoint is incomplete, corrupt or inconsistent with the model.
    #[error("{path}: {problem}")]
    Invalid {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Writing a JSON file failed.
    #[error(transparent)]
    Core(#[from] decal_core::CoreError),
}

/// One epoch's row of `metrics.jsonl` / `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based epoch index (the seed's checkpoint names count epochs from 0 too).
    pub epoch: usize,
    /// Optimiser steps completed at the end of this epoch (whole run).
    pub step: u64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean training loss over the epoch's examples (the training criterion, incl. any L2 penalty).
    pub train_loss: f64,
    /// Training accuracy (fraction) on the augmented batches as seen during the epoch.
    pub train_accuracy: f64,
    /// Validation loss: the training criterion (CE / focal / smoothed CE, no L2), example-weighted mean.
    pub val_loss: f64,
    /// Validation negative log-likelihood (nats, mean over examples).
    pub val_nll: f64,
    /// Validation accuracy (fraction).
    pub val_accuracy: f64,
    /// Validation top-label ECE (fraction; see `val_ece_definition` in `summary.json`).
    pub val_ece: f64,
    /// Wall-clock seconds of the epoch (training + validation).
    pub seconds: f64,
    /// Training throughput, images per second.
    pub train_images_per_sec: f64,
    /// True when this epoch became the new best checkpoint.
    pub is_best: bool,
    /// Optimiser steps skipped by fp16 loss scaling because gradients were inf/NaN (0 otherwise).
    #[serde(default)]
    pub skipped_steps: u64,
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Number of completed epochs (the next epoch to run has this index).
    pub epochs_completed: usize,
    /// Optimiser steps completed.
    pub global_step: u64,
    /// Best value of the selection criterion so far (`None` before the first validation).
    pub best_value: Option<f64>,
    /// Epoch of `best_value`.
    pub best_epoch: Option<usize>,
    /// Epochs since the last improvement (for early stopping).
    pub epochs_without_improvement: usize,
    /// True once early stopping triggered.
    pub stopped_early: bool,
    /// Per-epoch history (rewritten into `metrics.jsonl` / `metrics.csv`).
    pub history: Vec<EpochRecord>,
    /// SHA-256 of `model.safetensors`.
    pub model_sha256: String,
    /// SHA-256 of `optimizer.safetensors`.
    pub optimizer_sha256: String,
    /// fp16 loss-scaler state (`None` in fp32 / bf16 runs).
    #[serde(default)]
    pub grad_scaler: Option<crate::precision::GradScalerState>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn fsync_dir(dir: &Path) -> Result<(), CheckpointError> {
    // Durable renames need the directory entry flushed too (POSIX); harmless elsewhere.
    match std::fs::File::open(dir) {
        Ok(f) => {
            let _ = f.sync_all();
            Ok(())
        }
        Err(e) => Err(CheckpointError::Io {
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

fn fsync_file(path: &Path) -> Result<(), CheckpointError> {
    std::fs::OpenOptions::new()
        .read(true)
        .open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

/// Writes a complete training-state checkpoint into `dir` (created, must not exist yet).
fn write_into(
    dir: &Path,
    vs: &VarStore,
    opt: &Optimizer,
    state: &TrainState,
) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let model_path = dir.join(MODEL_FILE);
    vs.save(&model_path)
        .map_err(|source| CheckpointError::Torch {
            path: model_path.clone(),
            source,
        })?;
    fsync_file(&model_path)?;
    let opt_path = dir.join(OPTIMIZER_FILE);
    let (tensors, _) = opt.state_tensors();
    if tensors.is_empty() {
        // safetensors cannot hold zero tensors through tch; store a marker scalar instead.
        let marker = vec![(
            "__empty__".to_string(),
            Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu)),
        )];
        Tensor::write_safetensors(&marker, &opt_path)
    } else {
        let cpu: Vec<(String, Tensor)> = tensors
            .into_iter()
            .map(|(k, v)| (k, v.to_device(tch::Device::Cpu)))
            .collect();
        Tensor::write_safetensors(&cpu, &opt_path)
    }
    .map_err(|source| CheckpointError::Torch {
        path: opt_path.clone(),
        source,
    })?;
    fsync_file(&opt_path)?;
    let mut state = state.clone();
    state.model_sha256 = decal_core::sha256_file(&model_path).map_err(CheckpointError::Core)?;
    state.optimizer_sha256 = decal_core::sha256_file(&opt_path).map_err(CheckpointError::Core)?;
    decal_core::write_json_atomic(&dir.join(STATE_FILE), &state)?;
    fsync_dir(dir)
}

/// Atomically replaces `<run_dir>/<name>/` by a new checkpoint produced by `write` (see the module
/// docs for the protocol). `write` receives a fresh, empty directory.
pub fn replace_dir_atomically(
    run_dir: &Path,
    name: &str,
    write: impl FnOnce(&Path) -> Result<(), CheckpointError>,
) -> Result<(), CheckpointError> {
    let tmp = run_dir.join(format!(".{name}.tmp"));
    let target = run_dir.join(name);
    let prev = run_dir.join(format!("{name}.prev"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if target.exists() {
        if prev.exists() {
            std::fs::remove_dir_all(&prev).map_err(io_err(&prev))?;
        }
        std::fs::rename(&target, &prev).map_err(io_err(&target))?;
    }
    std::fs::rename(&tmp, &target).map_err(io_err(&tmp))?;
    fsync_dir(run_dir)?;
    if prev.exists() {
        std::fs::remove_dir_all(&prev).map_err(io_err(&prev))?;
    }
    Ok(())
}

/// Saves the training state as `<run_dir>/last/`, atomically.
pub fn save_last(
    run_dir: &Path,
    vs: &VarStore,
    opt: &Optimizer,
    state: &TrainState,
) -> Result<(), CheckpointError> {
    replace_dir_atomically(run_dir, "last", |dir| write_into(dir, vs, opt, state))
}

/// Reads and verifies the `state.json` of checkpoint directory `dir` (checksums of both tensor files).
pub fn read_state(dir: &Path) -> Result<TrainState, CheckpointError> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(io_err(&state_path))?;
    let state: TrainState = serde_json::from_str(&text).map_err(|e| CheckpointError::Invalid {
        path: state_path.clone(),
        problem: format!("not a decal training state: {e}"),
    })?;
    for (file, want) in [
        (MODEL_FILE, &state.model_sha256),
        (OPTIMIZER_FILE, &state.optimizer_sha256),
    ] {
        let path = dir.join(file);
        let got = decal_core::sha256_file(&path).map_err(CheckpointError::Core)?;
        if &got != want {
            return Err(CheckpointError::Invalid {
                path,
                problem: format!(
                    "checksum mismatch (sha256 {got}, state.json says {want}): the file is corrupt"
                ),
            });
        }
    }
    Ok(state)
}

/// Finds the newest complete training-state checkpoint of a run: `last/`, or `last.prev/` when the
/// process died between the two renames. Returns `None` when the run has none yet.
pub fn find_latest(run_dir: &Path) -> Result<Option<(PathBuf, TrainState)>, CheckpointError> {
    let mut first_error = None;
    for name in ["last", "last.prev"] {
        let dir = run_dir.join(name);
        if !dir.join(STATE_FILE).exists() {
            continue;
        }
        match read_state(&dir) {
            Ok(state) => return Ok(Some((dir, state))),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// Loads the tensors of checkpoint `dir` into `vs` (every variable must be present with its shape) and
/// `opt` (with `state.global_step` as its step counter).
pub fn load_into(
    dir: &Path,
    state: &TrainState,
    vs: &mut VarStore,
    opt: &mut Optimizer,
) -> Result<(), CheckpointError> {
    let model_path = dir.join(MODEL_FILE);
    let loaded =
        Tensor::read_safetensors(&model_path).map_err(|source| CheckpointError::Torch {
            path: model_path.clone(),
            source,
        })?;
    let mut by_name: std::collections::HashMap<String, Tensor> = loaded.into_iter().collect();
    let vars = vs.variables();
    if by_name.len() != vars.len() {
        return Err(CheckpointError::Invalid {
            path: model_path.clone(),
            problem: format!(
                "{} tensors but the model has {} variables",
                by_name.len(),
                vars.len()
            ),
        });
    }
    tch::no_grad(|| -> Result<(), CheckpointError> {
        for (name, var) in &vars {
            let src = by_name
                .remove(name)
                .ok_or_else(|| CheckpointError::Invalid {
                    path: model_path.clone(),
                    problem: format!("variable {name} is missing"),
                })?;
            if src.size() != var.size() {
                return Err(CheckpointError::Invalid {
                    path: model_path.clone(),
                    problem: format!(
                        "variable {name} has shape {:?}, the model {:?}",
                        src.size(),
                        var.size()
                    ),
                });
            }
            var.shallow_clone()
                .copy_(&src.to_device(var.device()).to_kind(var.kind()));
        }
        Ok(())
    })?;
    let opt_path = dir.join(OPTIMIZER_FILE);
    let tensors = Tensor::read_safetensors(&opt_path).map_err(|source| CheckpointError::Torch {
        path: opt_path.clone(),
        source,
    })?;
    let tensors: Vec<(String, Tensor)> = tensors
        .into_iter()
        .filter(|(k, _)| k != "__empty__")
        .collect();
    opt.load_state(tensors, state.global_step)
        .map_err(|e| CheckpointError::Invalid {
            path: opt_path.clone(),
            problem: e.to_string(),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_keeps_previous_when_writer_fails() {
        let run = tempfile::tempdir().unwrap();
        replace_dir_atomically(run.path(), "last", |d| {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("a"), b"one").unwrap();
            Ok(())
        })
        .unwrap();
        let err = replace_dir_atomically(run.path(), "last", |d| {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("a"), b"partial").unwrap();
            Err(CheckpointError::Invalid {
                path: d.to_path_buf(),
                problem: "disk full".into(),
            })
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(run.path().join("last/a")).unwrap(), b"one");
        assert!(!run.path().join(".last.tmp").exists());
        assert!(!run.path().join("last.prev").exists());
    }
}
