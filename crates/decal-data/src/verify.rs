//! `decal data verify`: checks the files of a dataset copy against published checksums (torchvision's
//! per-file MD5s, the datasets' own pages, Zenodo) and reports each file as ok, mismatched or missing.
//!
//! For MNIST-family files the MD5 of the **decompressed** content is checked (the `.gz` files are often
//! re-compressed by mirrors and packagers, e.g. Debian's Fashion-MNIST), so a file passes whether it is
//! stored raw or gzipped.

use std::io::Read;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde::Serialize;

use crate::download::md5_file;
use crate::error::{DataError, Result};
use crate::DatasetName;

/// A file with a published checksum.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownFile {
    /// Path relative to the dataset folder, e.g. `cifar-10-batches-py/data_batch_1`.
    pub rel: String,
    /// Published MD5.
    pub md5: String,
    /// Whether the MD5 is of the decompressed content (the file may be stored raw or as `<rel>.gz`).
    pub decompressed: bool,
}

fn k(rel: &str, md5: &str) -> KnownFile {
    KnownFile {
        rel: rel.into(),
        md5: md5.into(),
        decompressed: false,
    }
}

fn raw(rel: &str, md5: &str) -> KnownFile {
    KnownFile {
        rel: rel.into(),
        md5: md5.into(),
        decompressed: true,
    }
}

/// The groups of files one can check for a dataset; a group counts when any of its files is present.
pub fn known_files(dataset: DatasetName) -> Vec<Vec<KnownFile>> {
    match dataset {
        DatasetName::Cifar10 => vec![
            vec![
                k(
                    "cifar-10-batches-py/data_batch_1",
                    "c99cafc152244af753f735de768cd75f",
                ),
                k(
                    "cifar-10-batches-py/data_batch_2",
                    "d4bba439e000b95fd0a9bffe97cbabec",
                ),
                k(
                    "cifar-10-batches-py/data_batch_3",
                    "54ebc095f3ab1f0389bbae665268c751",
                ),
                k(
                    "cifar-10-batches-py/data_batch_4",
                    "634d18415352ddfa80567beed471001a",
                ),
                k(
                    "cifar-10-batches-py/data_batch_5",
                    "482c414d41f54cd18b22e5b47cb7c3cb",
                ),
                k(
                    "cifar-10-batches-py/test_batch",
                    "40351d587109b95175f43aff81a1287e",
                ),
                k(
                    "cifar-10-batches-py/batches.meta",
                    "5ff9c542aee3614f3951f8cda6e48888",
                ),
            ],
            vec![k(
                "cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
            )],
            vec![k(
                "cifar-10-binary.tar.gz",
                "c32a1d4ab5d03f1284b67883e8d87530",
            )],
        ],
        DatasetName::Cifar100 => vec![
            vec![
                k("cifar-100-python/train", "16019d7e3df5f24257cddd939b257f8d"),
                k("cifar-100-python/test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
                k("cifar-100-python/meta", "7973b15100ade9c7d40fb424638fde48"),
            ],
            vec![k(
                "cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
            )],
            vec![k(
                "cifar-100-binary.tar.gz",
                "03b5dce01913d631647c71ecec9e9cb8",
            )],
        ],
        DatasetName::Svhn => vec![
            vec![
                k("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
                k("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
            ],
            vec![k("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7")],
        ],
        DatasetName::TinyImagenet => vec![vec![k(
            "tiny-imagenet-200.zip",
            "90528d7ca1a48142e341f4ef8d21d0de",
        )]],
        DatasetName::Mnist => vec![vec![
            raw(
                "train-images-idx3-ubyte",
                "6bbc9ace898e44ae57da46a324031adb",
            ),
            raw(
                "train-labels-idx1-ubyte",
                "a25bea736e30d166cdddb491f175f624",
            ),
            raw("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
            raw("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
        ]],
        DatasetName::FashionMnist => vec![vec![
            raw(
                "train-images-idx3-ubyte",
                "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            ),
            raw(
                "train-labels-idx1-ubyte",
                "9018921c3c673c538a1fc5bad174d6f9",
            ),
            raw("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a"),
            raw("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965"),
        ]],
        DatasetName::Imagefolder => vec![],
    }
}

/// The outcome for one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileCheck {
    /// The file looked at (or, when missing, where it was expected).
    pub path: PathBuf,
    /// `ok`, `mismatch` or `missing`.
    pub status: String,
    /// Published MD5.
    pub expected: String,
    /// MD5 found (empty when missing).
    pub actual: String,
}

/// Directories under `dir` where the files of `dataset` may live.
fn bases(dataset: DatasetName, dir: &Path) -> Vec<PathBuf> {
    let subs: &[&str] = match dataset {
        DatasetName::Mnist => &["mnist", "MNIST/raw"],
        DatasetName::FashionMnist => &["fashion-mnist", "FashionMNIST/raw"],
        DatasetName::Svhn => &["svhn", "SVHN"],
        _ => &[],
    };
    let mut v = vec![dir.to_path_buf()];
    v.extend(subs.iter().map(|s| dir.join(s)));
    if let Some(p) = dir.parent() {
        // Accept the dataset folder itself (e.g. `…/cifar-10-batches-py`).
        v.push(p.to_path_buf());
    }
    v
}

fn md5_gunzip(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut z = flate2::read::GzDecoder::new(f);
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = z
            .read(&mut buf)
            .map_err(|e| DataError::format(path, format!("gzip: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks every known file of `dataset` found under `dir`. Groups with no file present are reported as
/// missing only when no group at all is present.
pub fn verify(dataset: DatasetName, dir: &Path) -> Result<Vec<FileCheck>> {
    let groups = known_files(dataset);
    if groups.is_empty() {
        return Err(DataError::Invalid(format!(
            "{dataset}: no published checksums to verify against"
        )));
    }
    let locate = |f: &KnownFile| -> Option<PathBuf> {
        for b in bases(dataset, dir) {
            let p = b.join(&f.rel);
            if p.is_file() {
                return Some(p);
            }
            if f.decompressed {
                let gz = b.join(format!("{}.gz", f.rel));
                if gz.is_file() {
                    return Some(gz);
                }
            }
        }
        None
    };
    let mut out = Vec::new();
    let mut any_group = false;
    for group in &groups {
        if !group.iter().any(|f| locate(f).is_some()) {
            continue;
        }
        any_group = true;
        for f in group {
            out.push(match locate(f) {
                None => FileCheck {
                    path: dir.join(&f.rel),
                    status: "missing".into(),
                    expected: f.md5.clone(),
                    actual: String::new(),
                },
                Some(p) => {
                    let is_gz = p.extension().is_some_and(|e| e == "gz") && f.decompressed;
                    let actual = if is_gz {
                        md5_gunzip(&p)?
                    } else {
                        md5_file(&p)?
                    };
                    let status = if actual == f.md5 { "ok" } else { "mismatch" };
                    FileCheck {
                        path: p,
                        status: status.into(),
                        expected: f.md5.clone(),
                        actual,
                    }
                }
            });
        }
    }
    if !any_group {
        for f in &groups[0] {
            out.push(FileCheck {
                path: dir.join(&f.rel),
                status: "missing".into(),
                expected: f.md5.clone(),
                actual: String::new(),
            });
        }
    }
    Ok(out)
}
