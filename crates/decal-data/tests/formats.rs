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

#[test]
fn svhn_mat_files_match_the_pngs_compressed_or_not() {
    let (png, labels) = samples("cifar10");
    for f in ["svhn_20_plain.mat", "svhn_20_zlib.mat"] {
        let set = decal_data::svhn::read_file(&fixture(f), "svhn/test".into()).unwrap();
        assert_eq!(set.pixels, png, "{f}");
        if !labels.is_empty() {
            // The fixture stores label 0 as 10 (SVHN convention); the reader maps it back.
            assert_eq!(set.labels, labels, "{f}");
        }
    }
    // Official counts are enforced by `load`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("svhn_20_zlib.mat"),
        dir.path().join("test_32x32.mat"),
    )
    .unwrap();
    let e = decal_data::load(
        decal_data::DatasetName::Svhn,
        dir.path(),
        decal_data::SplitName::Test,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("test_32x32.mat") && e.contains("holds 20 images, expected 26032"),
        "{e}"
    );
}

#[test]
fn bad_mat_files_are_errors() {
    let bytes = std::fs::read(fixture("svhn_20_plain.mat")).unwrap();
    let p = Path::new("x.mat");
    for cut in [10, 127, 200, 5000, bytes.len() - 1] {
        assert!(
            decal_data::svhn::parse_svhn_bytes(&bytes[..cut], p).is_err(),
            "cut {cut}"
        );
    }
    let mut bad = bytes.clone();
    bad[126] = b'X';
    let e = decal_data::svhn::parse_svhn_bytes(&bad, p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("x.mat") && e.contains("endian"), "{e}");
    let z = std::fs::read(fixture("svhn_20_zlib.mat")).unwrap();
    for cut in [140, 1000, z.len() - 3] {
        assert!(
            decal_data::svhn::parse_svhn_bytes(&z[..cut], p).is_err(),
            "zlib cut {cut}"
        );
    }
}

#[test]
fn cifar10_c_directory_reads_every_severity_block() {
    let (png, labels) = samples("cifar10");
    let classes: Vec<String> = cifar::CIFAR10_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let dir = decal_data::corrupted::find_dir(&fixture(""), 10).unwrap();
    assert_eq!(
        decal_data::corrupted::available(&dir),
        vec!["brightness", "fog"]
    );
    for (k, c) in ["brightness", "fog"].iter().enumerate() {
        for s in 1..=5 {
            let set = decal_data::corrupted::read(&dir, c, s, &classes).unwrap();
            // make_golden.py: block s = clip(png + 10·(s−1) + k).
            let want: Vec<u8> = png
                .iter()
                .map(|&v| (v as usize + 10 * (s - 1) + k).min(255) as u8)
                .collect();
            assert_eq!(set.pixels, want, "{c} {s}");
            if !labels.is_empty() {
                assert_eq!(set.labels, labels);
            }
            assert!(set.is_test_split());
        }
    }
    assert!(decal_data::corrupted::read(&dir, "fog", 6, &classes).is_err());
    let e = decal_data::corrupted::read(&dir, "snow", 1, &classes)
        .unwrap_err()
        .to_string();
    assert!(e.contains("snow.npy"), "{e}");
}

#[test]
fn idx_files_raw_and_gzipped() {
    let (png, labels) = samples("cifar10");
    let red: Vec<u8> = png.chunks(3).map(|p| p[0]).collect();
    let set = decal_data::idx::read_pair(
        &fixture("idx20-images-idx3-ubyte"),
        &fixture("idx20-labels-idx1-ubyte.gz"),
        "idx/test".into(),
        (0..10).map(|d| d.to_string()).collect(),
    )
    .unwrap();
    assert_eq!(
        (set.len(), set.height, set.width, set.channels),
        (20, 32, 32, 1)
    );
    assert_eq!(set.pixels, red);
    if !labels.is_empty() {
        assert_eq!(set.labels, labels);
    }
    let bytes = std::fs::read(fixture("idx20-images-idx3-ubyte")).unwrap();
    assert!(decal_data::idx::parse_idx_bytes(&bytes[..bytes.len() - 1])
        .unwrap_err()
        .contains("need 20480 bytes"));
    let mut bad = bytes.clone();
    bad[2] = 0x0d;
    assert!(decal_data::idx::parse_idx_bytes(&bad)
        .unwrap_err()
        .contains("not unsigned byte"));
    // Too few classes for the labels: the record is named.
    let e = decal_data::idx::read_pair(
        &fixture("idx20-images-idx3-ubyte"),
        &fixture("idx20-labels-idx1-ubyte.gz"),
        "idx/test".into(),
        vec!["a".into(), "b".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("idx20-labels-idx1-ubyte.gz: record 0: label 3 outside 0..2"),
        "{e}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
        let _ = decal_data::cifar::parse_cifar10_binary_bytes(&bytes);
        let _ = decal_data::cifar::parse_cifar_pickle_bytes(&bytes, CifarKind::Cifar10, Path::new("x"));
        let _ = decal_data::idx::parse_idx_bytes(&bytes);
        let _ = decal_data::mat::parse_mat_bytes(&bytes);
        let mut with_header = vec![0u8; 126];
        with_header.extend(b"IM");
        with_header.extend(&bytes);
        let _ = decal_data::mat::parse_mat_bytes(&with_header);
    }

    #[test]
    fn mutated_fixtures_never_panic(which in 0usize..4, flips in proptest::collection::vec((0usize..100_000, proptest::num::u8::ANY), 1..16), cut in 0usize..100_000) {
        let name = ["svhn_20_plain.mat", "svhn_20_zlib.mat", "cifar10_20.pkl", "idx20-images-idx3-ubyte"][which];
        let mut b = std::fs::read(fixture(name)).unwrap();
        for (at, v) in flips {
            let n = b.len();
            b[at % n] = v;
        }
        b.truncate(cut.max(1));
        let _ = decal_data::mat::parse_mat_bytes(&b);
        let _ = decal_data::cifar::parse_cifar_pickle_bytes(&b, CifarKind::Cifar10, Path::new("x"));
        let _ = decal_data::idx::parse_idx_bytes(&b);
    }
}
