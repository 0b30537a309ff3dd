//! MNIST-family IDX files (`{train,t10k}-{images-idx3,labels-idx1}-ubyte`, raw or gzipped): magic
//! `00 00 08 <ndim>` (unsigned byte data), big-endian `u32` dimensions, then the bytes.
//!
//! Gzip is detected by its magic number, not the file name. The decompressed size is bounded by the
//! header's dimensions, so a gzip bomb cannot inflate beyond what the header declares plus one byte (used
//! to detect trailing data).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::{DatasetName, ImageSet, SplitName};

/// Fashion-MNIST class names in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Dimensions.
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Parses IDX bytes (already decompressed).
pub fn parse_idx_bytes(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "{} bytes is too short for an IDX header",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "bad IDX magic {:02x} {:02x} {:02x} {:02x}",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "IDX data type 0x{:02x} is not unsigned byte (0x08)",
            bytes[2]
        ));
    }
    let nd = bytes[3] as usize;
    if nd == 0 || bytes.len() < 4 + 4 * nd {
        return Err(format!("IDX header with {nd} dimensions is truncated"));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|k| u32::from_be_bytes(bytes[4 + 4 * k..8 + 4 * k].try_into().expect("4")) as usize)
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or("IDX dimensions overflow")?;
    let body = &bytes[4 + 4 * nd..];
    if body.len() != n {
        return Err(format!(
            "IDX dimensions {dims:?} need {n} bytes of data, file has {}",
            body.len()
        ));
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

/// Reads an IDX file, gunzipping it when it starts with the gzip magic.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut z = flate2::read::GzDecoder::new(&raw[..]);
        let mut head = vec![0u8; 4];
        z.read_exact(&mut head)
            .map_err(|e| DataError::format(path, format!("gzip: {e}")))?;
        let nd = head[3] as usize;
        let mut dims = vec![0u8; 4 * nd];
        z.read_exact(&mut dims)
            .map_err(|e| DataError::format(path, format!("gzip/IDX header: {e}")))?;
        let n = dims
            .chunks_exact(4)
            .try_fold(1u64, |a, c| {
                a.checked_mul(u32::from_be_bytes(c.try_into().expect("4")) as u64)
            })
            .ok_or_else(|| DataError::format(path, "IDX dimensions overflow"))?;
        if n > decal_core::bounded::deflate_bound(raw.len() as u64) {
            return Err(DataError::format(
                path,
                format!(
                    "IDX header declares {n} bytes of data, more than {} gzip bytes can hold",
                    raw.len()
                ),
            ));
        }
        head.extend(dims);
        // One extra byte reveals trailing data without inflating an unbounded stream.
        z.take(n + 1)
            .read_to_end(&mut head)
            .map_err(|e| DataError::format(path, format!("gzip: {e}")))?;
        head
    } else {
        raw
    };
    parse_idx_bytes(&bytes).map_err(|e| DataError::format(path, e))
}

/// Finds `<stem>` or `<stem>.gz` in the usual places under `dir`.
fn find(dir: &Path, sub: &[&str], stem: &str) -> Option<PathBuf> {
    let mut bases = vec![dir.to_path_buf()];
    for s in sub {
        bases.push(dir.join(s));
        bases.push(dir.join(s).join("raw"));
    }
    for b in bases {
        for name in [stem.to_string(), format!("{stem}.gz")] {
            let p = b.join(&name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Reads an images/labels IDX pair into an [`ImageSet`] (1 channel), checking counts and label range.
pub fn read_pair(
    images: &Path,
    labels: &Path,
    name: String,
    class_names: Vec<String>,
) -> Result<ImageSet> {
    let im = read_idx(images)?;
    let lb = read_idx(labels)?;
    let (n, h, w) = match im.dims.as_slice() {
        [n, h, w] => (*n, *h, *w),
        d => {
            return Err(DataError::format(
                images,
                format!("image file has dimensions {d:?}, expected [N, H, W]"),
            ))
        }
    };
    if lb.dims != [n] {
        return Err(DataError::format(
            labels,
            format!("label dimensions {:?} do not match {n} images", lb.dims),
        ));
    }
    let k = class_names.len() as u8;
    if let Some((i, &l)) = lb.data.iter().enumerate().find(|(_, &l)| l >= k) {
        return Err(DataError::Record {
            path: labels.into(),
            index: i,
            message: format!("label {l} outside 0..{k}"),
        });
    }
    Ok(ImageSet {
        name,
        height: h,
        width: w,
        channels: 1,
        pixels: im.data,
        labels: lb.data.iter().map(|&l| l as u32).collect(),
        class_names,
    })
}

/// Reads MNIST or Fashion-MNIST `train` (60,000) or `test` (10,000) from `dir` (or `dir/mnist`,
/// `dir/fashion-mnist`, torchvision's `dir/MNIST/raw`, `dir/FashionMNIST/raw`).
pub fn load_mnist_family(dataset: DatasetName, dir: &Path, split: SplitName) -> Result<ImageSet> {
    let (prefix, n) = match split {
        SplitName::Train => ("train", 60_000),
        SplitName::Test => ("t10k", 10_000),
        other => {
            return Err(DataError::Invalid(format!(
                "{dataset} has no '{other}' split (use train or test)"
            )))
        }
    };
    let (subs, classes): (&[&str], Vec<String>) = match dataset {
        DatasetName::Mnist => (
            &["mnist", "MNIST"],
            (0..10).map(|d| d.to_string()).collect(),
        ),
        _ => (
            &["fashion-mnist", "FashionMNIST", "fashion_mnist"],
            FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
    };
    let img_stem = format!("{prefix}-images-idx3-ubyte");
    let lab_stem = format!("{prefix}-labels-idx1-ubyte");
    let (Some(ip), Some(lp)) = (find(dir, subs, &img_stem), find(dir, subs, &lab_stem)) else {
        return Err(DataError::NotFound {
            dataset: dataset.to_string(),
            dir: dir.into(),
            hint: format!("expected {img_stem}[.gz] and {lab_stem}[.gz] (IDX format)"),
        });
    };
    let set = read_pair(&ip, &lp, format!("{dataset}/{split}"), classes)?;
    if set.len() != n {
        return Err(DataError::format(
            &ip,
            format!("holds {} images, expected {n}", set.len()),
        ));
    }
    Ok(set)
}
