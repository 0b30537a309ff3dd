//! Real-data acceptance of stage 1 on the CIFAR-10 JPEG copy (`../shared/datasets/cifar10-jpeg`):
//! the seed's CNN and a small Wide-ResNet train for a few epochs on the CPU and their validation
//! accuracy rises well above chance (10 %). Minutes on 2 cores, hence `#[ignore]`:
//!
//! ```text
//! scripts/cargo test --release -p decal-train --test stage1_real -- --ignored --nocapture
//! ```
//!
//! Skips with a visible message when the dataset is absent.

use decal_train::schedule::ScheduleConfig;
use decal_train::stage1::{self, NoProgress, Stage1Data, Stage1Plan};
use std::path::PathBuf;
use tch::Device;

fn cifar_dir() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets/cifar10-jpeg"
    ));
    if p.join("train").is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: {} not found", p.display());
        None
    }
}

fn run(plan: &Stage1Plan, data: &Stage1Data) -> stage1::Stage1Summary {
    let dir = tempfile::tempdir().unwrap();
    let s = stage1::train(plan, data, dir.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    for r in std::fs::read_to_string(dir.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
    {
        eprintln!("{} {r}", plan.model);
    }
    s
}

#[test]
#[ignore = "minutes of CPU training on real CIFAR-10; run with --ignored"]
fn cnn_and_small_wrn_learn_cifar10() {
    let Some(dir) = cifar_dir() else { return };
    let base = Stage1Plan {
        dataset: "cifar10".into(),
        data_dir: dir,
        batch_size: 128,
        lr: 1e-3,
        seed: 0,
        ..Stage1Plan::default()
    };
    let set = decal_data::load(
        decal_data::DatasetName::Cifar10,
        &base.data_dir,
        decal_data::SplitName::Train,
    )
    .unwrap();

    let cnn = Stage1Plan {
        name: "cnn".into(),
        model: "cnn".into(),
        epochs: 3,
        limit_train: 20_000,
        limit_val: 5_000,
        ..base.clone()
    };
    let data = Stage1Data::from_set(set.clone(), &cnn).unwrap();
    let s = run(&cnn, &data);
    eprintln!(
        "cnn: best epoch {} val accuracy {:.4} NLL {:.4}",
        s.best_epoch, s.best.val_accuracy, s.best.val_nll
    );
    assert!(
        s.best.val_accuracy > 0.35,
        "CNN validation accuracy {} (chance 0.10)",
        s.best.val_accuracy
    );

    let wrn = Stage1Plan {
        name: "wrn".into(),
        model: "wrn-10-2".into(),
        epochs: 2,
        // Small batches give enough steps for the seed WRN's BatchNorm running statistics
        // (momentum 0.01) to settle within two short epochs; eval mode uses them.
        batch_size: 32,
        limit_train: 5_000,
        limit_val: 1_000,
        schedule: ScheduleConfig::Cosine { min_lr: 0.0 },
        ..base
    };
    let data = Stage1Data::from_set(set, &wrn).unwrap();
    let s = run(&wrn, &data);
    eprintln!(
        "wrn-10-2: best epoch {} val accuracy {:.4} NLL {:.4}",
        s.best_epoch, s.best.val_accuracy, s.best.val_nll
    );
    assert!(
        s.best.val_accuracy > 0.25,
        "WRN validation accuracy {} (chance 0.10)",
        s.best.val_accuracy
    );
}
