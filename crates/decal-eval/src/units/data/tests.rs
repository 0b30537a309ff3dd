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
        std::fs::create_dir_all(dir.join(d)).unwrap();
        std::fs::write(dir.join(d).join("train-images-idx3-ubyte"), d).unwrap();
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
    let mut config = config.clone();
    config.data.dir = tmp.path().join("gone");
    let err = plan_data(&config, "cpu").err().unwrap().to_string();
    assert!(
        err.starts_with("data.dir: ") && err.contains("gone"),
        "{err}"
    );
}

fn quickstart_config(dir: &Path, validation: &str) -> Option<ExperimentConfig> {
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
[backbone.train]
model = "cnn-mnist"
epochs = 1
batch_size = 100
lr = 0.001
augment = false
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
    let Some(config) = quickstart_config(tmp.path(), "test-holdout") else {
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
    // The split is stage 1's: the seed split of the training images, then the limits.
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
    assert_eq!(info.train_indices, manifest.train_indices[..300]);
    assert_eq!(info.val_indices, manifest.valid_indices[..100]);
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
}
