//! Tests of the data-side units: planning is deterministic, adding an OOD set only adds units, config and
//! input errors name their key, and the units run end to end on the bundled quickstart data (split as
//! stage 1 splits, features as the one extractor computes them, everything fresh afterwards).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{load_features, load_split, SplitInfo};
use crate::experiment::ExperimentConfig;
use crate::plan::build::PlanCtx;
use crate::plan::exec::Execution;
use crate::plan::store::Store;
use crate::plan::{Plan, PlanError, UnitId};
use crate::units::{ExecOptions, Resources, UnitContext};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_config(dir: &Path, text: &str) -> ExperimentConfig {
    let path = dir.join("experiment.toml");
    std::fs::write(&path, text).unwrap();
    ExperimentConfig::read(&path).unwrap()
}

/// What the data planner produced.
struct Planned {
    plan: Plan,
    features: BTreeMap<String, UnitId>,
    views: Option<UnitId>,
    feature_dim: i64,
    num_classes: i64,
    warnings: Vec<String>,
}

fn plan_data(config: &ExperimentConfig, kind: &str) -> Result<Planned, PlanError> {
    let mut ctx = PlanCtx {
        config,
        device_kind: kind.into(),
        plan: Plan::default(),
        backbone: None,
        split: None,
        features: BTreeMap::new(),
        views: None,
        feature_dim: 0,
        num_classes: 0,
        rows: Vec::new(),
        report_inputs: BTreeMap::new(),
        warnings: Vec::new(),
        logits: BTreeMap::new(),
        ood_sets: Vec::new(),
        dataset: String::new(),
    };
    super::plan(&mut ctx)?;
    Ok(Planned {
        plan: ctx.plan,
        features: ctx.features,
        views: ctx.views,
        feature_dim: ctx.feature_dim,
        num_classes: ctx.num_classes,
        warnings: ctx.warnings,
    })
}

fn ids(plan: &Plan) -> BTreeMap<String, String> {
    plan.units
        .iter()
        .map(|u| (u.name.clone(), u.id.clone()))
        .collect()
}

/// A config over two directories of placeholder files (planning reads no image).
fn synthetic(dir: &Path, extra: &str) -> ExperimentConfig {
    for d in ["fm", "mnist", "digits"] {
        let file = dir.join(d).join("train-images-idx3-ubyte");
        if !file.exists() {
            std::fs::create_dir_all(dir.join(d)).unwrap();
            std::fs::write(file, d).unwrap();
        }
    }
    read_config(
        dir,
        &format!(
            r#"
name = "plan-test"
[data]
dataset = "fashion-mnist"
dir = "fm"
allow_subset = true
[backbone.train]
model = "cnn-mnist"
epochs = 1
[[ood]]
name = "mnist"
dataset = "mnist"
dir = "mnist"
{extra}
"#
        ),
    )
}

#[test]
fn planning_twice_gives_the_same_ids_and_an_ood_set_only_adds_units() {
    let tmp = tempfile::tempdir().unwrap();
    let config = synthetic(tmp.path(), "");
    let a = plan_data(&config, "cpu").unwrap();
    let b = plan_data(&config, "cpu").unwrap();
    assert_eq!(ids(&a.plan), ids(&b.plan));
    let names: Vec<&str> = a.plan.units.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "backbone",
            "split",
            "features/train",
            "features/val",
            "features/test",
            "features/ood-mnist"
        ]
    );
    // A backbone trained by the run never saw the validation part: the fits use it.
    assert_eq!(a.features["fit"], a.features["val"]);
    assert_eq!(a.num_classes, 10);
    assert_eq!(
        a.feature_dim,
        crate::config_check::preset_feature_dim("cnn-mnist").unwrap()
    );
    // Fashion-MNIST has no training augmentation: no view cache even in the default augmented mode.
    assert!(a.views.is_none());

    let more = synthetic(
        tmp.path(),
        "[[ood]]\nname = \"digits\"\ndataset = \"mnist\"\ndir = \"digits\"",
    );
    let c = plan_data(&more, "cpu").unwrap();
    let (before, after) = (ids(&a.plan), ids(&c.plan));
    for (name, id) in &before {
        assert_eq!(after.get(name), Some(id), "{name} changed its id");
    }
    let added: Vec<&String> = after.keys().filter(|n| !before.contains_key(*n)).collect();
    assert_eq!(added, ["features/ood-digits"]);
    assert_eq!(c.features["ood:digits"], after["features/ood-digits"]);
}

#[test]
fn inputs_and_settings_change_exactly_the_units_that_use_them() {
    let tmp = tempfile::tempdir().unwrap();
    let config = synthetic(tmp.path(), "");
    let a = ids(&plan_data(&config, "cpu").unwrap().plan);
    // Another device kind: another backbone (and everything after it); the device index is not planned.
    let cuda = ids(&plan_data(&config, "cuda").unwrap().plan);
    assert_ne!(a["backbone"], cuda["backbone"]);
    // A changed OOD file changes that OOD set's features only.
    std::fs::write(tmp.path().join("mnist/train-images-idx3-ubyte"), "changed").unwrap();
    let b = ids(&plan_data(&config, "cpu").unwrap().plan);
    for (name, id) in &a {
        assert_eq!(name == "features/ood-mnist", &b[name] != id, "{name}");
    }
    // A changed training file changes everything (the backbone trains on it).
    std::fs::write(tmp.path().join("fm/train-images-idx3-ubyte"), "changed").unwrap();
    let c = ids(&plan_data(&config, "cpu").unwrap().plan);
    assert!(b.iter().all(|(name, id)| &c[name] != id));
    // A test limit changes the split and the features, not the backbone.
    let mut limited = config.clone();
    limited.data.limit_test = 100;
    let d = ids(&plan_data(&limited, "cpu").unwrap().plan);
    assert_eq!(d["backbone"], c["backbone"]);
    assert_ne!(d["split"], c["split"]);
    assert_ne!(d["features/test"], c["features/test"]);
}

#[test]
fn a_held_out_calibration_split_gets_its_own_features_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let config = synthetic(tmp.path(), "");
    let mut holdout = config.clone();
    holdout.data.validation = crate::validation::ValidationChoice::TestHoldout;
    let p = plan_data(&holdout, "cpu").unwrap();
    let fit = p.plan.find(&p.features["fit"]).unwrap();
    assert_eq!(fit.name, "features/calibration");
    assert_ne!(p.features["fit"], p.features["val"]);
}

#[test]
fn a_missing_ood_directory_is_left_out_with_a_warning_and_a_missing_data_dir_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let config = synthetic(tmp.path(), "");
    let full = plan_data(&config, "cpu").unwrap();
    assert!(full.warnings.is_empty());
    let mut missing = config.clone();
    missing.ood[0].dir = tmp.path().join("no-such-dir");
    let p = plan_data(&missing, "cpu").unwrap();
    assert!(!p.features.contains_key("ood:mnist"));
    assert_eq!(p.warnings.len(), 1);
    let w = &p.warnings[0];
    assert!(
        w.starts_with("OOD set mnist skipped")
            && w.contains("no-such-dir")
            && w.contains("ood[0].dir"),
        "{w}"
    );
    // Nothing else changes.
    let (a, b) = (ids(&full.plan), ids(&p.plan));
    assert!(b.iter().all(|(name, id)| a.get(name) == Some(id)));
    assert_eq!(a.len(), b.len() + 1);
    // Two OOD sets of one name (up to case and punctuation) are a config error naming the key.
    let twice = synthetic(
        tmp.path(),
        "[[ood]]\nname = \"MNIST!\"\ndataset = \"mnist\"\ndir = \"digits\"",
    );
    let err = plan_data(&twice, "cpu").err().unwrap().to_string();
    assert!(err.starts_with("ood[1].name: "), "{err}");
    let mut config = config.clone();
    config.data.dir = tmp.path().join("gone");
    let err = plan_data(&config, "cpu").err().unwrap().to_string();
    assert!(
        err.starts_with("data.dir: ") && err.contains("gone"),
        "{err}"
    );
}

const TRAIN_BACKBONE: &str = "[backbone.train]
model = \"cnn-mnist\"
epochs = 1
batch_size = 100
lr = 0.001
augment = false";

fn quickstart_config(dir: &Path, validation: &str, backbone: &str) -> Option<ExperimentConfig> {
    let data = repo().join("data/quickstart");
    if !data.join("fashion-mnist").exists() {
        eprintln!("skipping: bundled data/quickstart not present");
        return None;
    }
    Some(read_config(
        dir,
        &format!(
            r#"
name = "data-units"
[data]
dataset = "fashion-mnist"
dir = "{data}/fashion-mnist"
allow_subset = true
limit_train = 300
limit_val = 100
limit_test = 200
validation = "{validation}"
{backbone}
[features]
batch_size = 64
[[ood]]
name = "mnist"
dataset = "mnist"
dir = "{data}/mnist"
allow_subset = true
limit = 50
"#,
            data = data.display()
        ),
    ))
}

fn options() -> ExecOptions {
    ExecOptions {
        device: tch::Device::Cpu,
        threads: None,
        head_threads: None,
        batch_siblings: false,
    }
}

fn execute(plan: &Plan, store: &Store) -> crate::plan::exec::ExecReport {
    let freshness = store.freshness(plan);
    Execution {
        plan,
        store,
        freshness: &freshness,
        keep_going: false,
    }
    .serial(&options(), &mut |_| {})
    .unwrap()
}

#[test]
fn data_units_run_end_to_end_on_the_quickstart_data() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(config) = quickstart_config(tmp.path(), "test-holdout", TRAIN_BACKBONE) else {
        return;
    };
    let p = plan_data(&config, "cpu").unwrap();
    let store = Store::new(tmp.path().join("run"));
    let report = execute(&p.plan, &store);
    assert_eq!(report.computed, p.plan.units.len());
    // Everything is fresh afterwards.
    let again = execute(&p.plan, &store);
    assert_eq!((again.computed, again.reused), (0, p.plan.units.len()));

    let (opts, mut resources, mut log) = (options(), Resources::default(), |_: &str| {});
    let mut ctx = UnitContext {
        store: &store,
        plan: &p.plan,
        options: &opts,
        resources: &mut resources,
        log: &mut log,
    };
    let split_id = p.plan.by_name("split").unwrap().id.clone();
    let info: std::rc::Rc<SplitInfo> = load_split(&mut ctx, &split_id).unwrap();
    // The split is stage 1's: the seed split of the training images, then the limits (decal_data's).
    let train = super::inputs::read_split(
        &super::DataRef {
            dataset: "fashion-mnist".into(),
            dir: repo().join("data/quickstart/fashion-mnist"),
            allow_subset: true,
            fingerprint: String::new(),
        },
        decal_data::SplitName::Train,
    )
    .unwrap();
    let manifest =
        decal_data::split::SplitManifest::seed("fashionmnist", train.len(), 0.8, 1).unwrap();
    let limit = decal_data::split::limit;
    assert_eq!(info.train_indices, limit(&manifest.train_indices, 300));
    assert_eq!(info.val_indices, limit(&manifest.valid_indices, 100));
    // 200 evenly spaced test images, 20 % of them held out (stratified), disjoint.
    assert_eq!(
        info.test_original.len() + info.calibration_original.len(),
        200
    );
    assert!(info.test_holdout && (35..=45).contains(&info.calibration_original.len()));
    assert!(info
        .calibration_original
        .iter()
        .all(|i| !info.test_original.contains(i)));
    // Features: one row per image, the labels of those images, the planned width.
    let sizes = [
        ("train", 300),
        ("val", 100),
        ("test", info.test_original.len()),
        ("fit", info.calibration_original.len()),
        ("ood:mnist", 50),
    ];
    for (set, n) in sizes {
        let fs = load_features(&mut ctx, &p.features[set]).unwrap();
        assert_eq!(
            (fs.len(), fs.feature_dim as i64),
            (n, p.feature_dim),
            "{set}"
        );
        assert!(fs.features.iter().all(|v| v.is_finite()), "{set}");
    }
    let val = load_features(&mut ctx, &p.features["val"]).unwrap();
    let want: Vec<i64> = info
        .val_indices
        .iter()
        .map(|&i| train.labels[i] as i64)
        .collect();
    assert_eq!(val.labels, want);
    // The features are the one extractor's, through the trained body (recomputed here bit for bit).
    let backbone_id = p.plan.by_name("backbone").unwrap().id.clone();
    let bb = super::load_backbone(&mut ctx, &backbone_id).unwrap();
    let images =
        super::device_images(&mut ctx, &split_id, &backbone_id, super::Images::Train).unwrap();
    let direct = decal_train::features::extract(
        bb.classifier.body.as_ref(),
        &images,
        &info.val_indices,
        7,
        decal_train::features::BodyMode::Frozen,
        None,
    )
    .unwrap();
    assert_eq!(direct.labels, val.labels);
    let max_diff = direct
        .features
        .iter()
        .zip(&val.features)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_diff <= 1e-5,
        "batch size changed the features by {max_diff}"
    );
    // A damaged feature file makes that unit (and only it) dirty.
    let test_dir = store.unit_dir(&p.features["test"]);
    std::fs::write(test_dir.join("features.labels.npy"), b"damaged").unwrap();
    let freshness = store.freshness(&p.plan);
    let dirty: Vec<&str> = p
        .plan
        .units
        .iter()
        .filter(|u| !freshness[&u.id].is_fresh())
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(dirty, ["features/test"]);

    // The trained backbone's `best/` as a checkpoint of another experiment on the same data: its run
    // records decide the validation source at run time (`features/fit`), and they show the validation part
    // is clean, so the fits use it.
    let best = store.unit_dir(&backbone_id).join("best");
    let sub = tempfile::tempdir().unwrap();
    let checkpoint = format!("[backbone]\ncheckpoint = \"{}\"", best.display());
    let config = quickstart_config(sub.path(), "auto", &checkpoint).unwrap();
    let q = plan_data(&config, "cpu").unwrap();
    let fit = q.plan.find(&q.features["fit"]).unwrap();
    assert_eq!(fit.name, "features/fit");
    // It depends on features/val, whose features it copies when the split chooses the validation part.
    assert_eq!(fit.deps.get("val"), Some(&q.features["val"]));
    let store = Store::new(sub.path().join("run"));
    let report = execute(&q.plan, &store);
    assert_eq!(report.computed, q.plan.units.len());
    let (mut resources, mut log) = (Resources::default(), |_: &str| {});
    let mut ctx = UnitContext {
        store: &store,
        plan: &q.plan,
        options: &opts,
        resources: &mut resources,
        log: &mut log,
    };
    let split_id = q.plan.by_name("split").unwrap().id.clone();
    let info = load_split(&mut ctx, &split_id).unwrap();
    assert!(!info.test_holdout, "{}", info.validation_note);
    assert!(info.known.contains("disjoint"), "{}", info.known);
    let fit = load_features(&mut ctx, &q.features["fit"]).unwrap();
    assert_eq!(fit.features, val.features);
    let (fit_key, val_key) = (
        super::features_key(&ctx, &q.features["fit"]).unwrap(),
        super::features_key(&ctx, &q.features["val"]).unwrap(),
    );
    assert_eq!(fit_key.data_hash, val_key.data_hash);
    assert_eq!(fit_key.backbone_hash, val_key.backbone_hash);
    let done =
        std::fs::read_to_string(store.unit_dir(&q.features["fit"]).join("done.json")).unwrap();
    assert!(done.contains("copied_from"), "{done}");
}

/// A tiny ResNet with BatchNorm for 1-channel images, randomly initialised, saved as an imported checkpoint.
fn bn_checkpoint(dir: &Path) -> PathBuf {
    use decal_models::resnet::{ResNetBlock, ResNetConfig};
    let arch = decal_models::ArchConfig::ResNet(ResNetConfig {
        block: ResNetBlock::Basic,
        num_blocks: [1, 1, 1, 1],
        base_width: 4,
        in_channels: 1,
        num_classes: 10,
    });
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    decal_models::seeded(7, || decal_models::try_build_classifier(&vs.root(), &arch)).unwrap();
    let ckpt = dir.join("ckpt");
    let meta = decal_models::checkpoint::CheckpointMeta::new(arch, "imported");
    decal_models::checkpoint::save(&ckpt, &vs, &meta).unwrap();
    ckpt
}

#[test]
fn drifted_features_use_the_head_units_body_and_leave_the_shared_backbone_frozen() {
    let tmp = tempfile::tempdir().unwrap();
    let data = repo().join("data/quickstart");
    if !data.join("fashion-mnist").exists() {
        eprintln!("skipping: bundled data/quickstart not present");
        return;
    }
    let ckpt = bn_checkpoint(tmp.path());
    let config = read_config(
        tmp.path(),
        &format!(
            r#"
name = "drift"
[data]
dataset = "fashion-mnist"
dir = "{data}/fashion-mnist"
allow_subset = true
limit_train = 100
limit_val = 50
limit_test = 100
[backbone]
checkpoint = "{ckpt}"
[features]
mode = "exact"
body = "seed-bn-drift"
batch_size = 32
"#,
            data = data.display(),
            ckpt = ckpt.display()
        ),
    );
    let mut ctx = PlanCtx {
        config: &config,
        device_kind: "cpu".into(),
        plan: Plan::default(),
        backbone: None,
        split: None,
        features: BTreeMap::new(),
        views: None,
        feature_dim: 0,
        num_classes: 0,
        rows: Vec::new(),
        report_inputs: BTreeMap::new(),
        warnings: Vec::new(),
        logits: BTreeMap::new(),
        ood_sets: Vec::new(),
        dataset: String::new(),
    };
    super::plan(&mut ctx).unwrap();
    // An imported checkpoint's training images are unknown: the fits use a held-out calibration part.
    assert_eq!(
        ctx.plan.find(&ctx.features["fit"]).unwrap().name,
        "features/calibration"
    );
    // A stand-in for a head unit: any unit whose directory will hold the drifted body's statistics.
    let base = ctx.plan.by_name("features/val").unwrap().clone();
    let crate::units::UnitSpec::Features(mut spec) = base.spec.clone() else {
        unreachable!()
    };
    spec.batch_size = 31;
    let head = ctx
        .plan
        .add(
            "head-stand-in",
            crate::units::UnitSpec::Features(spec),
            base.deps.clone(),
            crate::plan::Resource::Cpu,
        )
        .unwrap();
    let drifted =
        super::plan_drifted_features(&mut ctx, &head, "TST", 3, &["fit", "test"]).unwrap();
    assert_eq!(
        ctx.plan.find(&drifted["test"]).unwrap().name,
        "features/tst/seed-3/test"
    );
    assert_eq!(
        ctx.plan.find(&drifted["fit"]).unwrap().name,
        "features/tst/seed-3/calibration"
    );
    let plan = ctx.plan.clone();
    let store = Store::new(tmp.path().join("run"));
    // Without the head's body state the drifted units fail (and only they).
    let freshness = store.freshness(&plan);
    let report = Execution {
        plan: &plan,
        store: &store,
        freshness: &freshness,
        keep_going: true,
    }
    .serial(&options(), &mut |_| {})
    .unwrap();
    assert_eq!(report.failed.len(), 2, "{:?}", report.failed);
    assert!(report.failed[0].1.contains(crate::drift::BODY_STATE_FILE));
    // The head's drifted body: BatchNorm statistics moved by train-mode passes.
    let loaded = decal_models::checkpoint::load(&ckpt, tch::Device::Cpu).unwrap();
    tch::manual_seed(1);
    tch::no_grad(|| {
        for _ in 0..3 {
            let x = tch::Tensor::randn([16, 1, 28, 28], (tch::Kind::Float, tch::Device::Cpu));
            let _ = loaded.classifier.body.features(&x, true);
        }
    });
    let state = crate::drift::BodyState::capture(&loaded.vs);
    assert!(!state.is_empty());
    let state_file = store.unit_dir(&head).join(crate::drift::BODY_STATE_FILE);
    state.save(&state_file).unwrap();
    let freshness = store.freshness(&plan);
    let again = Execution {
        plan: &plan,
        store: &store,
        freshness: &freshness,
        keep_going: false,
    }
    .serial(&options(), &mut |_| {})
    .unwrap();
    assert_eq!(again.computed, 2);

    let (opts, mut resources, mut log) = (options(), Resources::default(), |_: &str| {});
    let mut uctx = UnitContext {
        store: &store,
        plan: &plan,
        options: &opts,
        resources: &mut resources,
        log: &mut log,
    };
    let frozen = load_features(&mut uctx, &ctx.features["test"]).unwrap();
    let moved = load_features(&mut uctx, &drifted["test"]).unwrap();
    assert_eq!(frozen.labels, moved.labels);
    assert_ne!(frozen.features, moved.features);
    let key = super::features_key(&uctx, &drifted["test"]).unwrap();
    let hash = crate::drift::BodyState::file_hash(&state_file).unwrap();
    assert!(key.backbone_hash.ends_with(&format!("+bn-state:{hash}")));
    // The drifted features are the drifted body's, computed here directly.
    let split_id = plan.by_name("split").unwrap().id.clone();
    let test_images = super::load_images(&mut uctx, &split_id, super::Images::Test).unwrap();
    let mean_std =
        crate::units::data::load_backbone(&mut uctx, &plan.by_name("backbone").unwrap().id)
            .map(|b| (b.mean.clone(), b.std.clone()))
            .unwrap();
    let dev = decal_train::stage1::DeviceImages::new(
        &test_images,
        &mean_std.0,
        &mean_std.1,
        tch::Device::Cpu,
    );
    let all: Vec<usize> = (0..test_images.len()).collect();
    let direct = decal_train::features::extract(
        loaded.classifier.body.as_ref(),
        &dev,
        &all,
        32,
        decal_train::features::BodyMode::Frozen,
        None,
    )
    .unwrap();
    assert_eq!(direct.features, moved.features);
    // In one process: the drifted unit, then the frozen one — the shared backbone was restored.
    let mut resources = Resources::default();
    for name in ["features/tst/seed-3/test", "features/test"] {
        let unit = plan.by_name(name).unwrap();
        crate::plan::exec::run_one(
            &plan,
            &store,
            unit,
            &opts,
            false,
            &mut resources,
            &mut |_| {},
        )
        .unwrap();
    }
    let mut resources = Resources::default();
    let mut uctx = UnitContext {
        store: &store,
        plan: &plan,
        options: &opts,
        resources: &mut resources,
        log: &mut log,
    };
    assert_eq!(
        load_features(&mut uctx, &ctx.features["test"])
            .unwrap()
            .features,
        frozen.features
    );
}

/// A float32 view cache's unit spec serialises as before `body_precision` existed (so finished float32
/// `views` units keep their ids); a bf16 one differs and says so.
#[test]
fn views_spec_writes_its_body_precision_only_when_not_float32() {
    let spec = super::ViewsSpec {
        views: 10,
        storage: decal_train::views::Storage::F16,
        seed: 0,
        crop_padding: 4,
        batch_size: 512,
        device: "cpu".into(),
        body_precision: None,
    };
    let fp32 = serde_json::to_string(&spec).unwrap();
    assert_eq!(
        fp32,
        r#"{"views":10,"storage":"f16","seed":0,"crop_padding":4,"batch_size":512,"device":"cpu"}"#
    );
    let bf16 = super::ViewsSpec {
        body_precision: Some(decal_train::precision::Precision::Bf16),
        ..spec.clone()
    };
    let text = serde_json::to_string(&bf16).unwrap();
    assert!(text.ends_with(r#","body_precision":"bf16"}"#), "{text}");
    let back: super::ViewsSpec = serde_json::from_str(&fp32).unwrap();
    assert_eq!(back, spec);
}
