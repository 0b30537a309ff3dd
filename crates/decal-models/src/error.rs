//! Errors of decal-models. Each variant names the file, tensor or preset involved so that a one-line
//! message (`decal` prints `error: {err:#}`) is enough to act on.

use std::path::PathBuf;

/// Everything that can go wrong while building, saving, loading or importing a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// `ArchConfig::preset` was given a name it does not know.
    #[error("unknown architecture `{name}`; known presets: {known}")]
    UnknownPreset {
        /// The requested name.
        name: String,
        /// Comma-separated list of the known presets.
        known: String,
    },
    /// A configuration value is out of range (e.g. a WRN depth with `(depth - 4) % 6 != 0`).
    #[error("invalid {arch} config: {problem}")]
    InvalidConfig {
        /// Architecture family.
        arch: &'static str,
        /// What is wrong, naming the field.
        problem: String,
    },
    /// An I/O error on a named path.
    #[error("{path}{}: {source}", decal_core::fsutil::io_note(path, source))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A decal-core helper failed (atomic write, output directory).
    #[error(transparent)]
    Core(#[from] decal_core::CoreError),
    /// libtorch reported an error while reading or writing a tensor file.
    #[error("{path}: {message}")]
    Torch {
        /// The file involved.
        path: PathBuf,
        /// libtorch's message.
        message: String,
    },
    /// A checkpoint directory is incomplete or inconsistent.
    #[error("{path}: {problem}")]
    BadCheckpoint {
        /// The checkpoint file or directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A weight tensor has a different shape than the architecture expects.
    #[error("{path}: tensor `{name}` has shape {found:?}, the architecture expects {expected:?}")]
    ShapeMismatch {
        /// The weights file.
        path: PathBuf,
        /// Tensor name (decal / PyTorch state_dict naming).
        name: String,
        /// Shape the architecture expects.
        expected: Vec<i64>,
        /// Shape found in the file.
        found: Vec<i64>,
    },
    /// Strict loading found missing and/or unexpected tensors.
    #[error("{path}: weights do not match the architecture: {}", describe_keys(.missing, .unexpected))]
    KeyMismatch {
        /// The weights file.
        path: PathBuf,
        /// Tensors the architecture needs but the file lacks.
        missing: Vec<String>,
        /// Tensors in the file that the architecture does not have.
        unexpected: Vec<String>,
    },
    /// The file is not in a format the importer understands.
    #[error("{path}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, e.g. "legacy (non-zip) torch.save format".
        problem: String,
    },
    /// A device string could not be parsed or the device is absent.
    #[error("device `{spec}`: {problem}")]
    Device {
        /// The string the user gave.
        spec: String,
        /// What is wrong.
        problem: String,
    },
}

/// Renders a missing/unexpected key list compactly: at most 8 names each, then a count.
fn describe_keys(missing: &[String], unexpected: &[String]) -> String {
    fn list(keys: &[String]) -> String {
        const SHOWN: usize = 8;
        let mut s = keys
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if keys.len() > SHOWN {
            s.push_str(&format!(", … ({} more)", keys.len() - SHOWN));
        }
        s
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("{} missing [{}]", missing.len(), list(missing)));
    }
    if !unexpected.is_empty() {
        parts.push(format!(
            "{} unexpected [{}]",
            unexpected.len(),
            list(unexpected)
        ));
    }
    parts.join("; ")
}

impl ModelError {
    pub(crate) fn invalid(arch: &'static str, problem: impl Into<String>) -> Self {
        ModelError::InvalidConfig {
            arch,
            problem: problem.into(),
        }
    }

    pub(crate) fn torch(path: &std::path::Path, err: tch::TchError) -> Self {
        ModelError::Torch {
            path: path.to_path_buf(),
            message: err.to_string(),
        }
    }
}
