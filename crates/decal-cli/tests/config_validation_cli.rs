//! Fail before working: `decal run` and `decal train` check the whole configuration (head sizes against the
//! backbone's feature width, latent sizes, epochs, dataset names in `[[ood]]`, data and checkpoint paths)
//! before any data is loaded or directory created. Each case must fail in under 2 s (nothing is loaded or
//! trained; the bundled quickstart data would take longer than that to load and train on), create no run
//! directory, and name the config file and the key in a one-line error. Run directories written by another
//! decal version are refused by `train --resume`, `run` and `report`, naming the file and the field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn decal(args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_decal"))
        .args(args)
        .output()
        .expect("decal binary runs");
    (o, t.elapsed())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Exit ≠ 0 within 2 s, one `error:` line containing every needle, no panic.
fn fails_fast(o: &(Output, Duration), needles: &[&str]) {
    let (o, took) = o;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(*took < Duration::from_secs(2), "took {took:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "error lacks {n:?}: {err}");
    }
}

/// The quickstart experiment with one edit applied to its TOML text.
fn experiment(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let data = repo().join("data/quickstart");
    let text = format!(
        r#"name = "check"
seeds = [0]

[data]
dataset = "fashion-mnist"
dir = "{fm}"
allow_subset = true

[backbone.train]
model = "cnn-mnist"
epochs = 1

[[heads]]
name = "TST"
kind = "tst"
latent_dim = 16

[[heads]]
name = "V-TST"
kind = "vtst"
latent_dim = 16

[[ood]]
name = "mnist"
dataset = "mnist"
dir = "{mn}"
allow_subset = true
"#,
        fm = s(&data.join("fashion-mnist")),
        mn = s(&data.join("mnist")),
    );
    let path = dir.join("x.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

fn run_config(dir: &Path, config: &Path) -> (Output, Duration) {
    let out = dir.join("run");
    let r = decal(&["run", s(config), "--out", s(&out)]);
    assert!(!out.exists(), "a run directory was created");
    r
}

/// An edit of the base config text that introduces one error.
type ConfigEdit = Box<dyn Fn(String) -> String>;

#[test]
fn run_config_errors_name_the_file_and_key_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let cases: Vec<(ConfigEdit, Vec<&str>)> = vec![
        (
            Box::new(|t| {
                t.replacen("latent_dim = 16", "latent_dim = 0", 2).replacen(
                    "latent_dim = 0",
                    "latent_dim = 16",
                    1,
                )
            }),
            vec!["heads[1].latent_dim", "0 must be at least 1"],
        ),
        (
            Box::new(|t| t.replace("kind = \"tst\"", "kind = \"tst\"\nepochs = 0")),
            vec!["heads[0].epochs", "at least 1"],
        ),
        (
            Box::new(|t| t.replace("kind = \"tst\"", "kind = \"tst\"\nmlp_size = 7")),
            vec!["heads[0].mlp_size", "3, 4 or 5"],
        ),
        (
            Box::new(|t| t.replace("kind = \"vtst\"", "kind = \"vtst\"\nfeature_dim = 512")),
            vec!["heads[1].feature_dim", "512 does not match", "cnn-mnist"],
        ),
        (
            Box::new(|t| t.replace("dataset = \"mnist\"", "dataset = \"mnsit\"")),
            vec!["ood[0].dataset", "unknown dataset 'mnsit'"],
        ),
        (
            Box::new(|t| t.replace("epochs = 1\n", "epochs = 0\n")),
            vec!["backbone.train.epochs", "at least 1"],
        ),
        (
            Box::new(|t| t.replace("model = \"cnn-mnist\"", "model = \"cnn-mnsit\"")),
            vec!["backbone.train.model"],
        ),
        (
            Box::new(|t| t.replace("quickstart/fashion-mnist", "quickstart/no-such-dir")),
            vec!["data.dir", "no-such-dir", "does not exist"],
        ),
        (
            Box::new(|t| {
                t.replace(
                    "[backbone.train]\nmodel = \"cnn-mnist\"\nepochs = 1",
                    "[backbone]\ncheckpoint = \"no-such-checkpoint\"",
                )
            }),
            vec![
                "backbone.checkpoint",
                "no-such-checkpoint",
                "does not exist",
            ],
        ),
    ];
    for (edit, needles) in cases {
        let config = experiment(d.path(), edit);
        let mut needles = needles;
        needles.push(s(&config));
        fails_fast(&run_config(d.path(), &config), &needles);
    }
}

#[test]
fn run_checks_head_widths_against_a_checkpoint_config() {
    let d = tempfile::tempdir().unwrap();
    let ckpt = d.path().join("ckpt");
    let fixture = repo().join("crates/decal-models/tests/fixtures/cnn_lightning.ckpt");
    let (o, _) = decal(&[
        "import",
        "--from",
        s(&fixture),
        "--arch",
        "cnn",
        "--num-classes",
        "10",
        "--out",
        s(&ckpt),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config = experiment(d.path(), |t| {
        t.replace(
            "[backbone.train]\nmodel = \"cnn-mnist\"\nepochs = 1",
            &format!("[backbone]\ncheckpoint = \"{}\"", s(&ckpt)),
        )
        .replace("kind = \"tst\"", "kind = \"tst\"\nfeature_dim = 4096")
    });
    fails_fast(
        &run_config(d.path(), &config),
        &[
            s(&config),
            "heads[0].feature_dim",
            "4096 does not match",
            "config.json",
        ],
    );

    // A damaged config.json is reported as damaged (its recorded checksum), not as a parse error of the
    // older bare-architecture layout or a tensor-shape error in model.safetensors.
    let cfg = ckpt.join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("\"num_classes\": 10"), "{text}");
    std::fs::write(
        &cfg,
        text.replacen("\"num_classes\": 10", "\"num_classes\": 11", 1),
    )
    .unwrap();
    let config = experiment(d.path(), |t| {
        t.replace(
            "[backbone.train]\nmodel = \"cnn-mnist\"\nepochs = 1",
            &format!("[backbone]\ncheckpoint = \"{}\"", s(&ckpt)),
        )
    });
    fails_fast(
        &run_config(d.path(), &config),
        &["config.json", "does not match the config_sha256"],
    );
}

#[test]
fn train_config_errors_name_the_file_or_flag_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let data = repo().join("data/quickstart/fashion-mnist");
    let out = d.path().join("runs");
    let config = d.path().join("s1.toml");
    let train = |config_text: &str, extra: &[&str]| {
        std::fs::write(&config, config_text).unwrap();
        let base = ["train", "--config", s(&config), "--out", s(&out)];
        let r = decal(&[&base[..], extra].concat());
        assert!(!out.exists(), "a run directory was created");
        r
    };
    let ok_text = format!(
        "model = \"cnn-mnist\"\ndataset = \"fashion-mnist\"\ndata_dir = \"{}\"\nepochs = 1\n",
        s(&data)
    );
    fails_fast(
        &train(&ok_text.replace("epochs = 1", "epochs = 0"), &[]),
        &[s(&config), "epochs"],
    );
    fails_fast(
        &train(&ok_text.replace(s(&data), "/no/such/data"), &[]),
        &[s(&config), "data_dir", "/no/such/data", "does not exist"],
    );
    fails_fast(
        &train(&ok_text, &["--data-dir", "/no/such/data"]),
        &["--data-dir", "/no/such/data"],
    );
    fails_fast(
        &train(&ok_text.replace("cnn-mnist", "cnn-mnsit"), &[]),
        &[s(&config), "model"],
    );
    fails_fast(
        &train(&ok_text.replace("fashion-mnist\"", "fashion-mnsit\""), &[]),
        &[s(&config), "dataset", "fashion-mnsit"],
    );
}

#[test]
fn run_directories_of_another_decal_version_are_refused() {
    let d = tempfile::tempdir().unwrap();
    // decal train --resume: provenance.json records another version.
    let run = d.path().join("train-run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("config.toml"),
        "model = \"cnn-mnist\"\ndataset = \"fashion-mnist\"\n",
    )
    .unwrap();
    std::fs::write(run.join("provenance.json"), r#"{"decal_version": "0.0.1"}"#).unwrap();
    let prov = run.join("provenance.json");
    fails_fast(
        &decal(&["train", "--resume", s(&run)]),
        &[s(&prov), "decal_version", "written by decal 0.0.1"],
    );

    // decal run resuming an experiment directory.
    let config = experiment(d.path(), |t| t);
    let out = d.path().join("exp");
    std::fs::create_dir_all(&out).unwrap();
    let marker = out.join("experiment.json");
    std::fs::write(&marker, r#"{"provenance": {"decal_version": "0.0.1"}}"#).unwrap();
    fails_fast(
        &decal(&["run", s(&config), "--out", s(&out)]),
        &[
            s(&marker),
            "provenance.decal_version",
            "written by decal 0.0.1",
        ],
    );

    // decal report over that directory.
    fails_fast(
        &decal(&["report", s(&out), "--out", s(&d.path().join("rep"))]),
        &[s(&marker), "provenance.decal_version"],
    );
    assert!(!d.path().join("rep").exists());
}
