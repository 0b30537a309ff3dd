//! Reads `.npy`/`.npz` files written by real numpy (tests/fixtures/make_fixtures.py, numpy 2.4) and checks
//! every dtype, both byte orders, format versions 1.0/2.0/3.0, Fortran order, 0-d/empty arrays and archives;
//! also that our writer's bytes equal numpy's for the same array (so numpy can read what we write).

use std::path::PathBuf;

use decal_io::npy::{self, NpyArray, NpyData};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name)
}

/// The values make_fixtures.py stores for each dtype code, as f64 (base = arange(6) reshaped [2, 3]).
fn expected(code: &str) -> Vec<f64> {
    (0..6)
        .map(|i| match code {
            "b1" => (i % 2 == 0) as i32 as f64,
            c if c.starts_with('f') => i as f64 * 0.5 - 1.0,
            _ => i as f64,
        })
        .collect()
}

#[test]
fn every_dtype_and_byte_order_reads_like_numpy() {
    let codes = [
        "b1", "u1", "i1", "i2", "i4", "i8", "u2", "u4", "u8", "f2", "f4", "f8",
    ];
    let mut checked = 0;
    for code in codes {
        for order in ["le", "be"] {
            let path = fixture(&format!("{code}_{order}.npy"));
            if order == "be" && matches!(code, "b1" | "u1" | "i1") {
                assert!(!path.exists());
                continue;
            }
            let a = npy::read(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(a.shape, vec![2, 3], "{code} {order}");
            assert_eq!(a.to_f64_vec(), expected(code), "{code} {order}");
            if code.starts_with('f') {
                assert!(
                    a.to_labels().is_err(),
                    "{code}: -1.0, -0.5 are not integer labels"
                );
            } else {
                assert_eq!(
                    a.to_labels().unwrap(),
                    expected(code).iter().map(|&x| x as i64).collect::<Vec<_>>()
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 21);
}

#[test]
fn dtype_variants_match_the_file() {
    assert!(matches!(
        npy::read(&fixture("b1_le.npy")).unwrap().data,
        NpyData::Bool(_)
    ));
    assert!(matches!(
        npy::read(&fixture("u1_le.npy")).unwrap().data,
        NpyData::U8(_)
    ));
    assert!(matches!(
        npy::read(&fixture("i2_be.npy")).unwrap().data,
        NpyData::I16(_)
    ));
    assert!(matches!(
        npy::read(&fixture("u8_be.npy")).unwrap().data,
        NpyData::U64(_)
    ));
    // Half precision is widened to f32.
    assert!(matches!(
        npy::read(&fixture("f2_be.npy")).unwrap().data,
        NpyData::F32(_)
    ));
    assert!(matches!(
        npy::read(&fixture("f8_le.npy")).unwrap().data,
        NpyData::F64(_)
    ));
}

#[test]
fn format_versions_1_2_3_agree() {
    for v in 1..=3 {
        let path = fixture(&format!("f4_v{v}.npy"));
        let header = npy::read_header(&path).unwrap();
        assert_eq!(header.version.0, v);
        let a = npy::read(&path).unwrap();
        assert_eq!(
            a,
            NpyArray::from_f32(vec![2, 3], vec![-1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
        );
    }
}

#[test]
fn fortran_order_is_transposed_to_c_order() {
    let a = npy::read(&fixture("f8_fortran_3d.npy")).unwrap();
    assert_eq!(a.shape, vec![2, 3, 4]);
    assert_eq!(
        a.to_f64_vec(),
        (0..24).map(|i| i as f64).collect::<Vec<_>>()
    );
}

#[test]
fn scalar_and_empty_arrays() {
    let s = npy::read(&fixture("f8_scalar.npy")).unwrap();
    assert_eq!(s.shape, Vec::<usize>::new());
    assert_eq!(s.to_f64_vec(), vec![3.25]);
    let e = npy::read(&fixture("i8_empty.npy")).unwrap();
    assert_eq!(e.shape, vec![0, 3]);
    assert!(e.is_empty());
}

#[test]
fn our_bytes_equal_numpys_bytes() {
    // numpy 2.x np.save writes format 1.0 with a 64-byte aligned header, exactly as we do.
    for (name, array) in [
        (
            "f4_le.npy",
            NpyArray::from_f32(vec![2, 3], vec![-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]),
        ),
        (
            "f8_le.npy",
            NpyArray::from_f64(vec![2, 3], vec![-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]),
        ),
        (
            "i8_le.npy",
            NpyArray::from_i64(vec![2, 3], vec![0, 1, 2, 3, 4, 5]),
        ),
        (
            "u1_le.npy",
            NpyArray::from_u8(vec![2, 3], vec![0, 1, 2, 3, 4, 5]),
        ),
        (
            "b1_le.npy",
            NpyArray {
                shape: vec![2, 3],
                data: NpyData::Bool(vec![true, false, true, false, true, false]),
            },
        ),
        ("i8_empty.npy", NpyArray::from_i64(vec![0, 3], vec![])),
        ("f8_scalar.npy", NpyArray::from_f64(vec![], vec![3.25])),
    ] {
        let ours = npy::to_bytes(&array).unwrap();
        let theirs = std::fs::read(fixture(name)).unwrap();
        assert_eq!(ours, theirs, "{name}");
    }
}

#[test]
fn npz_stored_and_deflated() {
    let stored = decal_io::npz::read(&fixture("stored.npz")).unwrap();
    let keys: Vec<&str> = stored.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["logits", "labels"]);
    assert_eq!(stored[1].1.to_labels().unwrap(), vec![0, 2]);
    let deflated = decal_io::npz::read(&fixture("deflated.npz")).unwrap();
    assert_eq!(deflated[0].1.to_f64_vec(), expected("f8"));
    assert_eq!(deflated[1].1.to_labels().unwrap(), vec![1, 0]);
    let err = decal_io::npz::read_key(&fixture("deflated.npz"), "probs")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("deflated.npz") && err.contains("logits, labels"),
        "{err}"
    );
}

#[test]
fn npz_round_trip_both_compressions() {
    let dir = tempfile::tempdir().unwrap();
    let arrays = vec![
        (
            "a".to_string(),
            NpyArray::from_f32(vec![3], vec![1.0, 2.0, 3.0]),
        ),
        (
            "b".to_string(),
            NpyArray::from_i64(vec![2, 2], vec![1, -2, 3, -4]),
        ),
    ];
    for compressed in [false, true] {
        let p = dir.path().join(format!("x{compressed}.npz"));
        decal_io::npz::write(&p, &arrays, compressed).unwrap();
        assert_eq!(decal_io::npz::read(&p).unwrap(), arrays);
    }
}

#[test]
fn streaming_reader_matches_whole_read() {
    for name in ["f4_le.npy", "f8_be.npy", "i2_be.npy", "f2_le.npy"] {
        let whole = npy::read(&fixture(name)).unwrap().to_f64_vec();
        let mut r = npy::NpyReader::open(&fixture(name)).unwrap();
        assert_eq!(r.row_len(), 3);
        let mut got = Vec::new();
        let mut chunk = Vec::new();
        while r.read_rows_f64(1, &mut chunk).unwrap() > 0 {
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, whole, "{name}");
    }
}
