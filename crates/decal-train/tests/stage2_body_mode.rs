//! The frozen body in stage 2 (seed-system.md §8.1, BUG-7) and the one feature extractor
//! (`decal_train::features::extract`, issue #11): extraction in the default `frozen` mode leaves every
//! BatchNorm running statistic untouched and is deterministic, while the seed's `seed-bn-drift` mode (body
//! in train mode, no gradients) moves the running statistics and gives batch-dependent features — the
//! behaviour the compat option exists to reproduce. `extract` is also checked bit for bit against a copy of
//! the computation `decal run` used before it had one owner (`experiment::body_features`), with and
//! without augmentation, in both modes.

use decal_data::ImageSet;
use decal_models::{try_build_classifier, ArchConfig, Backbone, Classifier};
use decal_train::features::{extract, BodyMode, FeatureSet};
use decal_train::stage1::{DeviceImages, SplitMix64};
use tch::{nn, Device, Kind};

fn image_set(n: usize) -> ImageSet {
    let per = 32 * 32 * 3;
    ImageSet {
        name: "t/train".into(),
        height: 32,
        width: 32,
        channels: 3,
        pixels: (0..n * per)
            .map(|v| ((v * 2_654_435_761usize) >> 7) as u8)
            .collect(),
        labels: (0..n).map(|i| (i % 10) as u32).collect(),
        class_names: (0..10).map(|c| c.to_string()).collect(),
    }
}

fn device_images(set: &ImageSet) -> DeviceImages {
    DeviceImages::new(set, &[0.49, 0.48, 0.45], &[0.25, 0.24, 0.26], Device::Cpu)
}

/// A WRN (it has BatchNorm) whose weights are a function of `seed`. Built under
/// `decal_models::seeded`: the tests of this file run on parallel threads and libtorch's generator is
/// process-wide, so a bare seed-then-build could interleave with the other test's (it did, in CI).
fn classifier(seed: i64) -> (nn::VarStore, Classifier) {
    let vs = nn::VarStore::new(Device::Cpu);
    let arch = ArchConfig::preset("wrn-10-1", 10).unwrap();
    let c = decal_models::seeded(seed, || try_build_classifier(&vs.root(), &arch)).unwrap();
    (vs, c)
}

fn running_stats(vs: &nn::VarStore) -> Vec<(String, tch::Tensor)> {
    let mut v: Vec<(String, tch::Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(k, _)| k.contains("running_mean") || k.contains("running_var"))
        .map(|(k, t)| (k, t.copy()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Verbatim copy of `decal_eval::experiment::body_features` as it was when `extract` became the owner.
fn old_body_features(
    body: &dyn Backbone,
    images: &DeviceImages,
    indices: &[usize],
    batch_size: usize,
    mode: BodyMode,
    mut rng: Option<&mut SplitMix64>,
) -> FeatureSet {
    let train = mode == BodyMode::SeedBnDrift;
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let feature_dim = body.feature_dim() as usize;
    tch::no_grad(|| {
        for chunk in indices.chunks(batch_size.max(1)) {
            let (x, y) = images.batch(chunk, rng.as_deref_mut());
            let f = body
                .features(&x, train)
                .to_kind(Kind::Float)
                .to_device(Device::Cpu);
            let f: Vec<f32> = Vec::try_from(f.flatten(0, -1)).expect("features are float");
            features.extend(f);
            let y: Vec<i64> = Vec::try_from(y.to_device(Device::Cpu)).expect("labels are int64");
            labels.extend(y);
        }
    });
    FeatureSet {
        features,
        labels,
        feature_dim,
    }
}

#[test]
fn frozen_body_keeps_batchnorm_statistics_and_seed_mode_drifts_them() {
    let set = image_set(12);
    let images = device_images(&set);
    let (vs, classifier) = classifier(1);
    let before = running_stats(&vs);
    assert!(!before.is_empty(), "WRN should have BatchNorm buffers");
    let indices: Vec<usize> = (0..12).collect();

    let body = classifier.body.as_ref();
    let frozen_a = extract(body, &images, &indices, 4, BodyMode::Frozen, None).unwrap();
    let frozen_b = extract(body, &images, &indices, 4, BodyMode::Frozen, None).unwrap();
    assert_eq!(
        frozen_a, frozen_b,
        "frozen extraction must be deterministic"
    );
    assert_eq!(frozen_a.len(), 12);
    assert_eq!(frozen_a.feature_dim, body.feature_dim() as usize);
    for ((name, b), (_, a)) in before.iter().zip(running_stats(&vs)) {
        assert!(b.equal(&a), "{name} changed in frozen mode");
    }

    let drift = extract(body, &images, &indices, 4, BodyMode::SeedBnDrift, None).unwrap();
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

#[test]
fn extract_is_bit_identical_to_the_previous_experiment_computation() {
    let set = image_set(11);
    let images = device_images(&set);
    // A shuffled order with a repeat, and a batch size that leaves a short last batch.
    let indices = [7usize, 3, 10, 0, 3, 5, 9, 1, 8];
    for mode in [BodyMode::Frozen, BodyMode::SeedBnDrift] {
        for augmented in [false, true] {
            // Same weights for both computations (drift changes them, so each gets its own copy).
            let (vs_old, old_c) = classifier(7);
            let (vs_new, new_c) = classifier(7);
            let mut rng_old = SplitMix64::for_epoch(3, 2, 0x4155_4730);
            let mut rng_new = rng_old.clone();
            let old = old_body_features(
                old_c.body.as_ref(),
                &images,
                &indices,
                4,
                mode,
                augmented.then_some(&mut rng_old),
            );
            let new = extract(
                new_c.body.as_ref(),
                &images,
                &indices,
                4,
                mode,
                augmented.then_some(&mut rng_new),
            )
            .unwrap();
            assert_eq!(new.labels, old.labels, "{mode:?}, augmented {augmented}");
            assert_eq!(new.feature_dim, old.feature_dim);
            let same_bits = new
                .features
                .iter()
                .zip(&old.features)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same_bits && new.features.len() == old.features.len(),
                "{mode:?}, augmented {augmented}: features differ"
            );
            // Both consumed the same draws and left the same running statistics.
            assert_eq!(rng_old.next_u64(), rng_new.next_u64());
            for ((name, a), (_, b)) in running_stats(&vs_old).iter().zip(running_stats(&vs_new)) {
                assert!(a.equal(&b), "{name} differs after {mode:?}");
            }
        }
    }
    // Augmentation changes the features (it is applied at all).
    let (_vs, c) = classifier(7);
    let plain = extract(
        c.body.as_ref(),
        &images,
        &indices,
        4,
        BodyMode::Frozen,
        None,
    )
    .unwrap();
    let mut rng = SplitMix64::for_epoch(3, 2, 0x4155_4730);
    let aug = extract(
        c.body.as_ref(),
        &images,
        &indices,
        4,
        BodyMode::Frozen,
        Some(&mut rng),
    )
    .unwrap();
    assert_ne!(plain.features, aug.features);
    // Empty indices: an empty set of the body's width, not an error.
    let empty = extract(c.body.as_ref(), &images, &[], 4, BodyMode::Frozen, None).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.feature_dim, c.body.feature_dim() as usize);
}
