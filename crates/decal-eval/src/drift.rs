//! The seed's drifting "frozen" body (seed-system.md §8.1, BUG-7), one body per stage-2 checkpoint.
//!
//! With `[features] mode = "exact"` and `body = "seed-bn-drift"` the body runs in train mode while a head
//! trains, so its BatchNorm running statistics move with every batch. In the seed every stage-2 run starts
//! from the stage-1 body and saves its own drifted body inside its checkpoint, and every evaluation of that
//! checkpoint (in distribution, OOD, shift) uses that body in eval mode; the baseline and the post-hoc
//! baselines are evaluated on the stage-1 model. decal does the same: [`BodyState`] is the set of BatchNorm
//! running statistics of a body, captured before stage 2 (the undrifted body), restored before each head
//! trains, captured at the end of every training epoch, and the selected epoch's state is saved with the
//! head ([`BODY_STATE_FILE`]) so that a resumed run evaluates exactly the body it trained with.

use std::path::Path;

use decal_core::{sha256_file, CoreError};
use tch::{nn, Tensor};

/// File in a head checkpoint directory holding the drifted body's BatchNorm statistics.
pub const BODY_STATE_FILE: &str = "body-bn-state.safetensors";

/// Errors of body-state files.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    /// libtorch could not read or write the file.
    #[error("body state {path}: {source}")]
    Tch {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: tch::TchError,
    },
    /// The file does not fit the body.
    #[error("body state {path}: {problem}")]
    Mismatch {
        /// The file.
        path: std::path::PathBuf,
        /// What does not fit.
        problem: String,
    },
    /// Filesystem error.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// Whether a variable of a backbone's VarStore is a BatchNorm running statistic (the only state that
/// train-mode forward passes without gradients change).
fn is_running_stat(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// Copies of a body's BatchNorm running statistics, sorted by name.
#[derive(Debug)]
pub struct BodyState {
    tensors: Vec<(String, Tensor)>,
}

impl BodyState {
    /// Captures the running statistics of every BatchNorm layer in `vs`.
    pub fn capture(vs: &nn::VarStore) -> BodyState {
        let mut tensors: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(k, _)| is_running_stat(k))
            .map(|(k, v)| (k, v.detach().copy()))
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        BodyState { tensors }
    }

    /// Number of tensors (0 for a body without BatchNorm: drift changes nothing).
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the body has no BatchNorm statistics.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Writes the state into `vs` (every tensor must exist there with the same shape).
    pub fn restore(&self, vs: &nn::VarStore) -> Result<(), String> {
        let mut vars = vs.variables();
        tch::no_grad(|| {
            for (name, value) in &self.tensors {
                let var = vars
                    .get_mut(name)
                    .ok_or_else(|| format!("the body has no variable {name}"))?;
                if var.size() != value.size() {
                    return Err(format!(
                        "{name}: shape {:?}, the body's is {:?}",
                        value.size(),
                        var.size()
                    ));
                }
                var.copy_(value);
            }
            Ok(())
        })
    }

    /// Saves the state as safetensors, atomically (a temporary file renamed into place).
    pub fn save(&self, path: &Path) -> Result<(), DriftError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| CoreError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let tmp = path.with_file_name(format!(
            ".tmp-{}-{}",
            std::process::id(),
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(BODY_STATE_FILE)
        ));
        let named: Vec<(&str, &Tensor)> =
            self.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        Tensor::write_safetensors(&named, &tmp).map_err(|source| DriftError::Tch {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, path).map_err(|source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(())
    }

    /// Loads a state written by [`BodyState::save`] and checks it against the names and shapes of
    /// `reference` (the undrifted body's state).
    pub fn load(path: &Path, reference: &BodyState) -> Result<BodyState, DriftError> {
        let mut tensors = Tensor::read_safetensors(path).map_err(|source| DriftError::Tch {
            path: path.to_path_buf(),
            source,
        })?;
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let same = tensors.len() == reference.tensors.len()
            && tensors
                .iter()
                .zip(&reference.tensors)
                .all(|((a, x), (b, y))| a == b && x.size() == y.size());
        if !same {
            return Err(DriftError::Mismatch {
                path: path.to_path_buf(),
                problem: format!(
                    "{} tensors do not match the body's {} BatchNorm statistics",
                    tensors.len(),
                    reference.tensors.len()
                ),
            });
        }
        Ok(BodyState { tensors })
    }

    /// SHA-256 of a saved state file.
    pub fn file_hash(path: &Path) -> Result<String, DriftError> {
        Ok(sha256_file(path)?)
    }
}
