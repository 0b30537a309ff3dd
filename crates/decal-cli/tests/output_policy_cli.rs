//! The one output policy (decal_core::output), command by command, through the real binary: an existing
//! output is refused before any work with a one-line error naming it; `--force` replaces it; a command that
//! fails while writing leaves nothing partial (no half set of files, no staging directory) and no empty
//! directory it created. Failures are provoked with an output path below a regular file (which fails even
//! for root, unlike a read-only directory) or with the `DECAL_TEST_FAIL_OUTPUT` hook.
//! Commands that need a real dataset use `../shared/datasets` and skip with a message when it is absent.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use decal_io::npy::{self, NpyArray};

fn decal_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_decal"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("decal binary runs")
}

fn decal(args: &[&str]) -> Output {
    decal_env(args, &[])
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "command failed: {}", stderr(o));
}

/// Exit ≠ 0, one `error:` line containing every needle, no panic.
fn fails(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "error lacks {n:?}: {err}");
    }
}

/// Every entry below `dir`, relative, sorted (directories end in `/`).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn datasets() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets");
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!("skipped: ../shared/datasets is absent");
        None
    }
}

/// Logits [6, 3] and labels for `metrics` / `calibrate` (two rows misclassified: every fit has an optimum).
fn predictions(dir: &Path) -> (PathBuf, PathBuf) {
    let z = dir.join("z.npy");
    let y = dir.join("y.npy");
    let logits = vec![
        2.0, 0.1, -1.0, 0.3, 1.5, 0.2, -0.5, 0.4, 2.2, 1.0, 0.9, -0.2, 0.1, 0.2, 0.3, -1.0, 2.0,
        0.5,
    ];
    npy::write(&z, &NpyArray::from_f64(vec![6, 3], logits)).unwrap();
    npy::write(&y, &NpyArray::from_i64(vec![6], vec![0, 1, 2, 1, 2, 0])).unwrap();
    (z, y)
}

#[test]
fn metrics_outputs_are_refused_replaced_with_force_and_written_whole_or_not_at_all() {
    let d = tempfile::tempdir().unwrap();
    let (z, y) = predictions(d.path());
    let json = d.path().join("m.json");
    std::fs::write(&json, "finished result").unwrap();
    let base = ["metrics", "--logits", s(&z), "--labels", s(&y)];

    let o = decal(&[&base[..], &["--json", s(&json)]].concat());
    fails(&o, &[s(&json), "already exists", "--force"]);
    assert_eq!(std::fs::read_to_string(&json).unwrap(), "finished result");

    let o = decal(&[&base[..], &["--json", s(&json), "--force"]].concat());
    ok(&o);
    assert!(std::fs::read_to_string(&json).unwrap().contains("\"ece\""));

    // A reliability stem whose .png exists is refused as a whole, before the JSON is written.
    let stem = d.path().join("rel");
    std::fs::write(d.path().join("rel.png"), "old").unwrap();
    let fresh = d.path().join("fresh.json");
    let o = decal(&[&base[..], &["--json", s(&fresh), "--reliability", s(&stem)]].concat());
    fails(&o, &["rel.png", "already exists"]);
    assert!(!fresh.exists());

    // A failing write (the stem lies below a regular file): the JSON that was written first does not
    // appear, nor do staging or new directories.
    let before = tree(d.path());
    let blocker = d.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let out = d.path().join("new/sub/m2.json");
    let o = decal(
        &[
            &base[..],
            &[
                "--json",
                s(&out),
                "--reliability",
                s(&blocker.join("x/rel")),
            ],
        ]
        .concat(),
    );
    assert!(!o.status.success());
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    let mut expected = before.clone();
    expected.push("blocker".into());
    expected.sort();
    assert_eq!(tree(d.path()), expected, "{}", stderr(&o));
}

#[test]
fn calibrate_out_is_staged_refused_and_replaced_whole() {
    let d = tempfile::tempdir().unwrap();
    let (z, y) = predictions(d.path());
    let out = d.path().join("a/b/cal");
    let args = |force: bool| {
        let mut v = vec![
            "calibrate".to_string(),
            "--method".into(),
            "temperature".into(),
            "--val-logits".into(),
            s(&z).into(),
            "--val-labels".into(),
            s(&y).into(),
            "--test-logits".into(),
            s(&z).into(),
            "--test-labels".into(),
            s(&y).into(),
            "--out".into(),
            s(&out).into(),
        ];
        if force {
            v.push("--force".into());
        }
        v
    };
    let run = |force: bool, env: &[(&str, &str)]| {
        let a = args(force);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        decal_env(&a, env)
    };

    // A write that fails after some files were written leaves no directory at all (not even a/b).
    let before = tree(d.path());
    let o = run(false, &[("DECAL_TEST_FAIL_OUTPUT", "calibrate")]);
    fails(&o, &["simulated write failure"]);
    assert_eq!(tree(d.path()), before);

    ok(&run(false, &[]));
    let mut files = tree(&out);
    files.sort();
    assert_eq!(
        files,
        vec![
            "calibrator.json",
            "metrics.json",
            "reliability.csv",
            "reliability.png",
            "reliability.svg",
            "test_probs.npy"
        ]
    );
    let o = run(false, &[]);
    fails(&o, &[s(&out), "not empty", "--force"]);

    // --force replaces the directory as a whole once the new one is complete; a failure keeps the old one.
    std::fs::write(out.join("stale.txt"), "old").unwrap();
    let o = run(true, &[("DECAL_TEST_FAIL_OUTPUT", "calibrate")]);
    assert!(!o.status.success());
    assert!(out.join("stale.txt").exists());
    assert_eq!(tree(&d.path().join("a/b")).len(), tree(&out).len() + 1);
    ok(&run(true, &[]));
    assert!(!out.join("stale.txt").exists());
    assert_eq!(tree(&d.path().join("a/b")), {
        let mut v: Vec<String> = files.iter().map(|f| format!("cal/{f}")).collect();
        v.push("cal/".into());
        v.sort();
        v
    });
}

#[test]
fn eval_outputs_are_refused_before_the_checkpoint_is_read() {
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("e.json");
    std::fs::write(&json, "x").unwrap();
    let o = decal(&[
        "eval",
        "--checkpoint",
        s(&d.path().join("no-such-checkpoint")),
        "--data-dir",
        s(d.path()),
        "--json",
        s(&json),
    ]);
    fails(&o, &[s(&json), "already exists", "--force"]);
    let o = decal(&[
        "eval",
        "--checkpoint",
        s(&d.path().join("no-such-checkpoint")),
        "--data-dir",
        s(d.path()),
        "--json",
        s(&json),
        "--save-logits",
        s(&json),
        "--force",
    ]);
    fails(&o, &["named as two different outputs"]);
}

#[test]
fn eval_writes_its_outputs_together_and_replaces_them_with_force() {
    let Some(data) = datasets() else { return };
    let d = tempfile::tempdir().unwrap();
    let ckpt = d.path().join("ckpt");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../decal-models/tests/fixtures/cnn_lightning.ckpt");
    ok(&decal(&[
        "import",
        "--from",
        s(&fixture),
        "--arch",
        "cnn",
        "--num-classes",
        "10",
        "--out",
        s(&ckpt),
    ]));
    let json = d.path().join("e.json");
    let logits = d.path().join("z.npy");
    let cifar = data.join("cifar10-jpeg");
    let eval = |extra: &[&str]| {
        let base = [
            "eval",
            "--checkpoint",
            s(&ckpt),
            "--dataset",
            "cifar10",
            "--data-dir",
            s(&cifar),
            "--limit",
            "16",
            "--threads",
            "1",
        ];
        decal(&[&base[..], extra].concat())
    };
    // --save-labels below a regular file fails: neither the JSON nor the logits appear.
    let blocker = d.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let o = eval(&[
        "--json",
        s(&json),
        "--save-logits",
        s(&logits),
        "--save-labels",
        s(&blocker.join("y.npy")),
    ]);
    assert!(!o.status.success());
    assert!(!json.exists() && !logits.exists(), "{}", stderr(&o));
    assert_eq!(
        tree(d.path())
            .iter()
            .filter(|f| f.contains("staging"))
            .count(),
        0
    );

    ok(&eval(&["--json", s(&json), "--save-logits", s(&logits)]));
    let o = eval(&["--save-logits", s(&logits)]);
    fails(&o, &[s(&logits), "already exists"]);
    std::fs::write(&logits, "old").unwrap();
    ok(&eval(&["--save-logits", s(&logits), "--force"]));
    assert_ne!(std::fs::read(&logits).unwrap(), b"old");
}

#[test]
fn data_inspect_and_split_refuse_existing_files() {
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("i.json");
    std::fs::write(&json, "x").unwrap();
    // Refused before the dataset is read (the data directory does not even exist).
    let o = decal(&[
        "data",
        "inspect",
        "--dataset",
        "mnist",
        "--data-dir",
        s(&d.path().join("none")),
        "--json",
        s(&json),
    ]);
    fails(&o, &[s(&json), "already exists", "--force"]);
    let o = decal(&[
        "data",
        "split",
        "--dataset",
        "mnist",
        "--data-dir",
        s(&d.path().join("none")),
        "--out",
        s(&json),
    ]);
    fails(&o, &[s(&json), "already exists", "--force"]);

    let Some(data) = datasets() else { return };
    let o = decal(&[
        "data",
        "inspect",
        "--dataset",
        "mnist",
        "--split",
        "test",
        "--data-dir",
        data.join("mnist").to_str().unwrap(),
        "--json",
        s(&json),
        "--force",
    ]);
    ok(&o);
    assert!(std::fs::read_to_string(&json)
        .unwrap()
        .contains("\"splits\""));
}

#[test]
fn import_out_is_refused_replaced_and_left_absent_on_failure() {
    let d = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../decal-models/tests/fixtures/cnn_lightning.ckpt");
    let out = d.path().join("p/q/ckpt");
    let import = |from: &Path, force: bool| {
        let mut a = vec![
            "import",
            "--from",
            s(from),
            "--arch",
            "cnn",
            "--num-classes",
            "10",
            "--out",
            s(&out),
        ];
        if force {
            a.push("--force");
        }
        decal(&a)
    };
    // A source that cannot be imported: no output directory, no parents, no staging sibling.
    let bad = d.path().join("bad.ckpt");
    std::fs::write(&bad, b"not a checkpoint").unwrap();
    let o = import(&bad, false);
    assert!(!o.status.success());
    assert_eq!(tree(d.path()), vec!["bad.ckpt"], "{}", stderr(&o));

    ok(&import(&fixture, false));
    fails(&import(&fixture, false), &[s(&out), "not empty", "--force"]);
    std::fs::write(out.join("stale"), "x").unwrap();
    ok(&import(&fixture, true));
    assert!(!out.join("stale").exists());
    assert!(out.join("config.json").is_file());
}

#[test]
fn corrupt_grids_are_refused_without_force() {
    let Some(data) = datasets() else { return };
    let d = tempfile::tempdir().unwrap();
    let grid = d.path().join("grid");
    let cifar = data.join("cifar10-jpeg");
    let run = |force: bool| {
        let mut a = vec![
            "data",
            "corrupt",
            "--data-dir",
            s(&cifar),
            "--corruptions",
            "gaussian_noise",
            "--severities",
            "1",
            "--limit",
            "1",
            "--grid",
            s(&grid),
        ];
        if force {
            a.push("--force");
        }
        decal(&a)
    };
    ok(&run(false));
    let png = grid.join("gaussian_noise.png");
    assert!(png.is_file());
    fails(&run(false), &[s(&png), "already exists", "--force"]);
    ok(&run(true));
}

#[test]
fn calibrator_json_is_validated_like_user_input() {
    let d = tempfile::tempdir().unwrap();
    let (z, y) = predictions(d.path());
    let out = d.path().join("cal");
    ok(&decal(&[
        "calibrate",
        "--method",
        "isotonic",
        "--val-logits",
        s(&z),
        "--val-labels",
        s(&y),
        "--test-logits",
        s(&z),
        "--test-labels",
        s(&y),
        "--out",
        s(&out),
    ]));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("calibrator.json")).unwrap())
            .unwrap();
    let apply = |value: &serde_json::Value| {
        let p = d.path().join("edited.json");
        std::fs::write(&p, serde_json::to_string(value).unwrap()).unwrap();
        let o = decal(&[
            "calibrate",
            "--apply",
            s(&p),
            "--test-logits",
            s(&z),
            "--test-labels",
            s(&y),
        ]);
        (o, p)
    };
    let (o, _) = apply(&saved);
    ok(&o);

    let mut v = saved.clone();
    v["calibrator"]["maps"][1]["x"] = serde_json::json!([0.5, 0.2]);
    v["calibrator"]["maps"][1]["y"] = serde_json::json!([0.0, 1.0]);
    let (o, p) = apply(&v);
    fails(
        &o,
        &[s(&p), "calibrator.maps[1].x[1]", "strictly increasing"],
    );

    let mut v = saved.clone();
    v["calibrator"]["maps"][0]["y"] = serde_json::json!([0.9, 0.1]);
    v["calibrator"]["maps"][0]["x"] = serde_json::json!([0.1, 0.2]);
    let (o, p) = apply(&v);
    fails(&o, &[s(&p), "calibrator.maps[0].y[1]", "non-decreasing"]);

    let temp = |t: serde_json::Value, k: usize| {
        serde_json::json!({"calibrator": {"method": "temperature", "temperature": t, "num_classes": k,
            "fit_method": "exact-newton", "iterations": 1, "function_evals": 1, "converged": true,
            "nll_before": 1.0, "nll_after": 1.0, "stop_reason": "x"}, "num_classes": k})
    };
    for t in [0.0, -2.0] {
        let (o, p) = apply(&temp(serde_json::json!(t), 3));
        fails(
            &o,
            &[
                s(&p),
                "calibrator.temperature",
                "not a positive finite number",
            ],
        );
    }
    // JSON has no infinity: an overflowing number is refused by the parser, naming the file.
    let p = d.path().join("inf.json");
    let text = serde_json::to_string(&temp(serde_json::json!(1.5), 3))
        .unwrap()
        .replace("1.5", "1e400");
    std::fs::write(&p, text).unwrap();
    let o = decal(&[
        "calibrate",
        "--apply",
        s(&p),
        "--test-logits",
        s(&z),
        "--test-labels",
        s(&y),
    ]);
    fails(&o, &[s(&p)]);
    let (o, p) = apply(&temp(serde_json::json!(1.5), 4));
    fails(
        &o,
        &[s(&p), "calibrator.num_classes", "4 classes", "have 3"],
    );

    let hist = serde_json::json!({"calibrator": {"method": "histogram", "num_bins": 2, "num_classes": 3,
        "values": [[0.1, 0.9], [0.2, 0.8], [0.3]], "counts": [[1, 1], [1, 1], [1, 1]]}});
    let (o, p) = apply(&hist);
    fails(
        &o,
        &[s(&p), "calibrator.values[2]", "1 bins for num_bins = 2"],
    );
}

/// Outputs named relative to the working directory (`--json m.json`, the common case) are written; they
/// were once refused as "written without being claimed" because the staged name came back as `./m.json`.
#[test]
fn relative_output_names_are_written() {
    let d = tempfile::tempdir().unwrap();
    let (z, y) = predictions(d.path());
    let o = Command::new(env!("CARGO_BIN_EXE_decal"))
        .current_dir(d.path())
        .args(["metrics", "--logits", "z.npy", "--labels", "y.npy"])
        .args(["--json", "m.json", "--reliability", "rel"])
        .output()
        .expect("decal binary runs");
    ok(&o);
    assert!(std::fs::read_to_string(d.path().join("m.json"))
        .unwrap()
        .contains("\"ece\""));
    assert!(d.path().join("rel.svg").exists());
    let _ = (z, y);
}
