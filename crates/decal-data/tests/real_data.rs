//! Readers on the real datasets in `shared/datasets` (skipped with a message when absent).

use std::path::PathBuf;
use std::time::Instant;

use decal_data::{load, DatasetName, SplitName};

fn datasets() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets"
    ));
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: {} not found", p.display());
        None
    }
}

#[test]
fn cifar10_jpeg_test_split_is_complete() {
    let Some(d) = datasets() else { return };
    let t = Instant::now();
    let set = load(
        DatasetName::Cifar10,
        &d.join("cifar10-jpeg"),
        SplitName::Test,
    )
    .unwrap();
    eprintln!(
        "cifar10-jpeg test: {} images in {:.2?}",
        set.len(),
        t.elapsed()
    );
    assert_eq!(set.len(), 10_000);
    assert_eq!(set.class_counts(), vec![1_000; 10]);
    assert_eq!((set.height, set.width, set.channels), (32, 32, 3));
    assert!(set.is_test_split());
    // Auto-detection from the parent folder finds the same copy.
    let again = load(DatasetName::Cifar10, &d, SplitName::Test).unwrap();
    assert_eq!(again.labels, set.labels);
}

#[test]
fn cifar10_jpeg_train_split_is_complete() {
    let Some(d) = datasets() else { return };
    let t = Instant::now();
    let set = load(
        DatasetName::Cifar10,
        &d.join("cifar10-jpeg"),
        SplitName::Train,
    )
    .unwrap();
    eprintln!(
        "cifar10-jpeg train: {} images in {:.2?}",
        set.len(),
        t.elapsed()
    );
    assert_eq!(set.len(), 50_000);
    assert_eq!(set.class_counts(), vec![5_000; 10]);
    assert!(!set.is_test_split());
}

/// decal decodes JPEG with `jpeg-decoder`, Pillow with libjpeg-turbo: the IDCT/upsampling rounding differs.
/// Measured on the first 100 test images (ImageFolder order, Pillow 13 reference written by
/// `tests/golden/make_golden.py`): pin the bound so a decoder change is noticed.
#[test]
fn cifar10_jpeg_decoding_is_within_a_few_levels_of_pillow() {
    let Some(d) = datasets() else { return };
    let set = load(
        DatasetName::Cifar10,
        &d.join("cifar10-jpeg"),
        SplitName::Test,
    )
    .unwrap();
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/fixtures/pillow_cifar10_jpeg_test_first100.npy"
    );
    let pil = decal_io::npy::read(std::path::Path::new(p)).unwrap();
    let decal_io::npy::NpyData::U8(pil) = pil.data else {
        panic!("not uint8")
    };
    let ours = &set.pixels[..pil.len()];
    let diff: Vec<i32> = pil
        .iter()
        .zip(ours)
        .map(|(a, b)| *a as i32 - *b as i32)
        .collect();
    let differing = diff.iter().filter(|&&x| x != 0).count() as f64 / diff.len() as f64;
    let max = diff.iter().map(|x| x.abs()).max().unwrap();
    let mean = diff.iter().map(|&x| x as f64).sum::<f64>() / diff.len() as f64;
    eprintln!(
        "vs Pillow: {:.2}% of values differ, max |diff| {max}, mean diff {mean:.4}",
        100.0 * differing
    );
    assert!(max <= 4, "max |diff| {max}");
    assert!(differing < 0.12, "{differing}");
    assert!(mean.abs() < 0.05, "biased decoder: mean diff {mean}");
}
