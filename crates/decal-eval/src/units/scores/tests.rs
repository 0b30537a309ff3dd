//! Tests of the scoring planner (which units an edit adds or changes) and of the OOD split into per-set
//! and pooled units (the same records, in the same order, as the old single call).

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::experiment::ExperimentConfig;
use crate::plan::build::{MethodRow, PlanCtx};
use crate::plan::Plan;
use crate::predict::{LogitKind, Predictions};

fn config(ood: &[&str], extra: &str) -> ExperimentConfig {
    let mut text = format!("name = \"t\"\nseeds = [0, 1]\n{extra}\n[backbone]\n");
    for o in ood {
        text += &format!("[[ood]]\nname = \"{o}\"\ndataset = \"svhn\"\ndir = \"/nonexistent\"\n");
    }
    toml::from_str(&text).unwrap()
}

fn fake(what: &str) -> UnitId {
    decal_core::sha256_bytes(what.as_bytes())
}

/// The rows helper B1's planner makes for a backbone, TS and one head with two seeds (inputs faked: the
/// scoring planner only wires ids).
fn rows(config: &ExperimentConfig) -> Vec<MethodRow> {
    let features = |head: &str| -> BTreeMap<String, UnitId> {
        let mut sets: Vec<String> = ["train", "val", "test"].map(String::from).to_vec();
        sets.extend(config.ood.iter().map(|o| format!("ood:{}", o.name)));
        // Drifted heads have their own features; the shared ones do not depend on the head.
        sets.into_iter()
            .map(|s| (s.clone(), fake(&format!("features {head} {s}"))))
            .collect()
    };
    let mut out = vec![
        MethodRow {
            method: "Baseline".into(),
            seed: None,
            num_samples: 0,
            model: fake("backbone"),
            temperature: None,
            calibrator: None,
            features: features("shared"),
            head: None,
        },
        MethodRow {
            method: "TS".into(),
            seed: None,
            num_samples: 0,
            model: fake("backbone"),
            temperature: Some(fake("temperature ts")),
            calibrator: None,
            features: features("shared"),
            head: None,
        },
    ];
    for seed in [0, 1] {
        for m in [1, 10] {
            out.push(MethodRow {
                method: format!("V-TST m={m}"),
                seed: Some(seed),
                num_samples: m,
                model: fake(&format!("head {seed}")),
                temperature: None,
                calibrator: None,
                features: features(&format!("head {seed}")),
                head: Some("V-TST".into()),
            });
        }
    }
    out
}

/// The data planner's shared features: every OOD set whose name does not start with `missing` (standing
/// for a set whose directory is missing, left out with a warning).
fn shared_features(config: &ExperimentConfig) -> BTreeMap<String, UnitId> {
    config
        .ood
        .iter()
        .filter(|o| !o.name.starts_with("missing"))
        .map(|o| format!("ood:{}", o.name))
        .chain(["train", "val", "test", "fit"].map(String::from))
        .map(|s| (s.clone(), fake(&format!("features shared {s}"))))
        .collect()
}

fn plan_of(config: &ExperimentConfig) -> Result<(Plan, BTreeMap<String, UnitId>), PlanError> {
    let features = shared_features(config);
    // The sets the data planner kept (it leaves out those whose directory is missing).
    let ood_sets = config
        .ood
        .iter()
        .map(|o| o.name.clone())
        .filter(|n| features.contains_key(&format!("ood:{n}")))
        .collect();
    let mut ctx = PlanCtx {
        config,
        device_kind: "cpu".into(),
        plan: Plan::default(),
        backbone: Some(fake("backbone")),
        split: Some(fake("split")),
        features,
        views: None,
        feature_dim: 8,
        num_classes: 10,
        rows: rows(config),
        report_inputs: BTreeMap::new(),
        warnings: Vec::new(),
        logits: BTreeMap::new(),
        ood_sets,
        dataset: decal_data::DatasetName::parse(&config.data.dataset)
            .map(|d| d.as_str().to_string())
            .unwrap_or_default(),
    };
    plan(&mut ctx)?;
    Ok((ctx.plan, ctx.report_inputs))
}

fn ids(plan: &Plan) -> BTreeMap<String, UnitId> {
    plan.units
        .iter()
        .map(|u| (u.name.clone(), u.id.clone()))
        .collect()
}

#[test]
fn every_row_gets_an_eval_unit_and_one_ood_unit_per_set() {
    let (plan, report) = plan_of(&config(&["SVHN"], "")).unwrap();
    let names: Vec<&str> = plan.units.iter().map(|u| u.name.as_str()).collect();
    for row in ["baseline", "ts", "v-tst-m-1/seed-0", "v-tst-m-10/seed-1"] {
        assert!(names.contains(&format!("eval/{row}").as_str()), "{names:?}");
        assert!(
            names.contains(&format!("ood/{row}/svhn").as_str()),
            "{names:?}"
        );
    }
    // One set: a pooled unit only where the row draws the histogram (baseline rows, smallest seed).
    let pooled: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.ends_with("/pooled"))
        .collect();
    assert_eq!(
        pooled,
        [
            "ood/baseline/pooled",
            "ood/ts/pooled",
            "ood/v-tst-m-1/seed-0/pooled",
            "ood/v-tst-m-10/seed-0/pooled"
        ]
    );
    assert_eq!(report, ids(&plan), "every scoring unit is a report input");
    let eval = plan.by_name("eval/ts").unwrap();
    let roles: Vec<&str> = eval.deps.keys().map(String::as_str).collect();
    assert_eq!(roles, ["model", "temperature", "test", "train", "val"]);
    let ood = plan.by_name("ood/v-tst-m-10/seed-1/svhn").unwrap();
    assert_eq!(ood.deps["features"], fake("features head 1 ood:SVHN"));
    assert_eq!(
        ood.deps["eval"],
        plan.by_name("eval/v-tst-m-10/seed-1").unwrap().id
    );
    let UnitSpec::Ood(spec) = &ood.spec else {
        panic!("not an ood unit")
    };
    assert_eq!(
        spec.target,
        OodTarget::Set {
            name: "SVHN".into(),
            index: 0
        }
    );
    assert_eq!(
        spec.row.eval_seed,
        crate::units::heads::row_eval_seed(0, Some(1))
    );
    assert!(spec.paper, "the default profiles include paper");
}

#[test]
fn adding_an_ood_set_adds_only_its_units_and_changes_only_the_pooled_ones() {
    let before = ids(&plan_of(&config(&["svhn"], "")).unwrap().0);
    let after = ids(&plan_of(&config(&["svhn", "mnist"], "")).unwrap().0);
    for (name, id) in &before {
        if name.ends_with("/pooled") {
            assert_ne!(
                &after[name], id,
                "{name}: the pooled records depend on every set"
            );
        } else {
            assert_eq!(after.get(name), Some(id), "{name} must keep its id");
        }
    }
    let added: Vec<&String> = after.keys().filter(|n| !before.contains_key(*n)).collect();
    assert!(!added.is_empty());
    for name in added {
        assert!(
            name.starts_with("ood/") && (name.ends_with("/mnist") || name.ends_with("/pooled")),
            "{name} is not a unit of the new set"
        );
    }
    // With two sets every row pools them.
    assert!(after.contains_key("ood/v-tst-m-10/seed-1/pooled"));
}

#[test]
fn settings_reach_only_the_units_that_use_them() {
    let base = ids(&plan_of(&config(&["svhn"], "")).unwrap().0);
    let no_nll = plan_of(&config(&["svhn"], "[eval]\ntrain_nll = false\n"))
        .unwrap()
        .0;
    let eval = no_nll.by_name("eval/baseline").unwrap();
    assert!(!eval.deps.contains_key("train") && !eval.deps.contains_key("val"));
    assert_ne!(eval.id, base["eval/baseline"]);
    // The OOD units do not read the train NLL setting, but depend on the eval unit (its test predictions).
    assert_ne!(
        no_nll.by_name("ood/baseline/svhn").unwrap().id,
        base["ood/baseline/svhn"]
    );
    let default_only = plan_of(&config(&["svhn"], "[eval]\nprofiles = [\"default\"]\n"))
        .unwrap()
        .0;
    let UnitSpec::Ood(spec) = &default_only.by_name("ood/ts/svhn").unwrap().spec else {
        panic!("not an ood unit")
    };
    assert!(!spec.paper);
}

#[test]
fn planning_errors_name_the_key_or_the_unit_and_rows_score_the_sets_they_have() {
    let e = plan_of(&config(&["svhn", "Pooled"], ""))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("ood[1].name:") && e.contains("reserved"),
        "{e}"
    );
    let cfg = config(&["svhn"], "");
    let mut ctx = PlanCtx {
        config: &cfg,
        device_kind: "cpu".into(),
        plan: Plan::default(),
        backbone: None,
        split: None,
        features: shared_features(&cfg),
        views: None,
        feature_dim: 8,
        num_classes: 10,
        rows: rows(&cfg),
        report_inputs: BTreeMap::new(),
        warnings: Vec::new(),
        logits: BTreeMap::new(),
        ood_sets: cfg.ood.iter().map(|o| o.name.clone()).collect(),
        dataset: decal_data::DatasetName::parse(&cfg.data.dataset)
            .map(|d| d.as_str().to_string())
            .unwrap_or_default(),
    };
    // A row without features of a set (given logits may cover only some sets) does not score it; the
    // other rows still do.
    ctx.rows[2].features.remove("ood:svhn");
    plan(&mut ctx).unwrap();
    assert!(ctx.plan.by_name("ood/v-tst-m-1/seed-0/svhn").is_none());
    assert!(ctx.plan.by_name("ood/v-tst-m-1/seed-1/svhn").is_some());
    // A row without a test set cannot be evaluated: the error names the unit and the set.
    let mut ctx = PlanCtx {
        plan: Plan::default(),
        report_inputs: BTreeMap::new(),
        rows: rows(&cfg),
        features: shared_features(&cfg),
        logits: BTreeMap::new(),
        ood_sets: ctx.ood_sets.clone(),
        dataset: ctx.dataset.clone(),
        warnings: Vec::new(),
        ..ctx
    };
    ctx.rows[2].features.remove("test");
    let e = plan(&mut ctx).unwrap_err().to_string();
    assert!(
        e.starts_with("eval/v-tst-m-1/seed-0:") && e.contains("\"test\""),
        "{e}"
    );
}

fn predictions(n: usize, k: usize, seed: u64, kind: LogitKind) -> Predictions {
    let mut rng = decal_train::stage1::SplitMix64::for_epoch(seed, 0, 0);
    let mut u = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let logits: Vec<f64> = (0..n * k).map(|_| 4.0 * u() - 2.0).collect();
    let labels = (0..n).map(|i| (i % k) as i64).collect();
    let mi = (kind == LogitKind::LogProbs).then(|| (0..n).map(|_| -u()).collect());
    Predictions {
        num_classes: k,
        logits,
        kind,
        labels,
        neg_mutual_information: mi,
    }
}

#[test]
fn per_set_and_pooled_units_give_the_old_records_in_the_old_order() {
    for kind in [LogitKind::Logits, LogitKind::LogProbs] {
        let row = RowSpec {
            run: "t".into(),
            method: "V-TST m=10".into(),
            seed: Some(3),
            num_samples: 10,
            head: Some("V-TST".into()),
            eval_seed: 7,
            dataset: "CIFAR-10".into(),
        };
        let spec = |target| OodScoreSpec {
            row: row.clone(),
            paper: true,
            target,
        };
        let test = predictions(300, 10, 1, kind);
        let sets = vec![
            ("svhn".to_string(), predictions(200, 10, 2, kind)),
            ("mnist".to_string(), predictions(150, 10, 3, kind)),
        ];
        // The old run: one call over every set (and the pooled target), then the paper profile's.
        let rc = record_context(&row);
        let (mut old_records, old_ood) = crate::suite::ood(&rc, &test, &sets);
        let (paper_records, old_paper) = crate::suite::ood_paper(&rc, &test, &sets);
        old_records.extend(paper_records);
        // The units: one per set, then the pooled one on the concatenated predictions.
        let mut values = Vec::new();
        for (index, (name, p)) in sets.iter().enumerate() {
            let target = OodTarget::Set {
                name: name.clone(),
                index,
            };
            values.push(detect::score(
                &spec(target),
                &test,
                &[(name.clone(), p.clone())],
            ));
        }
        let all = Predictions::concat(&[&sets[0].1, &sets[1].1]).unwrap();
        let target = OodTarget::Pooled {
            sets: vec!["svhn".into(), "mnist".into()],
            histogram: false,
        };
        values.push(detect::score(&spec(target), &test, &[(POOLED.into(), all)]));
        let eval = json!({"records": [], "results": {"test": {"x": 1}}});
        let refs: Vec<&serde_json::Value> = values.iter().collect();
        let (records, results) = files::merge_row(&eval, &refs).unwrap();
        assert_eq!(records, old_records, "{kind:?}");
        assert_eq!(results["ood"], old_ood);
        assert_eq!(results["ood_paper"], old_paper);
        assert_eq!(results["test"], json!({"x": 1}));
    }
}

#[test]
fn a_set_the_data_planner_left_out_is_not_scored_and_does_not_count_in_the_salt() {
    let plan = plan_of(&config(&["missing-a", "svhn"], "")).unwrap().0;
    assert!(plan.units.iter().all(|u| !u.name.contains("missing")));
    let UnitSpec::Ood(spec) = &plan.by_name("ood/ts/svhn").unwrap().spec else {
        panic!("not an ood unit")
    };
    assert_eq!(
        spec.target,
        OodTarget::Set {
            name: "svhn".into(),
            index: 0
        }
    );
    // One set left: no pooled records, so only the histogram rows pool.
    assert!(plan.by_name("ood/v-tst-m-1/seed-1/pooled").is_none());
}
