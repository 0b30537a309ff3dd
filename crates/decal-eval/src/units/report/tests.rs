//! Tests of the report unit: a report over inputs that are done, skipped and missing.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::{ReportRow, ReportSpec};
use crate::experiment::ExperimentConfig;
use crate::plan::store::{Outcome, Store};
use crate::plan::{Plan, Resource, Unit};
use crate::predict::{LogitKind, Predictions};
use crate::suite::{in_distribution, EvalSettings, RecordContext};
use crate::units::shift::ShiftReduceSpec;
use crate::units::{ExecOptions, Resources, UnitContext, UnitSpec};

fn config(dir: &Path) -> ExperimentConfig {
    let text = format!(
        "name = \"t\"\n[data]\ndataset = \"cifar10\"\ndir = \"{d}\"\n[backbone]\ncheckpoint = \"{d}\"\n",
        d = dir.display()
    );
    toml::from_str(&text).unwrap()
}

/// A stand-in unit (only its id, name and directory matter to the report).
fn stand_in(plan: &mut Plan, name: &str) -> String {
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
}

/// What an `eval` unit writes for the baseline on a toy test set.
fn write_eval(dir: &Path) {
    let preds = Predictions {
        num_classes: 2,
        logits: vec![2.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 3.0, 0.5, 0.0, 0.0, 0.2],
        kind: LogitKind::Logits,
        labels: vec![0, 1, 1, 1, 0, 0],
        neg_mutual_information: None,
    };
    let ctx = RecordContext {
        run: "t".into(),
        seed: None,
        method: "Baseline".into(),
    };
    let r = in_distribution(&ctx, &preds, "test", "cifar10", &EvalSettings::default()).unwrap();
    let value = json!({
        "method": "Baseline", "seed": null, "records": r.records, "results": {"test": r.json},
        "reliability": r.primary.reliability,
    });
    std::fs::create_dir_all(dir).unwrap();
    decal_core::write_json_atomic(&dir.join("eval.json"), &value).unwrap();
}

#[test]
fn a_report_with_a_skipped_and_a_missing_input_names_them_in_its_warnings() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());
    let store = Store::new(tmp.path().join("run"));
    let mut plan = Plan::default();
    let done = stand_in(&mut plan, "eval/baseline");
    let skipped = stand_in(&mut plan, "eval/ts");
    let missing = stand_in(&mut plan, "eval/tst/seed-0");
    let roles = [
        ("eval/baseline", &done),
        ("eval/ts", &skipped),
        ("eval/tst/seed-0", &missing),
    ];
    let deps: BTreeMap<String, String> = roles
        .iter()
        .map(|(r, id)| (r.to_string(), (*id).clone()))
        .collect();
    let rows = [
        ("Baseline", None, "baseline"),
        ("TS", None, "ts"),
        ("TST", Some(0), "tst/seed-0"),
    ]
    .map(|(m, s, n)| ReportRow {
        method: m.into(),
        seed: s,
        name: n.into(),
    })
    .to_vec();
    let spec = ReportSpec {
        config: Box::new(config),
        rows,
        plan_warnings: vec!["OOD set x left out: no directory".into()],
        feature_dim: 4,
        num_classes: 2,
    };
    plan.add(
        "report",
        UnitSpec::Report(spec.clone()),
        deps,
        Resource::Cpu,
    )
    .unwrap();
    let unit = |id: &str| -> Unit { plan.find(id).unwrap().clone() };
    store.begin(&unit(&done), false).unwrap();
    write_eval(&store.unit_dir(&done));
    store
        .finish(&unit(&done), Outcome::Done, vec![], json!(null), 0.0)
        .unwrap();
    store.begin(&unit(&skipped), false).unwrap();
    let why = Outcome::Skipped {
        reason: "no finite optimum".into(),
    };
    store
        .finish(&unit(&skipped), why, vec![], json!(null), 0.0)
        .unwrap();
    let report = plan.by_name("report").unwrap().clone();
    let dir = store.begin(&report, false).unwrap();
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
    let result = super::run_report(&spec, &report, &mut ctx, &dir).unwrap();
    let want = [
        "OOD set x left out: no directory",
        "eval/ts: skipped: no finite optimum",
        "eval/tst/seed-0: missing — the unit did not complete",
    ];
    for w in want {
        assert!(
            result.warnings.iter().any(|x| x.starts_with(w)),
            "{w:?} not in {:?}",
            result.warnings
        );
    }
    // The same lines in results.json, the report's Warnings section and the summary.
    let (table, warnings) = super::summary(&dir).unwrap();
    assert_eq!(warnings, result.warnings);
    assert!(
        table.contains("| Baseline |") && !table.contains("| TST"),
        "{table}"
    );
    let main = std::fs::read_to_string(dir.join("report/tables/main.md")).unwrap();
    let section = &main[main.find("Warnings").expect("a Warnings section")..];
    for w in want {
        assert!(
            section.contains(w),
            "{w:?} not in the report's warnings:\n{section}"
        );
    }
    // Published to the run directory's top level, replacing what an earlier report put there.
    let run = tmp.path().join("published");
    std::fs::create_dir_all(run.join("reliability")).unwrap();
    std::fs::write(run.join("reliability/stale.csv"), "x").unwrap();
    let published = super::publish(&dir, &run).unwrap();
    for f in [
        "metrics.jsonl",
        "metrics.csv",
        "results.json",
        "results.md",
        "reliability/baseline.csv",
    ] {
        assert!(run.join(f).is_file(), "{f} not published: {published:?}");
    }
    assert!(!run.join("reliability/stale.csv").exists());
    assert!(run.join("report/index.html").is_file());
    assert_eq!(super::summary(&run).unwrap().1, warnings);
}
