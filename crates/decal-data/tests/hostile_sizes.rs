//! Every size a dataset file declares is untrusted: tiny crafted files (SVHN `.mat` with a zlib element,
//! gzip IDX, JPEG/PNG headers, CIFAR pickles, CIFAR-C `.npy`) that declare huge sizes are refused with a
//! one-line error naming the file and the problem, with less than 250 MiB of peak memory (each case runs in
//! a child process under `ulimit -v`, see `hostile/mod.rs`). Also: a class folder missing from one
//! ImageFolder split is named.

// The child-process harness (peak RSS, one-line error) is shared with decal-io's hostile_sizes tests.
#[path = "../../decal-io/tests/hostile/mod.rs"]
mod hostile;

use std::io::Write;
use std::path::{Path, PathBuf};

use hostile::assert_refused;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

/// A MAT-file v5 with one miCOMPRESSED element holding `inner` (which starts with an element tag).
fn mat_compressed(inner: &[u8]) -> Vec<u8> {
    let mut b = vec![b' '; 116];
    b[..19].copy_from_slice(b"MATLAB 5.0 MAT-file");
    b.extend([0u8; 8]);
    b.extend(0x0100u16.to_le_bytes());
    b.extend(b"IM");
    let z = zlib(inner);
    b.extend(15u32.to_le_bytes());
    b.extend((z.len() as u32).to_le_bytes());
    b.extend(z);
    b
}

#[test]
fn svhn_mat_zlib_element_declaring_4_gib() {
    assert_refused(
        "svhn_mat_zlib_element_declaring_4_gib",
        true,
        &[
            "train_32x32.mat",
            "tag declares 4294967280 bytes",
            "zlib bytes can hold",
        ],
        || {
            let dir = tempfile::tempdir().unwrap();
            let mut inner = 14u32.to_le_bytes().to_vec();
            inner.extend(0xFFFF_FFF0u32.to_le_bytes());
            inner.extend([0u8; 64]);
            let p = write(dir.path(), "train_32x32.mat", &mat_compressed(&inner));
            decal_data::svhn::read_file(&p, "svhn".into())
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn svhn_mat_zlib_element_longer_than_its_tag() {
    // A stream that holds more than its tag declares is cut at the declared size (and then fails to parse).
    let dir = tempfile::tempdir().unwrap();
    let mut inner = 14u32.to_le_bytes().to_vec();
    inner.extend(16u32.to_le_bytes());
    inner.extend([0u8; 1 << 20]);
    let p = write(dir.path(), "train_32x32.mat", &mat_compressed(&inner));
    let e = decal_data::svhn::read_file(&p, "svhn".into())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&p.display().to_string()), "{e}");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

#[test]
fn gzip_idx_declaring_2_pow_62_bytes() {
    assert_refused(
        "gzip_idx_declaring_2_pow_62_bytes",
        true,
        &[
            "train-images-idx3-ubyte.gz",
            "IDX header declares 4611686018427387904 bytes",
            "gzip bytes can hold",
        ],
        || {
            let dir = tempfile::tempdir().unwrap();
            let mut idx = vec![0, 0, 8, 3];
            for d in [1u32 << 31, 1 << 31, 1] {
                idx.extend(d.to_be_bytes());
            }
            idx.extend([0u8; 100]);
            let p = write(dir.path(), "train-images-idx3-ubyte.gz", &gzip(&idx));
            decal_data::idx::read_idx(&p)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn plain_idx_declaring_2_pow_62_bytes() {
    assert_refused(
        "plain_idx_declaring_2_pow_62_bytes",
        true,
        &["train-images-idx3-ubyte", "need 4611686018427387904 bytes"],
        || {
            let dir = tempfile::tempdir().unwrap();
            let mut idx = vec![0, 0, 8, 3];
            for d in [1u32 << 31, 1 << 31, 1] {
                idx.extend(d.to_be_bytes());
            }
            let p = write(dir.path(), "train-images-idx3-ubyte", &idx);
            decal_data::idx::read_idx(&p)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
}

/// A real 8×8 JPEG whose SOF header is patched to declare `h × w` pixels.
fn jpeg_declaring(h: u16, w: u16) -> Vec<u8> {
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    c.set_size(8, 8);
    let mut s = c.start_compress(Vec::new()).unwrap();
    s.write_scanlines(&[128u8; 8 * 8 * 3]).unwrap();
    let mut b = s.finish().unwrap();
    let sof = b
        .windows(2)
        .position(|m| m[0] == 0xFF && (m[1] == 0xC0 || m[1] == 0xC2))
        .expect("SOF marker");
    // FF C0, length (2), precision (1), height (2), width (2).
    b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    b
}

#[test]
fn jpeg_declaring_60000_by_60000_pixels() {
    assert_refused(
        "jpeg_declaring_60000_by_60000_pixels",
        true,
        &[
            "huge.jpg",
            "JPEG header declares 60000×60000 pixels",
            "more than a file of this size can encode",
        ],
        || {
            let dir = tempfile::tempdir().unwrap();
            let b = jpeg_declaring(60000, 60000);
            assert!(b.len() < 1000, "a tiny JPEG: {} bytes", b.len());
            // Through the ImageFolder reader, as `decal data inspect --dataset imagefolder` reads it.
            write(dir.path(), "train/a/huge.jpg", &b);
            decal_data::imagefolder::read(&dir.path().join("train"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
}

/// A real 2×2 PNG whose IHDR is patched to declare `w × h` pixels (CRC recomputed).
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut b = Vec::new();
    image::codecs::png::PngEncoder::new(&mut b)
        .write_image(&[7u8; 12], 2, 2, image::ExtendedColorType::Rgb8)
        .unwrap();
    // signature (8), IHDR length (4), "IHDR" (4), width, height, ...; CRC over type + 13 data bytes.
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&b[12..29]);
    b[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    b
}

use image::ImageEncoder;

#[test]
fn png_declaring_60000_by_60000_pixels() {
    assert_refused(
        "png_declaring_60000_by_60000_pixels",
        true,
        &["huge.png", "PNG/BMP header declares 60000×60000 pixels"],
        || {
            let dir = tempfile::tempdir().unwrap();
            let p = write(dir.path(), "huge.png", &png_declaring(60000, 60000));
            let bytes = std::fs::read(&p).unwrap();
            decal_data::imagefolder::decode_image_bytes(
                &bytes,
                &p,
                decal_data::imagefolder::ColorMode::Rgb,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn cifar_pickle_copy_bomb() {
    assert_refused(
        "cifar_pickle_copy_bomb",
        true,
        &["data_batch_1", "not a valid pickle", "bytes of copies"],
        || {
            let dir = tempfile::tempdir().unwrap();
            let mut b = b"\x80\x02]".to_vec();
            for _ in 0..48 {
                b.extend(b"2a");
            }
            b.push(b'.');
            let p = write(dir.path(), "data_batch_1", &b);
            decal_data::cifar::read_file(
                &p,
                decal_data::cifar::CifarKind::Cifar10,
                decal_data::cifar::CifarLayout::Python,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn cifar_c_labels_declaring_a_huge_shape() {
    assert_refused(
        "cifar_c_labels_declaring_a_huge_shape",
        true,
        &["labels.npy", "needs 8589934592000 bytes", "file truncated"],
        || {
            let dir = tempfile::tempdir().unwrap();
            let mut dict =
                "{'descr': '<i8', 'fortran_order': False, 'shape': (1073741824000,), }".to_string();
            while (10 + dict.len() + 1) % 64 != 0 {
                dict.push(' ');
            }
            dict.push('\n');
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend((dict.len() as u16).to_le_bytes());
            b.extend(dict.as_bytes());
            let p = write(dir.path(), "CIFAR-10-C/labels.npy", &b);
            let e = decal_data::corrupted::read_labels(p.parent().unwrap(), 10)
                .map(|_| ())
                .map_err(|e| e.to_string());
            // The file is named once, not twice.
            if let Err(m) = &e {
                assert_eq!(m.matches("labels.npy").count(), 1, "{m}");
            }
            e
        },
    );
}

fn png(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::save_buffer(path, &[9u8; 12], 2, 2, image::ExtendedColorType::Rgb8).unwrap();
}

#[test]
fn imagefolder_split_missing_a_class_folder_names_it() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["airplane", "bird", "cat"] {
        png(&dir.path().join(format!("test/{class}/0.png")));
        if class != "bird" {
            png(&dir.path().join(format!("train/{class}/0.png")));
        }
    }
    // Without the check, train's "cat" would silently get label 1 (test's "bird").
    let e = decal_data::load(
        decal_data::DatasetName::Imagefolder,
        dir.path(),
        decal_data::SplitName::Train,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("train") && e.contains("missing class folder 'bird'"),
        "{e}"
    );
    // The test split holds every class and still loads.
    let set = decal_data::load(
        decal_data::DatasetName::Imagefolder,
        dir.path(),
        decal_data::SplitName::Test,
    )
    .unwrap();
    assert_eq!(set.class_names, vec!["airplane", "bird", "cat"]);
}
