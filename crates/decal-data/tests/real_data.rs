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

/// decal decodes JPEG with libjpeg-turbo's decoder (islow IDCT, fancy upsampling), like Pillow: the first
/// 100 test images (ImageFolder order; Pillow 13 reference written by `tests/golden/make_golden.py`) are
/// bit-identical. (All 10,000 were checked identical when the decoder was chosen.)
#[test]
fn cifar10_jpeg_decoding_is_bit_exact_with_pillow() {
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
    assert_eq!(&set.pixels[..pil.len()], &pil[..]);
}

#[test]
fn tiny_imagenet_splits() {
    let Some(d) = datasets() else { return };
    let t = Instant::now();
    let val = load(DatasetName::TinyImagenet, &d, SplitName::Val).unwrap();
    eprintln!(
        "tiny-imagenet val: {} images in {:.2?}",
        val.len(),
        t.elapsed()
    );
    assert_eq!(val.len(), 10_000);
    assert_eq!(val.num_classes(), 200);
    assert_eq!(val.class_counts(), vec![50; 200]);
    assert_eq!((val.height, val.width, val.channels), (64, 64, 3));
    let test = load(DatasetName::TinyImagenet, &d, SplitName::SeedTest).unwrap();
    assert_eq!(test.class_counts(), vec![25; 200]);
    assert!(test.is_test_split());
    let sval = load(DatasetName::TinyImagenet, &d, SplitName::SeedVal).unwrap();
    assert_eq!(sval.class_counts(), vec![25; 200]);
    // BUG-19 guard: the official (unlabelled) test split is refused with a pointer to seed-test.
    let e = load(DatasetName::TinyImagenet, &d, SplitName::Test)
        .unwrap_err()
        .to_string();
    assert!(e.contains("seed-test"), "{e}");
    let train = load(DatasetName::TinyImagenet, &d, SplitName::Train).unwrap();
    assert_eq!(train.len(), 10_000);
    assert_eq!(train.class_counts(), vec![50; 200]);
}

#[test]
fn tiny_imagenet_resized_to_32_matches_pillow() {
    let Some(d) = datasets() else { return };
    let set =
        decal_data::tinyimagenet::load_tinyimagenet_resized(&d, SplitName::Val, Some(32)).unwrap();
    let g: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/pillow_resize.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let want: Vec<u8> = g["tiny_val0_to32_bilinear"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    // val_0.JPEG is the first image of the full val split. JPEG decoding differs from libjpeg-turbo by a few
    // levels on some pixels; the resize itself is bit-exact (tested on 8-bit inputs elsewhere).
    let max = set
        .image(0)
        .iter()
        .zip(&want)
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .max()
        .unwrap();
    assert!(max <= 3, "max diff {max}");
}

#[test]
fn mnist_and_fashion_mnist_full() {
    let Some(d) = datasets() else { return };
    for name in [DatasetName::Mnist, DatasetName::FashionMnist] {
        let train = load(name, &d, SplitName::Train).unwrap();
        let test = load(name, &d, SplitName::Test).unwrap();
        assert_eq!((train.len(), test.len()), (60_000, 10_000), "{name}");
        assert_eq!((train.height, train.width, train.channels), (28, 28, 1));
        assert_eq!(train.num_classes(), 10);
        // Both datasets are balanced in test: 1,000 per class for Fashion-MNIST; MNIST's known counts.
        if name == DatasetName::FashionMnist {
            assert_eq!(test.class_counts(), vec![1_000; 10]);
            assert_eq!(train.class_counts(), vec![6_000; 10]);
        } else {
            assert_eq!(
                test.class_counts(),
                vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
            );
        }
        // The usual normalisation constants are the training set's statistics.
        let (m, s) = decal_data::transforms::channel_stats(&train);
        let want = decal_data::transforms::Normalize::seed(name).unwrap();
        assert!(
            (m[0] - want.mean[0] as f64).abs() < 5e-4 && (s[0] - want.std[0] as f64).abs() < 5e-4,
            "{name}: {m:?} {s:?}"
        );
    }
}

#[test]
fn verify_mnist_family_against_published_raw_checksums() {
    let Some(d) = datasets() else { return };
    for name in [DatasetName::Mnist, DatasetName::FashionMnist] {
        let checks = decal_data::verify::verify(name, &d).unwrap();
        assert_eq!(checks.len(), 4, "{name}");
        assert!(
            checks.iter().all(|c| c.status == "ok"),
            "{name}: {checks:?}"
        );
    }
    // A copy of the CIFAR-10 python batches with a flipped byte is reported.
    let dir = tempfile::tempdir().unwrap();
    let py = dir.path().join("cifar-10-batches-py");
    std::fs::create_dir_all(&py).unwrap();
    std::fs::write(py.join("test_batch"), b"not the real batch").unwrap();
    let checks = decal_data::verify::verify(DatasetName::Cifar10, dir.path()).unwrap();
    assert_eq!(checks.iter().filter(|c| c.status == "missing").count(), 6);
    assert_eq!(checks.iter().filter(|c| c.status == "mismatch").count(), 1);
}
