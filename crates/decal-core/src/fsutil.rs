//! Atomic writes and output-directory safety.
//!
//! Invariant: a reader never sees a half-written result, checkpoint or report. Everything is written to a
//! temporary file in the destination directory, flushed to disk, then renamed over the destination.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors of the filesystem helpers; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// An I/O error on a named path: the path, what is wrong with it when the OS text alone would mislead
    /// (see [`io_note`]) and the OS text (also the error's source; `decal` prints a chain without repeating
    /// a cause the message already holds).
    #[error("{path}{}: {source}", io_note(path, source))]
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

/// What an I/O error on `path` needs besides the OS text, as `": …"` (or empty): for "not a directory" the
/// ancestor that is a regular file (`a/file/x.npy: not a directory: a/file is a file`).
pub fn io_note(path: &Path, err: &std::io::Error) -> String {
    if err.kind() == std::io::ErrorKind::NotADirectory {
        if let Some(file) = path.ancestors().skip(1).find(|a| a.is_file()) {
            return format!(": not a directory: {} is a file", file.display());
        }
    }
    String::new()
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename.
/// Parent directories are created. On error no partial file is left at `path`, and the error names `path`
/// (not the temporary file, which no longer exists).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CoreError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| CoreError::Io { path: p, source }
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(path))?;
    let file_name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io(path))?;
        f.write_all(bytes).map_err(io(path))?;
        f.sync_all().map_err(io(path))?;
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

    /// What `decal` prints for an error: the source chain joined by ": ", leaving out a cause whose text
    /// is already there (decal-cli's `error_line`).
    fn chain(err: &dyn std::error::Error) -> String {
        let mut out = err.to_string();
        let mut cur = err.source();
        while let Some(e) = cur {
            if !out.contains(&e.to_string()) {
                out.push_str(&format!(": {e}"));
            }
            cur = e.source();
        }
        out
    }

    #[test]
    fn io_errors_name_the_target_once_and_explain_a_file_in_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        // A path below a regular file: the error says which component is a file.
        let target = file.join("out/result.json");
        let err = write_atomic(&target, b"{}").unwrap_err();
        let msg = chain(&err);
        assert!(
            msg.starts_with(&format!(
                "{}: not a directory: {} is a file",
                target.display(),
                file.display()
            )),
            "{msg}"
        );
        // The message itself holds the OS text (callers that flatten errors with `{e}` keep the reason).
        assert!(err.to_string().contains("os error"), "{err}");
        assert_eq!(msg.matches("os error").count(), 1, "{msg}");
        assert!(!msg.contains(".tmp-"), "{msg}");
        // A directory that cannot be written: the message names the target, not the temporary file.
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        let mut perm = std::fs::metadata(&ro).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o555);
        std::fs::set_permissions(&ro, perm).unwrap();
        let target = ro.join("a.json");
        if let Err(err) = write_atomic(&target, b"{}") {
            // (root can write anyway; then there is nothing to check)
            let msg = chain(&err);
            assert!(msg.starts_with(&format!("{}: ", target.display())), "{msg}");
            assert!(!msg.contains(".tmp-"), "{msg}");
            assert_eq!(msg.matches("os error").count(), 1, "{msg}");
        }
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
