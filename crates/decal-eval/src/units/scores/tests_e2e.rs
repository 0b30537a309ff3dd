//! A small end-to-end check of the scoring units: a V-TST head trained here on small synthetic features,
//! stored as head and features units, scored by the planned `eval` / `ood` units through the executor, and
//! compared with the old run's computation (the same predictor, salts and suite calls in one place).

use std::collections::BTreeMap;
use std::path::Path;

use decal_train::features::{BodyMode, CacheKey, FeatureSet};
use decal_train::stage2::{self, Stage2Config, TrainSource};
use serde_json::{json, Value};

use super::*;
use crate::experiment::ExperimentConfig;
use crate::plan::build::{MethodRow, PlanCtx};
use crate::plan::exec::run_one;
use crate::plan::store::Store;
use crate::plan::Plan;
use crate::predict::Predictor;
use crate::units::data::FeaturesSpec;
use crate::units::heads::{
    HeadFeatures, HeadUnitSpec, TemperatureFit, TemperatureSpec, TemperatureTarget,
};
use crate::units::{ExecOptions, Resources};

const F: usize = 6;
const K: usize = 4;

fn features(n: usize, seed: u64) -> FeatureSet {
    let mut rng = decal_train::stage1::SplitMix64::for_epoch(seed, 0, 0);
    let labels: Vec<i64> = (0..n).map(|i| (i % K) as i64).collect();
    let features = labels
        .iter()
        .flat_map(|&y| {
            let noise: Vec<f32> = (0..F)
                .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                .collect();
            (0..F).map(move |j| noise[j] + if j == y as usize { 1.5 } else { 0.0 })
        })
        .collect();
    FeatureSet {
        features,
        labels,
        feature_dim: F,
    }
}

/// Adds an input unit to the plan with its output written and its completion record.
fn input_unit(
    plan: &mut Plan,
    store: &Store,
    name: &str,
    spec: UnitSpec,
    outcome: Outcome,
    write: impl FnOnce(&Path),
) -> UnitId {
    let id = plan
        .add(name, spec, BTreeMap::new(), Resource::Cpu)
        .unwrap();
    let unit = plan.find(&id).unwrap().clone();
    let dir = store.begin(&unit, false).unwrap();
    write(&dir);
    store
        .finish(&unit, outcome, Vec::new(), Value::Null, 0.0)
        .unwrap();
    id
}

fn features_unit(plan: &mut Plan, store: &Store, set: &str, fs: &FeatureSet) -> UnitId {
    let spec = UnitSpec::Features(FeaturesSpec {
        set: set.into(),
        ood: None,
        batch_size: 64,
        device: "cpu".into(),
        drifted: false,
    });
    let key = CacheKey {
        backbone_hash: "test".into(),
        data_hash: set.into(),
        transform: "none".into(),
        body_mode: BodyMode::Frozen,
    };
    input_unit(
        plan,
        store,
        &format!("features/{set}"),
        spec,
        Outcome::Done,
        |dir| {
            decal_train::features::save(dir, "features", fs, &key).unwrap();
        },
    )
}

fn stage2_config() -> Stage2Config {
    let head = decal_models::heads::HeadConfig::vtst(F as i64, 3, K as i64);
    serde_json::from_value(
        json!({"head": head, "epochs": 2, "batch_size": 32, "lr": 1e-2, "seed": 0}),
    )
    .unwrap()
}

fn roundtrip(v: Value) -> Value {
    serde_json::from_str(&v.to_string()).unwrap()
}

#[test]
fn scoring_units_reproduce_the_old_evaluation_and_skip_rows_whose_temperature_was_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path());
    let sets: Vec<(&str, FeatureSet)> = vec![
        ("train", features(96, 1)),
        ("val", features(40, 2)),
        ("test", features(64, 3)),
        ("ood:a", features(30, 4)),
        ("ood:b", features(24, 5)),
    ];
    let mut plan = Plan::default();
    let mut shared = BTreeMap::new();
    for (set, fs) in &sets {
        shared.insert(set.to_string(), features_unit(&mut plan, &store, set, fs));
    }
    let config = stage2_config();
    let trained = stage2::train(
        &config,
        TrainSource::Cached(&sets[0].1),
        &sets[1].1,
        tch::Device::Cpu,
        &mut |_| {},
    )
    .unwrap();
    let head_spec = UnitSpec::Head(HeadUnitSpec {
        head: "V-TST".into(),
        stage2: config,
        features: HeadFeatures::Unaugmented,
        device: "cpu".into(),
    });
    let head = input_unit(
        &mut plan,
        &store,
        "head/v-tst/seed-0",
        head_spec,
        Outcome::Done,
        |dir| {
            stage2::save_head(dir, &trained, json!({})).unwrap();
        },
    );
    let temperature_spec = UnitSpec::Temperature(TemperatureSpec {
        method: "TS + V-TST m=10".into(),
        seed: Some(0),
        fit: TemperatureFit::Exact,
        target: TemperatureTarget::Head {
            num_samples: 10,
            eval_seed: 0,
        },
        device: "cpu".into(),
    });
    let skip = Outcome::Skipped {
        reason: "no finite optimum".into(),
    };
    let temperature = input_unit(
        &mut plan,
        &store,
        "temperature/ts-v-tst-m-10/seed-0",
        temperature_spec,
        skip,
        |_| {},
    );

    let cfg: ExperimentConfig = toml::from_str(
        "name = \"e2e\"\nseeds = [0]\n[data]\ndataset = \"cifar10\"\ndir = \"/nonexistent\"\n[backbone]\n\
         [[ood]]\nname = \"a\"\ndataset = \"svhn\"\ndir = \"/x\"\n[[ood]]\nname = \"b\"\ndataset = \"svhn\"\ndir = \"/x\"\n",
    )
    .unwrap();
    let row = |method: &str, temperature: Option<UnitId>| MethodRow {
        method: method.into(),
        seed: Some(0),
        num_samples: 10,
        model: head.clone(),
        temperature,
        calibrator: None,
        features: shared.clone(),
        head: Some("V-TST".into()),
    };
    let mut ctx = PlanCtx {
        config: &cfg,
        device_kind: "cpu".into(),
        plan,
        backbone: None,
        split: None,
        features: shared.clone(),
        views: None,
        feature_dim: F as i64,
        num_classes: K as i64,
        rows: vec![
            row("V-TST m=10", None),
            row("TS + V-TST m=10", Some(temperature)),
        ],
        report_inputs: BTreeMap::new(),
        warnings: Vec::new(),
        logits: BTreeMap::new(),
        ood_sets: cfg.ood.iter().map(|o| o.name.clone()).collect(),
        dataset: decal_data::DatasetName::parse(&cfg.data.dataset)
            .map(|d| d.as_str().to_string())
            .unwrap_or_default(),
    };
    super::plan(&mut ctx).unwrap();
    let plan = ctx.plan;
    let options = ExecOptions {
        device: tch::Device::Cpu,
        threads: None,
        head_threads: Some(1),
        batch_siblings: false,
    };
    let mut resources = Resources::default();
    let mut records = BTreeMap::new();
    for unit in plan
        .units
        .iter()
        .filter(|u| matches!(u.spec, UnitSpec::Eval(_) | UnitSpec::Ood(_)))
    {
        let r = run_one(
            &plan,
            &store,
            unit,
            &options,
            false,
            &mut resources,
            &mut |_| {},
        )
        .unwrap();
        records.insert(unit.name.clone(), r);
    }

    // The old run, in one place: salts 1 / 2 / 3 / 100 + i on the row's evaluation seed.
    let (_vs, head_model, _) = stage2::load_head(&store.unit_dir(&head), tch::Device::Cpu).unwrap();
    let seed = crate::units::heads::row_eval_seed(0, Some(0));
    let pred = |fs: &FeatureSet, salt: u64| {
        let p = Predictor::Head {
            head: &head_model,
            num_samples: 10,
            eval_seed: seed ^ salt,
            temperature: 1.0,
        };
        crate::predict::predict(&p, fs, tch::Device::Cpu).unwrap()
    };
    let rc = crate::suite::RecordContext {
        run: "e2e".into(),
        seed: Some(0),
        method: "V-TST m=10".into(),
    };
    let settings = crate::suite::EvalSettings {
        profiles: vec![
            decal_metrics::profile::Profile::default_profile(),
            decal_metrics::profile::Profile::paper(),
        ],
        bootstrap: Some(decal_metrics::bootstrap::BootstrapConfig {
            resamples: 1000,
            seed: 0,
            confidence: 0.95,
        }),
    };
    let test_p = pred(&sets[2].1, 1);
    let indist = crate::suite::in_distribution(&rc, &test_p, "test", "cifar10", &settings).unwrap();
    let mut old = indist.records.clone();
    let tr = Predictions::concat(&[&pred(&sets[0].1, 2), &pred(&sets[1].1, 3)]).unwrap();
    old.extend(
        crate::suite::train_nll(&rc, &tr, "cifar10", &settings)
            .unwrap()
            .0,
    );
    let ood_sets = vec![
        ("a".to_string(), pred(&sets[3].1, 100)),
        ("b".to_string(), pred(&sets[4].1, 101)),
    ];
    let (r, old_ood) = crate::suite::ood(&rc, &test_p, &ood_sets);
    old.extend(r);
    let (r, old_paper) = crate::suite::ood_paper(&rc, &test_p, &ood_sets);
    old.extend(r);

    let read = |name: &str, file: &str| -> Value {
        let dir = store.unit_dir(&plan.by_name(name).unwrap().id);
        serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
    };
    let eval = read("eval/v-tst-m-10/seed-0", "eval.json");
    let oods = [
        read("ood/v-tst-m-10/seed-0/a", "ood.json"),
        read("ood/v-tst-m-10/seed-0/b", "ood.json"),
        read("ood/v-tst-m-10/seed-0/pooled", "ood.json"),
    ];
    let (merged, results) = files::merge_row(&eval, &oods.iter().collect::<Vec<_>>()).unwrap();
    assert_eq!(roundtrip(json!(merged)), roundtrip(json!(old)));
    assert_eq!(results["ood"], roundtrip(old_ood));
    assert_eq!(results["ood_paper"], roundtrip(old_paper));
    assert_eq!(
        eval["reliability"],
        roundtrip(json!(indist.primary.reliability))
    );
    assert_eq!(eval["head"], json!("V-TST"));
    let eval_dir = store.unit_dir(&plan.by_name("eval/v-tst-m-10/seed-0").unwrap().id);
    assert!(eval_dir.join("predictions/test_probs.npy").is_file());
    let pooled_dir = store.unit_dir(&plan.by_name("ood/v-tst-m-10/seed-0/pooled").unwrap().id);
    assert!(pooled_dir.join("ood_histogram.csv").is_file());

    // The tempered row's temperature fit was skipped: its eval and OOD units skip, saying why.
    for name in [
        "eval/ts-v-tst-m-10/seed-0",
        "ood/ts-v-tst-m-10/seed-0/a",
        "ood/ts-v-tst-m-10/seed-0/pooled",
    ] {
        match &records[name].outcome {
            Outcome::Skipped { reason } => {
                assert!(reason.contains("no finite optimum"), "{name}: {reason}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}
