//! Batched multi-seed stage 2 against training each seed alone, and the augmented view source.
//!
//! `stage2_batched::train_batched` must give every seed what `stage2::train` gives it alone: the same
//! selected epoch and, up to float rounding of the batched matrix products, the same validation NLL
//! history and weights. It also writes ordinary single-seed checkpoints.

use decal_data::ImageSet;
use decal_models::heads::{HeadConfig, HeadKind, NormalRng};
use decal_train::features::FeatureSet;
use decal_train::stage2::{self, Stage2Config, TrainSource, TrainedHead};
use decal_train::stage2_batched::{train_batched, BatchedSource};
use decal_train::views::{self, Augmentation, BuildOptions, Storage, ViewsKey};
use tch::{Device, Kind, Tensor};

/// Heads are initialised from libtorch's global generator (`tch::manual_seed`, as `stage2::train` does), so
/// the tests of this file must not build heads concurrently.
static GLOBAL_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Three Gaussian blobs in 6-D with overlap (so training keeps improving for a few epochs).
fn blobs(n: usize, seed: u64) -> FeatureSet {
    let mut rng = NormalRng::new(seed);
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let y = (i % 3) as i64;
        for d in 0..6 {
            let centre = if d as i64 == y { 1.2 } else { 0.0 };
            features.push((centre + rng.next_normal()) as f32);
        }
        labels.push(y);
    }
    FeatureSet {
        features,
        labels,
        feature_dim: 6,
    }
}

fn config(kind: HeadKind, seed: u64) -> Stage2Config {
    let head = match kind {
        HeadKind::Tst => HeadConfig::tst(6, 4, 3),
        HeadKind::Vtst => HeadConfig::vtst(6, 4, 3),
        HeadKind::Reinit => HeadConfig::reinit(6, 3),
    };
    Stage2Config {
        epochs: 8,
        batch_size: 32,
        lr: 5e-3,
        val_samples: 5,
        ..Stage2Config::seed_recipe(head, seed)
    }
}

fn max_weight_diff(a: &TrainedHead, b: &TrainedHead) -> f64 {
    let va = a.vs.variables();
    let vb = b.vs.variables();
    let mut ka: Vec<&String> = va.keys().collect();
    let mut kb: Vec<&String> = vb.keys().collect();
    ka.sort();
    kb.sort();
    assert_eq!(ka, kb, "parameter names");
    va.iter()
        .map(|(k, t)| {
            (t - &vb[k])
                .abs()
                .max()
                .to_kind(Kind::Double)
                .double_value(&[])
        })
        .fold(0.0, f64::max)
}

fn assert_close(batched: &TrainedHead, alone: &TrainedHead, what: &str) {
    assert_eq!(batched.config, alone.config, "{what}");
    assert_eq!(
        batched.best_epoch, alone.best_epoch,
        "{what}: selected epoch"
    );
    for (b, a) in batched.history.iter().zip(&alone.history) {
        assert!(
            (b.val_nll - a.val_nll).abs() < 1e-6 && (b.train_loss - a.train_loss).abs() < 1e-6,
            "{what} epoch {}: batched {b:?} vs alone {a:?}",
            b.epoch
        );
    }
    let diff = max_weight_diff(batched, alone);
    // Measured: ≤ 2e-7 (float32 rounding of the batched matrix products); 1e-5 leaves room for other BLAS.
    assert!(diff < 1e-5, "{what}: weights differ by {diff}");
}

#[test]
fn batched_seeds_match_each_seed_trained_alone() {
    let _serial = serial();
    let train = blobs(300, 1);
    let val = blobs(150, 2);
    for kind in [HeadKind::Tst, HeadKind::Vtst, HeadKind::Reinit] {
        let configs: Vec<Stage2Config> = [3, 4, 11].iter().map(|&s| config(kind, s)).collect();
        let batched = train_batched(
            &configs,
            BatchedSource::Fixed(&train),
            &val,
            Device::Cpu,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(batched.len(), 3);
        for (c, b) in configs.iter().zip(&batched) {
            let alone = stage2::train(
                c,
                TrainSource::Cached(&train),
                &val,
                Device::Cpu,
                &mut |_| {},
            )
            .unwrap();
            assert_close(b, &alone, &format!("{kind} seed {}", c.seed));
            // The same seed batched on its own gives the same head as inside the batch of three.
            let solo = train_batched(
                std::slice::from_ref(c),
                BatchedSource::Fixed(&train),
                &val,
                Device::Cpu,
                &mut |_, _| {},
            )
            .unwrap()
            .pop()
            .unwrap();
            assert_close(b, &solo, &format!("{kind} seed {} solo", c.seed));
        }
        // Seeds really differ from each other.
        assert!(max_weight_diff(&batched[0], &batched[1]) > 1e-2);
        // Learned something: chance NLL is ln 3 ≈ 1.0986.
        let best = batched[0].history[batched[0].best_epoch].val_nll;
        assert!(best < 1.06, "{kind}: {best}");
    }
}

#[test]
fn batched_heads_save_as_ordinary_checkpoints() {
    let _serial = serial();
    let train = blobs(120, 5);
    let val = blobs(60, 6);
    let configs: Vec<Stage2Config> = [0, 1]
        .iter()
        .map(|&s| Stage2Config {
            epochs: 2,
            ..config(HeadKind::Vtst, s)
        })
        .collect();
    let heads = train_batched(
        &configs,
        BatchedSource::Fixed(&train),
        &val,
        Device::Cpu,
        &mut |_, _| {},
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    stage2::save_head(dir.path(), &heads[1], serde_json::json!({"train": "blobs"})).unwrap();
    let (_vs, head, meta) = stage2::load_head(dir.path(), Device::Cpu).unwrap();
    assert_eq!(meta.config.seed, 1);
    assert_eq!(meta.best_epoch, heads[1].best_epoch);
    let (x, _) = val.to_tensors(Device::Cpu);
    let p1 = stage2::predict_log_probs(&heads[1].head, &x, 4, &mut NormalRng::new(9), 4096);
    let p2 = stage2::predict_log_probs(&head, &x, 4, &mut NormalRng::new(9), 4096);
    assert!(p1.equal(&p2));
}

#[test]
fn seeds_with_different_settings_are_refused() {
    let _serial = serial();
    let train = blobs(30, 1);
    let mut other = config(HeadKind::Tst, 1);
    other.lr = 1e-3;
    let err = train_batched(
        &[config(HeadKind::Tst, 0), other],
        BatchedSource::Fixed(&train),
        &train,
        Device::Cpu,
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("share every setting"), "{err}");
}

/// 60 random 6×6 one-channel images in 3 classes (class = brightest third of the image).
fn images() -> ImageSet {
    let mut rng = NormalRng::new(4);
    let n = 60;
    let mut pixels = Vec::with_capacity(n * 36);
    let mut labels = Vec::new();
    for i in 0..n {
        let y = i % 3;
        for p in 0..36 {
            let bright = (p / 12) == y;
            let v = if bright { 170.0 } else { 60.0 } + 30.0 * rng.next_normal();
            pixels.push(v.clamp(0.0, 255.0) as u8);
        }
        labels.push(y as u32);
    }
    ImageSet {
        name: "synthetic/train".into(),
        height: 6,
        width: 6,
        channels: 1,
        pixels,
        labels,
        class_names: vec!["a".into(), "b".into(), "c".into()],
    }
}

/// A fixed "body": mean of each of the three horizontal bands and of the left/right halves (F = 5).
fn body(x: &Tensor) -> Tensor {
    let b = x.size()[0];
    let x = x.reshape([b, 6, 6]);
    let band = |r: i64| {
        x.narrow(1, r, 2)
            .mean_dim([1i64, 2].as_slice(), false, Kind::Float)
    };
    let half = |c: i64| {
        x.narrow(2, c, 3)
            .mean_dim([1i64, 2].as_slice(), false, Kind::Float)
    };
    Tensor::stack(&[band(0), band(2), band(4), half(0), half(3)], 1)
}

#[test]
fn view_source_feeds_sampled_views_and_one_view_equals_its_fixed_features() {
    let _serial = serial();
    let set = images();
    let idx: Vec<usize> = (0..48).collect();
    let val_idx: Vec<usize> = (48..60).collect();
    let aug = Augmentation::crop_flip(2, vec![0.5], vec![0.25]);
    let build = |a: usize, dir: &std::path::Path| {
        let key = ViewsKey::new(a, Storage::F32, aug.clone(), 7, "body".into(), &set, &idx);
        let options = BuildOptions {
            chunk_size: 16,
            batch_size: 16,
            ..BuildOptions::default()
        };
        views::build_or_open(dir, &key, &set, &idx, 5, &options, &mut body, &mut |_| {})
            .unwrap()
            .0
    };
    let val_out: Vec<f32> = {
        let t = aug.transform(0).unwrap();
        let eval = decal_data::transforms::Transform {
            crop_padding: None,
            hflip: false,
            ..t
        };
        let mut imgs = vec![0f32; val_idx.len() * 36];
        for (k, &i) in val_idx.iter().enumerate() {
            eval.apply_into(&set, i, 0, &mut imgs[k * 36..(k + 1) * 36]);
        }
        Vec::try_from(body(&Tensor::from_slice(&imgs).reshape([12, 1, 6, 6])).flatten(0, -1))
            .unwrap()
    };
    let val = FeatureSet {
        features: val_out,
        labels: val_idx.iter().map(|&i| set.labels[i] as i64).collect(),
        feature_dim: 5,
    };
    let head = HeadConfig::tst(5, 4, 3);
    let configs: Vec<Stage2Config> = [0, 1]
        .iter()
        .map(|&s| Stage2Config {
            epochs: 4,
            batch_size: 16,
            lr: 1e-2,
            ..Stage2Config::seed_recipe(head.clone(), s)
        })
        .collect();

    let d1 = tempfile::tempdir().unwrap();
    let one = build(1, d1.path());
    let from_views = train_batched(
        &configs,
        BatchedSource::Views(&one),
        &val,
        Device::Cpu,
        &mut |_, _| {},
    )
    .unwrap();
    let fixed = one.view(0).unwrap();
    let from_fixed = train_batched(
        &configs,
        BatchedSource::Fixed(&fixed),
        &val,
        Device::Cpu,
        &mut |_, _| {},
    )
    .unwrap();
    for (a, b) in from_views.iter().zip(&from_fixed) {
        assert_eq!(
            max_weight_diff(a, b),
            0.0,
            "A = 1 must be exactly its one view"
        );
        assert_eq!(a.history, {
            let mut h = b.history.clone();
            for (x, y) in h.iter_mut().zip(&a.history) {
                x.seconds = y.seconds;
            }
            h
        });
    }
    let d4 = tempfile::tempdir().unwrap();
    let four = build(4, d4.path());
    let from_four = train_batched(
        &configs,
        BatchedSource::Views(&four),
        &val,
        Device::Cpu,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(
        max_weight_diff(&from_four[0], &from_views[0]) > 1e-4,
        "4 views must change what the head sees"
    );
}
