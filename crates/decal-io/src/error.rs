//! The error type of decal-io: every variant names the file (or archive member) and the problem.

use std::path::PathBuf;

/// Errors reading or writing `.npy`, `.npz` and CSV files.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// An operating-system error on a named path.
    #[error("{path}{}: {source}", decal_core::fsutil::io_note(path, source))]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not in the expected format (bad magic, malformed header, unsupported dtype, ...).
    #[error("{path}: {message}")]
    Format {
        /// The file (for `.npz` members: `archive.npz:member.npy`).
        path: PathBuf,
        /// What is wrong, in one line.
        message: String,
    },
    /// The data section is shorter (or longer) than the header's shape and dtype require.
    #[error("{path}: data section has {actual} bytes but shape {shape:?} of dtype {dtype} needs {expected} bytes{}", if actual < expected { " (file truncated)" } else { " (trailing bytes)" })]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Shape declared in the header.
        shape: Vec<usize>,
        /// The dtype string declared in the header.
        dtype: String,
        /// Bytes required by shape × item size.
        expected: u64,
        /// Bytes actually present after the header.
        actual: u64,
    },
    /// An array's content is not what the caller asked for (e.g. non-integer labels).
    #[error("{what}: {message}")]
    Value {
        /// What was being converted (a file name or a description).
        what: String,
        /// What is wrong, naming the offending element where possible.
        message: String,
    },
    /// Writing failed in decal-core's atomic writer.
    #[error(transparent)]
    Core(#[from] decal_core::CoreError),
}

impl IoError {
    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        IoError::Format {
            path: path.into(),
            message: message.into(),
        }
    }
    pub(crate) fn value(what: impl Into<String>, message: impl Into<String>) -> Self {
        IoError::Value {
            what: what.into(),
            message: message.into(),
        }
    }
}
