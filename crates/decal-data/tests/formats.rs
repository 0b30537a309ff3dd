//! Every official-format reader returns exactly the pixels of the 20 CIFAR-10 / CIFAR-100 sample PNGs
//! (written into each layout by `tests/golden/make_golden.py` with CPython pickle, NumPy and SciPy).

use std::path::{Path, PathBuf};

use decal_data::cifar::{self, CifarKind, CifarLayout};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/fixtures")
        .join(name)
}

/// The PNG pixels (HWC) and the labels from the sample file names.
fn samples(prefix: &str) -> (Vec<u8>, Vec<u32>) {
    let a = decal_io::npy::read(&fixture(&format!("{prefix}_samples_hwc.npy"))).unwrap();
    let decal_io::npy::NpyData::U8(px) = a.data else {
        panic!()
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/samples");
    let labels = if dir.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{prefix}_")))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                n.rsplit('_')
                    .next()
                    .unwrap()
                    .trim_end_matches(".png")
                    .parse()
                    .unwrap()
            })
            .collect()
    } else {
        eprintln!("skipping label check: {} not found", dir.display());
        Vec::new()
    };
    (px, labels)
}

#[test]
fn cifar10_binary_and_pickle_match_the_pngs() {
    let (png, labels) = samples("cifar10");
    for (file, layout) in [
        ("cifar10_20.bin", CifarLayout::Binary),
        ("cifar10_20.pkl", CifarLayout::Python),
    ] {
        let (px, lb) = cifar::read_file(&fixture(file), CifarKind::Cifar10, layout).unwrap();
        assert_eq!(px, png, "{file}");
        if !labels.is_empty() {
            assert_eq!(lb, labels, "{file}");
        }
    }
}

#[test]
fn cifar100_binary_and_pickle_match_the_pngs() {
    let (png, labels) = samples("cifar100");
    for (file, layout) in [
        ("cifar100_20.bin", CifarLayout::Binary),
        ("cifar100_20.pkl", CifarLayout::Python),
    ] {
        let (px, lb) = cifar::read_file(&fixture(file), CifarKind::Cifar100Fine, layout).unwrap();
        assert_eq!(px, png, "{file}");
        if !labels.is_empty() {
            assert_eq!(lb, labels, "{file}");
        }
        let (_, coarse) =
            cifar::read_file(&fixture(file), CifarKind::Cifar100Coarse, layout).unwrap();
        assert_eq!(
            coarse,
            lb.iter().map(|l| l / 5).collect::<Vec<_>>(),
            "{file}"
        );
    }
}

#[test]
fn official_cifar_layouts_are_detected_and_counts_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for f in [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ] {
        std::fs::copy(fixture("cifar10_20.bin"), bin.join(format!("{f}.bin"))).unwrap();
    }
    let (found, layout) = cifar::detect(dir.path(), CifarKind::Cifar10).unwrap();
    assert_eq!((found, layout), (bin.clone(), CifarLayout::Binary));
    // Official files have 10,000 records: a 20-record copy is reported, never silently accepted.
    let e = decal_data::load(
        decal_data::DatasetName::Cifar10,
        dir.path(),
        decal_data::SplitName::Test,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("test_batch.bin") && e.contains("holds 20 records, expected 10000"),
        "{e}"
    );
    let py = dir.path().join("cifar-100-python");
    std::fs::create_dir_all(&py).unwrap();
    std::fs::copy(fixture("cifar100_20.pkl"), py.join("test")).unwrap();
    std::fs::copy(fixture("cifar100_20.pkl"), py.join("train")).unwrap();
    assert_eq!(
        cifar::detect(&py, CifarKind::Cifar100Fine).unwrap().1,
        CifarLayout::Python
    );
    let empty = tempfile::tempdir().unwrap();
    let e = decal_data::load(
        decal_data::DatasetName::Cifar10,
        empty.path(),
        decal_data::SplitName::Train,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no CIFAR-10 data found") && e.contains("cifar-10-batches-bin"),
        "{e}"
    );
}

#[test]
fn corrupted_cifar_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(fixture("cifar10_20.bin")).unwrap();
    let p = dir.path().join("cut.bin");
    std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
    let e = cifar::read_file(&p, CifarKind::Cifar10, CifarLayout::Binary)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cut.bin") && e.contains("record 19 is truncated"),
        "{e}"
    );
    bytes[3073 * 4] = 42;
    std::fs::write(&p, &bytes).unwrap();
    let e = cifar::read_file(&p, CifarKind::Cifar10, CifarLayout::Binary)
        .unwrap_err()
        .to_string();
    assert!(e.contains("record 4") && e.contains("label 42"), "{e}");
    let mut pkl = std::fs::read(fixture("cifar10_20.pkl")).unwrap();
    pkl.truncate(pkl.len() / 2);
    std::fs::write(&p, &pkl).unwrap();
    let e = cifar::read_file(&p, CifarKind::Cifar10, CifarLayout::Python)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cut.bin") && e.contains("pickle"), "{e}");
}
