//! `decal report <run>` writes `<run>/report`, which `decal run` writes too: a report directory that
//! decal report produced (recognised by its report.json) is regenerated with a one-line notice, while
//! a directory holding anything else is refused with a one-line error and left untouched.

use std::path::Path;
use std::process::Command;

use decal_report::record::{write_jsonl, MetricRecord};

fn decal(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_decal"))
        .args(args)
        .output()
        .expect("decal runs")
}

fn records(run: &Path) {
    let mut out = Vec::new();
    for seed in 1..=2u64 {
        for (method, acc) in [("Baseline", 0.90), ("TST", 0.91)] {
            out.push(MetricRecord {
                run: "exp".into(),
                seed: Some(seed),
                method: method.into(),
                split: "test".into(),
                dataset: "cifar10".into(),
                corruption: None,
                severity: None,
                metric: "accuracy".into(),
                value: acc + seed as f64 * 1e-3,
                definition: "top-1".into(),
            });
        }
    }
    write_jsonl(&run.join("metrics.jsonl"), &out).unwrap();
}

#[test]
fn report_into_the_runs_own_report_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("exp");
    records(&run);
    let run_s = run.to_str().unwrap();

    let first = decal(&["report", run_s, "--note", "stage 1 imported from the seed"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report = run.join("report");
    assert!(report.join("report.json").is_file());
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains("**Warnings**\n\n- stage 1 imported from the seed\n"),
        "{stdout}"
    );

    // Again, without --force: replaced, with one notice line on stderr.
    let again = decal(&["report", run_s]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    let notes: Vec<&str> = err.lines().filter(|l| l.starts_with("note: ")).collect();
    assert_eq!(notes.len(), 1, "{err}");
    assert!(
        notes[0].contains("report: replaced the report decal report wrote there before"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&again.stdout).contains("Warnings"));

    // A file of the user's in the directory: one-line error naming it; nothing written or removed.
    std::fs::write(report.join("my-notes.txt"), "keep me").unwrap();
    let index = std::fs::read(report.join("index.html")).unwrap();
    let refused = decal(&["report", run_s, "--title", "other"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ")
            && err.contains("holds my-notes.txt, which decal report did not write")
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(report.join("index.html")).unwrap(), index);
    assert_eq!(
        std::fs::read_to_string(report.join("my-notes.txt")).unwrap(),
        "keep me"
    );

    // --force writes the report and keeps the user's file.
    let forced = decal(&["report", run_s, "--title", "other", "--force"]);
    assert!(forced.status.success());
    assert_ne!(std::fs::read(report.join("index.html")).unwrap(), index);
    assert!(report.join("my-notes.txt").is_file());
}
