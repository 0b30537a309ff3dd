//! What every run directory records about how it was produced.
//!
//! The git commit is the one of the decal source tree the running binary was built in (found from the
//! executable's path, e.g. `<repo>/target/release/decal`), not of the user's working directory. The
//! libtorch version is read from the library the process actually loaded (Linux: `/proc/self/maps`), so
//! a venv replaced after the build cannot go unnoticed; decal-core itself stays free of tch.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Versions and environment of the process that produced an artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// decal's version (Cargo package version).
    pub decal_version: String,
    /// The git commit of the source tree the binary was built in, when it could be determined at run time.
    pub git_commit: Option<String>,
    /// Whether that tree had uncommitted changes to tracked files (`None` when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_dirty: Option<bool>,
    /// Seconds since the Unix epoch when the artifact was written.
    pub created_unix: u64,
    /// Operating system and architecture, e.g. `linux-x86_64`.
    pub platform: String,
    /// The full command line.
    pub command_line: Vec<String>,
    /// The libtorch loaded by this process (absent for processes that do not load it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libtorch: Option<LibtorchInfo>,
}

/// Which libtorch a process runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibtorchInfo {
    /// Version string of the distribution, e.g. `2.11.0+cu130` (PyTorch wheel `torch/version.py`) or the
    /// `build-version` file of a standalone libtorch; `unknown` when neither is readable.
    pub version: String,
    /// CUDA version the wheel was built for (`torch/version.py` `cuda`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda: Option<String>,
    /// Path of the loaded `libtorch_cpu` shared library.
    pub library: PathBuf,
}

impl Provenance {
    /// Captures the current process's provenance.
    pub fn capture() -> Self {
        let tree = source_tree();
        let git = |args: &[&str]| {
            let dir = tree.as_ref()?;
            std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .output()
                .ok()
        };
        let git_commit = git(&["rev-parse", "HEAD"])
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        // `diff --quiet HEAD`: exit 0 clean, 1 dirty, anything else unknown.
        let git_dirty = git_commit
            .as_ref()
            .and_then(|_| git(&["diff", "--quiet", "HEAD", "--"]))
            .and_then(|o| match o.status.code() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            });
        Provenance {
            decal_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit,
            git_dirty,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
            command_line: std::env::args().collect(),
            libtorch: loaded_libtorch(),
        }
    }
}

/// The git work tree containing the running executable (`<repo>/target/<profile>/…`), if any.
fn source_tree() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let exe = exe.canonicalize().unwrap_or(exe);
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.join(".git").exists())
        .map(Path::to_path_buf)
}

/// The libtorch shared library mapped into this process and its version (Linux; `None` elsewhere or
/// when no libtorch is loaded).
pub fn loaded_libtorch() -> Option<LibtorchInfo> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    libtorch_from_maps(&maps)
}

/// [`loaded_libtorch`] on the text of a `/proc/<pid>/maps` file.
pub fn libtorch_from_maps(maps: &str) -> Option<LibtorchInfo> {
    let library = maps.lines().find_map(|line| {
        // Fields: address perms offset dev inode pathname (the path may contain spaces).
        let path = line.splitn(6, char::is_whitespace).nth(5)?.trim();
        let name = Path::new(path).file_name()?.to_str()?;
        (name == "libtorch_cpu.so" || name.starts_with("libtorch_cpu.so."))
            .then(|| PathBuf::from(path))
    })?;
    let lib_dir = library.parent()?;
    let root = lib_dir.parent()?;
    let (version, cuda) = read_version_py(&root.join("version.py"))
        .or_else(|| {
            let v = std::fs::read_to_string(root.join("build-version")).ok()?;
            Some((v.trim().to_string(), None))
        })
        .unwrap_or_else(|| ("unknown".to_string(), None));
    Some(LibtorchInfo {
        version,
        cuda,
        library,
    })
}

/// `__version__` and `cuda` of a PyTorch `torch/version.py`.
fn read_version_py(path: &Path) -> Option<(String, Option<String>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            let k = k.trim().split(':').next()?.trim();
            (k == key).then(|| v.trim().trim_matches(['\'', '"']).to_string())
        })
    };
    let version = value("__version__")?;
    let cuda = value("cuda").filter(|c| c != "None");
    Some((version, cuda))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_libtorch_in_maps_and_reads_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let torch = dir.path().join("site packages/torch");
        std::fs::create_dir_all(torch.join("lib")).unwrap();
        std::fs::write(
            torch.join("version.py"),
            "from typing import Optional\n__all__ = ['__version__']\n__version__ = '2.11.0+cu130'\n\
             debug = False\ncuda: Optional[str] = '13.0'\ngit_version = 'abc'\n",
        )
        .unwrap();
        let lib = torch.join("lib/libtorch_cpu.so");
        let maps = format!(
            "7f00-7f01 r--p 00000000 08:01 1 /usr/lib/libc.so.6\n\
             7f02-7f03 r-xp 00000000 08:01 2 {}\n",
            lib.display()
        );
        let info = libtorch_from_maps(&maps).unwrap();
        assert_eq!(info.version, "2.11.0+cu130");
        assert_eq!(info.cuda.as_deref(), Some("13.0"));
        assert_eq!(info.library, lib);

        // A standalone libtorch: build-version at the root, no CUDA field.
        std::fs::remove_file(torch.join("version.py")).unwrap();
        std::fs::write(torch.join("build-version"), "2.11.0+cpu\n").unwrap();
        let info = libtorch_from_maps(&maps).unwrap();
        assert_eq!((info.version.as_str(), info.cuda), ("2.11.0+cpu", None));
        std::fs::remove_file(torch.join("build-version")).unwrap();
        assert_eq!(libtorch_from_maps(&maps).unwrap().version, "unknown");

        assert!(
            libtorch_from_maps("7f00-7f01 r--p 00000000 08:01 1 /usr/lib/libc.so.6\n").is_none()
        );
    }

    #[test]
    fn capture_records_the_source_tree_commit() {
        let p = Provenance::capture();
        // Test binaries live in <repo>/target/…/deps, inside the repository's work tree.
        if let Some(c) = &p.git_commit {
            assert_eq!(c.len(), 40, "{c}");
            assert!(p.git_dirty.is_some());
        } else {
            eprintln!("skipping: no git work tree above the test binary");
        }
        // decal-core does not load libtorch.
        assert!(p.libtorch.is_none());
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("libtorch"), "{json}");
    }
}
