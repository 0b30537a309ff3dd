//! `decal import` end to end: real binary, temp directories, fixtures from decal-models.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../decal-models/tests/fixtures")
}

fn decal(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_decal"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn imports_a_lightning_checkpoint_into_a_loadable_decal_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ckpt");
    let ckpt = fixtures().join("cnn_lightning.ckpt");
    let args = [
        "import",
        "--from",
        ckpt.to_str().unwrap(),
        "--arch",
        "cnn",
        "--num-classes",
        "10",
        "--out",
        out.to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = decal(&args);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("lightning-ckpt")
            && stdout.contains("62006 parameters")
            && stdout.contains("epoch: 3"),
        "{stdout}"
    );
    // The dataset comes from the checkpoint's hyper-parameters (CIFAR10) with the seed's constants.
    assert!(stdout.contains("dataset: cifar10"), "{stdout}");

    let loaded = decal_models::checkpoint::load(&out, tch::Device::Cpu).unwrap();
    assert_eq!(loaded.meta.stage, "imported");
    assert_eq!(loaded.meta.epoch, Some(3));
    assert_eq!(
        loaded.meta.normalization.as_ref().unwrap().std,
        vec![0.247, 0.243, 0.261]
    );
    let xs = tch::Tensor::read_npy(fixtures().join("cnn_input.npy")).unwrap();
    let expected = tch::Tensor::read_npy(fixtures().join("cnn_lightning_logits.npy")).unwrap();
    let diff = f64::try_from(
        (loaded.classifier.forward_t(&xs, false) - expected)
            .abs()
            .max(),
    )
    .unwrap();
    assert!(diff <= 1e-5, "{diff}");

    // A finished output directory is never overwritten without --force.
    let (ok, _, stderr) = decal(&args);
    assert!(!ok);
    assert!(
        stderr.starts_with("error: ")
            && stderr.contains("--force")
            && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
    let mut forced = args.to_vec();
    forced.extend(["--force", "--dataset", "svhn"]);
    let (ok, stdout, stderr) = decal(&forced);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("dataset: svhn"), "{stdout}");
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let pt = fixtures().join("cnn.pt");
    let (ok, _, stderr) = decal(&[
        "import",
        "--from",
        pt.to_str().unwrap(),
        "--arch",
        "lenet",
        "--num-classes",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("unknown architecture `lenet`") && stderr.contains("wrn-28-10"),
        "{stderr}"
    );

    let (ok, _, stderr) = decal(&[
        "import",
        "--from",
        pt.to_str().unwrap(),
        "--arch",
        "resnet18",
        "--num-classes",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("cnn.pt")
            && stderr.contains("missing")
            && stderr.contains("unexpected"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let missing = dir.path().join("absent.pt");
    let (ok, _, stderr) = decal(&[
        "import",
        "--from",
        missing.to_str().unwrap(),
        "--arch",
        "cnn",
        "--num-classes",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("absent.pt"), "{stderr}");

    let (ok, _, stderr) = decal(&[
        "import",
        "--from",
        pt.to_str().unwrap(),
        "--arch",
        "cnn",
        "--num-classes",
        "10",
        "--out",
        out.to_str().unwrap(),
        "--dataset",
        "imagenet-21k",
        "--force",
    ]);
    assert!(
        !ok && stderr.contains("unknown dataset `imagenet-21k`"),
        "{stderr}"
    );
}

#[test]
fn imports_a_hugging_face_vit_with_an_arch_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let arch_path = dir.path().join("arch.json");
    std::fs::write(&arch_path, expected["vit"]["arch"].to_string()).unwrap();
    let out = dir.path().join("vit");
    let st = fixtures().join("vit_model_hf.safetensors");
    let (ok, stdout, stderr) = decal(&[
        "import",
        "--from",
        st.to_str().unwrap(),
        "--arch-config",
        arch_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("safetensors") && stdout.contains("freshly initialised"),
        "{stdout}"
    );
    assert!(out.join("config.json").is_file() && out.join("model.safetensors").is_file());
}

#[test]
fn imports_the_seed_cnn_checkpoint() {
    let ckpt = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/checkpoints/seed-cnn-cifar10-seed1.ckpt"
    ));
    if !ckpt.exists() {
        eprintln!("skipping: {} not found", ckpt.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seed-cnn");
    let (ok, stdout, stderr) = decal(&[
        "import",
        "--from",
        ckpt.to_str().unwrap(),
        "--arch",
        "cnn",
        "--num-classes",
        "10",
        "--dataset",
        "cifar10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("epoch: 580") && stdout.contains("62006 parameters"),
        "{stdout}"
    );
    let meta = decal_models::checkpoint::read_meta(&out).unwrap();
    assert_eq!(meta.source.unwrap().format, "lightning-ckpt");
}
