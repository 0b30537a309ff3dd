//! `decal quickstart` on the bundled data: the short form (1 seed, 1 stage-1 epoch) must print the
//! comparison table with every method, the OOD column and the report path, and write the report.

use std::path::Path;
use std::process::Command;

#[test]
fn quickstart_prints_table_and_report() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/quickstart");
    if !data.join("fashion-mnist").exists() {
        eprintln!("skipping: bundled data/quickstart not present");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("qs");
    let output = Command::new(env!("CARGO_BIN_EXE_decal"))
        .args([
            "quickstart",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--out",
        ])
        .arg(&out)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "quickstart failed:\n{stderr}");
    for row in [
        "| Baseline",
        "| TS",
        "| TST",
        "| V-TST m=1",
        "| V-TST m=10",
        "OOD AUROC",
    ] {
        assert!(stdout.contains(row), "missing {row} in:\n{stdout}");
    }
    // Progress is shown on stderr throughout: stage 1 epochs, features, heads, evaluations.
    for step in [
        "stage 1 epoch",
        "features/train",
        "stage 2: TST seed 0",
        "eval V-TST m=10 seed 0",
    ] {
        assert!(
            stderr.contains(step),
            "no progress line {step:?}:\n{stderr}"
        );
    }
    assert!(out.join("report/index.html").exists());
    assert!(
        stdout.contains(&format!(
            "report:  {}",
            out.join("report/index.html").display()
        )),
        "{stdout}"
    );

    // Without --force, a second quickstart into the same directory reuses everything.
    let again = Command::new(env!("CARGO_BIN_EXE_decal"))
        .args([
            "quickstart",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--out",
        ])
        .arg(&out)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 units computed"));
}

#[test]
fn missing_data_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_decal"))
        .args(["quickstart", "--data"])
        .arg(tmp.path().join("nothing"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: bundled quickstart data not found")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
}
