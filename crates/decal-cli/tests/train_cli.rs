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
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets"
    ));
    if p.join("cifar10-jpeg/train").is_dir() {
        Some(p)
    } else {
        eprintln!(
            "skipping: {} not found (real CIFAR-10 JPEGs needed for train_cli tests)",
            p.display()
        );
        None
    }
}

/// Copies the first `per_class` training JPEGs of every class into `<dst>/train/<class>/`.
fn small_cifar(src: &Path, dst: &Path, per_class: usize) {
    let train = src.join("cifar10-jpeg/train");
    let mut classes: Vec<_> = std::fs::read_dir(&train)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    classes.sort();
    for class in classes {
        let mut files: Vec<_> = std::fs::read_dir(&class)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
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
        "train",
        "--model",
        "cnn",
        "--dataset",
        "cifar10",
        "--epochs",
        &epochs.to_string(),
        "--batch-size",
        "32",
        "--lr",
        "0.002",
        "--seed",
        "3",
        "--threads",
        "1",
        "--name",
        name,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--data-dir".into(),
        data.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ])
    .collect()
}

fn run_ok(args: &[String]) -> String {
    let out = decal().args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
        .map(|(k, v)| {
            (
                k,
                Vec::<f32>::try_from(&v.to_kind(tch::Kind::Float).view([-1])).unwrap(),
            )
        })
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
        let text = run_ok(&[
            "train".into(),
            "--resume".into(),
            out.join("killed").display().to_string(),
        ]);
        assert!(text.contains("resuming"), "{text}");
    }
    let a = tensors(&out.join("straight/last/model.safetensors"));
    let b = tensors(&out.join("killed/last/model.safetensors"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert_eq!(
        a, b,
        "resumed run's weights differ from the uninterrupted run's"
    );
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
    let err = run_err(&[
        "train".into(),
        "--resume".into(),
        run.clone(),
        "--lr".into(),
        "0.1".into(),
    ]);
    assert!(err.contains("--lr"), "{err}");
    let text = run_ok(&[
        "train".into(),
        "--resume".into(),
        run,
        "--epochs".into(),
        "2".into(),
    ]);
    assert!(text.contains("resuming"), "{text}");
    assert_eq!(
        std::fs::read_to_string(out.join("once/metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );

    // Unknown key in a config file.
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "epochs = 1\nlearnig_rate = 0.1\n").unwrap();
    let err = run_err(&[
        "train".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--print-config".into(),
    ]);
    assert!(
        err.contains("learnig_rate") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn eval_on_the_seed_cnn_and_on_a_trained_run() {
    let Some(ds) = datasets() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = ds.join("../checkpoints/seed-cnn-cifar10-seed1.ckpt");
    if ckpt.is_file() {
        // The seed's own CNN (70.83 % / ECE 0.80 % / NLL 0.8369 on the original pixels), imported, on the
        // CIFAR-10 JPEG test set (re-encoding costs about a point of accuracy).
        let imported = tmp.path().join("seed-cnn");
        run_ok(&[
            "import".into(),
            "--from".into(),
            ckpt.display().to_string(),
            "--arch".into(),
            "cnn".into(),
            "--num-classes".into(),
            "10".into(),
            "--dataset".into(),
            "cifar10".into(),
            "--out".into(),
            imported.display().to_string(),
        ]);
        let json = tmp.path().join("seed.json");
        let logits = tmp.path().join("seed_logits.npy");
        run_ok(&[
            "eval".into(),
            "--checkpoint".into(),
            imported.display().to_string(),
            "--data-dir".into(),
            ds.join("cifar10-jpeg").display().to_string(),
            "--json".into(),
            json.display().to_string(),
            "--save-logits".into(),
            logits.display().to_string(),
        ]);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let (acc, ece, nll) = (
            v["accuracy"].as_f64().unwrap(),
            v["ece"].as_f64().unwrap(),
            v["nll"].as_f64().unwrap(),
        );
        eprintln!("seed CNN on CIFAR-10 JPEG test: accuracy {acc:.4}, ECE {ece:.4}, NLL {nll:.4}");
        assert!((0.68..0.715).contains(&acc), "accuracy {acc}");
        assert!(ece < 0.03, "ECE {ece}");
        assert!((0.80..0.92).contains(&nll), "NLL {nll}");
        assert_eq!(v["n"].as_u64(), Some(10_000));
        let arr = decal_io::npy::read(&logits).unwrap();
        assert_eq!(arr.shape, vec![10_000, 10]);
    } else {
        eprintln!("skipping the seed-CNN part: {} not found", ckpt.display());
    }

    // A freshly trained run's best/ evaluates on a test split; wrong input shapes are clear errors.
    let data = tmp.path().join("data");
    small_cifar(&ds, &data, 12);
    let test_src = ds.join("cifar10-jpeg/test");
    for class in std::fs::read_dir(&test_src).unwrap() {
        let class = class.unwrap().path();
        let out = data.join("test").join(class.file_name().unwrap());
        std::fs::create_dir_all(&out).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(&class)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.into_iter().take(5) {
            std::fs::copy(&f, out.join(f.file_name().unwrap())).unwrap();
        }
    }
    let out = tmp.path().join("runs");
    run_ok(&train_args(&data, &out, "e", 1));
    let json = tmp.path().join("e.json");
    let text = run_ok(&[
        "eval".into(),
        "--checkpoint".into(),
        out.join("e/best").display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--profile".into(),
        "default".into(),
        "--json".into(),
        json.display().to_string(),
    ]);
    assert!(text.contains("50 images"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in [
        "accuracy",
        "ece",
        "mce",
        "nll",
        "brier",
        "brier_div_k",
        "definitions",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    // 64x64 Tiny ImageNet images into a 32x32 CNN: a one-line error naming the sizes.
    let tin = tmp.path().join("tin");
    let tin_train = ds.join("tiny-imagenet-200/train");
    let mut wnids: Vec<_> = std::fs::read_dir(&tin_train)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    wnids.sort();
    for w in wnids.iter().take(2) {
        let out = tin.join("test").join(w.file_name().unwrap());
        std::fs::create_dir_all(&out).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(w.join("images"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.into_iter().take(2) {
            std::fs::copy(&f, out.join(f.file_name().unwrap())).unwrap();
        }
    }
    let err = run_err(&[
        "eval".into(),
        "--checkpoint".into(),
        out.join("e/best").display().to_string(),
        "--dataset".into(),
        "imagefolder".into(),
        "--data-dir".into(),
        tin.display().to_string(),
    ]);
    assert!(
        err.contains("32x32") && err.contains("64x64") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn shipped_stage1_configs_resolve() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/stage1"));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = run_ok(&[
            "train".into(),
            "--config".into(),
            path.display().to_string(),
            "--print-config".into(),
        ]);
        assert!(
            text.contains("[optimizer]") && text.contains("[loss]"),
            "{}: {text}",
            path.display()
        );
        n += 1;
    }
    assert!(
        n >= 8,
        "expected the seed recipes and CPU variants in {}",
        dir.display()
    );
}

#[test]
fn precision_flag_bf16_trains_and_fp16_on_cpu_is_refused() {
    let Some(ds) = datasets() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    small_cifar(&ds, &data, 12);
    let out = tmp.path().join("runs");

    let mut bf16 = train_args(&data, &out, "bf16", 1);
    bf16.extend(["--precision".into(), "bf16".into()]);
    let text = run_ok(&bf16);
    assert!(text.contains("precision bf16"), "{text}");
    let config = std::fs::read_to_string(out.join("bf16/config.toml")).unwrap();
    assert!(config.contains("precision = \"bf16\""), "{config}");
    // Provenance names the libtorch the process really loaded, and the precision.
    let prov: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bf16/provenance.json")).unwrap())
            .unwrap();
    let version = prov["libtorch"]["version"].as_str().unwrap_or_default();
    assert!(version.starts_with("2.11.0"), "{prov}");
    assert!(prov["libtorch"]["library"]
        .as_str()
        .unwrap()
        .ends_with("libtorch_cpu.so"));
    assert!(
        prov["precision"].as_str().unwrap().starts_with("bf16"),
        "{prov}"
    );
    assert_eq!(
        prov["git_commit"].as_str().map(str::len),
        Some(40),
        "{prov}"
    );
    let best = tensors(&out.join("bf16/best/model.safetensors"));
    assert!(best.values().flatten().all(|v| v.is_finite()));
    // Precision cannot change on resume.
    let err = run_err(&[
        "train".into(),
        "--resume".into(),
        out.join("bf16").display().to_string(),
        "--epochs".into(),
        "2".into(),
        "--precision".into(),
        "fp32".into(),
    ]);
    assert!(err.contains("--precision"), "{err}");

    // fp16 on the CPU: one line, points to bf16, and creates no run directory.
    let mut fp16 = train_args(&data, &out, "fp16", 1);
    fp16.extend(["--precision".into(), "fp16".into()]);
    let err = run_err(&fp16);
    assert!(
        err.contains("fp16") && err.contains("bf16") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!out.join("fp16").exists());
    let mut bad = train_args(&data, &out, "fp8", 1);
    bad.extend(["--precision".into(), "fp8".into()]);
    let err = run_err(&bad);
    assert!(err.contains("--precision") && err.contains("fp8"), "{err}");
}
