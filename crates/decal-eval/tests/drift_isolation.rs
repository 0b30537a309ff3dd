//! `[features] mode = "exact"`, `body = "seed-bn-drift"` (seed BUG-7) gives every stage-2 checkpoint its own
//! drifted body, started from the stage-1 body and saved with the head, for all of its own evaluations;
//! the baselines stay on the undrifted body. On a small synthetic image set with a BatchNorm backbone
//! (WRN-10-1 on 16×16 RGB images, ImageFolder layout written here), checked against runs that cannot leak:
//! - the seed-1 head of a run with seeds [0, 1] equals the seed-1 head of a run with seed [1] only (weights
//!   and every evaluation: test, train NLL, OOD, shift) — before the fix, seed 1 trained on the body that
//!   seed 0 had drifted;
//! - the baseline and TS rows (test, OOD, shift) equal those of the same run with the frozen body — before
//!   the fix, the shift sweep evaluated the baseline on the last head's drifted body;
//! - drift did happen (the drifted head's rows differ from the frozen run's) and its body state is saved;
//! - a resumed run reuses everything, and re-evaluating from the saved heads and body states (every
//!   features, eval, OOD, shift and report unit removed) gives the same numbers.

use std::path::{Path, PathBuf};

use decal_eval::experiment::ExperimentConfig;
use decal_eval::runner::{self, RunSummary};
use serde_json::Value;

mod common;
use common::{write_bmp, Lcg};

const SIDE: usize = 16;
const CLASSES: usize = 4;

/// Class-dependent colour plus noise, so that a backbone learns something in one epoch.
fn image(class: usize, rng: &mut Lcg) -> Vec<u8> {
    let base = [
        (class * 60) as u8,
        (255 - class * 50) as u8,
        ((class * 97) % 256) as u8,
    ];
    (0..SIDE * SIDE * 3)
        .map(|i| base[i % 3].saturating_add(rng.next() / 3))
        .collect()
}

fn write_data(root: &Path) {
    let mut rng = Lcg(7);
    for (split, per_class) in [("train", 60), ("test", 25)] {
        for c in 0..CLASSES {
            for i in 0..per_class {
                write_bmp(
                    &root.join(format!("id/{split}/class{c}/{i:03}.bmp")),
                    SIDE,
                    &image(c, &mut rng),
                );
            }
        }
    }
    for i in 0..40 {
        let px: Vec<u8> = (0..SIDE * SIDE * 3).map(|_| rng.next()).collect();
        write_bmp(&root.join(format!("ood/test/noise/{i:03}.bmp")), SIDE, &px);
    }
    // Generated corruptions in the CIFAR-10-C layout: 5 severities × 30 images (uint8 NHWC) + labels.
    let shift = root.join("shift");
    std::fs::create_dir_all(&shift).unwrap();
    let rows = 5 * 30;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for r in 0..rows {
        let c = r % CLASSES;
        pixels.extend(image(c, &mut rng).iter().map(|&v| v / 2 + rng.next() / 4));
        labels.push(c as i64);
    }
    decal_io::npy::write(
        &shift.join("dim.npy"),
        &decal_io::NpyArray::from_u8(vec![rows, SIDE, SIDE, 3], pixels),
    )
    .unwrap();
    decal_io::npy::write(
        &shift.join("labels.npy"),
        &decal_io::NpyArray::from_i64(vec![rows], labels),
    )
    .unwrap();
    std::fs::write(
        shift.join("manifest.json"),
        r#"{"severities": [1, 2, 3, 4, 5]}"#,
    )
    .unwrap();
}

fn config(root: &Path, seeds: &str, body: &str, backbone: &str) -> ExperimentConfig {
    let text = format!(
        r#"
name = "drift"
seeds = {seeds}
temperature_scaling = true

[data]
dataset = "imagefolder"
dir = "{root}/id"

{backbone}

[features]
mode = "exact"
body = "{body}"

[[heads]]
name = "TST"
kind = "tst"
latent_dim = 8
epochs = 3
batch_size = 32
lr = 0.003
temperature_scaling = true

[[ood]]
name = "noise"
dataset = "imagefolder"
dir = "{root}/ood"

[shift]
dir = "{root}/shift"

[eval]
bootstrap = 0
save_predictions = false
"#,
        root = root.display()
    );
    let path = root.join(format!(
        "{}.toml",
        seeds.len() + body.len() + backbone.len()
    ));
    std::fs::write(&path, text).unwrap();
    ExperimentConfig::read(&path).unwrap()
}

fn run(config: &ExperimentConfig, out: &Path) -> (Value, RunSummary) {
    let options = common::serial_cpu();
    let summary = runner::run(config, Path::new("drift.toml"), out, &options, &mut |_| {}).unwrap();
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    (results, summary)
}

/// The run's last plan: (name, kind, id) of every unit.
fn units(out: &Path) -> Vec<(String, String, String)> {
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    plan["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_string(),
                u["spec"]["kind"].as_str().unwrap().to_string(),
                u["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn unit_dir(out: &Path, name: &str) -> PathBuf {
    let id = units(out)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no unit {name}"))
        .2;
    out.join("units").join(id)
}

/// Everything evaluated for one row: test / train / OOD results and the shift results.
fn row(results: &Value, key: &str) -> (Value, Value) {
    (
        results["results"][key].clone(),
        results["results"]["shift"][key].clone(),
    )
}

fn head_dirs(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<(String, PathBuf)> = units(out)
        .into_iter()
        .filter(|(n, _, _)| n.starts_with("head/tst/"))
        .map(|(n, _, id)| (n, out.join("units").join(id)))
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn every_drifted_checkpoint_has_its_own_body_and_the_baselines_keep_the_undrifted_one() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_data(root);
    let train =
        "[backbone.train]\nmodel = \"wrn-10-1\"\nepochs = 1\nbatch_size = 32\nlr = 0.01\nseed = 3";

    // Run A: two seeds, the backbone trained here.
    let a_out = root.join("a");
    let (a, _) = run(&config(root, "[0, 1]", "seed-bn-drift", train), &a_out);
    let best = unit_dir(&a_out, "backbone").join("best");
    let checkpoint = format!("[backbone]\ncheckpoint = \"{}\"", best.display());

    // The stage-1 checkpoint's recorded split is recognised: calibration stays on the validation part.
    let (b, _) = run(
        &config(root, "[1]", "seed-bn-drift", &checkpoint),
        &root.join("b"),
    );
    assert_eq!(
        b["validation"]["resolved"]["source"], "train-split",
        "{}",
        b["validation"]
    );
    assert_eq!(a["validation"]["resolved"]["source"], "train-split");

    // Seed 1 alone equals seed 1 after seed 0: same weights, same body state, same evaluations.
    for key in ["TST seed 1", "TS + TST seed 1"] {
        let (ra, sa) = row(&a, key);
        let (rb, sb) = row(&b, key);
        assert!(ra.is_object() && sa.is_object(), "{key}: {ra} / {sa}");
        assert_eq!(ra, rb, "{key}: in-distribution/OOD/train results");
        assert_eq!(sa, sb, "{key}: shift results");
    }
    assert_eq!(
        a["calibration"]["TS + TST seed 1"]["temperature"],
        b["calibration"]["TS + TST seed 1"]["temperature"]
    );
    let (a_heads, b_heads) = (head_dirs(&a_out), head_dirs(&root.join("b")));
    let a_seed1 = &a_heads[1];
    for f in ["model.safetensors", decal_eval::drift::BODY_STATE_FILE] {
        assert_eq!(
            std::fs::read(a_seed1.join(f)).unwrap(),
            std::fs::read(b_heads[0].join(f)).unwrap(),
            "{f}"
        );
    }
    // Each checkpoint's evaluations use features of its own drifted body, not the undrifted ones.
    let undrifted = unit_dir(&a_out, "features/test").join("features.features.npy");
    let drifted: Vec<PathBuf> = ["features/tst/seed-0/test", "features/tst/seed-1/test"]
        .iter()
        .map(|n| unit_dir(&a_out, n).join("features.features.npy"))
        .collect();
    for d in &drifted {
        assert_ne!(
            std::fs::read(d).unwrap(),
            std::fs::read(&undrifted).unwrap(),
            "{}",
            d.display()
        );
    }
    // The two seeds drifted differently (each from the stage-1 body, on its own epochs).
    assert_ne!(
        std::fs::read(a_heads[0].join(decal_eval::drift::BODY_STATE_FILE)).unwrap(),
        std::fs::read(a_heads[1].join(decal_eval::drift::BODY_STATE_FILE)).unwrap()
    );

    // Run C: the frozen body. The baselines are the same numbers; the drifted heads are not.
    let (c, _) = run(
        &config(root, "[0, 1]", "frozen", &checkpoint),
        &root.join("c"),
    );
    for key in ["Baseline", "TS", "TS (seed LBFGS)"] {
        let (ra, sa) = row(&a, key);
        let (rc, sc) = row(&c, key);
        assert!(ra.is_object() && sa.is_object(), "{key}");
        assert_eq!(ra, rc, "{key}: in-distribution/OOD/train results");
        assert_eq!(sa, sc, "{key}: shift results on the undrifted body");
    }
    assert_ne!(row(&a, "TST seed 1").0, row(&c, "TST seed 1").0);
    assert!(std::fs::read_dir(&head_dirs(&root.join("c"))[0])
        .unwrap()
        .all(|e| e.unwrap().file_name() != decal_eval::drift::BODY_STATE_FILE));

    // Resume: nothing recomputed, same results. Re-evaluation from the saved heads and bodies: same numbers.
    let (a2, s2) = run(&config(root, "[0, 1]", "seed-bn-drift", train), &a_out);
    assert_eq!(s2.exec.computed, 0, "a finished run recomputed units");
    assert_eq!(a2["results"], a["results"]);
    for (_, kind, id) in units(&a_out) {
        if [
            "features",
            "eval",
            "ood",
            "shift-cell",
            "shift-score",
            "shift",
            "report",
        ]
        .contains(&kind.as_str())
        {
            std::fs::remove_dir_all(a_out.join("units").join(id)).unwrap();
        }
    }
    let (a3, s3) = run(&config(root, "[0, 1]", "seed-bn-drift", train), &a_out);
    assert!(s3.exec.computed > 0);
    assert_eq!(a3["results"], a["results"]);
}
