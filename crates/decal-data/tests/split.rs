//! `seed_split` / `torch_randperm` against PyTorch 2.11 (`tests/golden/torch_reference.json`, written by
//! `make_golden.py --torch`), and the split manifest's invariants.

use std::sync::Arc;

use decal_data::split::{seed_split, stratified_split, torch_randperm, SplitManifest, TrainValid};

fn reference() -> serde_json::Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/torch_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ints(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn randperm_is_bit_exact_with_torch_2_11() {
    let r = reference();
    for (n, want) in r["randperm"].as_object().unwrap() {
        let n: usize = n.parse().unwrap();
        let p = torch_randperm(n, 1);
        let k = n.min(10);
        assert_eq!(p[..k], ints(&want["first"])[..], "n={n} first");
        assert_eq!(p[n - k..], ints(&want["last"])[..], "n={n} last");
        let bytes: Vec<u8> = p.iter().flat_map(|&i| (i as i64).to_le_bytes()).collect();
        assert_eq!(
            decal_core::sha256_bytes(&bytes),
            want["sha256_i64le"].as_str().unwrap(),
            "n={n} sha"
        );
    }
}

#[test]
fn seed_split_matches_random_split() {
    let r = reference();
    for (key, want) in r["random_split"].as_object().unwrap() {
        let (n, f) = key.split_once('_').unwrap();
        let (n, f): (usize, f64) = (n.parse().unwrap(), f.parse().unwrap());
        let (t, v) = seed_split(n, f, 1);
        assert_eq!(t.len() + v.len(), n);
        assert_eq!(t[..5], ints(&want["train_first"])[..], "{key}");
        assert_eq!(t[t.len() - 5..], ints(&want["train_last"])[..], "{key}");
        assert_eq!(v[..5], ints(&want["valid_first"])[..], "{key}");
        assert_eq!(v[v.len() - 5..], ints(&want["valid_last"])[..], "{key}");
    }
    // Seed spec §4.3 table.
    assert_eq!(seed_split(50_000, 0.8, 1).0.len(), 40_000);
    assert_eq!(seed_split(50_000, 0.95, 1).1.len(), 2_500);
    assert_eq!(seed_split(73_257, 0.8, 1).0.len(), 58_605);
    // Pinned literally (torch 2.11): CIFAR-10 @0.8 and SVHN @0.8.
    let (t, v) = seed_split(50_000, 0.8, 1);
    assert_eq!(
        (t[0], t[39_999], v[0], v[9_999]),
        (45845, 46803, 27752, 8475)
    );
    let (t, v) = seed_split(73_257, 0.8, 1);
    assert_eq!(
        (t[0], t[58_604], v[0], v[14_651]),
        (35452, 40109, 2098, 8686)
    );
}

#[test]
fn manifest_round_trip_and_tamper_detection() {
    let dir = tempfile::tempdir().unwrap();
    let m = SplitManifest::seed("cifar10", 1000, 0.8, 1).unwrap();
    let p = dir.path().join("split.json");
    m.save(&p).unwrap();
    assert_eq!(SplitManifest::load(&p).unwrap(), m);
    let text = std::fs::read_to_string(&p).unwrap().replacen(
        "\"train_indices\": [\n    ",
        "\"train_indices\": [\n    1",
        1,
    );
    std::fs::write(&p, text).unwrap();
    let e = SplitManifest::load(&p).unwrap_err().to_string();
    assert!(e.contains("split.json") && e.contains("checksum"), "{e}");
    assert!(SplitManifest::seed("x", 10, 1.0, 1).is_err());
}

#[test]
fn stratified_split_keeps_class_proportions() {
    let labels: Vec<u32> = (0..1000).map(|i| (i % 10) as u32).collect();
    let (t, v) = stratified_split(&labels, 0.8, 1);
    assert_eq!((t.len(), v.len()), (800, 200));
    for c in 0..10 {
        assert_eq!(v.iter().filter(|&&i| labels[i] == c).count(), 20);
    }
    let mut all: Vec<usize> = t.iter().chain(&v).copied().collect();
    all.sort();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
}

#[test]
fn test_sets_cannot_be_split_for_fitting() {
    let set = decal_data::ImageSet {
        name: "cifar10/test".into(),
        height: 1,
        width: 1,
        channels: 1,
        pixels: vec![0; 10],
        labels: vec![0; 10],
        class_names: vec!["a".into()],
    };
    let e = TrainValid::seed(Arc::new(set.clone()), "cifar10", 0.8)
        .unwrap_err()
        .to_string();
    assert!(e.contains("refusing"), "{e}");
    let train = decal_data::ImageSet {
        name: "cifar10/train".into(),
        ..set
    };
    assert_eq!(
        TrainValid::seed(Arc::new(train), "cifar10", 0.8)
            .unwrap()
            .manifest
            .valid_indices
            .len(),
        2
    );
}
