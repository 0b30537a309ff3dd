//! Every size a `.npy` / `.npz` file declares is untrusted: a tiny crafted file that declares a huge size is
//! refused with a one-line error naming the file and the problem, with less than 250 MiB of peak memory
//! (each case runs in a child process under `ulimit -v`; see `hostile/mod.rs`).

mod hostile;

use std::path::Path;

use hostile::assert_refused;

/// A zip archive with one member, written by hand so that its central directory can declare any sizes:
/// sizes above `u32::MAX` go into a zip64 extra field, as in a real zip64 archive.
fn zip_one(
    name: &str,
    method: u16,
    payload: &[u8],
    declared_size: u64,
    declared_packed: u64,
) -> Vec<u8> {
    let crc = 0u32; // never checked: the declared sizes are refused first
    let zip64 = declared_size > u32::MAX as u64 || declared_packed > u32::MAX as u64;
    let s32 = |v: u64| if zip64 { u32::MAX } else { v as u32 };
    let mut extra = Vec::new();
    if zip64 {
        extra.extend(1u16.to_le_bytes());
        extra.extend(16u16.to_le_bytes());
        extra.extend(declared_size.to_le_bytes());
        extra.extend(declared_packed.to_le_bytes());
    }
    let mut z = Vec::new();
    // Local file header.
    z.extend(0x0403_4b50u32.to_le_bytes());
    z.extend(45u16.to_le_bytes()); // version needed
    z.extend(0u16.to_le_bytes()); // flags
    z.extend(method.to_le_bytes());
    z.extend([0u8; 4]); // time, date
    z.extend(crc.to_le_bytes());
    z.extend(s32(declared_packed).to_le_bytes());
    z.extend(s32(declared_size).to_le_bytes());
    z.extend((name.len() as u16).to_le_bytes());
    z.extend((extra.len() as u16).to_le_bytes());
    z.extend(name.as_bytes());
    z.extend(&extra);
    z.extend(payload);
    let cd_start = z.len();
    // Central directory header.
    z.extend(0x0201_4b50u32.to_le_bytes());
    z.extend(45u16.to_le_bytes()); // made by
    z.extend(45u16.to_le_bytes()); // needed
    z.extend(0u16.to_le_bytes());
    z.extend(method.to_le_bytes());
    z.extend([0u8; 4]);
    z.extend(crc.to_le_bytes());
    z.extend(s32(declared_packed).to_le_bytes());
    z.extend(s32(declared_size).to_le_bytes());
    z.extend((name.len() as u16).to_le_bytes());
    z.extend((extra.len() as u16).to_le_bytes());
    z.extend(0u16.to_le_bytes()); // comment
    z.extend(0u16.to_le_bytes()); // disk
    z.extend(0u16.to_le_bytes()); // internal attrs
    z.extend(0u32.to_le_bytes()); // external attrs
    z.extend(0u32.to_le_bytes()); // local header offset
    z.extend(name.as_bytes());
    z.extend(&extra);
    let cd_len = z.len() - cd_start;
    // End of central directory.
    z.extend(0x0605_4b50u32.to_le_bytes());
    z.extend([0u8; 4]);
    z.extend(1u16.to_le_bytes());
    z.extend(1u16.to_le_bytes());
    z.extend((cd_len as u32).to_le_bytes());
    z.extend((cd_start as u32).to_le_bytes());
    z.extend(0u16.to_le_bytes());
    z
}

fn small_npy() -> Vec<u8> {
    decal_io::npy::to_bytes(&decal_io::NpyArray::from_f32(
        vec![2, 2],
        vec![1.0, 2.0, 3.0, 4.0],
    ))
    .unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn load(p: &Path) -> Result<(), String> {
    decal_io::matrix::load_matrix(p, None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn npz_stored_member_declaring_2_pow_62_bytes() {
    assert_refused(
        "npz_stored_member_declaring_2_pow_62_bytes",
        true,
        &["hostile.npz:x.npy", "declares 4611686018427387904 bytes"],
        || {
            let dir = tempfile::tempdir().unwrap();
            let npy = small_npy();
            let z = zip_one("x.npy", 0, &npy, 1 << 62, npy.len() as u64);
            assert!(z.len() < 400, "a tiny archive: {} bytes", z.len());
            load(&write(dir.path(), "hostile.npz", &z))
        },
    );
}

#[test]
fn npz_deflated_member_declaring_4_gib() {
    assert_refused(
        "npz_deflated_member_declaring_4_gib",
        true,
        &["hostile.npz:x.npy", "more than", "deflated bytes can hold"],
        || {
            let dir = tempfile::tempdir().unwrap();
            // A valid (empty) deflate block; the 32-bit size field declares 4 GiB - 1.
            let z = zip_one("x.npy", 8, &[0x03, 0x00], u32::MAX as u64 - 1, 2);
            load(&write(dir.path(), "hostile.npz", &z))
        },
    );
}

#[test]
fn npz_member_longer_than_declared_sizes_allow() {
    assert_refused(
        "npz_member_longer_than_declared_sizes_allow",
        true,
        &["hostile.npz", "compressed bytes but the archive has"],
        || {
            let dir = tempfile::tempdir().unwrap();
            let npy = small_npy();
            let z = zip_one("x.npy", 0, &npy, 1 << 40, 1 << 40);
            load(&write(dir.path(), "hostile.npz", &z))
        },
    );
}

#[test]
fn npz_deflated_member_shorter_than_declared() {
    assert_refused(
        "npz_deflated_member_shorter_than_declared",
        true,
        &[
            "hostile.npz:x.npy",
            "cannot decompress member",
            "stream ends after 0 of the 1000",
        ],
        || {
            let dir = tempfile::tempdir().unwrap();
            let z = zip_one("x.npy", 8, &[0x03, 0x00], 1000, 2);
            load(&write(dir.path(), "hostile.npz", &z))
        },
    );
}

/// A version-2.0 header whose length field declares 4 GiB - 1 header bytes.
fn npy_v2_huge_header() -> Vec<u8> {
    let mut b = b"\x93NUMPY\x02\x00".to_vec();
    b.extend(u32::MAX.to_le_bytes());
    b.extend(b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n");
    b
}

#[test]
fn npy_header_declaring_4_gib() {
    assert_refused(
        "npy_header_declaring_4_gib",
        true,
        &["hostile.npy", "header declares 4294967295 bytes"],
        || {
            let dir = tempfile::tempdir().unwrap();
            let p = write(dir.path(), "hostile.npy", &npy_v2_huge_header());
            // Header-only and streaming reads take their own path (a bounded read of the header).
            decal_io::npy::read_header(&p).map_err(|e| e.to_string())?;
            Ok(())
        },
    );
}

#[test]
fn npy_header_declaring_4_gib_streamed() {
    assert_refused(
        "npy_header_declaring_4_gib_streamed",
        true,
        &["hostile.npy", "header declares 4294967295 bytes"],
        || {
            let dir = tempfile::tempdir().unwrap();
            let p = write(dir.path(), "hostile.npy", &npy_v2_huge_header());
            decal_io::npy::NpyReader::open(&p)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
}

fn npy_with_shape(shape: &str) -> Vec<u8> {
    let mut dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((dict.len() as u16).to_le_bytes());
    b.extend(dict.as_bytes());
    b.extend([0u8; 16]);
    b
}

#[test]
fn npy_shape_overflowing_the_address_space() {
    assert_refused(
        "npy_shape_overflowing_the_address_space",
        true,
        &[
            "hostile.npy",
            "shape [4294967296, 4294967296, 16] is too large",
        ],
        || {
            let dir = tempfile::tempdir().unwrap();
            load(&write(
                dir.path(),
                "hostile.npy",
                &npy_with_shape("(4294967296, 4294967296, 16)"),
            ))
        },
    );
}

#[test]
fn npy_shape_needing_80_gib_in_a_tiny_file() {
    assert_refused(
        "npy_shape_needing_80_gib_in_a_tiny_file",
        true,
        &["hostile.npy", "needs 85899345920 bytes", "file truncated"],
        || {
            let dir = tempfile::tempdir().unwrap();
            load(&write(
                dir.path(),
                "hostile.npy",
                &npy_with_shape("(1073741824, 10)"),
            ))
        },
    );
}

#[test]
fn npy_empty_array_with_a_huge_row_count() {
    assert_refused(
        "npy_empty_array_with_a_huge_row_count",
        true,
        &["hostile.npy", "is too large"],
        || {
            let dir = tempfile::tempdir().unwrap();
            let mut b = npy_with_shape("(4611686018427387904, 0)");
            b.truncate(b.len() - 16);
            load(&write(dir.path(), "hostile.npy", &b))
        },
    );
}

#[test]
fn csv_labels_too_large_for_f64_are_printed_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "labels.csv",
        b"label\n1\n18446744073709551617\n",
    );
    let e = decal_io::matrix::load_labels(&p, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("labels.csv") && e.contains("line 3") && e.contains("18446744073709551617"),
        "{e}"
    );
    // 2^53 + 1 fits in i64 but not in f64: it must arrive unchanged, and a range error must show it as written.
    let p = write(dir.path(), "labels.csv", b"9007199254740993\n0\n");
    let y = decal_io::matrix::load_labels(&p, None).unwrap();
    assert_eq!(y, vec![9_007_199_254_740_993, 0]);
    let e = decal_io::matrix::check_labels(&y, 10, &p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("9007199254740993"), "{e}");
    // Float-valued integers are still accepted, fractions are not.
    let p = write(dir.path(), "labels.csv", b"3.0\n1\n");
    assert_eq!(decal_io::matrix::load_labels(&p, None).unwrap(), vec![3, 1]);
    let p = write(dir.path(), "labels.csv", b"3.5\n");
    let e = decal_io::matrix::load_labels(&p, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1: label 3.5 is not an integer"), "{e}");
}
