//! Planner tests of the corruption sweep: what adding a corruption or a head seed adds to the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use decal_io::NpyArray;

use crate::experiment::ExperimentConfig;
use crate::plan::build::{MethodRow, PlanCtx};
use crate::plan::{Plan, PlanError, Resource};
use crate::units::UnitSpec;

use super::ShiftReduceSpec;

/// A corruption directory with `names` (2 severities × 4 images of 2×2 RGB) and a manifest.
pub(crate) fn corruption_dir(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    for n in names {
        let arr = NpyArray::from_u8(
            vec![8, 2, 2, 3],
            (0..96).map(|i| (i * 7 % 251) as u8).collect(),
        );
        decal_io::npy::write(&dir.join(format!("{n}.npy")), &arr).unwrap();
    }
    let labels = NpyArray::from_i64(vec![8], vec![0, 1, 0, 1, 0, 1, 0, 1]);
    decal_io::npy::write(&dir.join("labels.npy"), &labels).unwrap();
    std::fs::write(dir.join("manifest.json"), r#"{"severities": [1, 3]}"#).unwrap();
}

fn config(dir: &Path, corruptions: &[&str], seeds: &[u64]) -> ExperimentConfig {
    let text = format!(
        r#"
name = "t"
seeds = {seeds:?}
[data]
dataset = "cifar10"
dir = "{data}"
[backbone]
checkpoint = "{data}"
[shift]
dir = "{shift}"
corruptions = {corruptions:?}
"#,
        data = dir.display(),
        shift = dir.join("c").display(),
    );
    toml::from_str(&text).unwrap()
}

/// A plan context as the data and heads planners leave it: a backbone, a split, shared features and rows
/// (Baseline, and one TST row per seed, the second with a temperature).
pub(crate) fn ctx(config: &ExperimentConfig) -> PlanCtx<'_> {
    let mut plan = Plan::default();
    let mut add = |name: &str| {
        // A stand-in for the unit of another module: only its id matters here.
        let spec = UnitSpec::Shift(ShiftReduceSpec {
            run: name.into(),
            dataset: String::new(),
            profile: String::new(),
            severity_divisor: None,
            dir: "x".into(),
            corruptions: Vec::new(),
            severities: Vec::new(),
            rows: Vec::new(),
            pooled_subsets: Vec::new(),
        });
        plan.add(name, spec, BTreeMap::new(), Resource::Cpu)
            .unwrap()
    };
    let (backbone, split, test) = (add("backbone"), add("split"), add("features/test"));
    let mut rows = vec![MethodRow {
        method: "Baseline".into(),
        seed: None,
        num_samples: 0,
        model: backbone.clone(),
        temperature: None,
        calibrator: None,
        features: BTreeMap::from([("test".to_string(), test.clone())]),
        head: None,
    }];
    for &seed in &config.seeds {
        let head = add(&format!("head/tst/seed-{seed}"));
        let t = add(&format!("temperature/ts-tst/seed-{seed}"));
        for temperature in [None, Some(t)] {
            rows.push(MethodRow {
                method: if temperature.is_some() {
                    "TS + TST"
                } else {
                    "TST"
                }
                .into(),
                seed: Some(seed),
                num_samples: 0,
                model: head.clone(),
                temperature,
                calibrator: None,
                features: BTreeMap::from([("test".to_string(), test.clone())]),
                head: Some("TST".into()),
            });
        }
    }
    PlanCtx {
        config,
        device_kind: "cpu".into(),
        plan,
        backbone: Some(backbone),
        split: Some(split.clone()),
        features: BTreeMap::from([("test".to_string(), test)]),
        views: None,
        feature_dim: 4,
        num_classes: 2,
        rows,
        report_inputs: BTreeMap::new(),
        warnings: Vec::new(),
        logits: BTreeMap::new(),
        ood_sets: config.ood.iter().map(|o| o.name.clone()).collect(),
        dataset: decal_data::DatasetName::parse(&config.data.dataset)
            .map(|d| d.as_str().to_string())
            .unwrap_or_default(),
    }
}

fn planned(config: &ExperimentConfig) -> BTreeMap<String, String> {
    let mut ctx = ctx(config);
    super::plan(&mut ctx).unwrap();
    crate::units::report::plan(&mut ctx).unwrap();
    ctx.plan
        .units
        .iter()
        .map(|u| (u.name.clone(), u.id.clone()))
        .collect()
}

/// Units whose (name, id) is not in `before`.
fn added(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> BTreeSet<String> {
    after
        .iter()
        .filter(|(n, id)| before.get(*n) != Some(id))
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn adding_a_corruption_adds_only_its_cells_and_scores() {
    let tmp = tempfile::tempdir().unwrap();
    corruption_dir(&tmp.path().join("c"), &["fog", "snow"]);
    let before = planned(&config(tmp.path(), &["fog"], &[0]));
    let after = planned(&config(tmp.path(), &["fog", "snow"], &[0]));
    let want: BTreeSet<String> = [
        "shift-cell/snow/s1",
        "shift-cell/snow/s3",
        "shift-score/baseline/snow",
        "shift-score/tst/seed-0/snow",
        "shift-score/ts-tst/seed-0/snow",
        "shift",
        "report",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(added(&before, &after), want);
    // Nothing disappeared: every other unit of the first plan is in the second with the same id.
    for (n, id) in &before {
        if n != "shift" && n != "report" {
            assert_eq!(after.get(n), Some(id), "{n}");
        }
    }
    let cell = &before["shift-cell/fog/s3"];
    assert_eq!(cell.len(), 64);
}

#[test]
fn adding_a_seed_adds_only_its_scores() {
    let tmp = tempfile::tempdir().unwrap();
    corruption_dir(&tmp.path().join("c"), &["fog"]);
    let before = planned(&config(tmp.path(), &["fog"], &[0]));
    let after = planned(&config(tmp.path(), &["fog"], &[0, 1]));
    let got: BTreeSet<String> = added(&before, &after)
        .into_iter()
        .filter(|n| n.starts_with("shift"))
        .collect();
    let want: BTreeSet<String> = [
        "shift-score/tst/seed-1/fog",
        "shift-score/ts-tst/seed-1/fog",
        "shift",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(got, want);
}

#[test]
fn every_npy_is_a_corruption_when_none_are_listed_and_a_changed_file_changes_its_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    corruption_dir(&dir, &["fog", "snow"]);
    let before = planned(&config(tmp.path(), &[], &[0]));
    assert!(before.contains_key("shift-cell/fog/s1") && before.contains_key("shift-cell/snow/s3"));
    // Same size, new content (and a new mtime): the file's cells get new ids.
    let arr = NpyArray::from_u8(vec![8, 2, 2, 3], vec![9; 96]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    decal_io::npy::write(&dir.join("snow.npy"), &arr).unwrap();
    let after = planned(&config(tmp.path(), &[], &[0]));
    assert_eq!(before["shift-cell/fog/s1"], after["shift-cell/fog/s1"]);
    assert_ne!(before["shift-cell/snow/s1"], after["shift-cell/snow/s1"]);
}

fn plan_error(config: &ExperimentConfig) -> String {
    let mut ctx = ctx(config);
    match super::plan(&mut ctx) {
        Err(e @ PlanError::Config { .. }) => e.to_string(),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn a_missing_or_empty_directory_or_corruption_is_a_plan_error_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let e = plan_error(&config(tmp.path(), &[], &[0]));
    assert!(
        e.starts_with("shift.dir: ") && e.contains("not a directory"),
        "{e}"
    );
    corruption_dir(&tmp.path().join("c"), &[]);
    let e = plan_error(&config(tmp.path(), &[], &[0]));
    assert!(e.starts_with("shift.dir: no <corruption>.npy"), "{e}");
    corruption_dir(&tmp.path().join("c"), &["fog"]);
    let e = plan_error(&config(tmp.path(), &["fog", "rain"], &[0]));
    assert!(
        e.starts_with("shift.corruptions[1]: ") && e.contains("rain.npy"),
        "{e}"
    );
    std::fs::write(tmp.path().join("c/manifest.json"), "{").unwrap();
    let e = plan_error(&config(tmp.path(), &["fog"], &[0]));
    assert!(
        e.starts_with("shift.dir: ") && e.contains("manifest.json"),
        "{e}"
    );
}

/// The reduction over stored per-cell predictions gives exactly the records and JSON of the old streaming
/// sweep over the same predictions in the same order; a row whose scores skipped is left out.
#[test]
fn the_reduction_equals_the_streaming_sweep() {
    // (and a named corruption subset's pooled figures equal a streaming sweep over that subset alone)
    use crate::plan::store::{Outcome, Store};
    use crate::predict::{LogitKind, Predictions};
    use crate::suite::{RecordContext, ShiftCompat, ShiftSweep};
    use crate::units::{ExecOptions, Resources, UnitContext};
    use decal_metrics::profile::Profile;
    use serde_json::json;

    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path());
    let (corruptions, severities) = (["fog", "snow"], [1u8, 3]);
    let rows = [
        ("Baseline", None),
        ("Isotonic", None),
        ("TST", Some(0u64)),
        ("TS + TST", Some(0)),
    ];
    // Deterministic, varied predictions per (row, corruption, severity); the "Isotonic" row predicts
    // probabilities (a post-hoc calibrator's), some exactly 0.
    let preds = |r: usize, c: usize, s: usize| {
        let n = 7 + c + s;
        let mut logits: Vec<f64> = (0..n * 3)
            .map(|i| (((i * 31 + r * 17 + c * 7 + s * 3) % 23) as f64 - 11.0) / 3.7)
            .collect();
        let mut kind = LogitKind::Logits;
        if r == 1 {
            kind = LogitKind::Probabilities;
            for row in logits.chunks_mut(3) {
                row.iter_mut().for_each(|v| *v = v.max(0.0));
                row[0] += 0.25;
                let sum: f64 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= sum);
            }
        }
        Predictions {
            num_classes: 3,
            logits,
            kind,
            labels: (0..n).map(|i| ((i * 5 + r + c) % 3) as i64).collect(),
            neg_mutual_information: None,
        }
    };
    let mut plan = Plan::default();
    let mut deps = BTreeMap::new();
    let spec = |name: &str| {
        UnitSpec::Shift(ShiftReduceSpec {
            run: name.into(),
            dataset: String::new(),
            profile: String::new(),
            severity_divisor: None,
            dir: "x".into(),
            corruptions: Vec::new(),
            severities: Vec::new(),
            rows: Vec::new(),
            pooled_subsets: Vec::new(),
        })
    };
    for (ci, c) in corruptions.iter().enumerate() {
        for (ri, (m, seed)) in rows.iter().enumerate() {
            let name = format!("{}/{c}", super::row_name(m, *seed));
            let id = plan
                .add(
                    format!("shift-score/{name}"),
                    spec(&name),
                    BTreeMap::new(),
                    Resource::Cpu,
                )
                .unwrap();
            let unit = plan.find(&id).unwrap().clone();
            let dir = store.begin(&unit, false).unwrap();
            let outcome = if *m == "TS + TST" {
                Outcome::Skipped {
                    reason: "no finite optimum".into(),
                }
            } else {
                for (si, &s) in severities.iter().enumerate() {
                    super::write_predictions(&dir, s, &preds(ri, ci, si)).unwrap();
                }
                let file = super::ScoreFile {
                    method: m.to_string(),
                    seed: *seed,
                    corruption: c.to_string(),
                    kind: if ri == 1 { "probabilities" } else { "logits" }.into(),
                    num_classes: 3,
                    cells: Vec::new(),
                    records: Vec::new(),
                };
                decal_core::write_json_atomic(&dir.join("score.json"), &file).unwrap();
                Outcome::Done
            };
            store
                .finish(&unit, outcome, vec![], json!(null), 0.0)
                .unwrap();
            deps.insert(format!("score/{name}"), id);
        }
        for &s in &severities {
            let name = format!("cell/{c}/s{s}");
            let id = plan
                .add(&name, spec(&name), BTreeMap::new(), Resource::Cpu)
                .unwrap();
            let unit = plan.find(&id).unwrap().clone();
            let dir = store.begin(&unit, false).unwrap();
            let info = super::CellInfo {
                corruption: c.to_string(),
                severity: s,
                images: 9,
                per_severity: 9,
                every: 1,
                held_out: 2,
                held_out_excluded: true,
                warning: None,
            };
            decal_core::write_json_atomic(&dir.join("info.json"), &info).unwrap();
            store
                .finish(&unit, Outcome::Done, vec![], json!(null), 0.0)
                .unwrap();
            deps.insert(name, id);
        }
    }
    let reduce = ShiftReduceSpec {
        run: "t".into(),
        dataset: "toy-c".into(),
        profile: "default".into(),
        severity_divisor: Some(13),
        dir: "c".into(),
        corruptions: corruptions.iter().map(|c| c.to_string()).collect(),
        severities: severities.to_vec(),
        rows: rows.iter().map(|(m, s)| (m.to_string(), *s)).collect(),
        // A named subset (as `seed13` of a 19-corruption sweep): its pooled figures are reported too.
        pooled_subsets: vec![("sub".into(), vec!["fog".into()])],
    };
    let id = plan
        .add(
            "shift",
            UnitSpec::Shift(reduce.clone()),
            deps,
            Resource::Cpu,
        )
        .unwrap();
    let unit = plan.find(&id).unwrap().clone();
    let dir = store.begin(&unit, false).unwrap();
    let options = ExecOptions {
        device: tch::Device::Cpu,
        threads: None,
        head_threads: None,
        batch_siblings: false,
    };
    let (mut resources, mut log) = (Resources::default(), |_: &str| {});
    let mut ctx = UnitContext {
        store: &store,
        plan: &plan,
        options: &options,
        resources: &mut resources,
        log: &mut log,
    };
    super::run_reduce(&reduce, &unit, &mut ctx, &dir).unwrap();
    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(super::SHIFT_FILE)).unwrap())
            .unwrap();
    // The old streaming sweep: every row, cell by cell in corruption-then-severity order.
    let compat = ShiftCompat {
        severity_divisor: Some(13),
    };
    let mut records = Vec::new();
    let mut results = serde_json::Map::new();
    for (ri, (m, seed)) in rows
        .iter()
        .enumerate()
        .filter(|(_, (m, _))| *m != "TS + TST")
    {
        let rctx = RecordContext {
            run: "t".into(),
            seed: *seed,
            method: m.to_string(),
        };
        let mut a = ShiftSweep::new(
            rctx.clone(),
            "toy-c",
            Profile::by_name("default").unwrap(),
            compat,
        );
        let default = Profile::by_name("default").unwrap();
        let mut sa = ShiftSweep::new(rctx.clone(), "toy-c", default, compat);
        let mut sb = ShiftSweep::new(rctx.clone(), "toy-c", Profile::paper(), compat);
        let mut b = ShiftSweep::new(rctx, "toy-c", Profile::paper(), compat);
        for (ci, c) in corruptions.iter().enumerate() {
            for (si, &s) in severities.iter().enumerate() {
                a.add_cell(c, s, &preds(ri, ci, si)).unwrap();
                b.add_cell(c, s, &preds(ri, ci, si)).unwrap();
                if *c == "fog" {
                    sa.add_cell(c, s, &preds(ri, ci, si)).unwrap();
                    sb.add_cell(c, s, &preds(ri, ci, si)).unwrap();
                }
            }
        }
        let ((r, j), (rp, jp)) = (a.finish(), b.finish());
        records.extend(r);
        records.extend(rp.into_iter().map(super::paper_key));
        let ((ra, ja), (rb, jb)) = (sa.finish(), sb.finish());
        // The subset's pooled records only (no corruption, no severity), renamed `<metric>_sub`.
        let pooled = |rs: Vec<decal_report::MetricRecord>, suffix: &str| {
            rs.into_iter()
                .filter(|r| r.corruption.is_none() && r.severity.is_none())
                .map(|mut r| {
                    r.metric = format!("{}_sub{suffix}", r.metric);
                    r.definition = format!("{}; subset sub: the 1 corruptions of the seed's CIFAR-10-C evaluation (Q-4) only", r.definition);
                    r
                })
                .collect::<Vec<_>>()
        };
        let (pa, pb) = (pooled(ra, ""), pooled(rb, "_paper"));
        assert_eq!(
            pa.len(),
            7,
            "accuracy, ece, mce, nll and 3 cell means: {pa:?}"
        );
        records.extend(pa);
        records.extend(pb);
        results.insert(
            format!(
                "{m}{}",
                seed.map(|s| format!(" seed {s}")).unwrap_or_default()
            ),
            json!({"primary": j, "paper": jp, "sub": {"primary": ja, "paper": jb}}),
        );
    }
    assert_eq!(got["records"], serde_json::to_value(&records).unwrap());
    assert_eq!(got["results"], serde_json::Value::Object(results));
    // The probabilities are read as probabilities: a cell's NLL is the mean −ln p_y of the values given.
    let p = preds(1, 0, 1);
    let want: f64 = p
        .logits
        .chunks(3)
        .zip(&p.labels)
        .map(|(row, &y)| -row[y as usize].ln())
        .sum::<f64>()
        / p.labels.len() as f64;
    let cell_nll = records
        .iter()
        .find(|r| {
            r.method == "Isotonic"
                && r.metric == "nll"
                && r.corruption.as_deref() == Some(corruptions[0])
                && r.severity == Some(severities[1])
        })
        .expect("the Isotonic row's NLL of fog, severity 3");
    assert!(
        (cell_nll.value - want).abs() < 1e-12
            || (cell_nll.value.is_infinite() && want.is_infinite()),
        "{} vs {want}",
        cell_nll.value
    );
    assert_eq!(got["held_out_calibration_images_excluded"], json!(true));
    assert_eq!(got["warning"], json!(null));
}

#[test]
fn the_seeds_13_corruptions_are_pooled_when_the_sweep_has_them_and_more() {
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let all = names(&decal_data::corrupted::ALL_CORRUPTIONS);
    let seed13 = names(&decal_data::corrupted::SEED_CIFAR10_C);
    assert_eq!(
        super::pooled_subsets(&all),
        vec![("seed13".to_string(), seed13.clone())]
    );
    // Exactly the 13: the sweep's own pooled figure is the seed's; fewer: no subset.
    assert!(super::pooled_subsets(&seed13).is_empty());
    // The 15 standard corruptions hold the 13 (not gaussian_noise, zoom_blur): reported.
    assert_eq!(super::pooled_subsets(&all[..15]).len(), 1);
    // Without one of the 13 (snow is the 8th): not reported.
    let without_snow: Vec<String> = all.iter().filter(|c| *c != "snow").cloned().collect();
    assert!(super::pooled_subsets(&without_snow).is_empty());
    assert!(super::pooled_subsets(&names(&["fog", "snow"])).is_empty());
}
