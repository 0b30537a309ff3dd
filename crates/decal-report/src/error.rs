//! The one error type of decal-report. Every variant names the file (and line, for parse errors) it is about.

use std::path::PathBuf;

/// Errors of reading records, rendering tables and writing plots and reports.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file failed (atomic write, output directory).
    #[error(transparent)]
    Write(#[from] decal_core::CoreError),
    /// A line of a JSONL or CSV file could not be parsed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// The output directory holds something other than a report decal-report wrote (see
    /// [`crate::manifest`]), and `force` was not given.
    #[error("{path}: {reason}; choose another output directory, or pass --force to write into it (same-named files are overwritten, others kept)")]
    OutputInUse {
        /// The output directory.
        path: PathBuf,
        /// What is in the way.
        reason: String,
    },
    /// The input to a table, plot or report is unusable (empty, inconsistent).
    #[error("{0}")]
    Invalid(String),
    /// The plotting backend failed while drawing a figure.
    #[error("drawing {path}: {message}")]
    Draw {
        /// The figure being drawn.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
}

impl ReportError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ReportError {
        let path = path.into();
        move |source| ReportError::Io { path, source }
    }

    pub(crate) fn parse(
        path: impl Into<PathBuf>,
        line: usize,
        message: impl Into<String>,
    ) -> ReportError {
        ReportError::Parse {
            path: path.into(),
            line,
            message: message.into(),
        }
    }
}
