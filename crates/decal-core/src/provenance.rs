//! What every run directory records about how it was produced.

use serde::{Deserialize, Serialize};

/// Versions and environment of the process that produced an artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// decal's version (Cargo package version).
    pub decal_version: String,
    /// The git commit of the working tree, when it could be determined at run time.
    pub git_commit: Option<String>,
    /// Seconds since the Unix epoch when the artifact was written.
    pub created_unix: u64,
    /// Operating system and architecture, e.g. `linux-x86_64`.
    pub platform: String,
    /// The full command line.
    pub command_line: Vec<String>,
}

impl Provenance {
    /// Captures the current process's provenance.
    pub fn capture() -> Self {
        let git_commit = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        Provenance {
            decal_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
            command_line: std::env::args().collect(),
        }
    }
}
