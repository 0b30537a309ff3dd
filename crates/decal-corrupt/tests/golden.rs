//! Pixel-level agreement with the original Python recipe on its deterministic parts.
//!
//! `tests/golden/golden.npz` was written by `tests/golden/make_golden.py` from the functions of
//! `make_cifar_c.py` (library versions in `golden_versions.json`). The deterministic corruptions are
//! compared for every severity on three images; motion blur is compared with fixed angles (the
//! recipe draws the angle at random) against ImageMagick itself.

use decal_corrupt::ops::motion_blur_u8;
use decal_corrupt::rng::image_rng;
use decal_corrupt::{corrupt_image, Assets, Corruption};
use decal_io::npy::{NpyArray, NpyData};
use std::collections::HashMap;

fn golden() -> HashMap<String, NpyArray> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/golden.npz");
    decal_io::npz::read(std::path::Path::new(path))
        .expect("golden.npz should be readable")
        .into_iter()
        .collect()
}

fn bytes(a: &NpyArray) -> &[u8] {
    match &a.data {
        NpyData::U8(v) => v,
        other => panic!("golden arrays should be uint8, got {other:?}"),
    }
}

/// (fraction of identical values, mean |diff|, max |diff|).
fn compare(ours: &[u8], theirs: &[u8]) -> (f64, f64, u8) {
    assert_eq!(ours.len(), theirs.len());
    let mut same = 0usize;
    let mut sum = 0u64;
    let mut max = 0u8;
    for (&a, &b) in ours.iter().zip(theirs) {
        let d = a.abs_diff(b);
        same += usize::from(d == 0);
        sum += u64::from(d);
        max = max.max(d);
    }
    (
        same as f64 / ours.len() as f64,
        sum as f64 / ours.len() as f64,
        max,
    )
}

/// Runs `corruption` on every golden source image and severity, returns the comparison.
fn run(g: &HashMap<String, NpyArray>, corruption: Corruption) -> (f64, f64, u8) {
    let source = bytes(&g["source"]);
    let expected = bytes(&g[corruption.name()]);
    let mut ours = Vec::new();
    for severity in 1..=5u8 {
        for img in source.chunks_exact(3072) {
            let mut rng = image_rng(0, corruption, severity, 0);
            ours.extend(
                corrupt_image(
                    corruption,
                    severity,
                    img,
                    32,
                    32,
                    &mut rng,
                    &Assets::default(),
                )
                .unwrap(),
            );
        }
    }
    let stats = compare(&ours, expected);
    eprintln!(
        "{corruption}: identical {:.4}, mean |diff| {:.4}, max |diff| {}",
        stats.0, stats.1, stats.2
    );
    stats
}

#[test]
fn deterministic_corruptions_match_the_recipe_bit_for_bit() {
    // Reproducing float32 steps (zoom_blur, the defocus kernel), SciPy's summation order, true
    // division by 255 and libjpeg's integer JPEG pipeline makes these identical, not merely close.
    let g = golden();
    for c in [
        Corruption::Contrast,
        Corruption::Pixelate,
        Corruption::GaussianBlur,
        Corruption::ZoomBlur,
        Corruption::DefocusBlur,
        Corruption::Brightness,
        Corruption::Saturate,
        // libjpeg's integer pipeline (crate::jpeg) reproduces PIL's save + open exactly.
        Corruption::JpegCompression,
    ] {
        let (same, _, max) = run(&g, c);
        assert_eq!((same, max), (1.0, 0), "{c}");
    }
}

#[test]
fn motion_blur_kernel_matches_imagemagick() {
    let g = golden();
    let source = bytes(&g["source"]);
    let expected = bytes(&g["motion_blur"]);
    let angles = match &g["motion_angles"].data {
        NpyData::F64(v) => v.clone(),
        other => panic!("angles should be float64, got {other:?}"),
    };
    let params = [(6.0, 1.0), (6.0, 1.5), (6.0, 2.0), (8.0, 2.0), (9.0, 2.5)];
    let mut ours = Vec::new();
    for (&(radius, sigma), &angle) in params.iter().zip(&angles) {
        for img in source.chunks_exact(3072) {
            ours.extend(motion_blur_u8(img, 32, 32, 3, radius, sigma, angle));
        }
    }
    let (same, mean, max) = compare(&ours, expected);
    eprintln!("motion_blur: identical {same:.4}, mean |diff| {mean:.4}, max |diff| {max}");
    assert!(
        max <= 1 && same > 0.99,
        "identical {same}, mean {mean}, max {max}"
    );
}
