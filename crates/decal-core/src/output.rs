//! The one output policy of every `decal` command, implemented once.
//!
//! 1. **No silent overwrite.** An output file that exists, or an output directory that is not empty, is
//!    refused with a one-line error naming it, unless the command was given `--force`
//!    ([`check_output_file`], [`OutputFiles::claim`], [`StagedDir::new`]). The check runs before any work.
//! 2. **Whole or nothing.** Results are written into a temporary sibling (a staging directory next to the
//!    destination) and renamed into place only after every one of them was written
//!    ([`OutputFiles::commit`], [`StagedDir::commit`]). A directory of outputs appears complete or not at all.
//! 3. **No debris.** A command that fails (an error, or a panic unwinding) leaves neither a staging
//!    directory, nor a half-written file, nor an empty directory it created: the guards remove them on drop.
//!    A command killed outright (SIGKILL) cannot clean up; the next one that writes beside its debris removes
//!    the staging directories of ended processes, and puts back an output that a killed `--force` commit had
//!    moved aside but not yet replaced.
//!
//! Resumable work directories (`decal train` run directories, `decal run` experiment directories,
//! `decal data corrupt --out`) are the exception to 2: they are written unit by unit, each unit atomically,
//! because the finished units are what a resumed command continues from.

use std::path::{Path, PathBuf};

/// Errors of the output policy; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// An output file exists and `--force` was not given.
    #[error("{path} already exists; pass --force to replace it, or choose another name")]
    FileExists {
        /// The file.
        path: PathBuf,
    },
    /// An output directory exists, is not empty, and `--force` was not given.
    #[error(
        "{path} already exists and is not empty; pass --force to replace it, or choose another directory"
    )]
    DirExists {
        /// The directory.
        path: PathBuf,
    },
    /// A file was expected but a directory (or the other way round) is there.
    #[error("{path} is {found}, not {expected}")]
    WrongKind {
        /// The path.
        path: PathBuf,
        /// What is there.
        found: &'static str,
        /// What the output needs.
        expected: &'static str,
    },
    /// The same path was named twice as an output of one command.
    #[error("{path} is named as two different outputs")]
    Duplicate {
        /// The path.
        path: PathBuf,
    },
    /// An output was written that was not announced with [`OutputFiles::claim`].
    #[error("{path}: written without being claimed as an output (a bug in decal)")]
    Unclaimed {
        /// The path.
        path: PathBuf,
    },
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError {
    let path = path.to_path_buf();
    move |source| OutputError::Io { path, source }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name_of(path: &Path) -> Result<String, OutputError> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| OutputError::WrongKind {
            path: path.to_path_buf(),
            found: "a path without a file name",
            expected: "a file or directory name",
        })
}

/// Refuses an existing output file unless `force`; refuses a directory where a file is to be written.
pub fn check_output_file(path: &Path, force: bool) -> Result<(), OutputError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(OutputError::WrongKind {
            path: path.to_path_buf(),
            found: "a directory",
            expected: "a file",
        }),
        Ok(_) if !force => Err(OutputError::FileExists {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Refuses a non-empty output directory unless `force`; refuses a file where a directory is to be written.
pub fn check_output_dir(path: &Path, force: bool) -> Result<(), OutputError> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(OutputError::WrongKind {
            path: path.to_path_buf(),
            found: "a file",
            expected: "a directory",
        }),
        Ok(_) => {
            let non_empty = std::fs::read_dir(path).map_err(io(path))?.next().is_some();
            if non_empty && !force {
                Err(OutputError::DirExists {
                    path: path.to_path_buf(),
                })
            } else {
                Ok(())
            }
        }
        Err(_) => Ok(()),
    }
}

/// Directories created on the way to an output, removed again (deepest first, only when empty) unless
/// [`CreatedDirs::keep`] is called: a failed command leaves no empty directories behind.
#[derive(Debug, Default)]
pub struct CreatedDirs {
    dirs: Vec<PathBuf>,
}

impl CreatedDirs {
    /// `create_dir_all`, remembering every directory that did not exist before.
    pub fn create_all(&mut self, dir: &Path) -> Result<(), OutputError> {
        let mut missing = Vec::new();
        let mut cur = Some(dir);
        while let Some(d) = cur {
            if d.as_os_str().is_empty() || d.exists() {
                break;
            }
            missing.push(d.to_path_buf());
            cur = d.parent();
        }
        for d in missing.into_iter().rev() {
            match std::fs::create_dir(&d) {
                Ok(()) => self.dirs.push(d),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => return Err(io(&d)(e)),
            }
        }
        Ok(())
    }

    /// Keeps the created directories (the command succeeded).
    pub fn keep(&mut self) {
        self.dirs.clear();
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            // Only empty directories go: `remove_dir` fails on anything else, which is what we want.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A set of output files written as a whole: claim every output before the work ([`OutputFiles::claim`]),
/// write each into its staging path ([`OutputFiles::staged`]), then [`OutputFiles::commit`] renames them
/// into place. Dropped without a commit, it removes every staged file and every directory it created.
#[derive(Debug)]
pub struct OutputFiles {
    force: bool,
    claimed: Vec<PathBuf>,
    /// (destination directory, its staging directory).
    staging: Vec<(PathBuf, PathBuf)>,
    created: CreatedDirs,
}

impl OutputFiles {
    /// An empty set; `force` allows replacing existing files.
    pub fn new(force: bool) -> Self {
        OutputFiles {
            force,
            claimed: Vec::new(),
            staging: Vec::new(),
            created: CreatedDirs::default(),
        }
    }

    /// Announces an output file, checking it against the policy (call before any work).
    pub fn claim(&mut self, path: &Path) -> Result<(), OutputError> {
        file_name_of(path)?;
        if self.claimed.iter().any(|c| c == path) {
            return Err(OutputError::Duplicate {
                path: path.to_path_buf(),
            });
        }
        check_output_file(path, self.force)?;
        self.claimed.push(path.to_path_buf());
        Ok(())
    }

    /// Announces `stem` plus each of `extensions` appended (`stem.svg`, `stem.png`, …: writers that derive
    /// several files from one stem).
    pub fn claim_stem(&mut self, stem: &Path, extensions: &[&str]) -> Result<(), OutputError> {
        for ext in extensions {
            let mut s = stem.as_os_str().to_owned();
            s.push(".");
            s.push(ext);
            self.claim(Path::new(&s))?;
        }
        Ok(())
    }

    /// Where to write the output `path` (or a stem of claimed outputs) now: a path with the same file
    /// name inside a staging directory next to the destination. Parent directories are created (and
    /// removed again if the command fails).
    pub fn staged(&mut self, path: &Path) -> Result<PathBuf, OutputError> {
        let name = file_name_of(path)?;
        let parent = parent_of(path);
        if let Some((_, s)) = self.staging.iter().find(|(p, _)| *p == parent) {
            return Ok(s.join(name));
        }
        self.created.create_all(&parent)?;
        sweep_debris(&parent, ".decal-staging-", None);
        let staging = parent.join(format!(
            ".decal-staging-{}-{}",
            std::process::id(),
            self.staging.len()
        ));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        std::fs::create_dir(&staging).map_err(io(&staging))?;
        self.staging.push((parent, staging.clone()));
        Ok(staging.join(name))
    }

    /// Writes `bytes` as the output `path` (staged, atomically).
    pub fn write(&mut self, path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
        let staged = self.staged(path)?;
        crate::write_atomic(&staged, bytes).map_err(|e| match e {
            crate::CoreError::Io { source, .. } => OutputError::Io {
                path: path.to_path_buf(),
                source,
            },
            other => OutputError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(other.to_string()),
            },
        })
    }

    /// Renames every staged file into place (each rename atomic) and removes the staging directories.
    /// Returns the destinations, in claim order.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, OutputError> {
        let mut moves = Vec::new();
        for (parent, staging) in &self.staging {
            let mut names: Vec<_> = std::fs::read_dir(staging)
                .map_err(io(staging))?
                .map(|e| e.map(|e| e.file_name()).map_err(io(staging)))
                .collect::<Result<_, _>>()?;
            names.sort();
            for name in names {
                let dest = parent.join(&name);
                // Claimed as given (`out.json`); staged under its parent (`./out.json`): compare both
                // in the parent-joined form.
                let claimed = self
                    .claimed
                    .iter()
                    .any(|c| parent_of(c).join(c.file_name().unwrap_or_default()) == dest);
                if !claimed {
                    return Err(OutputError::Unclaimed { path: dest });
                }
                // Re-checked: something may have appeared while the command worked.
                check_output_file(&dest, self.force)?;
                moves.push((staging.join(&name), dest));
            }
        }
        for (from, to) in &moves {
            std::fs::rename(from, to).map_err(io(to))?;
        }
        for (_, staging) in std::mem::take(&mut self.staging) {
            let _ = std::fs::remove_dir(&staging);
        }
        self.created.keep();
        let written: Vec<PathBuf> = moves.into_iter().map(|(_, to)| to).collect();
        Ok(self
            .claimed
            .iter()
            .filter(|c| written.contains(&parent_of(c).join(c.file_name().unwrap_or_default())))
            .cloned()
            .collect())
    }
}

impl Drop for OutputFiles {
    fn drop(&mut self) {
        for (_, staging) in &self.staging {
            let _ = std::fs::remove_dir_all(staging);
        }
    }
}

/// Whether process `pid` may still be running (Linux: `/proc/<pid>`; elsewhere always true, so nothing is
/// ever swept there).
fn maybe_alive(pid: u32) -> bool {
    !Path::new("/proc/self").exists() || Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the entries of `parent` named `<prefix><pid>[-…]` whose process has ended (debris of a killed
/// decal: a staging directory, which is never a finished output). With `restore`, such an entry is instead
/// renamed back to `restore` when that does not exist (a replaced output moved aside by a commit that was
/// killed before the new one took its place). Best effort: errors are ignored.
fn sweep_debris(parent: &Path, prefix: &str, restore: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid == std::process::id() || maybe_alive(pid) {
            continue;
        }
        let path = entry.path();
        match restore {
            Some(target) if !target.exists() => {
                let _ = std::fs::rename(&path, target);
            }
            _ => {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// An output directory built in a temporary sibling (`.<name>.staging-<pid>`) and renamed into place by
/// [`StagedDir::commit`]; dropped without a commit, the sibling and any parent directories it created are
/// removed. A replaced directory (`--force`) is swapped out only once the new one is complete.
#[derive(Debug)]
pub struct StagedDir {
    target: PathBuf,
    staging: PathBuf,
    force: bool,
    created: CreatedDirs,
    committed: bool,
}

impl StagedDir {
    /// Checks `target` against the policy (absent, empty, or `force`) and creates the staging sibling.
    pub fn new(target: &Path, force: bool) -> Result<Self, OutputError> {
        let name = file_name_of(target)?;
        let parent = parent_of(target);
        // A killed earlier command's debris first: its staging sibling goes, and a target it had moved
        // aside to replace (killed between the two renames of `commit`) is put back.
        sweep_debris(&parent, &format!(".{name}.staging-"), None);
        sweep_debris(&parent, &format!(".{name}.replaced-"), Some(target));
        check_output_dir(target, force)?;
        let mut created = CreatedDirs::default();
        created.create_all(&parent)?;
        let staging = parent.join(format!(".{name}.staging-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        std::fs::create_dir(&staging).map_err(io(&staging))?;
        Ok(StagedDir {
            target: target.to_path_buf(),
            staging,
            force,
            created,
            committed: false,
        })
    }

    /// The directory to write into now.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// The final directory.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// `path()` joined with `name`, mapped to where it will be after the commit (for messages).
    pub fn final_path(&self, name: impl AsRef<Path>) -> PathBuf {
        self.target.join(name)
    }

    /// Renames the staging directory into place, replacing an existing (empty, or `--force`) target.
    pub fn commit(mut self) -> Result<PathBuf, OutputError> {
        check_output_dir(&self.target, self.force)?;
        if self.target.exists() {
            let name = file_name_of(&self.target)?;
            let old =
                parent_of(&self.target).join(format!(".{name}.replaced-{}", std::process::id()));
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(io(&old))?;
            }
            std::fs::rename(&self.target, &old).map_err(io(&self.target))?;
            if let Err(e) = std::fs::rename(&self.staging, &self.target) {
                let _ = std::fs::rename(&old, &self.target);
                return Err(io(&self.target)(e));
            }
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&self.staging, &self.target).map_err(io(&self.target))?;
        }
        self.committed = true;
        self.created.keep();
        Ok(self.target.clone())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid that no process has (above the kernel's pid_max of 2^22).
    const DEAD: u32 = 4_000_000_000;

    #[test]
    fn debris_of_a_killed_command_is_swept_and_a_moved_aside_output_restored() {
        if !Path::new("/proc/self").exists() {
            return; // nothing is swept without /proc
        }
        let root = tempfile::tempdir().unwrap();
        let d = root.path();
        // A killed `StagedDir` command: its staging sibling goes; a live process's stays.
        std::fs::create_dir_all(d.join(format!(".out.staging-{DEAD}/x"))).unwrap();
        // Pid 1 (init) is always running: its entry is not debris.
        std::fs::create_dir_all(d.join(".out.staging-1")).unwrap();
        // Killed between the renames of a --force commit: the old output was moved aside.
        std::fs::create_dir_all(d.join(format!(".out.replaced-{DEAD}"))).unwrap();
        std::fs::write(d.join(format!(".out.replaced-{DEAD}/results.json")), "{}").unwrap();
        let staged = StagedDir::new(&d.join("out"), false);
        // The old output is back in place, so the new command is refused (not silently replaced).
        assert!(
            matches!(staged, Err(OutputError::DirExists { .. })),
            "{staged:?}"
        );
        assert!(d.join("out/results.json").is_file());
        assert!(!d.join(format!(".out.staging-{DEAD}")).exists());
        assert!(!d.join(format!(".out.replaced-{DEAD}")).exists());
        assert!(d.join(".out.staging-1").exists());
        // A killed `OutputFiles` command.
        std::fs::create_dir_all(d.join(format!("f/.decal-staging-{DEAD}-0"))).unwrap();
        let mut files = OutputFiles::new(false);
        files.claim(&d.join("f/a.txt")).unwrap();
        files.write(&d.join("f/a.txt"), b"a").unwrap();
        files.commit().unwrap();
        let left: Vec<_> = std::fs::read_dir(d.join("f"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["a.txt".to_string()]);
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn files_are_refused_without_force_and_replaced_with_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        std::fs::write(&p, "old").unwrap();
        let mut out = OutputFiles::new(false);
        let err = out.claim(&p).unwrap_err().to_string();
        assert!(
            err.contains("a.json already exists") && err.contains("--force"),
            "{err}"
        );
        let mut out = OutputFiles::new(true);
        out.claim(&p).unwrap();
        out.write(&p, b"new").unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"old",
            "nothing moves before the commit"
        );
        out.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(listing(d.path()), vec!["a.json"]);
    }

    #[test]
    fn an_uncommitted_set_leaves_nothing_not_even_directories() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("x/y/a.npy");
        let b = d.path().join("x/y/b.json");
        let mut out = OutputFiles::new(false);
        out.claim(&a).unwrap();
        out.claim(&b).unwrap();
        out.write(&a, b"a").unwrap();
        drop(out);
        assert!(listing(d.path()).is_empty());
    }

    #[test]
    fn duplicate_and_directory_outputs_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut out = OutputFiles::new(true);
        out.claim(&d.path().join("a")).unwrap();
        assert!(out.claim(&d.path().join("a")).is_err());
        let err = out.claim(d.path()).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
    }

    #[test]
    fn staged_dir_appears_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("p/out");
        let s = StagedDir::new(&target, false).unwrap();
        std::fs::write(s.path().join("one"), "1").unwrap();
        assert!(!target.exists());
        drop(s);
        assert!(listing(d.path()).is_empty(), "{:?}", listing(d.path()));

        let s = StagedDir::new(&target, false).unwrap();
        std::fs::write(s.path().join("one"), "1").unwrap();
        s.commit().unwrap();
        assert_eq!(listing(&target), vec!["one"]);

        let err = StagedDir::new(&target, false).unwrap_err().to_string();
        assert!(
            err.contains("not empty") && err.contains("--force"),
            "{err}"
        );
        let s = StagedDir::new(&target, true).unwrap();
        std::fs::write(s.path().join("two"), "2").unwrap();
        s.commit().unwrap();
        assert_eq!(listing(&target), vec!["two"]);
        assert_eq!(listing(&d.path().join("p")), vec!["out"]);
    }

    #[test]
    fn created_dirs_go_only_when_empty() {
        let d = tempfile::tempdir().unwrap();
        let mut c = CreatedDirs::default();
        c.create_all(&d.path().join("a/b/c")).unwrap();
        std::fs::write(d.path().join("a/keep"), "k").unwrap();
        drop(c);
        assert_eq!(listing(&d.path().join("a")), vec!["keep"]);
    }
}
