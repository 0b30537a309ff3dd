//! End-to-end tests of `decal metrics` and `decal calibrate` through the real binary: results equal the golden
//! references (decal-metrics/tests/golden, made by make_golden.py with torchmetrics/sklearn), every bad input
//! gives a one-line error naming the file and the problem with exit code ≠ 0 and no output file, and
//! `decal calibrate` writes a re-appliable calibrator, calibrated probabilities and before/after metrics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use decal_io::npy::{self, NpyArray, NpyData};
use serde_json::Value;

fn decal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_decal"))
        .args(args)
        .output()
        .expect("decal binary runs")
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../decal-metrics/tests/golden"
    ))
    .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed run: exit ≠ 0, a single `error:` line containing every needle, no panic.
fn assert_fails(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one-line error expected: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "error lacks {n:?}: {err}");
    }
}

#[test]
fn metrics_json_matches_the_references_under_the_paper_profile() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.json");
    let o = decal(&[
        "metrics",
        "--probs",
        s(&golden("k10_probs.npy")),
        "--labels",
        s(&golden("k10_labels.npy")),
        "--ood-probs",
        s(&golden("ood_probs.npy")),
        "--profile",
        "paper",
        "--json",
        s(&out),
        "--reliability",
        s(&dir.path().join("rel")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("profile paper")
            && stdout.contains("torchmetrics")
            && stdout.contains("np.interp"),
        "{stdout}"
    );
    let j = read_json(&out);
    let gt = read_json(&golden("golden_torch.json"));
    let gs = read_json(&golden("golden_sklearn.json"));
    let close =
        |a: &Value, b: &Value, tol: f64| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() <= tol;
    assert!(close(
        &j["accuracy"],
        &gt["calibration"]["k10"]["accuracy"],
        0.0
    ));
    assert!(close(
        &j["ece"],
        &gt["calibration"]["k10"]["tm_ece_10"],
        3e-6
    ));
    assert!(close(
        &j["mce"],
        &gt["calibration"]["k10"]["tm_mce_10"],
        3e-6
    ));
    assert!(close(&j["nll"], &gs["scores"]["k10"]["nll_sklearn"], 1e-12));
    assert!(close(&j["brier"], &gs["scores"]["k10"]["brier"], 1e-12));
    assert!(close(
        &j["brier_div_k"],
        &gs["scores"]["k10"]["brier_div_k"],
        1e-12
    ));
    assert!(close(&j["auroc"], &gs["ood_msp"]["auroc"], 1e-12));
    assert!(close(
        &j["fpr95"],
        &gs["ood_msp"]["fpr95_idpos_interp"],
        1e-12
    ));
    assert_eq!(j["definitions"]["profile"], "paper");
    assert_eq!(j["definitions"]["num_bins"], 10);
    assert_eq!(j["definitions"]["membership"], "torchmetrics");
    for ext in ["svg", "png", "csv"] {
        assert!(dir.path().join(format!("rel.{ext}")).exists(), "rel.{ext}");
    }
}

#[test]
fn metrics_from_npz_and_csv_and_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let p = npy::read(&golden("k100_probs.npy")).unwrap();
    let y = npy::read(&golden("k100_labels.npy")).unwrap();
    let npz = dir.path().join("preds.npz");
    decal_io::npz::write(
        &npz,
        &[("probs".into(), p.clone()), ("labels".into(), y.clone())],
        true,
    )
    .unwrap();
    let out_npz = dir.path().join("a.json");
    let o = decal(&[
        "metrics",
        "--probs",
        s(&npz),
        "--key",
        "probs",
        "--labels",
        s(&npz),
        "--labels-key",
        "labels",
        "--json",
        s(&out_npz),
        "--bootstrap",
        "50",
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = dir.path().join("p.csv");
    let ycsv = dir.path().join("y.csv");
    decal_io::csv::write(&csv, None, 100, &p.to_f64_vec()).unwrap();
    decal_io::csv::write(&ycsv, Some(&["label".to_string()]), 1, &y.to_f64_vec()).unwrap();
    let out_csv = dir.path().join("b.json");
    let o = decal(&[
        "metrics",
        "--probs",
        s(&csv),
        "--labels",
        s(&ycsv),
        "--json",
        s(&out_csv),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (read_json(&out_npz), read_json(&out_csv));
    for key in ["accuracy", "ece", "mce", "nll", "brier", "brier_div_k"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    let ci = &a["bootstrap"]["ece"];
    assert!(
        ci["lower"].as_f64().unwrap() <= a["ece"].as_f64().unwrap() + 0.05
            && ci["upper"].as_f64().unwrap() >= ci["lower"].as_f64().unwrap()
    );
    // Same seed, same intervals.
    let out2 = dir.path().join("c.json");
    assert!(decal(&[
        "metrics",
        "--probs",
        s(&npz),
        "--key",
        "probs",
        "--labels",
        s(&npz),
        "--labels-key",
        "labels",
        "--json",
        s(&out2),
        "--bootstrap",
        "50",
        "--seed",
        "3"
    ])
    .status
    .success());
    assert_eq!(read_json(&out2)["bootstrap"], a["bootstrap"]);
}

#[test]
fn thread_count_does_not_change_results() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    for (t, out) in [("1", &a), ("3", &b)] {
        let o = decal(&[
            "metrics",
            "--logits",
            s(&golden("k10_logits.npy")),
            "--labels",
            s(&golden("k10_labels.npy")),
            "--threads",
            t,
            "--json",
            s(out),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (a, b) = (read_json(&a), read_json(&b));
    assert_eq!(a["accuracy"], b["accuracy"]);
    assert_eq!(
        a["reliability"]["bins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["count"].clone())
            .collect::<Vec<_>>(),
        b["reliability"]["bins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["count"].clone())
            .collect::<Vec<_>>()
    );
    for key in ["ece", "nll", "brier", "ece_em"] {
        assert!(
            (a[key].as_f64().unwrap() - b[key].as_f64().unwrap()).abs() < 1e-12,
            "{key}"
        );
    }
}

/// Writes an array and returns its path.
fn put(dir: &Path, name: &str, a: NpyArray) -> PathBuf {
    let p = dir.join(name);
    npy::write(&p, &a).unwrap();
    p
}

#[test]
fn bad_inputs_give_one_line_errors_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let logits = put(
        d,
        "logits.npy",
        NpyArray::from_f32(
            vec![4, 3],
            vec![1., 2., 3., 0., 0., 1., 2., 2., 2., 5., 1., 0.],
        ),
    );
    let labels = put(
        d,
        "labels.npy",
        NpyArray::from_i64(vec![4], vec![2, 2, 0, 0]),
    );
    let labels3 = put(d, "labels3.npy", NpyArray::from_i64(vec![3], vec![2, 2, 0]));
    let bad_label = put(
        d,
        "bad_label.npy",
        NpyArray {
            shape: vec![4],
            data: NpyData::U8(vec![2, 7, 0, 0]),
        },
    );
    let nan = put(
        d,
        "nan.npy",
        NpyArray::from_f64(
            vec![4, 3],
            vec![1., 2., 3., 0., 0., 1., 2., f64::NAN, 2., 5., 1., 0.],
        ),
    );
    let flat = put(d, "flat.npy", NpyArray::from_f32(vec![12], vec![0.0; 12]));
    let empty = put(d, "empty.npy", NpyArray::from_f32(vec![0, 3], vec![]));
    let probs_bad = put(
        d,
        "probs_bad.npy",
        NpyArray::from_f64(vec![2, 2], vec![0.5, 0.5, 0.7, 0.7]),
    );
    let labels2 = put(d, "labels2.npy", NpyArray::from_i64(vec![2], vec![0, 1]));
    let frac_labels = put(
        d,
        "frac.npy",
        NpyArray::from_f64(vec![4], vec![0.0, 1.5, 2.0, 0.0]),
    );
    let truncated = d.join("trunc.npy");
    let bytes = std::fs::read(&logits).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();
    let json = d.join("out.json");
    let j = s(&json);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--logits", s(&logits), "--labels", s(&labels3)],
            vec!["labels3.npy", "3 labels", "4 rows"],
        ),
        (
            vec!["--logits", s(&logits), "--labels", s(&bad_label)],
            vec!["bad_label.npy", "label 1 is 7", "[0, 3)"],
        ),
        (
            vec!["--logits", s(&nan), "--labels", s(&labels)],
            vec!["nan.npy", "row 2, column 1", "NaN"],
        ),
        (
            vec!["--logits", s(&flat), "--labels", s(&labels)],
            vec!["flat.npy", "2-D", "[12]"],
        ),
        (
            vec!["--logits", s(&empty), "--labels", s(&labels)],
            vec!["empty.npy", "empty"],
        ),
        (
            vec!["--logits", s(&truncated), "--labels", s(&labels)],
            vec!["trunc.npy", "truncated", "48"],
        ),
        (
            vec!["--probs", s(&probs_bad), "--labels", s(&labels2)],
            vec!["probs_bad.npy", "row 1", "sums to 1.4"],
        ),
        (
            vec!["--logits", s(&logits), "--labels", s(&frac_labels)],
            vec!["frac.npy", "element 1 is 1.5"],
        ),
        (
            vec!["--logits", "/nonexistent/z.npy", "--labels", s(&labels)],
            vec!["/nonexistent/z.npy"],
        ),
        (
            vec![
                "--logits",
                s(&logits),
                "--labels",
                s(&labels),
                "--ood-logits",
                s(&flat),
            ],
            vec!["flat.npy", "2-D"],
        ),
    ];
    for (mut args, needles) in cases {
        let mut full = vec!["metrics"];
        full.append(&mut args);
        full.extend(["--json", j]);
        let o = decal(&full);
        assert_fails(&o, &needles);
        assert!(!json.exists(), "no partial output after {full:?}");
    }
    // Sanity: the good pair works and then the JSON exists.
    let o = decal(&[
        "metrics",
        "--logits",
        s(&logits),
        "--labels",
        s(&labels),
        "--json",
        j,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(json.exists());
}

#[test]
fn calibrate_writes_a_reappliable_calibrator() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let z = npy::read(&golden("k10_logits.npy")).unwrap().to_f64_vec();
    let y = npy::read(&golden("k10_labels.npy"))
        .unwrap()
        .to_labels()
        .unwrap();
    let vz = put(
        d,
        "vz.npy",
        NpyArray::from_f64(vec![1500, 10], z[..15000].to_vec()),
    );
    let vy = put(
        d,
        "vy.npy",
        NpyArray::from_i64(vec![1500], y[..1500].to_vec()),
    );
    let tz = put(
        d,
        "tz.npy",
        NpyArray::from_f64(vec![1500, 10], z[15000..].to_vec()),
    );
    let ty = put(
        d,
        "ty.npy",
        NpyArray::from_i64(vec![1500], y[1500..].to_vec()),
    );
    let out = d.join("ts");
    let args = |m: &'static str, out: &Path| -> Vec<String> {
        [
            "calibrate",
            "--method",
            m,
            "--val-logits",
            s(&vz),
            "--val-labels",
            s(&vy),
            "--test-logits",
            s(&tz),
            "--test-labels",
            s(&ty),
            "--out",
            s(out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let run = |a: Vec<String>| {
        Command::new(env!("CARGO_BIN_EXE_decal"))
            .args(&a)
            .output()
            .unwrap()
    };
    let o = run(args("temperature", &out));
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("before") && stdout.contains("after") && stdout.contains("T = 9.3676"),
        "{stdout}"
    );
    for f in [
        "calibrator.json",
        "test_probs.npy",
        "metrics.json",
        "reliability.svg",
        "reliability.png",
        "reliability.csv",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    // The saved calibrator re-applies to the same probabilities that were written.
    let record = read_json(&out.join("calibrator.json"));
    let cal: decal_calib::Calibrator =
        serde_json::from_value(record["calibrator"].clone()).unwrap();
    let again = cal.apply(&z[15000..], 10).unwrap();
    let written = npy::read(&out.join("test_probs.npy")).unwrap();
    assert_eq!(written.shape, vec![1500, 10]);
    assert_eq!(written.to_f64_vec(), again);
    let gt = read_json(&golden("golden_torch.json"));
    let t = record["calibrator"]["temperature"].as_f64().unwrap();
    assert!((t - gt["temperature_exact"]["temperature"].as_f64().unwrap()).abs() < 1e-8);
    let metrics = read_json(&out.join("metrics.json"));
    assert!(metrics["after"]["nll"].as_f64().unwrap() < metrics["before"]["nll"].as_f64().unwrap());
    // A finished run is not overwritten without --force.
    let o = run(args("vector", &out));
    assert_fails(&o, &["already exists", "--force"]);
    let mut forced = args("isotonic", &out);
    forced.push("--force".into());
    assert!(run(forced).status.success());
    assert_eq!(
        read_json(&out.join("calibrator.json"))["calibrator"]["method"],
        "isotonic"
    );
    // The seed's LBFGS variant reports its T and stopping reason.
    let o = run(args("temperature-lbfgs", &d.join("lbfgs")));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("T = 1.8425"));
}

#[test]
fn calibrate_refuses_single_class_and_mismatched_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let z = put(
        d,
        "z.npy",
        NpyArray::from_f32(vec![3, 2], vec![1., 0., 2., 0., 0., 1.]),
    );
    let one = put(d, "one.npy", NpyArray::from_i64(vec![3], vec![1, 1, 1]));
    let ok = put(d, "ok.npy", NpyArray::from_i64(vec![3], vec![0, 0, 1]));
    let z3 = put(d, "z3.npy", NpyArray::from_f32(vec![3, 3], vec![0.0; 9]));
    let out = d.join("out");
    let o = decal(&[
        "calibrate",
        "--method",
        "temperature",
        "--val-logits",
        s(&z),
        "--val-labels",
        s(&one),
        "--test-logits",
        s(&z),
        "--test-labels",
        s(&ok),
        "--out",
        s(&out),
    ]);
    assert_fails(&o, &["z.npy", "all 3 labels are class 1"]);
    assert!(!out.exists());
    let o = decal(&[
        "calibrate",
        "--method",
        "isotonic",
        "--val-logits",
        s(&z),
        "--val-labels",
        s(&ok),
        "--test-logits",
        s(&z3),
        "--test-labels",
        s(&ok),
    ]);
    assert_fails(&o, &["z.npy", "z3.npy", "classes"]);
}

#[test]
fn fortran_order_logits_give_the_same_result_as_c_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Logits [3, 2] in C order, and the same matrix stored column-major (fortran_order: True).
    let c = [2.0f64, 0.0, 0.0, 1.0, 3.0, -1.0];
    let c_path = put(d, "c.npy", NpyArray::from_f64(vec![3, 2], c.to_vec()));
    let columns = vec![2.0f64, 0.0, 3.0, 0.0, 1.0, -1.0];
    let mut bytes = npy::to_bytes(&NpyArray::from_f64(vec![3, 2], columns)).unwrap();
    let text = String::from_utf8_lossy(&bytes[10..60]).into_owned();
    let pos = 10 + text.find("False").unwrap();
    bytes[pos..pos + 5].copy_from_slice(b"True ");
    let f_path = d.join("f.npy");
    std::fs::write(&f_path, &bytes).unwrap();
    assert_eq!(npy::read(&f_path).unwrap().to_f64_vec(), c.to_vec());
    let y = put(d, "y.npy", NpyArray::from_i64(vec![3], vec![0, 1, 1]));
    let (a, b) = (d.join("a.json"), d.join("b.json"));
    assert!(decal(&[
        "metrics",
        "--logits",
        s(&c_path),
        "--labels",
        s(&y),
        "--json",
        s(&a)
    ])
    .status
    .success());
    let o = decal(&[
        "metrics",
        "--logits",
        s(&f_path),
        "--labels",
        s(&y),
        "--json",
        s(&b),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_json(&a)["nll"], read_json(&b)["nll"]);
    assert_eq!(read_json(&a)["accuracy"], read_json(&b)["accuracy"]);
}

#[test]
fn calibrate_apply_reuses_a_saved_calibrator() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let z = npy::read(&golden("k10_logits.npy")).unwrap().to_f64_vec();
    let y = npy::read(&golden("k10_labels.npy"))
        .unwrap()
        .to_labels()
        .unwrap();
    let vz = put(
        d,
        "vz.npy",
        NpyArray::from_f64(vec![1500, 10], z[..15000].to_vec()),
    );
    let vy = put(
        d,
        "vy.npy",
        NpyArray::from_i64(vec![1500], y[..1500].to_vec()),
    );
    let tz = put(
        d,
        "tz.npy",
        NpyArray::from_f64(vec![1500, 10], z[15000..].to_vec()),
    );
    let ty = put(
        d,
        "ty.npy",
        NpyArray::from_i64(vec![1500], y[1500..].to_vec()),
    );
    let (fit, reuse) = (d.join("fit"), d.join("reuse"));
    let o = decal(&[
        "calibrate",
        "--method",
        "vector",
        "--val-logits",
        s(&vz),
        "--val-labels",
        s(&vy),
        "--test-logits",
        s(&tz),
        "--test-labels",
        s(&ty),
        "--out",
        s(&fit),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cal = fit.join("calibrator.json");
    let o = decal(&[
        "calibrate",
        "--apply",
        s(&cal),
        "--test-logits",
        s(&tz),
        "--test-labels",
        s(&ty),
        "--out",
        s(&reuse),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("loaded from"));
    assert_eq!(
        npy::read(&fit.join("test_probs.npy")).unwrap(),
        npy::read(&reuse.join("test_probs.npy")).unwrap()
    );
    assert_eq!(
        read_json(&fit.join("metrics.json"))["after"],
        read_json(&reuse.join("metrics.json"))["after"]
    );
    // --apply and --method are exclusive; a non-calibrator JSON is refused with its name.
    let o = decal(&[
        "calibrate",
        "--apply",
        s(&cal),
        "--method",
        "vector",
        "--test-logits",
        s(&tz),
        "--test-labels",
        s(&ty),
    ]);
    assert!(!o.status.success());
    let o = decal(&[
        "calibrate",
        "--apply",
        s(&fit.join("metrics.json")),
        "--test-logits",
        s(&tz),
        "--test-labels",
        s(&ty),
    ]);
    assert_fails(&o, &["metrics.json", "not a decal calibrator"]);
}

#[test]
fn many_small_chunks_give_the_one_chunk_result() {
    // 3000 rows in chunks of 7 rows (428 full chunks and a remainder), split over 2 threads, streamed from
    // .npy for both predictions and labels, OOD and bootstrap on: same numbers as one chunk on one thread.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    for (chunk, threads, out) in [("7", "2", &a), ("1000000", "1", &b)] {
        let o = decal(&[
            "metrics",
            "--logits",
            s(&golden("k10_logits.npy")),
            "--labels",
            s(&golden("k10_labels.npy")),
            "--ood-logits",
            s(&golden("ood_logits.npy")),
            "--bootstrap",
            "20",
            "--chunk-rows",
            chunk,
            "--threads",
            threads,
            "--json",
            s(out),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (a, b) = (read_json(&a), read_json(&b));
    assert_eq!(a["n"], 3000);
    assert_eq!(a["accuracy"], b["accuracy"]);
    assert_eq!(a["ood"], b["ood"]);
    assert_eq!(a["bootstrap"]["accuracy"], b["bootstrap"]["accuracy"]);
    for key in ["ece", "mce", "nll", "brier", "ece_em", "classwise_ece"] {
        assert!(
            (a[key].as_f64().unwrap() - b[key].as_f64().unwrap()).abs() < 1e-12,
            "{key}"
        );
    }
}
