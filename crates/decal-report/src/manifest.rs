//! The report directory's manifest, `report.json`: which inputs a report was made from and which files
//! decal-report wrote, each with its SHA-256.
//!
//! A report directory is a derived artefact: it can always be regenerated from the records. The
//! manifest is how [`crate::generate::generate_report`] recognises a directory it wrote itself, so that
//! `decal report <run>` may replace `<run>/report` (also written by `decal run`) without `--force`,
//! while a directory holding anything else stays protected:
//!
//! - a missing or empty directory is written into;
//! - a directory with a valid `report.json` whose every other file is listed in it, unchanged
//!   (same SHA-256), is **replaced**: the new report is built in a hidden staging folder inside it,
//!   moved into place, and files of the old report that the new one does not write are removed;
//! - anything else (no manifest, a file not listed, a listed file changed since) is refused unless
//!   `force`, which writes the new files over same-named ones and never removes a file it did not
//!   write.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ReportError;

/// File name of the manifest inside a report directory.
pub const MANIFEST: &str = "report.json";

/// Hidden folder inside the report directory where a new report is built before it replaces the old
/// one (so a failed run leaves the previous report intact).
pub const STAGING: &str = ".decal-report-staging";

/// Value of [`Manifest::format`] (bumped if the manifest's meaning changes).
pub const FORMAT: &str = "decal-report manifest 1";

/// A file with its checksum; `path` is relative to the report directory (or, for inputs, as given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The path (`/`-separated for files inside the report directory).
    pub path: String,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// Contents of `report.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`]: marks the file as decal-report's.
    pub format: String,
    /// The crate that wrote it, with its version.
    pub generator: String,
    /// The report's title.
    pub title: String,
    /// The records files (and seed-result files) read, in order.
    pub inputs: Vec<FileEntry>,
    /// Every file written into the report directory except `report.json`, sorted by path.
    pub files: Vec<FileEntry>,
}

/// What [`check_output_dir`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputState {
    /// Missing or empty: write freely.
    Fresh,
    /// A report decal-report wrote, unchanged: replace it (its manifest, to remove its stale files).
    Previous(Manifest),
    /// Not recognised as ours, but `force` was given: write over same-named files; a manifest there,
    /// if readable, names the files that may be removed when stale (only while unchanged).
    Forced(Option<Manifest>),
}

fn refuse(dir: &Path, reason: String) -> ReportError {
    ReportError::OutputInUse {
        path: dir.to_path_buf(),
        reason,
    }
}

/// Decides whether `dir` may receive a report (see the module docs).
pub fn check_output_dir(dir: &Path, force: bool) -> Result<OutputState, ReportError> {
    if !dir.exists() {
        return Ok(OutputState::Fresh);
    }
    if !dir.is_dir() {
        return Err(refuse(dir, "exists and is not a directory".to_string()));
    }
    let present = list_files(dir)?;
    if present.is_empty() {
        return Ok(OutputState::Fresh);
    }
    let manifest = read_manifest(dir);
    if force {
        return Ok(OutputState::Forced(manifest.ok().flatten()));
    }
    let manifest = match manifest? {
        Some(m) => m,
        None => {
            return Err(refuse(
                dir,
                format!("not empty and not a report written by decal report (no {MANIFEST})"),
            ))
        }
    };
    for rel in present.iter().filter(|p| p.as_str() != MANIFEST) {
        let Some(entry) = manifest.files.iter().find(|e| e.path == *rel) else {
            return Err(refuse(
                dir,
                format!("holds {rel}, which decal report did not write (not listed in {MANIFEST})"),
            ));
        };
        if !unchanged(dir, entry)? {
            return Err(refuse(
                dir,
                format!("{rel} was changed after decal report wrote it (SHA-256 differs from {MANIFEST})"),
            ));
        }
    }
    Ok(OutputState::Previous(manifest))
}

/// Whether the listed file still has the checksum recorded for it.
pub fn unchanged(dir: &Path, entry: &FileEntry) -> Result<bool, ReportError> {
    let path = dir.join(&entry.path);
    Ok(decal_core::sha256_file(&path)? == entry.sha256)
}

/// `dir/report.json`: `Ok(None)` when absent, an error naming the file when it is not a manifest.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, ReportError> {
    let path = dir.join(MANIFEST);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(ReportError::io(&path))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
        refuse(
            dir,
            format!("{MANIFEST} is not a decal-report manifest ({e})"),
        )
    })?;
    if manifest.format != FORMAT {
        return Err(refuse(
            dir,
            format!(
                "{MANIFEST} has format {:?}, expected {FORMAT:?}",
                manifest.format
            ),
        ));
    }
    // A manifest must not be able to make us touch files outside the directory.
    if let Some(bad) = manifest.files.iter().find(|e| !is_plain_relative(&e.path)) {
        return Err(refuse(
            dir,
            format!(
                "{MANIFEST} lists {:?}, which is not a path inside the report directory",
                bad.path
            ),
        ));
    }
    Ok(Some(manifest))
}

/// Whether `path` is a non-empty `/`-separated relative path without `.`, `..` or empty components.
pub fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Every non-directory entry under `dir` (recursively, symlinks not followed), as sorted
/// `/`-separated relative paths; the staging folder is left out.
pub fn list_files(dir: &Path) -> Result<Vec<String>, ReportError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), ReportError> {
        for entry in std::fs::read_dir(dir).map_err(ReportError::io(dir))? {
            let entry = entry.map_err(ReportError::io(dir))?;
            let path = entry.path();
            if dir == root && entry.file_name() == STAGING {
                continue;
            }
            let ty = entry.file_type().map_err(ReportError::io(&path))?;
            if ty.is_dir() {
                walk(root, &path, out)?;
            } else {
                out.push(relative(root, &path));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// `path` relative to `root`, `/`-separated.
pub fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Moves every file of `staging` to the same relative path under `dir` (replacing same-named files),
/// removes the files of `old` that the new report does not write (only those still unchanged, so a
/// file edited after a forced write is kept), writes `report.json` and removes `staging`. Returns the
/// new manifest and how many stale files were removed.
pub fn commit(
    staging: &Path,
    dir: &Path,
    title: &str,
    inputs: Vec<FileEntry>,
    old: Option<&Manifest>,
) -> Result<(Manifest, usize), ReportError> {
    let mut files = Vec::new();
    for rel in list_files(staging)? {
        let from = staging.join(&rel);
        let to = dir.join(&rel);
        let sha256 = decal_core::sha256_file(&from)?;
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(ReportError::io(parent))?;
        }
        std::fs::rename(&from, &to).map_err(ReportError::io(&to))?;
        files.push(FileEntry { path: rel, sha256 });
    }
    let mut removed = 0;
    if let Some(old) = old {
        for entry in &old.files {
            let path = dir.join(&entry.path);
            let stale = entry.path != MANIFEST
                && !files.iter().any(|f| f.path == entry.path)
                && path.is_file()
                && unchanged(dir, entry)?;
            if stale {
                std::fs::remove_file(&path).map_err(ReportError::io(&path))?;
                removed += 1;
                // Drop folders the removal emptied (remove_dir fails on a non-empty one: kept).
                let mut parent = path.parent();
                while let Some(p) = parent {
                    if p == dir || std::fs::remove_dir(p).is_err() {
                        break;
                    }
                    parent = p.parent();
                }
            }
        }
    }
    let manifest = Manifest {
        format: FORMAT.to_string(),
        generator: format!("decal-report {}", env!("CARGO_PKG_VERSION")),
        title: title.to_string(),
        inputs,
        files,
    };
    decal_core::write_json_atomic(&dir.join(MANIFEST), &manifest)?;
    std::fs::remove_dir_all(staging).map_err(ReportError::io(staging))?;
    Ok((manifest, removed))
}

/// A path written under `staging`, mapped to where [`commit`] puts it (other paths unchanged).
pub fn final_path(staging: &Path, dir: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix(staging) {
        Ok(rel) => dir.join(rel),
        Err(_) => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_stay_inside() {
        assert!(is_plain_relative("plots/a.png"));
        assert!(!is_plain_relative("../a"));
        assert!(!is_plain_relative("/etc/passwd"));
        assert!(!is_plain_relative("a//b"));
        assert!(!is_plain_relative("./a"));
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest {
            format: FORMAT.into(),
            generator: "x".into(),
            title: "t".into(),
            inputs: vec![],
            files: vec![FileEntry {
                path: "../outside.txt".into(),
                sha256: String::new(),
            }],
        };
        decal_core::write_json_atomic(&dir.path().join(MANIFEST), &m).unwrap();
        let err = read_manifest(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("not a path inside the report directory"),
            "{err}"
        );
    }
}
