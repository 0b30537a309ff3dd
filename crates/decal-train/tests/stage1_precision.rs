//! Mixed-precision stage-1 training on a small synthetic image set (the seed's CNN, CPU):
//! - bf16 autocast learns, changes the trajectory (so autocast is really on), keeps float32 weights and
//!   records the precision in `config.toml` and `provenance.json`;
//! - fp16 with dynamic loss scaling (the CUDA code path, run on the CPU here) learns, stores the scaler
//!   state with the training state, and a resumed run is bit-identical to an uninterrupted one;
//! - an fp16 run whose gradients are non-finite at every scale stops as diverged after
//!   `MAX_CONSECUTIVE_SKIPS` skipped steps, keeping the last good checkpoint.

mod common;

use common::{serial, synthetic, tensors, weights};
use decal_train::precision::{Precision, MAX_CONSECUTIVE_SKIPS};
use decal_train::stage1::{self, NoProgress, Stage1Data, Stage1Error, Stage1Plan};
use tch::{Device, Kind};

fn plan(name: &str, epochs: usize, precision: Precision) -> Stage1Plan {
    Stage1Plan {
        name: name.into(),
        model: "cnn".into(),
        dataset: "synthetic".into(),
        epochs,
        batch_size: 32,
        eval_batch_size: 64,
        lr: 3e-3,
        seed: 11,
        threads: 1,
        precision,
        ..Stage1Plan::default()
    }
}

#[test]
fn bf16_learns_and_is_recorded() {
    let _serial = serial();
    tch::set_num_threads(1);
    let set = synthetic(320);
    let bf = plan("bf16", 3, Precision::Bf16);
    let data = Stage1Data::from_set(set.clone(), &bf).unwrap();
    let run = tempfile::tempdir().unwrap();
    let summary =
        stage1::train(&bf, &data, run.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    assert!(
        summary.best.val_accuracy > 0.6,
        "bf16 val accuracy {} (chance 0.25)",
        summary.best.val_accuracy
    );
    // Master weights, BatchNorm statistics and optimiser state stay float32.
    for (name, t) in tensors(&run.path().join("last/model.safetensors"))
        .into_iter()
        .chain(tensors(&run.path().join("last/optimizer.safetensors")))
    {
        assert_eq!(t.kind(), Kind::Float, "{name}");
    }
    let config = std::fs::read_to_string(run.path().join("config.toml")).unwrap();
    assert!(config.contains("precision = \"bf16\""), "{config}");
    assert_eq!(
        Stage1Plan::read(&run.path().join("config.toml")).unwrap(),
        bf
    );
    let prov: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("provenance.json")).unwrap())
            .unwrap();
    assert!(
        prov["precision"]
            .as_str()
            .unwrap()
            .starts_with("bf16: bfloat16 autocast"),
        "{prov}"
    );

    // The same plan in fp32 follows a different trajectory: autocast really changed the arithmetic.
    let fp = Stage1Plan {
        precision: Precision::Fp32,
        epochs: 1,
        ..bf.clone()
    };
    let bf1 = Stage1Plan { epochs: 1, ..bf };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    stage1::train(&fp, &data, a.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    stage1::train(&bf1, &data, b.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    let (wa, wb) = (
        weights(&a.path().join("last/model.safetensors")),
        weights(&b.path().join("last/model.safetensors")),
    );
    let max_diff = wa
        .iter()
        .zip(&wb)
        .flat_map(|((_, x), (_, y))| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0f32, f32::max);
    assert!(max_diff > 0.0, "bf16 and fp32 runs gave identical weights");
    // …but bf16 stays close to it after one epoch (8 steps).
    assert!(max_diff < 0.05, "bf16 drifted {max_diff} from fp32");
    // Deterministic: the same bf16 plan gives the same weights.
    let c = tempfile::tempdir().unwrap();
    stage1::train(&bf1, &data, c.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    assert_eq!(wb, weights(&c.path().join("last/model.safetensors")));
}

#[test]
fn fp16_loss_scaling_learns_and_resumes_bit_exactly() {
    let _serial = serial();
    tch::set_num_threads(1);
    let full = plan("fp16", 2, Precision::Fp16);
    let data = Stage1Data::from_set(synthetic(192), &full).unwrap();
    let a = tempfile::tempdir().unwrap();
    let summary =
        stage1::train(&full, &data, a.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    assert!(
        summary.best.val_accuracy > 0.5,
        "fp16 val accuracy {} (chance 0.25)",
        summary.best.val_accuracy
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.path().join("last/state.json")).unwrap())
            .unwrap();
    let scale = state["grad_scaler"]["scale"].as_f64().unwrap();
    assert!(scale > 0.0 && scale <= 65536.0, "{state}");
    let csv = std::fs::read_to_string(a.path().join("metrics.csv")).unwrap();
    assert!(csv.lines().next().unwrap().ends_with(",skipped_steps"));

    let b = tempfile::tempdir().unwrap();
    let first = Stage1Plan {
        epochs: 1,
        ..full.clone()
    };
    stage1::train(&first, &data, b.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    std::fs::remove_file(b.path().join("summary.json")).unwrap();
    stage1::train(&full, &data, b.path(), Device::Cpu, true, &mut NoProgress).unwrap();
    for f in ["last/model.safetensors", "last/optimizer.safetensors"] {
        assert_eq!(
            weights(&a.path().join(f)),
            weights(&b.path().join(f)),
            "{f}"
        );
    }
    let sb: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.path().join("last/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["grad_scaler"], sb["grad_scaler"]);
}

#[test]
fn fp16_non_finite_at_every_scale_is_divergence() {
    let _serial = serial();
    tch::set_num_threads(1);
    let mut p = plan("fp16-diverge", 1, Precision::Fp16);
    p.optimizer = decal_train::optim::OptimizerConfig::sgd(0.0, false, 0.0);
    p.lr = 1e-3;
    p.batch_size = 8;
    let data = Stage1Data::from_set(synthetic(160), &p).unwrap();
    let run = tempfile::tempdir().unwrap();
    stage1::train(&p, &data, run.path(), Device::Cpu, false, &mut NoProgress).unwrap();
    let before = weights(&run.path().join("last/model.safetensors"));
    // An absurd learning rate: after one step the weights overflow float16, every later forward pass is
    // non-finite, every step is skipped, and the scaler gives up. last/ still holds epoch 0.
    p.lr = 1e30;
    p.epochs = 10;
    let err = stage1::train(&p, &data, run.path(), Device::Cpu, true, &mut NoProgress).unwrap_err();
    match &err {
        Stage1Error::LossScaleCollapsed {
            global_step,
            skipped,
            ..
        } => {
            // 16 steps per epoch; epoch 0 was the sane one; one step moved the weights, then 32 skips
            // (through the end of epoch 1, which therefore did not replace last/).
            assert_eq!(*global_step, 16 + MAX_CONSECUTIVE_SKIPS, "{err}");
            assert_eq!(*skipped, MAX_CONSECUTIVE_SKIPS);
        }
        other => panic!("expected LossScaleCollapsed, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("last holds epoch 0"), "{msg}");
    assert_eq!(before, weights(&run.path().join("last/model.safetensors")));
}
