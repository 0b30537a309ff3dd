//! Architecture invariants, executable (STYLE.md R1, R14): the crate dependency DAG, the tensor-free
//! crates, and the `//!` header on every Rust source file.

use std::path::{Path, PathBuf};

/// Which workspace crates each crate may depend on. Data flows data → models → train → eval → report.
const ALLOWED: &[(&str, &[&str])] = &[
    ("decal-core", &[]),
    ("decal-pickle", &["decal-core"]),
    ("decal-io", &["decal-core"]),
    ("decal-metrics", &["decal-core", "decal-io"]),
    ("decal-calib", &["decal-core", "decal-metrics", "decal-io"]),
    ("decal-report", &["decal-core", "decal-metrics", "decal-io"]),
    ("decal-data", &["decal-core", "decal-io", "decal-pickle"]),
    ("decal-corrupt", &["decal-core", "decal-io", "decal-data"]),
    ("decal-models", &["decal-core", "decal-io", "decal-pickle"]),
    (
        "decal-train",
        &[
            "decal-core",
            "decal-io",
            "decal-data",
            "decal-models",
            "decal-metrics",
            "decal-calib",
        ],
    ),
    (
        "decal-eval",
        &[
            "decal-core",
            "decal-io",
            "decal-data",
            "decal-models",
            "decal-metrics",
            "decal-calib",
            "decal-train",
            "decal-report",
        ],
    ),
];

/// Crates whose tests must build in seconds: they may not depend on tch (directly).
const TENSOR_FREE: &[&str] = &[
    "decal-core",
    "decal-pickle",
    "decal-io",
    "decal-metrics",
    "decal-calib",
    "decal-report",
    "decal-data",
    "decal-corrupt",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Names of the `[dependencies]` (not dev- or build-dependencies) of a crate manifest.
fn normal_dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    value
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn crate_dependency_dag_is_respected() {
    let root = workspace_root();
    let mut violations = Vec::new();
    for (krate, allowed) in ALLOWED {
        let deps = normal_dependencies(&root.join("crates").join(krate).join("Cargo.toml"));
        for dep in deps.iter().filter(|d| d.starts_with("decal-")) {
            if !allowed.contains(&dep.as_str()) {
                violations.push(format!("{krate} depends on {dep}"));
            }
        }
        if TENSOR_FREE.contains(krate) && deps.iter().any(|d| d == "tch") {
            violations.push(format!("{krate} must stay free of tch"));
        }
    }
    assert!(
        violations.is_empty(),
        "architecture violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_crate_is_listed_in_the_dag() {
    let root = workspace_root();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name == "decal-cli" {
            continue;
        }
        assert!(
            ALLOWED.iter().any(|(k, _)| *k == name),
            "crate {name} is missing from the dependency table in tests/architecture.rs and ARCHITECTURE.md"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == "fixtures" || n == "golden")
            {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("crates"), &mut files);
    let missing: Vec<_> = files
        .iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            !first.trim_start().starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` doc:\n{}",
        missing.join("\n")
    );
}
