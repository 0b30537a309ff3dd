//! `decal data corrupt` end to end: argument errors, output-directory safety, a small real run on
//! the CIFAR-10 test JPEGs with resumption, sample grids, and refusal of non-32×32 datasets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DATASETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets");

fn decal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_decal"))
        .args(args)
        .output()
        .expect("decal should run")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `<datasets>/<name>` or `None` with a visible skip message.
fn dataset(name: &str) -> Option<PathBuf> {
    let dir = Path::new(DATASETS).join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} not found", dir.display());
        None
    }
}

/// Reads the shape from a `.npy` header (the dict's `'shape': (…)` entry).
fn npy_shape(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).into_owned();
    let start = header
        .find("'shape': (")
        .expect("npy header should have a shape")
        + 10;
    let end = start + header[start..].find(')').unwrap();
    header[start..end]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

#[test]
fn argument_errors_are_one_line_and_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--corruptions", "gaussian,fog"],
            "unknown corruption 'gaussian'",
        ),
        (&["--severities", "1,6"], "invalid severity '6'"),
        (&["--severities", "two"], "invalid severity 'two'"),
        (&["--limit", "0"], "--limit must be at least 1"),
    ];
    for (extra, expected) in cases {
        let mut args = vec![
            "data",
            "corrupt",
            "--data-dir",
            "/nonexistent",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        let res = decal(&args);
        assert_eq!(res.status.code(), Some(1), "{extra:?}");
        let err = stderr(&res);
        assert!(
            err.starts_with("error: ") && err.contains(expected),
            "{extra:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    let res = decal(&["data", "corrupt", "--data-dir", "/nonexistent"]);
    assert!(stderr(&res).contains("pass --out DIR"), "{}", stderr(&res));
    let res = decal(&[
        "data",
        "corrupt",
        "--data-dir",
        "/nonexistent",
        "--out",
        out,
    ]);
    assert_eq!(res.status.code(), Some(1));
    assert!(stderr(&res).contains("/nonexistent"), "{}", stderr(&res));
    assert!(
        !Path::new(out).exists(),
        "nothing should be created when the input is missing"
    );
}

#[test]
fn help_documents_every_flag() {
    let res = decal(&["data", "corrupt", "--help"]);
    let help = String::from_utf8_lossy(&res.stdout);
    for flag in [
        "--dataset",
        "--data-dir",
        "--split",
        "--out",
        "--corruptions",
        "--severities",
        "--limit",
        "--seed",
        "--frost-dir",
        "--grid",
        "--force",
    ] {
        assert!(help.contains(flag), "--help should document {flag}");
    }
    assert!(help.contains("generated corruptions"));
}

#[test]
fn small_real_run_layout_resume_and_force() {
    let Some(cifar) = dataset("cifar10-jpeg") else {
        return;
    };
    let cifar = cifar.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c10c");
    let out_s = out.to_str().unwrap();
    let args = [
        "data",
        "corrupt",
        "--dataset",
        "cifar10",
        "--data-dir",
        cifar,
        "--limit",
        "3",
        "--corruptions",
        "fog,contrast",
        "--severities",
        "5,1",
        "--seed",
        "7",
        "--out",
        out_s,
    ];
    let res = decal(&args);
    assert!(res.status.success(), "{}", stderr(&res));
    let err = stderr(&res);
    assert!(
        err.contains("[1/2] fog: done") && err.contains("[2/2] contrast: done"),
        "{err}"
    );
    // The JPEG copy is class-ordered: 3 images are one class, and decal says so.
    assert!(
        err.contains("warning: the first 3 images cover 1 of the split's 10 classes"),
        "{err}"
    );
    assert_eq!(npy_shape(&out.join("fog.npy")), vec![6, 32, 32, 3]);
    assert_eq!(npy_shape(&out.join("contrast.npy")), vec![6, 32, 32, 3]);
    assert_eq!(npy_shape(&out.join("labels.npy")), vec![6]);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kind"], "generated corruptions");
    assert_eq!(manifest["seed"], 7);
    assert_eq!(manifest["severities"], serde_json::json!([1, 5]));
    assert_eq!(manifest["source"]["num_images"], 3);
    assert_eq!(manifest["source"]["details"]["dataset"], "cifar10");
    let fog_before = std::fs::read(out.join("fog.npy")).unwrap();

    // Same request again: resumed, nothing regenerated.
    let res = decal(&args);
    assert!(res.status.success(), "{}", stderr(&res));
    assert_eq!(
        stderr(&res).matches("skipped").count(),
        2,
        "{}",
        stderr(&res)
    );

    // A different request into the same directory is refused, then allowed with --force.
    let mut other = args.to_vec();
    other[13] = "8";
    let res = decal(&other);
    assert_eq!(res.status.code(), Some(1));
    assert!(stderr(&res).contains("--force"), "{}", stderr(&res));
    other.push("--force");
    let res = decal(&other);
    assert!(res.status.success(), "{}", stderr(&res));
    assert_ne!(
        std::fs::read(out.join("fog.npy")).unwrap(),
        fog_before,
        "another seed gives other fog"
    );
}

#[test]
fn grids_and_frost() {
    let Some(cifar) = dataset("cifar10-jpeg") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("grid");
    let res = decal(&[
        "data",
        "corrupt",
        "--data-dir",
        cifar.to_str().unwrap(),
        "--limit",
        "2",
        "--corruptions",
        "frost,pixelate",
        "--grid",
        grid.to_str().unwrap(),
        "--frost-dir",
        Path::new(DATASETS)
            .join("corruption-assets/frost")
            .to_str()
            .unwrap(),
    ]);
    assert!(res.status.success(), "{}", stderr(&res));
    for name in ["frost.png", "pixelate.png"] {
        let bytes = std::fs::read(grid.join(name)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        // IHDR width/height: 6 columns (clean + 5 severities) and 2 rows of 32 px cells with 2 px
        // gaps, ×4.
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((width, height), ((6 * 34 + 2) * 4, (2 * 34 + 2) * 4));
    }
    // An explicit --frost-dir that does not hold the textures is an error naming the file.
    let res = decal(&[
        "data",
        "corrupt",
        "--data-dir",
        cifar.to_str().unwrap(),
        "--corruptions",
        "frost",
        "--grid",
        grid.to_str().unwrap(),
        "--frost-dir",
        "/nonexistent-frost",
    ]);
    assert_eq!(res.status.code(), Some(1));
    assert!(
        stderr(&res).contains("/nonexistent-frost/frost1.png"),
        "{}",
        stderr(&res)
    );
}

#[test]
fn non_32x32_datasets_are_refused() {
    let Some(tiny) = dataset("tiny-imagenet-200") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let res = decal(&[
        "data",
        "corrupt",
        "--dataset",
        "tiny-imagenet",
        "--data-dir",
        tiny.to_str().unwrap(),
        "--split",
        "val",
        "--out",
        out.to_str().unwrap(),
        "--corruptions",
        "fog",
    ]);
    assert_eq!(res.status.code(), Some(1));
    let err = stderr(&res);
    assert!(err.contains("64×64×3") && err.contains("32×32×3"), "{err}");
    assert!(!out.exists());
}
