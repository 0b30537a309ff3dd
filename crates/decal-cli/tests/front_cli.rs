//! The two binaries: `decal` runs `decal metrics` itself without loading libtorch, and hands every other
//! command to `decal-full` (beside it) unchanged; both give the same metrics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(exe);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A binary this test just copied can be briefly "busy": a child that another test thread forked
    // while the copy's write handle was open holds it until that child's exec closes it (ETXTBSY).
    for _ in 0..50 {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.expect("binary runs"),
        }
    }
    cmd.output().expect("binary runs")
}

fn front() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_decal"))
}

fn full() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_decal-full"))
}

fn golden(name: &str) -> String {
    format!(
        "{}/../decal-metrics/tests/golden/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn decal_metrics_never_loads_libtorch_and_agrees_with_decal_full() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("front.json"), dir.path().join("full.json"));
    let args = |out: &Path| {
        vec![
            "metrics".to_string(),
            "--logits".into(),
            golden("k10_logits.npy"),
            "--labels".into(),
            golden("k10_labels.npy"),
            "--profile".into(),
            "paper".into(),
            "--json".into(),
            out.display().to_string(),
        ]
    };
    let args_a = args(&a);
    let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    // glibc's loader lists every shared object it loads under LD_DEBUG=files.
    let o = run(&front(), &args_a, &[("LD_DEBUG", "files")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let trace = text(&o.stderr);
    assert!(trace.contains("libc.so"), "no loader trace: {trace}");
    assert!(!trace.contains("libtorch"), "decal metrics loaded libtorch");
    let args_b = args(&b);
    let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let o = run(&full(), &args_b, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let json = |p: &Path| -> serde_json::Value {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        // Everything but the record of how it was run.
        v.as_object_mut().unwrap().remove("provenance");
        v.as_object_mut().unwrap().remove("inputs");
        v
    };
    assert_eq!(json(&a), json(&b));
}

#[test]
fn every_other_command_runs_in_decal_full_unchanged() {
    let o = run(&front(), &["--version"], &[]);
    assert!(o.status.success());
    assert_eq!(
        text(&o.stdout).trim(),
        format!("decal {}", env!("CARGO_PKG_VERSION"))
    );
    // Help lists the commands of the full binary, under the name users type.
    let o = run(&front(), &["--help"], &[]);
    let help = text(&o.stdout);
    assert!(help.contains("Usage: decal") && help.contains("quickstart") && help.contains("run"));
    // Exit codes and one-line errors come through.
    let o = run(&front(), &["train", "--config", "/nonexistent/x.toml"], &[]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("/nonexistent/x.toml"),
        "{err}"
    );
    let o = run(&front(), &["no-such-command"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

#[test]
fn a_missing_decal_full_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let lone = dir.path().join("decal");
    std::fs::copy(front(), &lone).unwrap();
    let o = run(&lone, &["run", "x.toml"], &[]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("decal-full") && err.contains("not found"),
        "{err}"
    );
    // `metrics` needs nothing beside it.
    let out = dir.path().join("m.json");
    let o = run(
        &lone,
        &[
            "metrics",
            "--logits",
            &golden("k10_logits.npy"),
            "--labels",
            &golden("k10_labels.npy"),
            "--json",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(out.is_file());
}
