//! Checkpoint round trips, atomicity invariants and error messages.

use decal_models::checkpoint::{
    self, CheckpointMeta, Normalization, Selection, CONFIG_FILE, WEIGHTS_FILE,
};
use decal_models::{build_classifier, ArchConfig};
use tch::{nn, Device, Kind, Tensor};

fn trained_wrn() -> (nn::VarStore, decal_models::Classifier, ArchConfig) {
    tch::manual_seed(3);
    let cfg = ArchConfig::preset("wrn-10-1", 10).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let clf = build_classifier(&vs.root(), &cfg);
    // Two train-mode passes move the BatchNorm running statistics away from 0/1.
    for _ in 0..2 {
        let _ = clf.forward_t(
            &Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu)),
            true,
        );
    }
    (vs, clf, cfg)
}

#[test]
fn round_trip_preserves_logits_and_batchnorm_statistics() {
    let (vs, clf, cfg) = trained_wrn();
    let dir = tempfile::tempdir().unwrap();
    let mut meta = CheckpointMeta::new(cfg.clone(), "stage1");
    meta.dataset = Some("cifar10".into());
    meta.seed = Some(1);
    meta.epoch = Some(12);
    meta.selection = Some(Selection {
        criterion: "valid_loss_epoch".into(),
        value: 0.45,
    });
    meta.normalization = Some(Normalization {
        mean: vec![0.4914, 0.4822, 0.4465],
        std: vec![0.247, 0.243, 0.261],
    });
    let written = checkpoint::save(dir.path(), &vs, &meta).unwrap();
    let info = written.weights.as_ref().unwrap();
    assert_eq!(info.num_parameters, 77_850);
    assert!(info.num_tensors > 2 * 10, "running stats are stored too");

    let loaded = checkpoint::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(loaded.meta, written);
    let xs = Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu));
    let a = clf.forward_t(&xs, false);
    let b = loaded.classifier.forward_t(&xs, false);
    assert_eq!(f64::try_from((a - b).abs().max()).unwrap(), 0.0);
    let rv = |v: &nn::VarStore| v.variables()["batchnorm.running_var"].shallow_clone();
    assert_eq!(
        f64::try_from((rv(&vs) - rv(&loaded.vs)).abs().max()).unwrap(),
        0.0
    );
    assert!(
        f64::try_from((rv(&vs) - 1.0).abs().max()).unwrap() > 1e-3,
        "stats were updated"
    );
    // No temp files left behind.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, vec![CONFIG_FILE, WEIGHTS_FILE]);

    let body = checkpoint::load_body(dir.path(), Device::Cpu).unwrap();
    assert!(!body.vs.variables().contains_key("logits.weight"));
    let fa = clf.features_t(&xs, false);
    let fb = body.body.features(&xs, false);
    assert_eq!(f64::try_from((fa - fb).abs().max()).unwrap(), 0.0);
}

#[test]
fn incomplete_or_tampered_checkpoints_are_rejected() {
    let (vs, _, cfg) = trained_wrn();
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(dir.path(), &vs, &CheckpointMeta::new(cfg, "stage1")).unwrap();

    // Weights replaced after the config was written.
    let w = dir.path().join(WEIGHTS_FILE);
    let mut bytes = std::fs::read(&w).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&w, &bytes).unwrap();
    let e = checkpoint::load(dir.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("SHA-256") && e.contains(WEIGHTS_FILE), "{e}");

    // A crash before config.json was written: the directory is not a checkpoint.
    std::fs::remove_file(dir.path().join(CONFIG_FILE)).unwrap();
    let e = checkpoint::load(dir.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no config.json"), "{e}");
}

#[test]
fn shape_mismatch_names_the_tensor_and_both_shapes() {
    tch::manual_seed(0);
    let cfg = ArchConfig::preset("cnn", 10).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = build_classifier(&vs.root(), &cfg);
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(dir.path(), &vs, &CheckpointMeta::new(cfg, "stage1")).unwrap();
    // Same weights, but the config now claims K = 7.
    let path = dir.path().join(CONFIG_FILE);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["arch"]["num_classes"] = 7.into();
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    let e = checkpoint::load(dir.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fc3.bias") && e.contains("[10]") && e.contains("[7]"),
        "{e}"
    );

    json["arch"]["arch"] = "mlp_mixer".into();
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    let e = checkpoint::load(dir.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.json") && e.contains("mlp_mixer"), "{e}");
}

#[test]
fn seed_style_names() {
    assert_eq!(
        checkpoint::seed_style_name(1, 586, 0.4501, "WRN_CIFAR10_28_10_Base"),
        "seed=1-epoch=586-valid_loss=0.450-model_name=WRN_CIFAR10_28_10_Base_seed1"
    );
    assert_eq!(
        checkpoint::seed_style_name(2, 7, 1.0, "x"),
        "seed=2-epoch=07-valid_loss=1.000-model_name=x_seed2"
    );
}
