//! The frozen body in stage 2 (seed-system.md §8.1, BUG-7): feature extraction in the default `frozen`
//! mode leaves every BatchNorm running statistic untouched and is deterministic, while the seed's
//! `seed-bn-drift` mode (body in train mode, no gradients) moves the running statistics and gives
//! batch-dependent features — the behaviour the compat option exists to reproduce.

use decal_data::Batch;
use decal_models::{try_build_classifier, ArchConfig};
use decal_train::features::{extract, BodyMode};
use tch::{nn, Device, Kind, Tensor};

fn batches(n: usize, seed: i64) -> Vec<Batch> {
    tch::manual_seed(seed);
    let images: Vec<f32> = Vec::try_from(Tensor::randn(
        [n as i64 * 3 * 32 * 32],
        (Kind::Float, Device::Cpu),
    ))
    .unwrap();
    let per = 3 * 32 * 32;
    (0..n)
        .step_by(4)
        .map(|start| {
            let len = 4.min(n - start);
            Batch {
                images: images[start * per..(start + len) * per].to_vec(),
                shape: [len, 3, 32, 32],
                labels: vec![0; len],
                indices: (start..start + len).collect(),
            }
        })
        .collect()
}

fn running_stats(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(k, _)| k.contains("running_mean") || k.contains("running_var"))
        .map(|(k, t)| (k, t.copy()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn frozen_body_keeps_batchnorm_statistics_and_seed_mode_drifts_them() {
    let vs = nn::VarStore::new(Device::Cpu);
    let arch = ArchConfig::preset("wrn-10-1", 10).unwrap();
    let classifier = try_build_classifier(&vs.root(), &arch).unwrap();
    let before = running_stats(&vs);
    assert!(!before.is_empty(), "WRN should have BatchNorm buffers");

    let frozen_a = extract(
        classifier.body.as_ref(),
        batches(12, 1),
        Device::Cpu,
        BodyMode::Frozen,
        "a",
    )
    .unwrap();
    let frozen_b = extract(
        classifier.body.as_ref(),
        batches(12, 1),
        Device::Cpu,
        BodyMode::Frozen,
        "b",
    )
    .unwrap();
    assert_eq!(
        frozen_a, frozen_b,
        "frozen extraction must be deterministic"
    );
    for ((name, b), (_, a)) in before.iter().zip(running_stats(&vs)) {
        assert!(b.equal(&a), "{name} changed in frozen mode");
    }

    let drift = extract(
        classifier.body.as_ref(),
        batches(12, 1),
        Device::Cpu,
        BodyMode::SeedBnDrift,
        "c",
    )
    .unwrap();
    assert_ne!(
        drift.features, frozen_a.features,
        "train-mode BatchNorm uses batch statistics"
    );
    let moved = before
        .iter()
        .zip(running_stats(&vs))
        .filter(|((_, b), (_, a))| !b.equal(a))
        .count();
    assert!(
        moved > 0,
        "seed-bn-drift must update the running statistics"
    );
}
