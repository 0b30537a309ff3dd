//! Corrupt, truncated and unsupported inputs produce one-line errors naming the file and the problem.

use decal_io::npy::{self, NpyArray};
use decal_io::IoError;

fn write_tmp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let pos = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    let mut out = bytes.to_vec();
    out[pos..pos + from.len()].copy_from_slice(to);
    out
}

fn good_bytes() -> Vec<u8> {
    npy::to_bytes(&NpyArray::from_f32(
        vec![4, 3],
        (0..12).map(|i| i as f32).collect(),
    ))
    .unwrap()
}

#[test]
fn truncated_data_names_expected_and_actual_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = good_bytes();
    b.truncate(b.len() - 5);
    let p = write_tmp(&dir, "trunc.npy", &b);
    let err = npy::read(&p).unwrap_err();
    assert!(
        matches!(
            err,
            IoError::SizeMismatch {
                expected: 48,
                actual: 43,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("trunc.npy")
            && msg.contains("48")
            && msg.contains("43")
            && msg.contains("truncated"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    // The streaming reader checks the length up front too.
    assert!(npy::NpyReader::open(&p).is_err());
}

#[test]
fn trailing_bytes_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = good_bytes();
    b.extend_from_slice(&[0; 4]);
    let msg = npy::read(&write_tmp(&dir, "long.npy", &b))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("trailing"), "{msg}");
}

#[test]
fn corrupt_headers() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.npy", vec![], "magic"),
        ("magic.npy", b"PK\x03\x04 not npy".to_vec(), "magic"),
        ("short.npy", good[..9].to_vec(), "truncated"),
        (
            "cut_header.npy",
            good[..40].to_vec(),
            "truncated .npy header",
        ),
        (
            "version.npy",
            {
                let mut b = good.clone();
                b[6] = 9;
                b
            },
            "version 9.0",
        ),
        (
            "dict.npy",
            {
                let mut b = good.clone();
                b[10] = b'[';
                b
            },
            "header",
        ),
        (
            "dtype.npy",
            replace(&good, b"<f4", b"<c8"),
            "unsupported dtype '<c8'",
        ),
        (
            "nokey.npy",
            replace(&good, b"'shape'", b"'shapf'"),
            "no 'shape'",
        ),
    ];
    for (name, bytes, needle) in cases {
        let p = write_tmp(&dir, name, &bytes);
        let msg = npy::read(&p).unwrap_err().to_string();
        assert!(msg.contains(name) && msg.contains(needle), "{name}: {msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
}

#[test]
fn structured_dtype_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let header = "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }";
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    let mut h = header.to_string();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(&[0; 4]);
    let msg = npy::read(&write_tmp(&dir, "rec.npy", &b))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("structured"), "{msg}");
}

#[test]
fn missing_file_names_path() {
    let msg = npy::read(std::path::Path::new("/nonexistent/x.npy"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("/nonexistent/x.npy"), "{msg}");
}

#[test]
fn write_rejects_shape_mismatch_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.npy");
    let err = npy::write(&p, &NpyArray::from_f64(vec![2, 2], vec![1.0]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.npy") && err.contains("4 elements"),
        "{err}"
    );
    assert!(!p.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn labels_reject_non_integers_and_huge_values() {
    let a = NpyArray::from_f64(vec![3], vec![0.0, 1.5, 2.0]);
    assert!(a
        .to_labels()
        .unwrap_err()
        .to_string()
        .contains("element 1 is 1.5"));
    let a = NpyArray::from_f64(vec![2], vec![0.0, f64::NAN]);
    assert!(a.to_labels().unwrap_err().to_string().contains("element 1"));
    let a = NpyArray {
        shape: vec![1],
        data: decal_io::NpyData::U64(vec![u64::MAX]),
    };
    assert!(a.to_labels().is_err());
    assert_eq!(
        NpyArray::from_f32(vec![2], vec![3.0, 0.0])
            .to_labels()
            .unwrap(),
        vec![3, 0]
    );
}

#[test]
fn matrix_validation() {
    use decal_io::matrix;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.npy");
    npy::write(
        &p,
        &NpyArray::from_f32(vec![2, 2], vec![0.1, 0.9, f32::NAN, 0.5]),
    )
    .unwrap();
    let msg = matrix::load_matrix(&p, None).unwrap_err().to_string();
    assert!(
        msg.contains("row 1, column 0") && msg.contains("NaN"),
        "{msg}"
    );
    npy::write(&p, &NpyArray::from_f32(vec![4], vec![0.1, 0.9, 0.5, 0.5])).unwrap();
    let msg = matrix::load_matrix(&p, None).unwrap_err().to_string();
    assert!(msg.contains("2-D"), "{msg}");
    npy::write(&p, &NpyArray::from_f32(vec![0, 3], vec![])).unwrap();
    assert!(matrix::load_matrix(&p, None)
        .unwrap_err()
        .to_string()
        .contains("empty"));
    let msg = matrix::check_labels(&[0, 1, 5], 3, &p)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("label 2 is 5"), "{msg}");
}

#[test]
fn csv_with_and_without_header() {
    use decal_io::csv;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.csv");
    std::fs::write(&p, "c0,c1\n0.25,0.75\n\n1e-3, 0.999\n").unwrap();
    let m = csv::read(&p).unwrap();
    assert_eq!(
        m.header.as_deref(),
        Some(&["c0".to_string(), "c1".to_string()][..])
    );
    assert_eq!((m.rows, m.cols), (2, 2));
    assert_eq!(m.data, vec![0.25, 0.75, 1e-3, 0.999]);
    std::fs::write(&p, "0.25,0.75\n0.5\n").unwrap();
    let msg = csv::read(&p).unwrap_err().to_string();
    assert!(msg.contains("line 2 has 1 fields, expected 2"), "{msg}");
    std::fs::write(&p, "1,2\n3,x\n").unwrap();
    assert!(csv::read(&p)
        .unwrap_err()
        .to_string()
        .contains("line 2, column 2"));
    let data = vec![0.1, 1.0 / 3.0, -2.5e-300, 7.0];
    csv::write(&p, None, 2, &data).unwrap();
    assert_eq!(csv::read(&p).unwrap().data, data);
}
