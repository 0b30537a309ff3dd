//! The error type of decal-data. Every variant names the file (and where it applies the record or image
//! index) so that a user can find the offending input without a debugger.

use std::path::PathBuf;

/// Errors of the dataset readers, splits, transforms and downloader.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O error on a named path.
    #[error("{path}{}: {source}", decal_core::fsutil::io_note(path, source))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An image file could not be decoded.
    #[error("{path}: cannot decode image: {message}")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
    /// A file is not in the expected format (wrong magic number, truncated, wrong shape, …).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// One record of a file is invalid (for example a label outside the class range).
    #[error("{path}: record {index}: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// Zero-based record (image) index within the file.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A dataset could not be found under the given directory.
    #[error("{dir}: no {dataset} data found: {hint}")]
    NotFound {
        /// The dataset's name.
        dataset: String,
        /// The directory that was searched.
        dir: PathBuf,
        /// What was looked for and where to put it.
        hint: String,
    },
    /// A checksum did not match the published value.
    #[error("{path}: {algorithm} checksum mismatch: expected {expected}, got {actual}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// `md5` or `sha256`.
        algorithm: String,
        /// The published checksum.
        expected: String,
        /// The checksum of the file on disk.
        actual: String,
    },
    /// A download failed.
    #[error("{url}: {message}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong (and, when offline, which file to place where).
        message: String,
    },
    /// Invalid arguments (an empty index list, a fraction outside (0, 1), …).
    #[error("{0}")]
    Invalid(String),
    /// A file written by decal could not be serialised or written.
    #[error(transparent)]
    Core(#[from] decal_core::CoreError),
}

impl DataError {
    /// Shorthand for [`DataError::Format`].
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`DataError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
