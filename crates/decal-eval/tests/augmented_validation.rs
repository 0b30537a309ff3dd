//! `[features] augment_val = true` (exact mode; the seed's augmented validation images, BUG-6): every
//! head epoch validates on freshly augmented validation images. On a tiny CIFAR-10-named image folder
//! (so that the dataset has the seed's crop + flip) with a 1-epoch CNN: the heads train identically
//! (validation never feeds back into training) while the per-epoch validation NLL differs, the runs are
//! reproducible, and the option changes the head unit's id only when set.

use std::path::Path;

use decal_eval::experiment::ExperimentConfig;
use decal_eval::runner;
use serde_json::Value;

mod common;
use common::{write_bmp, Lcg};

use decal_data::cifar::CIFAR10_CLASSES as CLASSES;

fn write_data(root: &Path) {
    let mut rng = Lcg(11);
    for (split, per_class) in [("train", 10), ("test", 3)] {
        for (c, name) in CLASSES.iter().enumerate() {
            for i in 0..per_class {
                // A class-coloured square at a random place on noise: crops and flips change the image.
                let (ox, oy) = (rng.next() as usize % 20, rng.next() as usize % 20);
                let px: Vec<u8> = (0..32 * 32 * 3)
                    .map(|j| {
                        let (x, y, ch) = ((j / 3) % 32, j / 96, j % 3);
                        let inside = (ox..ox + 12).contains(&x) && (oy..oy + 12).contains(&y);
                        if inside {
                            ((c * 25 + ch * 80) % 256) as u8
                        } else {
                            rng.next() / 2
                        }
                    })
                    .collect();
                write_bmp(
                    &root.join(format!("cifar10/{split}/{name}/{i:03}.bmp")),
                    32,
                    &px,
                );
            }
        }
    }
}

fn config(root: &Path, augment_val: bool) -> ExperimentConfig {
    let text = format!(
        r#"
name = "augval"
seeds = [0]

[data]
dataset = "cifar10"
dir = "{root}"
allow_subset = true

[backbone.train]
model = "cnn"
epochs = 1
batch_size = 40
lr = 0.001

[features]
mode = "exact"
augment_val = {augment_val}

[[heads]]
name = "TST"
kind = "tst"
latent_dim = 8
epochs = 4
batch_size = 16
lr = 0.003

[eval]
bootstrap = 0
save_predictions = false
"#,
        root = root.display()
    );
    let path = root.join(format!("augval-{augment_val}.toml"));
    std::fs::write(&path, text).unwrap();
    ExperimentConfig::read(&path).unwrap()
}

/// Runs the experiment; returns the head unit's id and its per-epoch (train loss, val NLL).
fn run(config: &ExperimentConfig, out: &Path) -> (String, Vec<(f64, f64)>) {
    let options = common::serial_cpu();
    runner::run(config, Path::new("augval.toml"), out, &options, &mut |_| {}).unwrap();
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    let head = plan["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "head/tst/seed-0")
        .expect("the head unit");
    let id = head["id"].as_str().unwrap().to_string();
    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("units").join(&id).join("config.json")).unwrap(),
    )
    .unwrap();
    let history = cfg["history"]
        .as_array()
        .expect("the head's history")
        .iter()
        .map(|e| {
            (
                e["train_loss"].as_f64().unwrap(),
                e["val_nll"].as_f64().unwrap(),
            )
        })
        .collect();
    (id, history)
}

#[test]
fn augmented_validation_changes_only_the_validation() {
    let tmp = tempfile::tempdir().unwrap();
    write_data(tmp.path());
    let (plain_id, plain) = run(&config(tmp.path(), false), &tmp.path().join("plain"));
    let (aug_id, aug) = run(&config(tmp.path(), true), &tmp.path().join("aug"));
    assert_ne!(plain_id, aug_id, "the option is part of the head's id");
    assert_eq!(plain.len(), 4);
    for (e, (p, a)) in plain.iter().zip(&aug).enumerate() {
        assert_eq!(
            p.0, a.0,
            "epoch {e}: training does not see the validation images"
        );
    }
    assert!(
        plain.iter().zip(&aug).any(|(p, a)| p.1 != a.1),
        "augmented validation images give other validation NLLs: {plain:?} {aug:?}"
    );
    // Reproducible: the same config in a fresh directory gives the same history, bit for bit.
    let (_, again) = run(&config(tmp.path(), true), &tmp.path().join("again"));
    assert_eq!(again, aug);
}

#[test]
fn augmented_validation_needs_exact_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("c.toml");
    std::fs::write(
        &path,
        "name = \"x\"\n[data]\ndataset = \"cifar10\"\ndir = \"d\"\n[backbone]\ncheckpoint = \"c\"\n\
         [features]\nmode = \"augmented\"\naugment_val = true\n[[heads]]\nname = \"TST\"\nkind = \"tst\"\n",
    )
    .unwrap();
    let e = ExperimentConfig::read(&path).unwrap_err().to_string();
    assert!(e.contains("augment_val") && e.contains("exact"), "{e}");
}
