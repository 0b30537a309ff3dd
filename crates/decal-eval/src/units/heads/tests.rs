//! Tests of the model-side planning: the method rows in the old table order, and invalidation that follows
//! the config (a new seed only adds units; one head's edit changes only that head's units and what depends
//! on them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::*;
use crate::experiment::ExperimentConfig;
use crate::plan::Plan;

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/quickstart")
}

/// The quickstart experiment (TST and V-TST heads, both temperature-scaled) with `seeds` and `extra` TOML.
fn config(seeds: &str, tst_extra: &str) -> ExperimentConfig {
    let data = quickstart();
    let text = format!(
        r#"name = "heads-plan"
seeds = {seeds}
temperature_scaling = true

[data]
dataset = "fashion-mnist"
dir = "{fm}"
allow_subset = true

[backbone.train]
model = "cnn-mnist"
epochs = 1

[[heads]]
name = "TST"
kind = "tst"
latent_dim = 16
temperature_scaling = true
temperature_scaling_seed_lbfgs = true
{tst_extra}

[[heads]]
name = "V-TST"
kind = "vtst"
latent_dim = 16
eval_samples = [0, 1, 10]
temperature_scaling = true
temperature_scaling_seed_lbfgs = true
"#,
        fm = data.join("fashion-mnist").display(),
    );
    let config: ExperimentConfig = toml::from_str(&text).expect("test config parses");
    config.validate().expect("test config is valid");
    config
}

/// An empty planning context with the data units planned.
fn data_planned(config: &ExperimentConfig) -> PlanCtx<'_> {
    let mut ctx = PlanCtx {
        config,
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
    data::plan(&mut ctx).expect("data units plan");
    ctx
}

/// Plans the data and head units and returns the plan and the rows.
fn plan_heads(config: &ExperimentConfig) -> (Plan, Vec<MethodRow>) {
    let mut ctx = data_planned(config);
    plan(&mut ctx).expect("head units plan");
    (ctx.plan, ctx.rows)
}

fn ids_by_name(plan: &Plan) -> BTreeMap<String, UnitId> {
    plan.units
        .iter()
        .map(|u| (u.name.clone(), u.id.clone()))
        .collect()
}

#[test]
fn rows_follow_the_old_table_order() {
    let (plan, rows) = plan_heads(&config("[0, 1]", ""));
    let got: Vec<String> = rows
        .iter()
        .map(|r| match r.seed {
            Some(s) => format!("{} #{s}", r.method),
            None => r.method.clone(),
        })
        .collect();
    let mut want: Vec<String> = vec!["Baseline".into(), "TS".into(), "TS (seed LBFGS)".into()];
    for s in [0, 1] {
        for r in ["TST", "TS + TST", "TS (seed LBFGS) + TST"] {
            want.push(format!("{r} #{s}"));
        }
    }
    for s in [0, 1] {
        for r in [
            "V-TST mean",
            "TS + V-TST mean",
            "V-TST m=1",
            "TS + V-TST m=1",
            "TS (seed LBFGS) + V-TST m=1",
            "V-TST m=10",
            "TS + V-TST m=10",
        ] {
            want.push(format!("{r} #{s}"));
        }
    }
    assert_eq!(got, want);
    // Each row's model and temperature units are the right ones.
    let name = |id: &UnitId| plan.find(id).map(|u| u.name.clone()).unwrap();
    let ts_m10 = &rows[want.iter().position(|w| w == "TS + V-TST m=10 #1").unwrap()];
    assert_eq!(name(&ts_m10.model), "head/v-tst/seed-1");
    assert_eq!(
        name(ts_m10.temperature.as_ref().unwrap()),
        "temperature/ts-v-tst-m-10/seed-1"
    );
    assert_eq!(ts_m10.num_samples, 10);
    assert_eq!(name(&rows[0].model), "backbone");
    assert_eq!(
        name(rows[2].temperature.as_ref().unwrap()),
        "temperature/ts-seed-lbfgs"
    );
    let t = plan.by_name("temperature/ts-v-tst-m-10/seed-1").unwrap();
    match &t.spec {
        UnitSpec::Temperature(s) => assert_eq!(
            s.target,
            TemperatureTarget::Head {
                num_samples: 10,
                eval_seed: row_eval_seed(0, Some(1))
            }
        ),
        other => panic!("not a temperature unit: {other:?}"),
    }
}

#[test]
fn adding_a_seed_only_adds_that_seeds_units() {
    let (one, _) = plan_heads(&config("[0]", ""));
    let (two, _) = plan_heads(&config("[0, 1]", ""));
    let before = ids_by_name(&one);
    let after = ids_by_name(&two);
    for (name, id) in &before {
        assert_eq!(after.get(name), Some(id), "unit {name} changed");
    }
    let added: Vec<&String> = after.keys().filter(|n| !before.contains_key(*n)).collect();
    assert!(!added.is_empty());
    for name in &added {
        assert!(name.ends_with("/seed-1"), "unit {name} is new");
    }
    // Seed 1's heads and head temperature fits: 2 heads, TST 2 fits, V-TST 4 (mean: TS; m=1: TS and
    // seed LBFGS; m=10: TS).
    assert_eq!(added.len(), 2 + 2 + 4, "{added:?}");
}

#[test]
fn editing_one_head_changes_only_its_units_and_dependents() {
    let (old, _) = plan_heads(&config("[0, 1]", ""));
    let (new, _) = plan_heads(&config("[0, 1]", "epochs = 3"));
    let before = ids_by_name(&old);
    let after = ids_by_name(&new);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    let changed: BTreeSet<&String> = before
        .iter()
        .filter(|(n, id)| after[*n] != **id)
        .map(|(n, _)| n)
        .collect();
    // The TST heads and, transitively, what depends on them in the new plan.
    let roots: Vec<UnitId> = ["head/tst/seed-0", "head/tst/seed-1"]
        .iter()
        .map(|n| after[*n].clone())
        .collect();
    let mut want: BTreeSet<&String> = BTreeSet::new();
    for u in &new.units {
        if roots.contains(&u.id) || new.dependents(&roots).contains(&u.id) {
            want.insert(&u.name);
        }
    }
    assert_eq!(changed, want);
    assert!(changed
        .iter()
        .all(|n| n.contains("tst/seed-") && !n.contains("v-tst")));
    assert_eq!(changed.len(), 2 * (1 + 2), "{changed:?}");
}

#[test]
fn a_head_that_does_not_fit_the_backbone_names_its_key() {
    let mut c = config("[0]", "");
    c.heads[1].feature_dim = Some(7);
    let mut ctx = data_planned(&c);
    let e = plan(&mut ctx).expect_err("feature_dim 7 does not fit");
    let text = e.to_string();
    assert!(text.starts_with("heads[1].feature_dim: "), "{text}");
}

/// The quickstart data shrunk (300 / 100 training / validation images, 200 test images with a held-out
/// calibration part), a 1-epoch CNN, and one TST head per `mode` (`exact` with `seed-bn-drift`, or
/// `unaugmented`), temperature-scaled, over seeds 0 and 1.
fn small_run_config(mode: &str) -> Option<ExperimentConfig> {
    let data = quickstart();
    if !data.join("fashion-mnist").exists() {
        eprintln!("skipping: bundled data/quickstart not present");
        return None;
    }
    let body = if mode == "exact" {
        "body = \"seed-bn-drift\""
    } else {
        ""
    };
    let text = format!(
        r#"name = "heads-run"
seeds = [0, 1]
temperature_scaling = true
[data]
dataset = "fashion-mnist"
dir = "{fm}"
allow_subset = true
limit_train = 300
limit_val = 100
limit_test = 200
validation = "test-holdout"
[backbone.train]
model = "cnn-mnist"
epochs = 1
batch_size = 100
lr = 0.001
augment = false
[features]
mode = "{mode}"
batch_size = 64
{body}
[[heads]]
name = "TST"
kind = "tst"
latent_dim = 8
epochs = 8
batch_size = 32
lr = 0.005
temperature_scaling = true
temperature_scaling_seed_lbfgs = true
"#,
        fm = data.join("fashion-mnist").display(),
    );
    let config: ExperimentConfig = toml::from_str(&text).expect("test config parses");
    config.validate().expect("test config is valid");
    Some(config)
}

fn cpu() -> super::super::ExecOptions {
    super::super::ExecOptions {
        device: tch::Device::Cpu,
        threads: None,
        head_threads: None,
        batch_siblings: false,
    }
}

fn file_sha(store: &crate::plan::store::Store, plan: &Plan, name: &str, file: &str) -> String {
    let unit = plan.by_name(name).unwrap();
    decal_core::sha256_file(&store.unit_dir(&unit.id).join(file)).unwrap()
}

/// Runs every unit of `plan` serially on the CPU in a fresh store (in a temporary directory, kept alive by
/// the returned guard) and checks that each one was computed.
fn run_all(plan: &Plan) -> (tempfile::TempDir, crate::plan::store::Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = crate::plan::store::Store::new(tmp.path().join("run"));
    let freshness = store.freshness(plan);
    let report = crate::plan::exec::Execution {
        plan,
        store: &store,
        freshness: &freshness,
        keep_going: false,
    }
    .serial(&cpu(), &mut |_| {})
    .unwrap();
    assert_eq!(report.computed, plan.units.len(), "{report:?}");
    (tmp, store)
}

/// Runs the data and head units of `mode`; checks that every unit completes, that a head re-run alone in
/// a fresh process cache gives the same bytes as the one run after another seed, and the exports.
fn run_small(mode: &str) {
    let Some(config) = small_run_config(mode) else {
        return;
    };
    let (plan, rows) = plan_heads(&config);
    let (_tmp, store) = run_all(&plan);
    let opts = cpu();
    let head1 = "head/tst/seed-1";
    let weights = file_sha(&store, &plan, head1, stage2::HEAD_WEIGHTS);
    let drift = mode == "exact";
    let state = drift.then(|| file_sha(&store, &plan, head1, BODY_STATE_FILE));
    // Seed 1 ran after seed 0 in the same process (same cached backbone); alone it gives the same bytes.
    let unit = plan.by_name(head1).unwrap();
    let mut fresh = super::super::Resources::default();
    crate::plan::exec::run_one(&plan, &store, unit, &opts, false, &mut fresh, &mut |_| {}).unwrap();
    assert_eq!(
        file_sha(&store, &plan, head1, stage2::HEAD_WEIGHTS),
        weights
    );
    assert_eq!(
        drift.then(|| file_sha(&store, &plan, head1, BODY_STATE_FILE)),
        state
    );
    // The exports: every temperature row has a finite T > 0 (or was skipped), every row predicts.
    let mut resources = super::super::Resources::default();
    let mut log = |_: &str| {};
    let mut ctx = UnitContext {
        store: &store,
        plan: &plan,
        options: &opts,
        resources: &mut resources,
        log: &mut log,
    };
    for row in &rows {
        let t = match &row.temperature {
            Some(id) => {
                let t = load_temperature(&ctx, id).unwrap();
                let outcome = store.record(id).unwrap().outcome;
                let t = t.unwrap_or_else(|| panic!("{} {:?}: {outcome:?}", row.method, row.seed));
                assert!(t.is_finite() && t > 0.0, "{}: T = {t}", row.method);
                Some(t)
            }
            None => None,
        };
        let model = load_model(&mut ctx, &row.model).unwrap();
        let test = data::load_features(&mut ctx, &row.features["test"]).unwrap();
        let p = predict(
            &model.predictor(t, row.num_samples, 1),
            &test,
            tch::Device::Cpu,
        )
        .unwrap();
        assert_eq!(p.len(), test.len());
        for r in p.probabilities().chunks(p.num_classes) {
            assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{}", row.method);
        }
    }
    // A drifted head's rows are scored on its own features.
    let tst1 = rows
        .iter()
        .find(|r| r.method == "TST" && r.seed == Some(1))
        .unwrap();
    let own = plan.find(&tst1.features["test"]).unwrap();
    assert_eq!(own.name.contains("/seed-1/"), drift, "{}", own.name);
    if !drift {
        skipped_fit(&store, &plan, &opts);
    }
}

/// A head whose logits carry no information (every weight zeroed): its temperature unit skips with the
/// reason, and [`load_temperature`] says so with None.
fn skipped_fit(store: &crate::plan::store::Store, plan: &Plan, opts: &super::super::ExecOptions) {
    let head = plan.by_name("head/tst/seed-0").unwrap();
    let dir = store.unit_dir(&head.id);
    let (vs, _, _) = stage2::load_head(&dir, tch::Device::Cpu).unwrap();
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            let _ = v.zero_();
        }
    });
    vs.save(dir.join(stage2::HEAD_WEIGHTS)).unwrap();
    let ts = plan.by_name("temperature/ts-tst/seed-0").unwrap();
    let mut fresh = super::super::Resources::default();
    let record =
        crate::plan::exec::run_one(plan, store, ts, opts, false, &mut fresh, &mut |_| {}).unwrap();
    match &record.outcome {
        Outcome::Skipped { reason } => assert!(
            reason.starts_with("method TS + TST seed 0 skipped: its temperature fit"),
            "{reason}"
        ),
        other => panic!("expected a skipped fit, got {other:?}"),
    }
    assert!(!store.unit_dir(&ts.id).join(SCALER_FILE).exists());
    let mut log = |_: &str| {};
    let ctx = UnitContext {
        store,
        plan,
        options: opts,
        resources: &mut fresh,
        log: &mut log,
    };
    assert_eq!(load_temperature(&ctx, &ts.id).unwrap(), None);
}

#[test]
fn exact_drift_heads_run_and_do_not_depend_on_what_ran_before() {
    run_small("exact");
}

#[test]
fn cached_heads_run_and_do_not_depend_on_what_ran_before() {
    run_small("unaugmented");
}

/// The body passes of an exact seed (with `seed-bn-drift`), interrupted after their third epoch, resume from
/// the epoch journal, and the head trained on them saves the same bytes as after an uninterrupted run; a
/// journaled epoch whose file was damaged is reported, recomputed and changes nothing; a damaged epoch that
/// a head reads makes it stop and name the file and the unit to remove.
#[test]
fn interrupted_exact_body_passes_resume_from_their_journal_bit_for_bit() {
    let Some(config) = small_run_config("exact") else {
        return;
    };
    let (plan, _) = plan_heads(&config);
    let (_tmp, store) = run_all(&plan);
    let opts = cpu();
    let name = "head/tst/seed-0";
    let weights = file_sha(&store, &plan, name, stage2::HEAD_WEIGHTS);
    let state = file_sha(&store, &plan, name, BODY_STATE_FILE);
    let epochs = plan.by_name("exact-epochs/seed-0").unwrap();
    let journal_dir = store.unit_dir(&epochs.id).join(super::journal::JOURNAL_DIR);
    let epoch_file = |e: usize| journal_dir.join(format!("epoch-{e:03}")).join("epoch.json");
    assert!(
        (0..8).all(|e| epoch_file(e).exists()),
        "the journal is the unit's output"
    );

    // Killed after epoch 3 of 8 (those journaled, the unit not finished).
    std::fs::remove_dir_all(store.unit_dir(&epochs.id)).unwrap();
    super::epochs::INTERRUPT_AFTER.with(|c| c.set(Some(2)));
    let mut fresh = super::super::Resources::default();
    let e =
        crate::plan::exec::run_one(&plan, &store, epochs, &opts, false, &mut fresh, &mut |_| {})
            .expect_err("interrupted");
    super::epochs::INTERRUPT_AFTER.with(|c| c.set(None));
    assert!(
        e.to_string().contains("test interruption after epoch 3"),
        "{e}"
    );
    assert!(store.record(&epochs.id).is_none());
    assert!((0..3).all(|e| epoch_file(e).exists()));
    assert!(!journal_dir.join("epoch-003").exists());
    // Damage epoch 2's training features: that epoch is recomputed, the others are read back.
    let damaged = journal_dir.join("epoch-001").join("train.features.npy");
    let flip = |path: &std::path::Path| {
        let mut bytes = std::fs::read(path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(path, bytes).unwrap();
    };
    flip(&damaged);

    let mut lines = Vec::new();
    let mut fresh = super::super::Resources::default();
    crate::plan::exec::run_one(&plan, &store, epochs, &opts, false, &mut fresh, &mut |l| {
        lines.push(l.to_string())
    })
    .unwrap();
    let text = lines.join("\n");
    assert!(text.contains("resuming: 3 of 8 epochs journaled"), "{text}");
    assert!(
        text.contains("5 epochs of body passes to compute, ≈ ") && text.contains(" free)"),
        "{text}"
    );
    assert!(!text.contains("epoch 1/8: "), "{text}");
    assert!(
        text.contains("epoch 2/8: ")
            && text.contains("journal unusable (")
            && text.contains("train.features.npy"),
        "{text}"
    );
    assert!(text.contains("epoch 8/8: "), "{text}");
    assert!(store.check_unit(epochs).is_fresh());

    let head = plan.by_name(name).unwrap();
    let mut fresh = super::super::Resources::default();
    crate::plan::exec::run_one(&plan, &store, head, &opts, false, &mut fresh, &mut |_| {}).unwrap();
    assert_eq!(file_sha(&store, &plan, name, stage2::HEAD_WEIGHTS), weights);
    assert_eq!(file_sha(&store, &plan, name, BODY_STATE_FILE), state);

    // A head whose input epoch is damaged stops, naming the file and what to remove.
    flip(&journal_dir.join("epoch-004").join("train.features.npy"));
    let mut fresh = super::super::Resources::default();
    let e = crate::plan::exec::run_one(&plan, &store, head, &opts, false, &mut fresh, &mut |_| {})
        .expect_err("damaged input");
    let e = e.to_string();
    assert!(
        e.contains("epoch 5 of input exact-epochs/seed-0 is unusable")
            && e.contains("epoch-004")
            && e.contains("train.features.npy")
            && e.contains("run again to recompute it"),
        "{e}"
    );
}

/// The exact heads of a seed share its body passes (one `exact-epochs` unit per seed and settings), and a
/// head trained on the shared passes is the head trained alone, bit for bit.
#[test]
fn exact_heads_of_a_seed_share_its_body_passes() {
    let Some(mut config) = small_run_config("exact") else {
        return;
    };
    config.features.body = BodyMode::Frozen;
    config.seeds = vec![0];
    let mut vtst = config.heads[0].clone();
    vtst.name = "V-TST".into();
    vtst.kind = HeadKind::Vtst;
    let mut other_batch = config.heads[0].clone();
    other_batch.name = "TST-64".into();
    other_batch.batch_size = 64;
    config.heads.push(vtst.clone());
    config.heads.push(other_batch);
    let (plan, _) = plan_heads(&config);
    let shared: Vec<&str> = plan
        .units
        .iter()
        .filter(|u| u.spec.kind() == "exact-epochs")
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(shared, ["exact-epochs/seed-0", "exact-epochs/seed-0-2"]);
    let input = |name: &str| plan.by_name(name).unwrap().deps["epochs"].clone();
    assert_eq!(input("head/tst/seed-0"), input("head/v-tst/seed-0"));
    assert_ne!(input("head/tst/seed-0"), input("head/tst-64/seed-0"));
    let (_tmp, store) = run_all(&plan);

    // V-TST alone: the same exact-epochs unit (same id), the same head.
    config.heads = vec![vtst];
    let (alone, _) = plan_heads(&config);
    assert_eq!(
        alone.by_name("head/v-tst/seed-0").unwrap().deps["epochs"],
        input("head/v-tst/seed-0")
    );
    let (_tmp2, alone_store) = run_all(&alone);
    assert_eq!(
        file_sha(
            &alone_store,
            &alone,
            "head/v-tst/seed-0",
            stage2::HEAD_WEIGHTS
        ),
        file_sha(&store, &plan, "head/v-tst/seed-0", stage2::HEAD_WEIGHTS)
    );
}
