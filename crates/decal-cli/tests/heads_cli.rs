//! End-to-end tests of `decal heads` through the real binary, on synthetic features: the table, report,
//! `--save-probs` and `--json`; bad input is one error naming the argument and file with nothing written;
//! and the exported heads reproduce decal's test probabilities inside PyTorch.
//!
//! The PyTorch checks run `python` from PATH with `torch` importable: the setup's venv
//! (`scripts/env.sh` puts `~/.cache/decal/torch-<version>/bin` first on PATH). This is the one test of the
//! suite that needs Python (issue #12 asks for it); it fails with a message saying so when there is none.

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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A tiny xorshift generator with Box–Muller normals (the test's own data, reproducible).
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.uniform()).cos()
    }
}

const F: usize = 8;
const K: usize = 3;

/// Overlapping Gaussian blobs (so that calibration is not trivial), and the "model's" logits: a fixed,
/// deliberately over-confident linear map of the features.
fn blobs(n: usize, seed: u64, shift: f64) -> (Vec<f32>, Vec<i64>, Vec<f32>) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut logits = Vec::new();
    for i in 0..n {
        let c = i % K;
        let row: Vec<f32> = (0..F)
            .map(|d| ((if d % K == c { 1.2 } else { 0.0 }) + shift + rng.normal()) as f32)
            .collect();
        for k in 0..K {
            let z: f32 = row
                .iter()
                .enumerate()
                .filter(|(d, _)| d % K == k)
                .map(|(_, v)| 3.0 * v)
                .sum();
            logits.push(z);
        }
        x.extend(row);
        y.push(c as i64);
    }
    (x, y, logits)
}

struct Data {
    dir: tempfile::TempDir,
}

impl Data {
    fn new() -> Data {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, n, seed, shift) in [
            ("train", 600, 1, 0.0),
            ("val", 300, 2, 0.0),
            ("test", 300, 3, 0.0),
            ("ood", 200, 4, 2.5),
        ] {
            let (x, y, z) = blobs(n, seed, shift);
            let w = |file: &str, a: NpyArray| npy::write(&d.join(file), &a).unwrap();
            w(
                &format!("{name}_x.npy"),
                NpyArray::from_f32(vec![n, F], x.clone()),
            );
            w(&format!("{name}_y.npy"), NpyArray::from_i64(vec![n], y));
            w(
                &format!("{name}_logits.npy"),
                NpyArray::from_f32(vec![n, K], z),
            );
            if name == "train" {
                // The training features also as float16 safetensors (member `features`), next to another tensor.
                let half: Vec<u16> = x.iter().map(|&v| f32_to_f16(v)).collect();
                write_safetensors_f16(&d.join("train.safetensors"), "features", &[n, F], &half);
            }
        }
        Data { dir }
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn base_args(&self) -> Vec<String> {
        let p = |n: &str| self.p(n).to_str().unwrap().to_string();
        [
            (
                "--train-features",
                format!("{}:features", p("train.safetensors")),
            ),
            ("--train-labels", p("train_y.npy")),
            ("--val-features", p("val_x.npy")),
            ("--val-labels", p("val_y.npy")),
            ("--test-features", p("test_x.npy")),
            ("--test-labels", p("test_y.npy")),
            ("--test-logits", p("test_logits.npy")),
            ("--val-logits", p("val_logits.npy")),
            ("--ood-features", format!("shifted={}", p("ood_x.npy"))),
            ("--ood-logits", format!("shifted={}", p("ood_logits.npy"))),
        ]
        .into_iter()
        .flat_map(|(a, b)| [a.to_string(), b])
        .collect()
    }
}

/// Round to nearest even float16 (finite, normal-range values only: the test's data).
fn f32_to_f16(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mant = bits & 0x7f_ffff;
    if v == 0.0 || exp <= 0 {
        return sign;
    }
    let mut h = ((exp as u32) << 10) | (mant >> 13);
    let rest = mant & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1;
    }
    sign | h as u16
}

fn write_safetensors_f16(path: &Path, name: &str, shape: &[usize], values: &[u16]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = serde_json::json!({
        name: {"dtype": "F16", "shape": shape, "data_offsets": [0, bytes.len()]},
        "other": {"dtype": "F32", "shape": [1], "data_offsets": [bytes.len(), bytes.len() + 4]},
    })
    .to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(&bytes);
    out.extend(1.0f32.to_le_bytes());
    std::fs::write(path, out).unwrap();
}

fn read_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let a = npy::read(path).unwrap();
    match a.data {
        NpyData::F32(v) => (a.shape, v),
        other => panic!("{}: {:?}", path.display(), other.dtype()),
    }
}

/// Runs `decal heads` with the common arguments plus `extra`; panics with stderr on failure.
fn heads(data: &Data, extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec!["heads".into()];
    args.extend(data.base_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    decal(&refs)
}

/// Runs `script` with the setup's python (torch importable) and returns its JSON output.
fn python(script: &str, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("check.py");
    std::fs::write(&file, script).unwrap();
    let out = dir.path().join("out.json");
    let o = Command::new("python")
        .arg("-W")
        .arg("ignore")
        .arg(&file)
        .arg(&out)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs `python` with torch on PATH (source scripts/env.sh): {e}")
        });
    assert!(
        o.status.success(),
        "python failed (this test needs the setup's torch: source scripts/env.sh): {}",
        stderr(&o)
    );
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

/// Loads every seed's export with `model.py` and writes, per seed and rule, its probabilities on the test
/// features: `forward` + softmax (untempered), `predict_proba` with the fitted temperature and, for V-TST,
/// 8000 samples.
const CHECK_PY: &str = r#"
import ast, json, struct, sys, torch
out, head_dir, features, seeds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
sys.path.insert(0, head_dir)
from model import load

def read_npy(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<H", data[8:10])
    header = ast.literal_eval(data[10:10 + n].decode("latin1"))
    assert header["descr"] == "<f4" and not header["fortran_order"], header
    return torch.frombuffer(bytearray(data[10 + n:]), dtype=torch.float32).reshape(header["shape"])

x = read_npy(features)
res = {}
for s in seeds:
    head = load(f"{head_dir}/seed-{s}/model.safetensors")
    r = {"kind": head.kind, "temperatures": head.temperatures,
         "plain": torch.softmax(head(x), -1).tolist(),
         "calibrated": head.predict_proba(x, num_samples=0).tolist()}
    if head.kind == "vtst":
        r["sampled"] = head.predict_proba(x, num_samples=8000, seed=int(s), temperature=1.0).tolist()
        assert not torch.allclose(head.predict_proba(x, num_samples=3, seed=1), head.predict_proba(x, num_samples=3, seed=2))
    res[s] = r
json.dump(res, open(out, "w"))
"#;

fn max_abs_diff(a: &[f32], b: &Value) -> f64 {
    let flat: Vec<f64> = b
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(flat.len(), a.len());
    a.iter()
        .zip(&flat)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn tst_heads_train_evaluate_export_and_reproduce_in_pytorch() {
    let data = Data::new();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("run");
    let probs = work.path().join("probs.npy");
    let json = work.path().join("summary.json");
    let o = heads(
        &data,
        &[
            "--head",
            "tst",
            "--seeds",
            "0,1",
            "--epochs",
            "6",
            "--latent-dim",
            "16",
            "--lr",
            "3e-3",
            "--batch-size",
            "64",
            "--bootstrap",
            "20",
            "--out",
            s(&out),
            "--save-probs",
            s(&probs),
            "--json",
            s(&json),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    for row in ["| Baseline", "| TS |", "| TST", "| TS + TST"] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
    assert!(out.join("report/index.html").exists());
    assert!(!std::fs::read_dir(work.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("staging")));
    // Records: both profiles, OOD on the named set, bootstrap intervals, n = 2 seeds per head row.
    let records = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    for needle in [
        "\"ece_paper\"",
        "\"dataset\":\"shifted\"",
        "\"ece_ci_lower\"",
        "\"auroc\"",
    ] {
        assert!(records.contains(needle), "{needle}");
    }
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(summary["save_probs"]["row"], "TS + TST");
    let (shape, saved) = read_f32(&probs);
    assert_eq!(shape, vec![2, 300, K]);
    // PyTorch reproduces decal's test probabilities of both seeds, untempered and temperature-scaled.
    let got = python(
        CHECK_PY,
        &[s(&out.join("head")), s(&data.p("test_x.npy")), "0,1"],
    );
    for seed in ["0", "1"] {
        let r = &got[seed];
        assert_eq!(r["kind"], "tst");
        let t = r["temperatures"]["logits"]
            .as_f64()
            .expect("a fitted temperature");
        assert!(t > 0.0 && t != 1.0);
        let (_, plain) = read_f32(&out.join(format!("predictions/tst-seed{seed}/test_probs.npy")));
        let (_, cal) = read_f32(&out.join(format!("predictions/ts-tst-seed{seed}/test_probs.npy")));
        let d1 = max_abs_diff(&plain, &r["plain"]);
        let d2 = max_abs_diff(&cal, &r["calibrated"]);
        assert!(d1 < 2e-6 && d2 < 2e-6, "seed {seed}: {d1} {d2}");
        let n = 300 * K;
        let offset = if seed == "0" { 0 } else { n };
        assert_eq!(&saved[offset..offset + n], &cal[..]);
    }
    // The same command again is refused (no silent overwrite) before any work.
    let again = heads(&data, &["--head", "tst", "--seeds", "0", "--out", s(&out)]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn vtst_export_matches_the_mean_latent_exactly_and_samples_in_distribution() {
    let data = Data::new();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("run");
    let o = heads(
        &data,
        &[
            "--head",
            "vtst",
            "--seeds",
            "3",
            "--epochs",
            "4",
            "--latent-dim",
            "8",
            "--lr",
            "3e-3",
            "--batch-size",
            "64",
            "--val-samples",
            "4",
            "--eval-samples",
            "0,2000",
            "--bootstrap",
            "0",
            "--out",
            s(&out),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    for row in [
        "| V-TST mean",
        "| V-TST m=2000",
        "| TS + V-TST mean",
        "| TS + V-TST m=2000",
    ] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
    let got = python(
        CHECK_PY,
        &[s(&out.join("head")), s(&data.p("test_x.npy")), "3"],
    );
    let r = &got["3"];
    assert_eq!(r["kind"], "vtst");
    assert!(
        r["temperatures"]["m=2000"].as_f64().is_some()
            && r["temperatures"]["mean"].as_f64().is_some()
    );
    // The mean latent: exact to float tolerance, untempered and with the fitted temperature.
    let (_, mean) = read_f32(&out.join("predictions/v-tst-mean-seed3/test_probs.npy"));
    let (_, mean_ts) = read_f32(&out.join("predictions/ts-v-tst-mean-seed3/test_probs.npy"));
    let d1 = max_abs_diff(&mean, &r["plain"]);
    let d2 = max_abs_diff(&mean_ts, &r["calibrated"]);
    assert!(d1 < 2e-6 && d2 < 2e-6, "{d1} {d2}");
    // Sampling: PyTorch's 8000-sample predictive (its own ε) agrees with decal's 2000-sample one within
    // Monte-Carlo error, and both differ from the mean-latent prediction.
    let (_, sampled) = read_f32(&out.join("predictions/v-tst-m-2000-seed3/test_probs.npy"));
    let py: Vec<f64> = r["sampled"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    let mean_abs = |a: &[f32], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - y).abs())
            .sum::<f64>()
            / a.len() as f64
    };
    let to_sampled = mean_abs(&sampled, &py);
    let to_mean = mean_abs(&mean, &py);
    assert!(
        to_sampled < 0.01,
        "decal m=2000 vs PyTorch m=8000: mean |Δp| {to_sampled}"
    );
    assert!(
        to_mean > 2.0 * to_sampled,
        "sampling is indistinguishable from the mean latent: {to_mean} vs {to_sampled}"
    );
}

#[test]
fn bad_inputs_are_one_error_naming_the_file_and_nothing_is_written() {
    let data = Data::new();
    let d = data.dir.path();
    npy::write(
        &d.join("short_y.npy"),
        &NpyArray::from_i64(vec![10], vec![0; 10]),
    )
    .unwrap();
    npy::write(
        &d.join("wide.npy"),
        &NpyArray::from_f32(vec![300, F + 1], vec![0.0; 300 * (F + 1)]),
    )
    .unwrap();
    let mut nan = vec![0.5f32; 300 * F];
    nan[17] = f32::INFINITY;
    npy::write(&d.join("inf.npy"), &NpyArray::from_f32(vec![300, F], nan)).unwrap();
    npy::write(
        &d.join("bad_y.npy"),
        &NpyArray::from_i64(
            vec![300],
            (0..300).map(|i| if i == 42 { 7 } else { 0 }).collect(),
        ),
    )
    .unwrap();
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "--test-labels",
            "short_y.npy",
            &["test_labels", "short_y.npy", "10 labels", "300 rows"],
        ),
        (
            "--test-features",
            "wide.npy",
            &["test features", "wide.npy", "9 features per row"],
        ),
        (
            "--val-features",
            "inf.npy",
            &["val features", "inf.npy", "row 2, column 1 is inf"],
        ),
        (
            "--test-labels",
            "bad_y.npy",
            &[
                "test_labels",
                "bad_y.npy",
                "label 42 is 7",
                "outside [0, 3)",
            ],
        ),
    ];
    for (flag, file, needles) in cases {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("run");
        let json = work.path().join("s.json");
        let mut args: Vec<String> = vec!["heads".into()];
        let base = data.base_args();
        let mut i = 0;
        while i < base.len() {
            args.push(base[i].clone());
            args.push(if base[i] == flag {
                s(&d.join(file)).to_string()
            } else {
                base[i + 1].clone()
            });
            i += 2;
        }
        args.extend(
            [
                "--head",
                "tst",
                "--epochs",
                "1",
                "--out",
                s(&out),
                "--json",
                s(&json),
            ]
            .map(String::from),
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = decal(&refs);
        let err = stderr(&o);
        assert!(!o.status.success(), "{flag} {file}: expected failure");
        assert!(!err.contains("panicked"), "{err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with("error: "), "{err}");
        for n in needles {
            assert!(last.contains(n), "{flag} {file}: error lacks {n:?}: {err}");
        }
        let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
        assert!(
            left.is_empty(),
            "{flag} {file}: something was written: {left:?}"
        );
    }
}

/// `decal run` takes the same features as a backbone (`[backbone] features`), with augmented training
/// views (a stack `[A, N, F]`); configs that need images are refused with one error.
#[test]
fn decal_run_takes_features_as_a_backbone_with_train_views() {
    let data = Data::new();
    let d = data.dir.path();
    let (x, _, _) = blobs(600, 1, 0.0);
    let mut rng = Rng(99);
    let mut views = x.clone();
    views.extend(x.iter().map(|v| v + 0.2 * rng.normal() as f32));
    npy::write(
        &d.join("views.npy"),
        &NpyArray::from_f32(vec![2, 600, F], views),
    )
    .unwrap();
    npy::write(
        &d.join("views_bad.npy"),
        &NpyArray::from_f32(vec![2, 599, F], vec![0.0; 2 * 599 * F]),
    )
    .unwrap();
    let config = |views: &str, extra: &str| {
        format!(
            "name = \"feat\"\nseeds = [0]\ntemperature_scaling = true\n\n[backbone.features]\n\
             train = \"{d}/train_x.npy\"\ntrain_labels = \"{d}/train_y.npy\"\nval = \"{d}/val_x.npy\"\n\
             val_labels = \"{d}/val_y.npy\"\ntest = \"{d}/test_x.npy\"\ntest_labels = \"{d}/test_y.npy\"\n\
             test_logits = \"{d}/test_logits.npy\"\nval_logits = \"{d}/val_logits.npy\"\n\
             train_views = \"{d}/{views}\"\nood = {{ shifted = \"{d}/ood_x.npy\" }}\n\n\
             [[heads]]\nname = \"TST\"\nkind = \"tst\"\nlatent_dim = 8\nepochs = 2\nbatch_size = 64\n\n\
             [eval]\nbootstrap = 0\n{extra}",
            d = d.display()
        )
    };
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("feat.toml");
    std::fs::write(&cfg, config("views.npy", "")).unwrap();
    let out = work.path().join("run");
    let o = decal(&["run", s(&cfg), "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    for row in ["| Baseline", "| TS |", "| TST", "| TS (seed LBFGS)"] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["features"]["train_views"]["views"], 2);
    assert!(
        stderr(&o).contains("2 augmented training views"),
        "{}",
        stderr(&o)
    );
    // Bad views and image-only sections: one error each, naming the problem.
    let bad: [(&str, &str, &[&str]); 2] = [
        (
            "views_bad.npy",
            "",
            &[
                "train_views",
                "views_bad.npy",
                "[2, 599, 8]",
                "expected [A, 600, 8]",
            ],
        ),
        (
            "views.npy",
            "\n[shift]\ndir = \"x\"\n",
            &["[shift]", "needs a network"],
        ),
    ];
    for (views, extra, needles) in bad {
        std::fs::write(&cfg, config(views, extra)).unwrap();
        let o = decal(&["run", s(&cfg), "--out", s(&work.path().join("bad"))]);
        let err = stderr(&o);
        assert!(!o.status.success() && !err.contains("panicked"), "{err}");
        let last = err.lines().last().unwrap_or_default();
        for n in needles {
            assert!(last.contains(n), "error lacks {n:?}: {err}");
        }
    }
}

/// `--plan --json` units: name → (kind, status).
fn plan_units(cfg: &Path, out: &Path) -> std::collections::BTreeMap<String, (String, String)> {
    let o = decal(&["run", s(cfg), "--out", s(out), "--plan", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_string(),
                (
                    u["kind"].as_str().unwrap().to_string(),
                    u["status"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// An experiment on feature files is a plan of units like one on images (issue #11): `--plan --json`
/// shows every unit before anything runs (`features-file` units per split, OOD set and given logits, the
/// given views, heads, fits, scores, report); after the run all are fresh; replacing one OOD file makes
/// dirty only its units and what depends on them; `--jobs 2` gives the serial run's records byte for byte;
/// and a file replaced after planning is refused by the unit that reads it, naming the file.
#[test]
fn feature_file_experiments_are_planned_as_units() {
    let data = Data::new();
    let d = data.dir.path();
    let (x, _, _) = blobs(600, 1, 0.0);
    let mut views = x.clone();
    views.extend(x.iter().map(|v| v + 0.1));
    npy::write(
        &d.join("views.npy"),
        &NpyArray::from_f32(vec![2, 600, F], views),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("feat.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"feat\"\nseeds = [0, 1]\ntemperature_scaling = true\n\n[backbone.features]\n\
             train = \"{d}/train_x.npy\"\ntrain_labels = \"{d}/train_y.npy\"\nval = \"{d}/val_x.npy\"\n\
             val_labels = \"{d}/val_y.npy\"\ntest = \"{d}/test_x.npy\"\ntest_labels = \"{d}/test_y.npy\"\n\
             test_logits = \"{d}/test_logits.npy\"\nval_logits = \"{d}/val_logits.npy\"\n\
             train_views = \"{d}/views.npy\"\nood = {{ shifted = \"{d}/ood_x.npy\" }}\n\n\
             [[heads]]\nname = \"TST\"\nkind = \"tst\"\nlatent_dim = 8\nepochs = 2\nbatch_size = 64\n\n\
             [eval]\nbootstrap = 0\n",
            d = d.display()
        ),
    )
    .unwrap();
    let out = work.path().join("run");
    let before = plan_units(&cfg, &out);
    for (name, kind) in [
        ("features/train", "features-file"),
        ("features/ood-shifted", "features-file"),
        ("logits/test", "features-file"),
        ("logits/val", "features-file"),
        ("views", "views-file"),
        ("head/tst/seed-1", "head"),
        ("temperature/ts", "temperature"),
        ("eval/baseline", "eval"),
        ("ood/tst/seed-0/shifted", "ood"),
        ("report", "report"),
    ] {
        let (k, status) = before
            .get(name)
            .unwrap_or_else(|| panic!("{name} not in {before:?}"));
        assert_eq!((k.as_str(), status.as_str()), (kind, "dirty"), "{name}");
    }
    // No logits of the OOD set were given: the baseline rows do not score it.
    assert!(!before.contains_key("ood/baseline/shifted"), "{before:?}");
    assert!(!out.exists(), "--plan wrote something");

    let o = decal(&["run", s(&cfg), "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    // In one process the two seeds of the head train as one batched model.
    assert!(
        stderr(&o).contains("trained together with seed(s) 1"),
        "{}",
        stderr(&o)
    );
    assert!(plan_units(&cfg, &out).values().all(|(_, st)| st == "fresh"));
    let serial = std::fs::read(out.join("metrics.jsonl")).unwrap();
    let out2 = work.path().join("run-jobs");
    let o = decal(&["run", s(&cfg), "--out", s(&out2), "--jobs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A `decal unit run` process trains only its own seed (never its siblings' work again).
    for log in std::fs::read_dir(out2.join("logs")).unwrap() {
        let text = std::fs::read_to_string(log.unwrap().path()).unwrap();
        assert!(!text.contains("trained together"), "{text}");
    }
    assert!(
        serial == std::fs::read(out2.join("metrics.jsonl")).unwrap(),
        "--jobs 2 differs from the serial run"
    );

    // Another OOD file: its features unit, the OOD scores of every row, and the report.
    let (ox, _, _) = blobs(200, 5, 3.0);
    npy::write(&d.join("ood_x.npy"), &NpyArray::from_f32(vec![200, F], ox)).unwrap();
    let after = plan_units(&cfg, &out);
    let dirty: Vec<&String> = after
        .iter()
        .filter(|(_, (_, st))| st == "dirty")
        .map(|(n, _)| n)
        .collect();
    assert!(!dirty.is_empty());
    for name in &dirty {
        assert!(
            name.as_str() == "features/ood-shifted"
                || name.starts_with("ood/")
                || name.as_str() == "report",
            "{name} should stay fresh (dirty: {dirty:?})"
        );
    }
    for fresh in [
        "features/train",
        "views",
        "head/tst/seed-0",
        "eval/tst/seed-0",
        "eval/baseline",
    ] {
        assert_eq!(after[fresh].1, "fresh", "{fresh}");
    }
    let o = decal(&["run", s(&cfg), "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A file replaced after planning: the unit of the stored plan (`decal unit run`, as `--jobs` and
    // Slurm start it) refuses it, naming the file.
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    let test_unit = plan["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "features/test")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut tx, _, _) = blobs(300, 3, 0.0);
    tx[0] += 1.0;
    npy::write(&d.join("test_x.npy"), &NpyArray::from_f32(vec![300, F], tx)).unwrap();
    let o = decal(&["unit", "run", "--store", s(&out), &test_unit]);
    let err = stderr(&o);
    assert!(!o.status.success() && !err.contains("panicked"), "{err}");
    assert!(
        err.contains("test_x.npy") && err.contains("changed after the experiment was planned"),
        "{err}"
    );
}

/// `calibrators = ["vector", "histogram", "isotonic"]` adds the rows `VS`, `Histogram binning` and `Isotonic`
/// (a `calibrator` unit each, fitted where temperature scaling is), and each row's test metrics are those
/// `decal calibrate` gives for the same validation and test logits (within 1e-12); unknown names are config
/// errors naming the key.
#[test]
fn post_hoc_calibrator_rows_equal_decal_calibrate() {
    let data = Data::new();
    let d = data.dir.path();
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("cal.toml");
    let config = |calibrators: &str| {
        format!(
            "name = \"cal\"\nseeds = [0]\ntemperature_scaling = true\ncalibrators = [{calibrators}]\n\n\
             [backbone.features]\ntrain = \"{d}/train_x.npy\"\ntrain_labels = \"{d}/train_y.npy\"\n\
             val = \"{d}/val_x.npy\"\nval_labels = \"{d}/val_y.npy\"\ntest = \"{d}/test_x.npy\"\n\
             test_labels = \"{d}/test_y.npy\"\ntest_logits = \"{d}/test_logits.npy\"\n\
             val_logits = \"{d}/val_logits.npy\"\nood = {{ shifted = \"{d}/ood_x.npy\" }}\n\
             ood_logits = {{ shifted = \"{d}/ood_logits.npy\" }}\n\n[eval]\nbootstrap = 0\n",
            d = d.display()
        )
    };
    std::fs::write(&cfg, config("\"vector\", \"histogram\", \"isotonic\"")).unwrap();
    let units = plan_units(&cfg, &work.path().join("run"));
    for name in [
        "calibrator/vs",
        "calibrator/histogram-binning",
        "calibrator/isotonic",
        "eval/isotonic",
    ] {
        assert!(units.contains_key(name), "{name} not in {units:?}");
    }
    let out = work.path().join("run");
    let o = decal(&["run", s(&cfg), "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    for row in ["| VS ", "| Histogram binning ", "| Isotonic "] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["calibration"]["VS"]["method"], "vector");
    assert_eq!(results["calibration"]["Isotonic"]["method"], "isotonic");
    let records: Vec<Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Non-finite numbers are written as "inf" / "NaN" strings.
    let num = |v: &Value| {
        v.as_f64()
            .unwrap_or_else(|| v.as_str().unwrap().parse().unwrap())
    };
    let value = |method: &str, metric: &str| {
        num(&records
            .iter()
            .find(|r| r["method"] == method && r["split"] == "test" && r["metric"] == metric)
            .unwrap_or_else(|| panic!("no {method} {metric}"))["value"])
    };
    for (method, row) in [
        ("vector", "VS"),
        ("histogram", "Histogram binning"),
        ("isotonic", "Isotonic"),
    ] {
        let cal = work.path().join(format!("cal-{method}"));
        let o = decal(&[
            "calibrate",
            "--method",
            method,
            "--val-logits",
            s(&d.join("val_logits.npy")),
            "--val-labels",
            s(&d.join("val_y.npy")),
            "--test-logits",
            s(&d.join("test_logits.npy")),
            "--test-labels",
            s(&d.join("test_y.npy")),
            "--out",
            s(&cal),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let m: Value =
            serde_json::from_str(&std::fs::read_to_string(cal.join("metrics.json")).unwrap())
                .unwrap();
        for metric in ["accuracy", "ece", "brier"] {
            let want = num(&m["after"][metric]);
            let got = value(row, metric);
            assert!(
                (got - want).abs() <= 1e-12,
                "{row} {metric}: decal run {got}, decal calibrate {want}"
            );
        }
        let nll = num(&m["after"]["alternatives"]["nll_exact"]);
        let got = value(row, "nll");
        assert!(
            (got - nll).abs() <= 1e-12 || (got.is_infinite() && nll.is_infinite()),
            "{row} nll: decal run {got}, decal calibrate {nll}"
        );
    }
    // Without the model's validation logits there is nothing to fit a calibrator on: a config error.
    let no_logits = config("\"vector\"").replace(
        &format!("val_logits = \"{}/val_logits.npy\"\n", d.display()),
        "",
    );
    std::fs::write(&cfg, no_logits.replace("temperature_scaling = true\n", "")).unwrap();
    let o = decal(&[
        "run",
        s(&cfg),
        "--out",
        s(&work.path().join("bad")),
        "--plan",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("features.val_logits"), "{}", stderr(&o));
    // Unknown names are config errors naming the key.
    std::fs::write(&cfg, config("\"platt\"")).unwrap();
    let o = decal(&[
        "run",
        s(&cfg),
        "--out",
        s(&work.path().join("bad")),
        "--plan",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("calibrators[0]") && err.contains("platt"),
        "{err}"
    );
}
