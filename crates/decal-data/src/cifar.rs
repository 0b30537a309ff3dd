//! CIFAR-10 and CIFAR-100 in their official layouts (seed spec §4.1, datasets/README.md):
//!
//! * binary: `cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`, records of 3073 bytes (label,
//!   1024 R, 1024 G, 1024 B, each plane row-major 32×32); `cifar-100-binary/{train,test}.bin`, records of
//!   3074 bytes (coarse label, fine label, pixels);
//! * python: `cifar-10-batches-py/{data_batch_1..5,test_batch}`, `cifar-100-python/{train,test}`, protocol-2
//!   pickles of a dict with `data` (uint8 `[N, 3072]`) and `labels` / `fine_labels`, read with the safe
//!   [`decal_pickle`] interpreter;
//! * CIFAR-10 only: an ImageFolder tree whose class folders are the ten official class names (the
//!   `cifar10-jpeg` copy in `shared/datasets`).
//!
//! Training images are batches 1..5 concatenated in order (indices 0..49,999), exactly as torchvision does,
//! so that [`crate::split::seed_split`] selects the same images as the seed.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::imagefolder::{self, ImageFolderOptions};
use crate::{ImageSet, SplitName};

/// CIFAR-10 class names in label order (`batches.meta`).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// CIFAR-100 fine class names in label order (`meta['fine_label_names']`).
pub const CIFAR100_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// CIFAR image side and bytes per image.
const SIDE: usize = 32;
const PIXELS: usize = SIDE * SIDE * 3;

/// Which labels a CIFAR file carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarKind {
    /// CIFAR-10: one label byte per binary record; `labels` in pickles.
    Cifar10,
    /// CIFAR-100, fine labels (the seed's labels): `fine_labels`; second label byte in binary records.
    Cifar100Fine,
    /// CIFAR-100, coarse labels (20 super-classes): `coarse_labels`; first label byte.
    Cifar100Coarse,
}

impl CifarKind {
    fn num_classes(self) -> u32 {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100Fine => 100,
            CifarKind::Cifar100Coarse => 20,
        }
    }

    fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            _ => 2,
        }
    }

    fn record_len(self) -> usize {
        self.label_bytes() + PIXELS
    }
}

/// Converts one 3072-byte CHW (planar R, G, B) record into HWC, appending to `out`.
fn planar_to_hwc(chw: &[u8], out: &mut Vec<u8>) {
    let plane = SIDE * SIDE;
    for p in 0..plane {
        out.extend_from_slice(&[chw[p], chw[plane + p], chw[2 * plane + p]]);
    }
}

/// Parses the bytes of a CIFAR binary file into HWC pixels and labels. `path` is used in errors only.
pub fn parse_cifar_binary_bytes(
    bytes: &[u8],
    kind: CifarKind,
    path: &Path,
) -> Result<(Vec<u8>, Vec<u32>)> {
    let rec = kind.record_len();
    if bytes.is_empty() {
        return Err(DataError::format(path, "empty CIFAR binary file"));
    }
    if bytes.len() % rec != 0 {
        return Err(DataError::format(
            path,
            format!(
                "{} bytes is not a whole number of {rec}-byte records: record {} is truncated",
                bytes.len(),
                bytes.len() / rec
            ),
        ));
    }
    let n = bytes.len() / rec;
    let mut pixels = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let label = match kind {
            CifarKind::Cifar10 | CifarKind::Cifar100Coarse => r[0],
            CifarKind::Cifar100Fine => r[1],
        } as u32;
        if kind != CifarKind::Cifar10 && r[0] as u32 >= 20 {
            return Err(DataError::Record {
                path: path.into(),
                index: i,
                message: format!("coarse label {} outside 0..20", r[0]),
            });
        }
        if label >= kind.num_classes() {
            return Err(DataError::Record {
                path: path.into(),
                index: i,
                message: format!("label {label} outside 0..{}", kind.num_classes()),
            });
        }
        labels.push(label);
        planar_to_hwc(&r[kind.label_bytes()..], &mut pixels);
    }
    Ok((pixels, labels))
}

/// Fuzzing entry point: parses CIFAR-10 binary records from arbitrary bytes.
pub fn parse_cifar10_binary_bytes(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u32>)> {
    parse_cifar_binary_bytes(bytes, CifarKind::Cifar10, Path::new("<bytes>"))
}

/// Parses the bytes of a CIFAR python-version batch (a pickle) into HWC pixels and labels.
pub fn parse_cifar_pickle_bytes(
    bytes: &[u8],
    kind: CifarKind,
    path: &Path,
) -> Result<(Vec<u8>, Vec<u32>)> {
    let v = decal_pickle::parse(bytes)
        .map_err(|e| DataError::format(path, format!("not a valid pickle: {e}")))?;
    let key = match kind {
        CifarKind::Cifar10 => "labels",
        CifarKind::Cifar100Fine => "fine_labels",
        CifarKind::Cifar100Coarse => "coarse_labels",
    };
    let data = v
        .get("data")
        .ok_or_else(|| DataError::format(path, "pickle has no 'data' entry"))?;
    let arr = decal_pickle::numpy::ndarray(data)
        .map_err(|e| DataError::format(path, format!("'data': {e}")))?;
    if arr.dtype != "u1" || arr.shape.len() != 2 || arr.shape[1] != PIXELS {
        return Err(DataError::format(
            path,
            format!(
                "'data' is {} {:?}, expected uint8 [N, {PIXELS}]",
                arr.dtype, arr.shape
            ),
        ));
    }
    if arr.fortran_order {
        return Err(DataError::format(
            path,
            "'data' is in Fortran order; expected C order",
        ));
    }
    let n = arr.shape[0];
    let lab = v
        .get(key)
        .and_then(|l| l.as_seq())
        .ok_or_else(|| DataError::format(path, format!("pickle has no '{key}' list")))?;
    if lab.len() != n {
        return Err(DataError::format(
            path,
            format!("'{key}' has {} entries but 'data' has {n} rows", lab.len()),
        ));
    }
    let mut labels = Vec::with_capacity(n);
    for (i, l) in lab.iter().enumerate() {
        match l.as_int() {
            Some(x) if x >= 0 && (x as u64) < kind.num_classes() as u64 => labels.push(x as u32),
            _ => {
                return Err(DataError::Record {
                    path: path.into(),
                    index: i,
                    message: format!("label {l:?} outside 0..{}", kind.num_classes()),
                })
            }
        }
    }
    let mut pixels = Vec::with_capacity(n * PIXELS);
    for r in arr.data.chunks_exact(PIXELS) {
        planar_to_hwc(r, &mut pixels);
    }
    Ok((pixels, labels))
}

/// On-disk layout of a CIFAR copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarLayout {
    /// `*.bin` record files.
    Binary,
    /// Python pickles.
    Python,
    /// `train/<class>/*` and `test/<class>/*` image trees (CIFAR-10 only).
    ImageFolder,
}

/// Reads one CIFAR file in the given layout, any number of records.
pub fn read_file(path: &Path, kind: CifarKind, layout: CifarLayout) -> Result<(Vec<u8>, Vec<u32>)> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    match layout {
        CifarLayout::Binary => parse_cifar_binary_bytes(&bytes, kind, path),
        CifarLayout::Python => parse_cifar_pickle_bytes(&bytes, kind, path),
        CifarLayout::ImageFolder => Err(DataError::Invalid(
            "read_file: ImageFolder is a directory layout".into(),
        )),
    }
}

/// Finds a CIFAR copy under `dir` (the dataset folder itself or a parent), returning its folder and layout.
pub fn detect(dir: &Path, kind: CifarKind) -> Result<(PathBuf, CifarLayout)> {
    let candidates: Vec<(&str, CifarLayout, &str)> = match kind {
        CifarKind::Cifar10 => vec![
            (
                "cifar-10-batches-bin",
                CifarLayout::Binary,
                "data_batch_1.bin",
            ),
            ("cifar-10-batches-py", CifarLayout::Python, "data_batch_1"),
            ("cifar10-jpeg", CifarLayout::ImageFolder, "train"),
            ("cifar10", CifarLayout::ImageFolder, "train"),
        ],
        _ => vec![
            ("cifar-100-binary", CifarLayout::Binary, "train.bin"),
            ("cifar-100-python", CifarLayout::Python, "train"),
        ],
    };
    for (sub, layout, marker) in &candidates {
        for base in [dir.to_path_buf(), dir.join(sub)] {
            let m = base.join(marker);
            let ok = match layout {
                CifarLayout::ImageFolder => {
                    kind == CifarKind::Cifar10
                        && m.is_dir()
                        && CIFAR10_CLASSES.iter().all(|c| m.join(c).is_dir())
                }
                CifarLayout::Python => m.is_file() && !m.with_extension("bin").is_file(),
                CifarLayout::Binary => m.is_file(),
            };
            if ok {
                return Ok((base, *layout));
            }
        }
    }
    let (name, hint) = match kind {
        CifarKind::Cifar10 => (
            "CIFAR-10",
            "expected cifar-10-batches-bin/ (data_batch_1..5.bin, test_batch.bin), cifar-10-batches-py/ \
             (data_batch_1..5, test_batch) or an ImageFolder tree train/<class>/, test/<class>/ with the ten \
             CIFAR-10 class names; `decal data download cifar10 --dir DIR` fetches it",
        ),
        _ => (
            "CIFAR-100",
            "expected cifar-100-binary/ (train.bin, test.bin) or cifar-100-python/ (train, test); \
             `decal data download cifar100 --dir DIR` fetches it",
        ),
    };
    Err(DataError::NotFound {
        dataset: name.into(),
        dir: dir.to_path_buf(),
        hint: hint.into(),
    })
}

fn assemble(
    parts: Vec<(PathBuf, usize)>,
    kind: CifarKind,
    layout: CifarLayout,
    name: String,
    class_names: Vec<String>,
) -> Result<ImageSet> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (p, expected) in parts {
        if !p.is_file() {
            return Err(DataError::format(&p, "missing CIFAR file"));
        }
        let (px, lb) = read_file(&p, kind, layout)?;
        // The official files hold exactly this many records; fewer means a truncated copy.
        if lb.len() != expected {
            return Err(DataError::format(
                &p,
                format!("holds {} records, expected {expected}", lb.len()),
            ));
        }
        pixels.extend(px);
        labels.extend(lb);
    }
    Ok(ImageSet {
        name,
        height: SIDE,
        width: SIDE,
        channels: 3,
        pixels,
        labels,
        class_names,
    })
}

/// Reads CIFAR-10 `train` (50,000 images, batches 1..5 in order) or `test` (10,000) from `dir`.
pub fn load_cifar10(dir: &Path, split: SplitName) -> Result<ImageSet> {
    let (base, layout) = detect(dir, CifarKind::Cifar10)?;
    let name = format!("cifar10/{split}");
    let classes: Vec<String> = CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
    let files: Vec<&str> = match split {
        SplitName::Train => vec![
            "data_batch_1",
            "data_batch_2",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
        ],
        SplitName::Test => vec!["test_batch"],
        other => {
            return Err(DataError::Invalid(format!(
                "cifar10 has no '{other}' split (use train or test)"
            )))
        }
    };
    match layout {
        CifarLayout::ImageFolder => {
            let opts = ImageFolderOptions {
                class_names: Some(classes),
                name: Some(name),
                ..Default::default()
            };
            imagefolder::read_with(&base.join(split.as_str()), &opts)
        }
        CifarLayout::Binary => {
            let parts = files
                .iter()
                .map(|f| (base.join(format!("{f}.bin")), 10_000))
                .collect();
            assemble(parts, CifarKind::Cifar10, layout, name, classes)
        }
        CifarLayout::Python => {
            let parts = files.iter().map(|f| (base.join(f), 10_000)).collect();
            assemble(parts, CifarKind::Cifar10, layout, name, classes)
        }
    }
}

/// Reads CIFAR-100 (fine labels) `train` (50,000) or `test` (10,000) from `dir`.
pub fn load_cifar100(dir: &Path, split: SplitName) -> Result<ImageSet> {
    let (base, layout) = detect(dir, CifarKind::Cifar100Fine)?;
    let (file, n) = match split {
        SplitName::Train => ("train", 50_000),
        SplitName::Test => ("test", 10_000),
        other => {
            return Err(DataError::Invalid(format!(
                "cifar100 has no '{other}' split (use train or test)"
            )))
        }
    };
    let path = match layout {
        CifarLayout::Binary => base.join(format!("{file}.bin")),
        _ => base.join(file),
    };
    let classes = CIFAR100_CLASSES.iter().map(|s| s.to_string()).collect();
    assemble(
        vec![(path, n)],
        CifarKind::Cifar100Fine,
        layout,
        format!("cifar100/{split}"),
        classes,
    )
}

/// Writes 32×32 RGB images as CIFAR binary records (`label`, then the R, G and B planes), atomically.
/// With `coarse = Some(labels)` the CIFAR-100 layout (coarse label, fine label, pixels) is written.
pub fn write_binary(set: &ImageSet, coarse: Option<&[u32]>, path: &Path) -> Result<()> {
    if (set.height, set.width, set.channels) != (SIDE, SIDE, 3) {
        return Err(DataError::Invalid(format!(
            "{}: CIFAR binary needs 32×32 RGB images",
            set.name
        )));
    }
    let mut out = Vec::with_capacity(set.len() * (PIXELS + 2));
    for i in 0..set.len() {
        if let Some(c) = coarse {
            out.push(
                *c.get(i)
                    .ok_or_else(|| DataError::Invalid("fewer coarse labels than images".into()))?
                    as u8,
            );
        }
        let l = set.labels[i];
        if l > 255 {
            return Err(DataError::Invalid(format!(
                "{}: label {l} does not fit a byte",
                set.name
            )));
        }
        out.push(l as u8);
        let img = set.image(i);
        for ch in 0..3 {
            out.extend(img.iter().skip(ch).step_by(3));
        }
    }
    Ok(decal_core::write_atomic(path, &out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_record_layout_and_errors() {
        // One record: label 7, R plane = 1, G plane = 2, B plane = 3.
        let mut rec = vec![7u8];
        for v in [1u8, 2, 3] {
            rec.extend(std::iter::repeat_n(v, 1024));
        }
        let (px, lb) = parse_cifar10_binary_bytes(&rec).unwrap();
        assert_eq!(lb, vec![7]);
        assert_eq!(&px[..6], &[1, 2, 3, 1, 2, 3]);
        let set = ImageSet {
            name: "x".into(),
            height: 32,
            width: 32,
            channels: 3,
            pixels: px.clone(),
            labels: vec![7],
            class_names: vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        write_binary(&set, None, &dir.path().join("b.bin")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("b.bin")).unwrap(), rec);
        let e = parse_cifar10_binary_bytes(&rec[..3000])
            .unwrap_err()
            .to_string();
        assert!(e.contains("record 0 is truncated"), "{e}");
        rec[0] = 10;
        let e = parse_cifar10_binary_bytes(&rec).unwrap_err().to_string();
        assert!(e.contains("record 0") && e.contains("label 10"), "{e}");
    }
}
