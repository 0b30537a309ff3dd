//! `decal data inspect | verify | split | download` through the real binary, on the real datasets in
//! `shared/datasets` (skipped with a message when absent) and on temporary directories.

use std::path::PathBuf;
use std::process::Command;

fn decal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_decal"))
}

fn datasets() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets"
    ));
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: {} not found", p.display());
        None
    }
}

#[test]
fn inspect_mnist_prints_counts_and_writes_json() {
    let Some(d) = datasets() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("mnist.json");
    let out = decal()
        .args(["data", "inspect", "--dataset", "mnist", "--data-dir"])
        .arg(&d)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("mnist/train (60000 images"), "{stdout}");
    assert!(stdout.contains("mnist/test (10000 images"), "{stdout}");
    assert!(stdout.contains("28×28, 1 channel(s)"), "{stdout}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["splits"][0]["images"], 60000);
    let mean = doc["splits"][0]["mean"][0].as_f64().unwrap();
    assert!((mean - 0.1307).abs() < 1e-3, "{mean}");
}

#[test]
fn verify_passes_on_real_mnist_and_fails_in_one_line_elsewhere() {
    let Some(d) = datasets() else { return };
    let out = decal()
        .args(["data", "verify", "--dataset", "fashion-mnist", "--data-dir"])
        .arg(&d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all 4 file(s) match"));
    let tmp = tempfile::tempdir().unwrap();
    let out = decal()
        .args(["data", "verify", "--dataset", "svhn", "--data-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("missing or not matching"),
        "{err}"
    );
}

#[test]
fn split_writes_the_seed_manifest_and_refuses_to_overwrite() {
    let Some(d) = datasets() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("split.json");
    let run = |force: bool| {
        let mut c = decal();
        c.args(["data", "split", "--dataset", "fashion-mnist", "--data-dir"])
            .arg(&d)
            .arg("--out")
            .arg(&out_path);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    let out = run(false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert_eq!(m["train_indices"].as_array().unwrap().len(), 48_000);
    assert_eq!(m["valid_indices"].as_array().unwrap().len(), 12_000);
    assert_eq!(m["method"], "seed-random-split");
    let out = run(false);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert!(run(true).status.success());
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = decal()
        .args(["data", "download", "imagenet", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no download for 'imagenet'") && err.contains("cifar10-c"),
        "{err}"
    );
    let out = decal()
        .args(["data", "inspect", "--dataset", "cifar10", "--data-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no CIFAR-10 data found") && err.contains("decal data download cifar10"),
        "{err}"
    );
    let out = decal()
        .args(["data", "inspect", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--data-dir"));
}
