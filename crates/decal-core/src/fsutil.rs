//! Atomic writes and output-directory safety.
//!
//! Invariant: a reader never sees a half-written result, checkpoint or report. Everything is written to a
//! temporary file in the destination directory, flushed to disk, then renamed over the destination.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors of the filesystem helpers; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The output directory already holds results and `force` was not given.
    #[error("{path} already exists and is not empty; pass --force to overwrite it, or choose another directory")]
    OutputExists {
        /// The directory.
        path: PathBuf,
    },
    /// A value could not be serialised.
    #[error("cannot serialise {what}: {source}")]
    Serialize {
        /// What was being serialised.
        what: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename.
/// Parent directories are created. On error no partial file is left at `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CoreError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| CoreError::Io { path: p, source }
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let file_name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Serialises `value` as pretty JSON (with a trailing newline) and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize + ?Sized>(
    path: &Path,
    value: &T,
) -> Result<(), CoreError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| CoreError::Serialize {
        what: path.display().to_string(),
        source,
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Makes sure `dir` can receive a new run's output: creates it when missing, accepts it when empty,
/// refuses a non-empty directory unless `force` (then it is left in place and files are overwritten
/// one by one, each atomically).
pub fn prepare_output_dir(dir: &Path, force: bool) -> Result<(), CoreError> {
    let io = |source| CoreError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() {
        let non_empty = std::fs::read_dir(dir).map_err(io)?.next().is_some();
        if non_empty && !force {
            return Err(CoreError::OutputExists {
                path: dir.to_path_buf(),
            });
        }
    } else {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn non_empty_output_dir_needs_force() {
        let dir = tempfile::tempdir().unwrap();
        prepare_output_dir(&dir.path().join("new"), false).unwrap();
        std::fs::write(dir.path().join("new/x"), b"x").unwrap();
        let err = prepare_output_dir(&dir.path().join("new"), false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        prepare_output_dir(&dir.path().join("new"), true).unwrap();
    }
}
