//! `decal run` end to end on the bundled quickstart data (real Fashion-MNIST / MNIST subsets): a tiny
//! experiment (1 stage-1 epoch on 2,000 images, two heads, two seeds) must produce every output, resume
//! without recomputing, and reject a head whose feature width does not fit the backbone.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn write_config(dir: &Path, extra_head: &str) -> PathBuf {
    let data = repo_root().join("data/quickstart");
    let text = format!(
        r#"
name = "tiny"
seeds = [0, 1]
temperature_scaling = true

[data]
dataset = "fashion-mnist"
dir = "{data}/fashion-mnist"
allow_subset = true
limit_train = 2000
limit_val = 500
limit_test = 500

[backbone.train]
model = "cnn-mnist"
epochs = 1
batch_size = 128
lr = 0.001
augment = false

[[heads]]
name = "TST"
kind = "tst"
latent_dim = 16
epochs = 3
lr = 0.001

[[heads]]
name = "V-TST"
kind = "vtst"
latent_dim = 16
epochs = 3
lr = 0.001
eval_samples = [1, 4]
{extra_head}

[[ood]]
name = "mnist"
dataset = "mnist"
dir = "{data}/mnist"
allow_subset = true
limit = 300

[[ood]]
name = "missing"
dataset = "svhn"
dir = "{missing}"

[eval]
bootstrap = 50
"#,
        data = data.display(),
        missing = dir.join("no-such-dir").display()
    );
    let path = dir.join("experiment.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The directory of the unit named `name` in the run's last plan.
fn unit_dir(out: &Path, name: &str) -> PathBuf {
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    let id = plan["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no unit {name} in {}", out.display()))["id"]
        .as_str()
        .unwrap()
        .to_string();
    out.join("units").join(id)
}

fn decal(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_decal"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_produces_records_table_report_and_resumes() {
    if !repo_root().join("data/quickstart/fashion-mnist").exists() {
        eprintln!("skipping: bundled data/quickstart not present");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), "");
    let out = tmp.path().join("run");
    let first = decal(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "decal run failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&first.stdout);
    for row in [
        "| Baseline",
        "| TS |",
        "| TS (seed LBFGS)",
        "| TST",
        "| V-TST m=1",
        "| V-TST m=4",
    ] {
        assert!(stdout.contains(row), "table lacks {row}:\n{stdout}");
    }
    // The missing OOD set is a warning, not a failure.
    assert!(
        stdout.contains("warning: OOD set missing skipped"),
        "{stdout}"
    );
    for f in [
        "metrics.jsonl",
        "metrics.csv",
        "results.json",
        "report/index.html",
        "report/results.md",
        "reliability/tst.csv",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let records = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    // 2 seeds × (TST + V-TST m=1 + V-TST m=4) + Baseline + TS + TS (seed LBFGS) = 9 test accuracies.
    let test_acc = records
        .lines()
        .filter(|l| l.contains("\"split\":\"test\"") && l.contains("\"metric\":\"accuracy\""))
        .count();
    assert_eq!(test_acc, 9, "{records}");
    assert!(records.contains("\"dataset\":\"mnist\"") && records.contains("\"metric\":\"auroc\""));
    let probs = out.join("predictions/v-tst-m-4-seed1/test_probs.npy");
    assert!(probs.exists(), "{}", probs.display());

    // Second run: everything is reused and the records are identical.
    let second = decal(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    let stderr2 = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr2}");
    assert!(stderr2.contains("0 units computed"), "{stderr2}");
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.jsonl")).unwrap(),
        records
    );
}

#[test]
fn head_with_wrong_feature_width_is_a_clear_error() {
    if !repo_root().join("data/quickstart/fashion-mnist").exists() {
        eprintln!("skipping: bundled data/quickstart not present");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = repo_root().join("data/quickstart/fashion-mnist");
    let text = format!(
        "name = \"w\"\n[data]\ndataset = \"fashion-mnist\"\ndir = \"{}\"\nallow_subset = true\nlimit_train = 300\nlimit_val = 100\nlimit_test = 100\n\
         [backbone.train]\nmodel = \"cnn-mnist\"\nepochs = 1\naugment = false\n[[heads]]\nname = \"TST\"\nkind = \"tst\"\nfeature_dim = 640\n",
        data.display()
    );
    let path = tmp.path().join("w.toml");
    std::fs::write(&path, text).unwrap();
    let out = decal(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        tmp.path().join("o").to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Caught from the architecture before any training (config_check), naming the file and the key.
    assert!(
        err.contains(&format!(
            "error: {}: heads[0].feature_dim: 640 does not match the backbone: backbone.train.model \"cnn-mnist\" has 84-wide features",
            path.display()
        )),
        "{err}"
    );
    assert!(
        !tmp.path().join("o").exists(),
        "no run directory before the config is valid"
    );
}

#[test]
fn invalid_configs_name_the_file_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let text = r#"
name = "bad"
[data]
dataset = "fashion-mnist"
dir = "x"
[backbone]
checkpoint = "y"
[[heads]]
name = "A"
kind = "tst"
[[heads]]
name = "A"
kind = "vtst"
"#;
    let path = tmp.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = decal(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        tmp.path().join("o").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("used twice"),
        "{err}"
    );

    let text =
        "name = \"x\"\n[data]\ndataset = \"cifar10\"\ndir = \"d\"\n[backbone]\nchekpoint = \"c\"\n";
    std::fs::write(&path, text).unwrap();
    let out = decal(&["run", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("chekpoint"), "{err}");
}

/// The exact (seed) feature mode trains the head on images passed through the frozen body every epoch;
/// `seed-bn-drift` without exact mode is refused.
#[test]
fn exact_feature_mode_runs_and_bn_drift_needs_it() {
    if !repo_root().join("data/quickstart/fashion-mnist").exists() {
        eprintln!("skipping: bundled data/quickstart not present");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = repo_root().join("data/quickstart/fashion-mnist");
    let config = |features: &str| {
        format!(
            "name = \"exact\"\nseeds = [0]\n[data]\ndataset = \"fashion-mnist\"\ndir = \"{}\"\nallow_subset = true\n\
             limit_train = 600\nlimit_val = 200\nlimit_test = 200\n[backbone.train]\nmodel = \"cnn-mnist\"\nepochs = 1\n\
             augment = false\n[features]\n{features}\n[[heads]]\nname = \"TST\"\nkind = \"tst\"\nlatent_dim = 8\nepochs = 2\n\
             [eval]\nbootstrap = 0\n",
            data.display()
        )
    };
    let path = tmp.path().join("exact.toml");
    std::fs::write(&path, config("mode = \"exact\"")).unwrap();
    let out = tmp.path().join("o");
    let run = decal(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("stage 2: TST seed 0: best epoch"),
        "{stderr}"
    );
    let head =
        std::fs::read_to_string(unit_dir(&out, "head/tst/seed-0").join("config.json")).unwrap();
    assert!(head.contains("\"exact\""), "{head}");

    std::fs::write(&path, config("body = \"seed-bn-drift\"")).unwrap();
    let bad = decal(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        tmp.path().join("p").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("needs mode = \"exact\""),
        "{err}"
    );
}
