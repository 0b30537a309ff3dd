//! Transforms (augmentation draws per epoch, channel checks) and resize filters against Pillow and
//! PyTorch 2.11 (`tests/golden/{pillow_resize,torch_reference}.json`, written by `make_golden.py`).

use decal_data::resize::{resize_plane_f32, resize_u8, Filter};
use decal_data::transforms::{Normalize, Transform};
use decal_data::{DatasetName, ImageSet};

fn synthetic(n: usize) -> ImageSet {
    ImageSet {
        name: "synthetic/train".into(),
        height: 32,
        width: 32,
        channels: 3,
        pixels: (0..n * 3072).map(|i| (i * 7 % 251) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u32).collect(),
        class_names: (0..10).map(|i| i.to_string()).collect(),
    }
}

fn apply(t: &Transform, set: &ImageSet, index: usize, epoch: usize) -> Vec<f32> {
    let [c, h, w] = t.output_shape(set.height, set.width, set.channels);
    let mut out = vec![0f32; c * h * w];
    t.apply_into(set, index, epoch, &mut out);
    out
}

#[test]
fn augmentation_is_a_function_of_seed_epoch_and_index() {
    let set = synthetic(3);
    let t = Transform::seed_train(DatasetName::Cifar10, 7).unwrap();
    assert_eq!(apply(&t, &set, 1, 4), apply(&t, &set, 1, 4));
    // Augmentation differs between epochs for the same image.
    let x0 = apply(&t, &set, 0, 0);
    assert!((1..20).any(|e| apply(&t, &set, 0, e) != x0));
    // The evaluation transform has no draws: every epoch is the same.
    let e = Transform::seed_eval(DatasetName::Cifar10).unwrap();
    assert_eq!(apply(&e, &set, 0, 0), apply(&e, &set, 0, 9));
}

#[test]
fn a_normalisation_with_other_channels_is_refused() {
    let set = synthetic(2);
    assert!(Transform::seed_eval(DatasetName::Cifar10)
        .unwrap()
        .check(&set)
        .is_ok());
    let grey = Transform::eval(Normalize::seed(DatasetName::Mnist).unwrap());
    let e = grey.check(&set).unwrap_err().to_string();
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
