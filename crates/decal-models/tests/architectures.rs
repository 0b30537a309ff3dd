//! Parameter counts, feature widths and output shapes of every preset (seed-system.md §5, §16).
//!
//! Counts are pinned to the seed's published numbers (§5.1–§5.4, §16) or, where the seed has none, to the
//! count of the identical PyTorch module printed by `tests/fixtures/make_fixtures.py` (see the `counts`
//! section of `tests/fixtures/expected.json`). Large models are only built, never run: building a VarStore
//! allocates and initialises but does no forward pass.

use decal_models::{build_backbone, build_classifier, num_parameters, ArchConfig};
use tch::{nn, Device, Kind, Tensor};

fn count(cfg: &ArchConfig) -> (i64, i64) {
    let vs = nn::VarStore::new(Device::Cpu);
    let clf = build_classifier(&vs.root(), cfg);
    assert_eq!(clf.num_classes(), cfg.num_classes());
    assert_eq!(clf.feature_dim(), cfg.feature_dim());
    let full = num_parameters(&vs);
    let body_vs = nn::VarStore::new(Device::Cpu);
    let body = build_backbone(&body_vs.root(), cfg);
    assert_eq!(body.feature_dim(), cfg.feature_dim());
    (num_parameters(&body_vs), full)
}

#[test]
fn wrn_28_10_matches_seed_counts() {
    let c10 = ArchConfig::preset("wrn-28-10", 10).unwrap();
    assert_eq!(count(&c10), (36_472_784, 36_479_194));
    assert_eq!(c10.feature_dim(), 640);
    let c100 = ArchConfig::preset("wrn-28-10", 100).unwrap();
    assert_eq!(count(&c100).1, 36_536_884);
}

#[test]
fn cnn_matches_seed_counts() {
    let cfg = ArchConfig::preset("cnn", 10).unwrap();
    assert_eq!(count(&cfg), (61_156, 62_006));
    assert_eq!(cfg.feature_dim(), 84);
    // 1×28×28: 28→24→12→8→4, fc1 has 16·4·4 = 256 inputs: 62,006 − (400−256)·120 − 3·6·25 + 6·25.
    let mnist = ArchConfig::preset("cnn-mnist", 10).unwrap();
    assert_eq!(count(&mnist).1, 62_006 - 144 * 120 - 2 * 6 * 25);
}

#[test]
fn resnet50_matches_seed_counts() {
    let cfg = ArchConfig::preset("resnet50", 10).unwrap();
    assert_eq!(count(&cfg), (23_500_352, 23_520_842));
    assert_eq!(cfg.feature_dim(), 2048);
}

#[test]
fn efficientnet_b5_seed_matches_seed_counts() {
    let cfg = ArchConfig::preset("efficientnet-b5-seed", 10).unwrap();
    assert_eq!(count(&cfg), (33_292_952, 33_299_362));
    assert_eq!(cfg.feature_dim(), 640);
}

#[test]
fn other_presets_match_pytorch_counts() {
    // Values printed by make_fixtures.py from the same modules built in PyTorch 2.11 (kuangliu ResNet-18,
    // DeepMind WRN-16-4, kuangliu EfficientNetB0, torchvision efficientnet_b0/b3/b7, HF
    // ViTForImageClassification without pooler).
    let expected = [
        ("resnet18", 10, 11_173_962),
        ("wrn-16-4", 10, 2_748_890),
        ("wrn-10-1", 10, 77_850),
        ("efficientnet-b0-cifar", 10, 3_599_686),
        ("efficientnet-b0", 10, 4_020_358),
        ("efficientnet-b3", 10, 10_711_602),
        ("efficientnet-b7", 10, 63_812_570),
        ("vit-b16", 200, 85_952_456),
        ("vit-tiny", 10, 5_362_762),
    ];
    for (name, k, n) in expected {
        let cfg = ArchConfig::preset(name, k).unwrap();
        assert_eq!(count(&cfg).1, n, "{name}");
    }
    assert_eq!(
        ArchConfig::preset("vit-b16", 10).unwrap().feature_dim(),
        768
    );
}

#[test]
fn forward_shapes_on_tiny_inputs() {
    tch::manual_seed(0);
    let cases = [
        ("wrn-10-1", 3, 32, 64),
        ("cnn", 3, 32, 84),
        ("cnn-mnist", 1, 28, 84),
        ("vit-tiny", 3, 32, 192),
    ];
    for (name, c, s, f) in cases {
        let cfg = ArchConfig::preset(name, 7).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let clf = build_classifier(&vs.root(), &cfg);
        let xs = Tensor::randn([2, c, s, s], (Kind::Float, Device::Cpu));
        for train in [false, true] {
            assert_eq!(
                clf.features_t(&xs, train).size(),
                vec![2, f],
                "{name} train={train}"
            );
            assert_eq!(
                clf.forward_t(&xs, train).size(),
                vec![2, 7],
                "{name} train={train}"
            );
        }
    }
}

#[test]
fn big_presets_forward_one_image() {
    // ResNet-50 and the B5 on one 32×32 image: checks the 4×4 / 2×2 final maps and F without heavy compute.
    tch::manual_seed(0);
    for (name, f) in [("resnet50", 2048), ("efficientnet-b5-seed", 640)] {
        let cfg = ArchConfig::preset(name, 10).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let clf = build_classifier(&vs.root(), &cfg);
        let xs = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
        let feats = tch::no_grad(|| clf.features_t(&xs, false));
        assert_eq!(feats.size(), vec![1, f], "{name}");
    }
}

#[test]
fn variable_names_mirror_pytorch_state_dict_keys() {
    let names = |preset: &str| {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = build_classifier(&vs.root(), &ArchConfig::preset(preset, 10).unwrap());
        let mut v: Vec<String> = vs.variables().into_keys().collect();
        v.sort();
        v
    };
    let wrn = names("wrn-28-10");
    for key in [
        "init_conv.weight",
        "layer.0.block.0.batchnorm_0.running_var",
        "layer.0.block.0.shortcut.weight",
        "layer.2.block.3.conv_1.weight",
        "batchnorm.running_mean",
        "logits.weight",
        "logits.bias",
    ] {
        assert!(wrn.contains(&key.to_string()), "wrn lacks {key}");
    }
    assert!(!wrn.contains(&"layer.0.block.1.shortcut.weight".to_string()));
    let r50 = names("resnet50");
    for key in [
        "conv1.weight",
        "bn1.bias",
        "layer1.0.shortcut.0.weight",
        "layer1.0.shortcut.1.running_mean",
        "layer4.2.conv3.weight",
        "linear.weight",
    ] {
        assert!(r50.contains(&key.to_string()), "resnet50 lacks {key}");
    }
    let b5 = names("efficientnet-b5-seed");
    for key in [
        "layers.0.conv1.weight",
        "layers.0.se.se1.bias",
        "layers.37.bn3.running_var",
        "linear.bias",
    ] {
        assert!(b5.contains(&key.to_string()), "b5 lacks {key}");
    }
    let vit = names("vit-tiny");
    for key in [
        "vit.embeddings.cls_token",
        "vit.embeddings.position_embeddings",
        "vit.embeddings.patch_embeddings.projection.weight",
        "vit.encoder.layer.11.attention.attention.query.bias",
        "vit.encoder.layer.0.attention.output.dense.weight",
        "vit.encoder.layer.0.intermediate.dense.weight",
        "vit.encoder.layer.0.output.dense.bias",
        "vit.encoder.layer.0.layernorm_before.weight",
        "vit.layernorm.bias",
        "classifier.weight",
    ] {
        assert!(vit.contains(&key.to_string()), "vit lacks {key}");
    }
}

#[test]
fn wrn_init_follows_seed() {
    // Conv weights ~ N(0, sqrt(2/(k²·out))), BN weight 1 / bias 0, logits bias 0 (seed §5.1).
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = build_classifier(&vs.root(), &ArchConfig::preset("wrn-28-10", 10).unwrap());
    let v = vs.variables();
    let w = &v["layer.2.block.1.conv_0.weight"]; // 640→640 3×3: std sqrt(2/5760)
    let std = w.std(true).double_value(&[]);
    assert!(
        (std - (2.0f64 / 5760.0).sqrt()).abs() < 0.002 * 0.0186 * 50.0,
        "std {std}"
    );
    assert!(w.mean(Kind::Float).double_value(&[]).abs() < 1e-4);
    assert_eq!(v["batchnorm.weight"].min().double_value(&[]), 1.0);
    assert_eq!(v["batchnorm.bias"].abs().max().double_value(&[]), 0.0);
    assert_eq!(v["logits.bias"].abs().max().double_value(&[]), 0.0);
    // PyTorch default: U(±1/√640); the weights are float32, drawn within the float32-rounded bound
    // (which may lie above the exact one).
    let lw = &v["logits.weight"];
    let bound = (1.0 / 640f64.sqrt()) as f32 as f64;
    assert!(lw.abs().max().double_value(&[]) <= bound);
}

#[test]
fn default_init_is_pytorch_uniform() {
    // ResNet conv: kaiming-uniform(a=√5) = U(±1/√fan_in); the max over many weights is close to the bound.
    tch::manual_seed(2);
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = build_classifier(&vs.root(), &ArchConfig::preset("resnet18", 10).unwrap());
    let v = vs.variables();
    // 512·9 fan-in. Float32 weights lie within the float32-rounded bound, which can exceed the exact
    // f64 bound (seen once: max 0.014731391333 = the f32 bound, against 0.014731391275; tch's global RNG
    // is shared by this binary's tests, which run in parallel, so the seed alone does not fix the draw).
    let w = &v["layer4.1.conv2.weight"];
    let bound = (1.0 / (512.0f64 * 9.0).sqrt()) as f32 as f64;
    let max = w.abs().max().double_value(&[]);
    assert!(
        max <= bound && max > 0.99 * bound,
        "max {max} bound {bound}"
    );
    assert_eq!(v["bn1.weight"].min().double_value(&[]), 1.0);
}

#[test]
fn unknown_and_invalid_presets_are_errors() {
    let e = ArchConfig::preset("wrn-28-11x", 10)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("wrn-28-11x") && e.contains("wrn-28-10") && e.contains("resnet50"),
        "{e}"
    );
    let e = ArchConfig::preset("wrn-27-10", 10).unwrap_err().to_string();
    assert!(e.contains("depth 27"), "{e}");
    assert!(ArchConfig::preset("wrn-40-2", 10).is_ok());
    assert!(ArchConfig::preset("efficientnet-b00", 10).is_err());
}

#[test]
fn input_shapes_are_checked_before_forward() {
    let vit = ArchConfig::preset("vit-b16", 200).unwrap();
    assert!(vit.check_input_shape(&[8, 3, 224, 224]).is_ok());
    let e = vit
        .check_input_shape(&[8, 3, 32, 32])
        .unwrap_err()
        .to_string();
    assert!(e.contains("224x224") && e.contains("32x32"), "{e}");
    let cnn = ArchConfig::preset("cnn", 10).unwrap();
    let e = cnn.check_input_shape(&[1, 28, 28]).unwrap_err().to_string();
    assert!(e.contains("3-channel") && e.contains("1 channels"), "{e}");
    let wrn = ArchConfig::preset("wrn-28-10", 10).unwrap();
    assert!(wrn.check_input_shape(&[2, 3, 32, 32]).is_ok());
    assert!(wrn.check_input_shape(&[2, 3, 64, 64]).is_ok());
    assert!(wrn.check_input_shape(&[2, 3]).is_err());
}

#[test]
fn arch_config_round_trips_through_json() {
    for (name, _) in decal_models::PRESETS {
        let cfg = ArchConfig::preset(name, 13).unwrap();
        let text = serde_json::to_string(&cfg).unwrap();
        let back: ArchConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, cfg, "{text}");
    }
    let err = serde_json::from_str::<ArchConfig>(
        r#"{"arch":"cnn","in_channels":3,"image_size":32,"num_classes":10,"typo":1}"#,
    );
    assert!(err.is_err());
}
