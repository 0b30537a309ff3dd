//! Run directories from another decal version are refused with a clear error instead of being misread.
//!
//! Every run directory records the decal version that wrote it (`provenance.json` of `decal train`,
//! `experiment.json` of `decal run`, the `provenance` object of `results.json`). A command that continues
//! or reads such a directory (`decal train --resume`, `decal run` resuming, `decal report`) checks that
//! field with [`check_decal_version`]: a different version is an error naming the file and the field, since
//! hashes, file layouts and record meanings may differ between versions.

use std::path::Path;

/// This decal's version, as recorded in run directories.
pub const DECAL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Checks the decal version recorded in `value` at the JSON pointer `pointer` (e.g.
/// `/provenance/decal_version`) of `file`. Returns `file: field: problem` on a missing or different version.
pub fn check_decal_version(
    file: &Path,
    value: &serde_json::Value,
    pointer: &str,
) -> Result<(), String> {
    let field = pointer.trim_start_matches('/').replace('/', ".");
    match value.pointer(pointer) {
        Some(serde_json::Value::String(v)) if v == DECAL_VERSION => Ok(()),
        Some(serde_json::Value::String(v)) => Err(format!(
            "{}: {field}: written by decal {v}, but this is decal {DECAL_VERSION}; a run directory is only \
             continued or read by the version that wrote it (start a new directory, or recompute it with --force)",
            file.display()
        )),
        Some(other) => Err(format!(
            "{}: {field}: {other} is not a version string",
            file.display()
        )),
        None => Err(format!(
            "{}: {field}: missing; not a run directory written by decal {DECAL_VERSION}",
            file.display()
        )),
    }
}

/// Reads `file` as JSON and checks its recorded version (see [`check_decal_version`]).
pub fn check_file(file: &Path, pointer: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not valid JSON ({e})", file.display()))?;
    check_decal_version(file, &value, pointer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_version_passes_and_others_are_named() {
        let f = Path::new("runs/x/provenance.json");
        check_decal_version(
            f,
            &json!({"decal_version": DECAL_VERSION}),
            "/decal_version",
        )
        .unwrap();
        let e = check_decal_version(
            f,
            &json!({"provenance": {"decal_version": "0.0.1"}}),
            "/provenance/decal_version",
        )
        .unwrap_err();
        assert!(
            e.starts_with(
                "runs/x/provenance.json: provenance.decal_version: written by decal 0.0.1"
            ),
            "{e}"
        );
        let e = check_decal_version(f, &json!({}), "/decal_version").unwrap_err();
        assert!(e.contains("decal_version: missing"), "{e}");
    }
}
