//! Hostile declared sizes and misleading I/O errors through the `decal` binary: a ~300-byte `.npz` or `.pt`
//! that declares a huge member ends the command with exit status 1 and one line naming the file and the
//! problem (it used to abort the process), `--bins` is bounded, and a path below a regular file says which
//! component is the file. Peak memory per reader is measured in each reader crate's `hostile_sizes` test.

use std::path::Path;
use std::process::Command;

fn decal(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_decal"))
        .args(args)
        .output()
        .expect("run decal");
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("decal ended by a signal: {:?}", out.status));
    (
        code,
        String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
    )
}

/// A one-member stored zip whose central directory declares `declared` bytes through a zip64 extra field.
fn zip64_declaring(name: &str, payload: &[u8], declared: u64) -> Vec<u8> {
    let mut extra = Vec::new();
    extra.extend(1u16.to_le_bytes());
    extra.extend(16u16.to_le_bytes());
    extra.extend(declared.to_le_bytes());
    extra.extend((payload.len() as u64).to_le_bytes());
    let mut z = Vec::new();
    let fields = |out: &mut Vec<u8>| {
        out.extend(45u16.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend([0u8; 8]); // time, date, crc
        out.extend(u32::MAX.to_le_bytes());
        out.extend(u32::MAX.to_le_bytes());
        out.extend((name.len() as u16).to_le_bytes());
        out.extend((extra.len() as u16).to_le_bytes());
    };
    z.extend(0x0403_4b50u32.to_le_bytes());
    fields(&mut z);
    z.extend(name.as_bytes());
    z.extend(&extra);
    z.extend(payload);
    let cd = z.len();
    z.extend(0x0201_4b50u32.to_le_bytes());
    z.extend(45u16.to_le_bytes());
    fields(&mut z);
    z.extend([0u8; 10]); // comment length, disk, attributes
    z.extend(0u32.to_le_bytes()); // local header offset
    z.extend(name.as_bytes());
    z.extend(&extra);
    let cd_len = z.len() - cd;
    z.extend(0x0605_4b50u32.to_le_bytes());
    z.extend([0u8; 4]);
    z.extend(1u16.to_le_bytes());
    z.extend(1u16.to_le_bytes());
    z.extend((cd_len as u32).to_le_bytes());
    z.extend((cd as u32).to_le_bytes());
    z.extend(0u16.to_le_bytes());
    z
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

fn labels(dir: &Path) -> String {
    write(dir, "labels.csv", b"0\n1\n")
}

#[test]
fn tiny_npz_declaring_2_pow_62_bytes_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let z = zip64_declaring("logits.npy", b"\x93NUMPY", 1 << 62);
    assert!(z.len() < 300, "{} bytes", z.len());
    let logits = write(dir.path(), "logits.npz", &z);
    let (code, err) = decal(&[
        "metrics",
        "--logits",
        &logits,
        "--labels",
        &labels(dir.path()),
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("logits.npz:logits.npy") && err.contains("declares 4611686018427387904 bytes"),
        "{err}"
    );
}

#[test]
fn tiny_torch_zip_declaring_2_pow_62_bytes_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let z = zip64_declaring("archive/data.pkl", b"\x80\x02}.", 1 << 62);
    let pt = write(dir.path(), "hostile.pt", &z);
    let out = dir.path().join("out").display().to_string();
    let (code, err) = decal(&[
        "import",
        "--from",
        &pt,
        "--arch",
        "cnn",
        "--num-classes",
        "10",
        "--out",
        &out,
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("hostile.pt") && err.contains("declares 4611686018427387904 bytes"),
        "{err}"
    );
}

#[test]
fn bins_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let logits = write(dir.path(), "logits.csv", b"1,0\n0,1\n");
    for bins in ["1000000000", "18446744073709551615"] {
        let (code, err) = decal(&[
            "metrics",
            "--logits",
            &logits,
            "--labels",
            &labels(dir.path()),
            "--bins",
            bins,
        ]);
        assert_ne!(code, 0, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("--bins") && err.contains("100000"), "{err}");
    }
    // 99,999 bins on 2 rows are fine (O(M) memory, no gigabytes).
    let (code, err) = decal(&[
        "metrics",
        "--logits",
        &logits,
        "--labels",
        &labels(dir.path()),
        "--bins",
        "99999",
    ]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_path_below_a_regular_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "plain", b"x");
    let logits = format!("{file}/logits.npy");
    let (code, err) = decal(&[
        "metrics",
        "--logits",
        &logits,
        "--labels",
        &labels(dir.path()),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("not a directory: {file} is a file")),
        "{err}"
    );
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}
