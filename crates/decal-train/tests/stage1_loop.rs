//! The stage-1 loop end to end on a small synthetic image set (the seed's CNN, CPU):
//! - a run learns (validation accuracy far above chance) and writes every run-directory file;
//! - 2 epochs in one go == 1 epoch, then resume to 2: bit-identical weights and optimiser state;
//! - a resume from `last.prev/` (crash between the two renames) works;
//! - a diverging run stops with a non-finite-loss error and keeps the last good checkpoint;
//! - the seed-compat switches run (unshuffled, augmented validation, selection on val loss).

mod common;

use common::{serial, synthetic, weights};
use decal_train::stage1::{self, Compat, NoProgress, Stage1Data, Stage1Error, Stage1Plan};
use tch::Device;

fn plan(name: &str, epochs: usize) -> Stage1Plan {
    Stage1Plan {
        name: name.into(),
        model: "cnn".into(),
        dataset: "synthetic".into(),
        epochs,
        batch_size: 32,
        eval_batch_size: 64,
        lr: 3e-3,
        seed: 7,
        threads: 1,
        ..Stage1Plan::default()
    }
}

#[test]
fn learns_and_writes_the_run_directory() {
    let _serial = serial();
    tch::set_num_threads(1);
    let p = plan("learn", 4);
    let data = Stage1Data::from_set(synthetic(320), &p).unwrap();
    let run = tempfile::tempdir().unwrap();
    let summary =
        stage1::train(&p, &data, run.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    assert_eq!(summary.epochs_run, 4);
    assert_eq!((summary.num_train, summary.num_val), (256, 64));
    assert!(
        summary.best.val_accuracy > 0.6,
        "val accuracy {} (chance 0.25)",
        summary.best.val_accuracy
    );
    for f in [
        "config.toml",
        "provenance.json",
        "metrics.jsonl",
        "metrics.csv",
        "summary.json",
        "split.json",
    ] {
        assert!(run.path().join(f).is_file(), "missing {f}");
    }
    for f in [
        "best/config.json",
        "best/model.safetensors",
        "last/state.json",
    ] {
        assert!(run.path().join(f).is_file(), "missing {f}");
    }
    let jsonl = std::fs::read_to_string(run.path().join("metrics.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 4);
    let csv = std::fs::read_to_string(run.path().join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    // The resolved config reads back to the same plan.
    let back = Stage1Plan::read(&run.path().join("config.toml")).unwrap();
    assert_eq!(back, p);
    // best/ holds the epoch with the lowest validation NLL.
    let hist: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let best = hist
        .iter()
        .min_by(|a, b| {
            a["val_nll"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["val_nll"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(best["epoch"].as_u64().unwrap() as usize, summary.best_epoch);
    // best/ is a decal_models checkpoint that loads and records how it was selected.
    let loaded = decal_models::checkpoint::load(&run.path().join("best"), Device::Cpu).unwrap();
    assert_eq!(loaded.meta.epoch, Some(summary.best_epoch as u64));
    assert_eq!(
        loaded.meta.selection.as_ref().unwrap().criterion,
        "valid_nll"
    );
    assert_eq!(
        loaded.meta.selection.as_ref().unwrap().value,
        best["val_nll"].as_f64().unwrap()
    );
}

#[test]
fn resume_is_bit_exact() {
    let _serial = serial();
    tch::set_num_threads(1);
    let set = synthetic(160);
    let full = plan("full", 2);
    let data = Stage1Data::from_set(set.clone(), &full).unwrap();
    let a = tempfile::tempdir().unwrap();
    stage1::train(&full, &data, a.path(), Device::Cpu, false, &mut NoProgress).unwrap();

    // Same plan, stopped after 1 epoch (as if killed), then resumed with the 2-epoch plan.
    let b = tempfile::tempdir().unwrap();
    let first = Stage1Plan {
        epochs: 1,
        ..full.clone()
    };
    stage1::train(&first, &data, b.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    std::fs::remove_file(b.path().join("summary.json")).unwrap();
    stage1::train(&full, &data, b.path(), Device::Cpu, true, &mut NoProgress).unwrap();

    assert_eq!(
        weights(&a.path().join("last/model.safetensors")),
        weights(&b.path().join("last/model.safetensors"))
    );
    assert_eq!(
        weights(&a.path().join("last/optimizer.safetensors")),
        weights(&b.path().join("last/optimizer.safetensors"))
    );
    let ma = std::fs::read_to_string(a.path().join("metrics.jsonl")).unwrap();
    let mb = std::fs::read_to_string(b.path().join("metrics.jsonl")).unwrap();
    let strip = |s: &str| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("seconds");
                v.as_object_mut().unwrap().remove("train_images_per_sec");
                v
            })
            .collect()
    };
    assert_eq!(strip(&ma), strip(&mb));

    // A crash between the two renames leaves only last.prev/: resume uses it.
    let c = tempfile::tempdir().unwrap();
    stage1::train(&first, &data, c.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    std::fs::rename(c.path().join("last"), c.path().join("last.prev")).unwrap();
    stage1::train(&full, &data, c.path(), Device::Cpu, true, &mut NoProgress).unwrap();
    assert_eq!(
        weights(&a.path().join("last/model.safetensors")),
        weights(&c.path().join("last/model.safetensors"))
    );

    // A corrupted last/ is detected, never silently used.
    let bad = c.path().join("last/model.safetensors");
    let mut bytes = std::fs::read(&bad).unwrap();
    let len = bytes.len();
    bytes[len - 3] ^= 0xff;
    std::fs::write(&bad, bytes).unwrap();
    let err =
        stage1::train(&full, &data, c.path(), Device::Cpu, true, &mut NoProgress).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn divergence_stops_and_keeps_last_good_checkpoint() {
    let _serial = serial();
    tch::set_num_threads(1);
    let mut p = plan("diverge", 3);
    p.optimizer = decal_train::optim::OptimizerConfig::sgd(0.0, false, 0.0);
    let data = Stage1Data::from_set(synthetic(160), &p).unwrap();
    let run = tempfile::tempdir().unwrap();
    // One sane epoch, then an absurd learning rate from epoch 1 on.
    let first = Stage1Plan {
        epochs: 1,
        lr: 1e-3,
        ..p.clone()
    };
    stage1::train(
        &first,
        &data,
        run.path(),
        Device::Cpu,
        false,
        &mut NoProgress,
    )
    .unwrap();
    let before = weights(&run.path().join("last/model.safetensors"));
    p.lr = 1e30;
    let err = stage1::train(&p, &data, run.path(), Device::Cpu, true, &mut NoProgress).unwrap_err();
    match &err {
        Stage1Error::NonFinite { epoch, .. } => assert_eq!(*epoch, 1),
        other => panic!("expected NonFinite, got {other}"),
    }
    assert!(err.to_string().contains("epoch 1"), "{err}");
    assert_eq!(before, weights(&run.path().join("last/model.safetensors")));
}

#[test]
fn seed_compat_runs_and_is_recorded() {
    let _serial = serial();
    tch::set_num_threads(1);
    let mut p = plan("compat", 1);
    p.loss = decal_train::losses::LossConfig::AdaptiveFocal {
        gammas: vec![5.0, 3.0],
        probs: vec![0.2, 1.0],
        mode: Default::default(),
    };
    p.apply_compat(&Compat::parse_list("seed").unwrap());
    let data = Stage1Data::from_set(synthetic(96), &p).unwrap();
    let run = tempfile::tempdir().unwrap();
    let s = stage1::train(&p, &data, run.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    assert_eq!(s.selection, stage1::Selection::ValLoss);
    let cfg = std::fs::read_to_string(run.path().join("config.toml")).unwrap();
    assert!(
        cfg.contains("shuffle = false") && cfg.contains("augment_val = true"),
        "{cfg}"
    );
    assert!(
        cfg.contains("selection = \"val-loss\"") && cfg.contains("mode = \"seed\""),
        "{cfg}"
    );
}

#[test]
fn early_stopping_after_patience_epochs_without_improvement() {
    let _serial = serial();
    tch::set_num_threads(1);
    // A learning rate so small that the weights (and so the validation NLL) do not change: epoch 0 is the
    // best, epoch 1 is not strictly better (ties keep the earlier epoch), so patience 1 stops after it.
    let mut p = plan("early", 5);
    p.lr = 1e-30;
    p.patience = 1;
    let data = Stage1Data::from_set(synthetic(96), &p).unwrap();
    let run = tempfile::tempdir().unwrap();
    let s = stage1::train(&p, &data, run.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    assert!(s.stopped_early);
    assert_eq!((s.epochs_run, s.best_epoch), (2, 0));
}

#[test]
fn selection_last_keeps_the_final_epoch_and_ignores_patience() {
    let _serial = serial();
    tch::set_num_threads(1);
    // The same frozen-weights run as above: with `last`, every epoch replaces `best/`, so patience 1 never
    // stops the run and `best/` holds the final epoch's weights (those of `last/`).
    let mut p = plan("last", 3);
    p.lr = 1e-30;
    p.patience = 1;
    p.selection = decal_train::stage1::Selection::Last;
    let data = Stage1Data::from_set(synthetic(96), &p).unwrap();
    let run = tempfile::tempdir().unwrap();
    let s = stage1::train(&p, &data, run.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    assert!(!s.stopped_early);
    assert_eq!((s.epochs_run, s.best_epoch), (3, 2));
    assert_eq!(
        weights(&run.path().join("best/model.safetensors")),
        weights(&run.path().join("last/model.safetensors"))
    );
    let meta = std::fs::read_to_string(run.path().join("best/config.json")).unwrap();
    assert!(meta.contains("last_epoch_valid_nll"), "{meta}");
}
