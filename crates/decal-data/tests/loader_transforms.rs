//! Loader determinism and batch geometry; resize filters against Pillow and PyTorch 2.11
//! (`tests/golden/{pillow_resize,torch_reference}.json`, written by `make_golden.py`).

use std::sync::Arc;

use decal_data::loader::{Loader, LoaderConfig};
use decal_data::resize::{resize_plane_f32, resize_u8, Filter};
use decal_data::transforms::{Normalize, Transform};
use decal_data::{DatasetName, ImageSet};

fn synthetic(n: usize) -> Arc<ImageSet> {
    Arc::new(ImageSet {
        name: "synthetic/train".into(),
        height: 32,
        width: 32,
        channels: 3,
        pixels: (0..n * 3072).map(|i| (i * 7 % 251) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u32).collect(),
        class_names: (0..10).map(|i| i.to_string()).collect(),
    })
}

#[test]
fn batches_are_identical_for_any_thread_count() {
    let set = synthetic(300);
    let t = Transform::seed_train(DatasetName::Cifar10, 7).unwrap();
    let run = |workers| {
        let cfg = LoaderConfig {
            batch_size: 64,
            shuffle: true,
            seed: 3,
            drop_last: false,
            num_workers: workers,
        };
        let l = Loader::all(Arc::clone(&set), t.clone(), cfg).unwrap();
        (0..2)
            .flat_map(|e| l.epoch(e).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let a = run(0);
    assert_eq!(a, run(1));
    assert_eq!(a, run(3));
    // 300 images at 64: 5 batches per epoch, last one 44.
    assert_eq!(a.len(), 10);
    assert_eq!(a[4].shape, [44, 3, 32, 32]);
    // Each epoch is a permutation of all images, and epochs differ.
    let mut e0: Vec<usize> = a[..5].iter().flat_map(|b| b.indices.clone()).collect();
    let e1: Vec<usize> = a[5..].iter().flat_map(|b| b.indices.clone()).collect();
    assert_ne!(e0, e1);
    e0.sort();
    assert_eq!(e0, (0..300).collect::<Vec<_>>());
    // Augmentation differs between epochs for the same image.
    let l = Loader::all(Arc::clone(&set), t, LoaderConfig::eval(1, 0)).unwrap();
    let x0 = l.epoch(0).next().unwrap();
    let x1 = (1..20)
        .map(|e| l.epoch(e).next().unwrap())
        .find(|b| b.images != x0.images);
    assert!(x1.is_some());
}

#[test]
fn bug5_compat_gives_the_same_order_every_epoch() {
    use decal_data::transforms::SeedCompat;
    let set = synthetic(50);
    let t = Transform::seed_eval(DatasetName::Cifar10).unwrap();
    let seed_like = Loader::all(
        Arc::clone(&set),
        t.clone(),
        LoaderConfig::train(16, 1, SeedCompat::all(), 0),
    )
    .unwrap();
    assert_eq!(seed_like.order(0), seed_like.order(5));
    let clean = Loader::all(set, t, LoaderConfig::train(16, 1, SeedCompat::default(), 0)).unwrap();
    assert_ne!(clean.order(0), clean.order(1));
}

#[test]
fn seed_loader_geometry_matches_the_seed_spec() {
    // Seed spec §4.4: CIFAR-10 train @256 = 157 batches, the last of 64; drop_last drops it.
    let idx: Vec<usize> = (0..40_000).map(|i| i % 10).collect();
    let set = synthetic(10);
    let cfg = LoaderConfig {
        batch_size: 256,
        shuffle: false,
        seed: 0,
        drop_last: false,
        num_workers: 0,
    };
    let l = Loader::new(
        Arc::clone(&set),
        idx.clone(),
        Transform::seed_eval(DatasetName::Cifar10).unwrap(),
        cfg.clone(),
    )
    .unwrap();
    assert_eq!(l.num_batches(), 157);
    let l = Loader::new(
        set,
        idx,
        Transform::seed_eval(DatasetName::Cifar10).unwrap(),
        LoaderConfig {
            drop_last: true,
            ..cfg
        },
    )
    .unwrap();
    assert_eq!(l.num_batches(), 156);
}

#[test]
fn loader_rejects_bad_configurations() {
    let set = synthetic(5);
    let t = Transform::seed_eval(DatasetName::Cifar10).unwrap();
    assert!(Loader::new(
        Arc::clone(&set),
        vec![5],
        t.clone(),
        LoaderConfig::eval(2, 0)
    )
    .is_err());
    assert!(Loader::new(Arc::clone(&set), vec![0], t, LoaderConfig::eval(0, 0)).is_err());
    let test = Arc::new(ImageSet {
        name: "cifar10/test".into(),
        ..(*set).clone()
    });
    let train_t = Transform::seed_train(DatasetName::Cifar10, 1).unwrap();
    let e = Loader::all(Arc::clone(&test), train_t, LoaderConfig::eval(2, 0))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("refusing"), "{e}");
    assert!(Loader::all(
        test,
        Transform::seed_eval(DatasetName::Cifar10).unwrap(),
        LoaderConfig::eval(2, 0)
    )
    .is_ok());
    let grey = Transform::eval(Normalize::seed(DatasetName::Mnist).unwrap());
    let e = Loader::all(set, grey, LoaderConfig::eval(2, 0))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("3 channels"), "{e}");
}

fn golden(name: &str) -> serde_json::Value {
    let p = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn nums(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn pillow_filters_are_bit_exact_on_8_bit_images() {
    let g = golden("pillow_resize.json");
    let input: Vec<u8> = nums(&g["input"]).iter().map(|&v| v as u8).collect();
    for (name, f) in [
        ("bilinear", Filter::BilinearAntialias),
        ("bicubic", Filter::BicubicAntialias),
    ] {
        for (h, w) in [(4, 4), (13, 5), (3, 8)] {
            let want: Vec<u8> = nums(&g[format!("pillow_{name}_{h}x{w}")])
                .iter()
                .map(|&v| v as u8)
                .collect();
            assert_eq!(resize_u8(&input, 8, 8, 3, h, w, f), want, "{name} {h}x{w}");
        }
    }
}

#[test]
fn torch_filters_match_interpolate() {
    let g = golden("torch_reference.json");
    let x: Vec<f32> = nums(&g["interp_input"]).iter().map(|&v| v as f32).collect();
    for (mode, f) in [
        ("nearest", Filter::Nearest),
        ("bilinear", Filter::Bilinear),
        ("bicubic", Filter::Bicubic),
        ("area", Filter::Area),
    ] {
        for (h, w) in [(13, 10), (3, 4)] {
            let want = nums(&g[format!("interp_{mode}_{h}x{w}")]);
            let mut got = Vec::new();
            for c in 0..2 {
                got.extend(resize_plane_f32(&x[c * 42..(c + 1) * 42], 6, 7, h, w, f));
            }
            let max = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(max < 1e-6, "{mode} {h}x{w}: max diff {max}");
        }
    }
}
