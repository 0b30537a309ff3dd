//! `decal data download`: fetches a dataset's official files (torchvision's URLs and MD5 checksums, plus
//! Zenodo for CIFAR-10-C/100-C), verifies them, resumes interrupted transfers with HTTP `Range`, and
//! extracts archives (`.tar`, `.tar.gz`, `.zip`) into the target directory.
//!
//! Invariants: a file is only ever visible under its final name after its checksum matched (it is
//! downloaded to `<name>.part` and renamed); a checksum mismatch deletes the `.part` file and is an error;
//! a file already present with the right checksum is not downloaded again (so users without network can
//! place the files themselves — the offline error says which files to put where).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use crate::error::{DataError, Result};
use crate::DatasetName;

/// How a downloaded file is unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extract {
    /// Keep as is.
    None,
    /// A gzipped tar archive.
    TarGz,
    /// An uncompressed tar archive.
    Tar,
    /// A zip archive.
    Zip,
}

/// One official file of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// URLs to try in order (the first is torchvision's).
    pub urls: Vec<String>,
    /// File name in the target directory.
    pub filename: String,
    /// Published MD5 of the file.
    pub md5: String,
    /// How to unpack it.
    pub extract: Extract,
}

fn res(urls: &[&str], filename: &str, md5: &str, extract: Extract) -> Resource {
    Resource {
        urls: urls.iter().map(|u| u.to_string()).collect(),
        filename: filename.into(),
        md5: md5.into(),
        extract,
    }
}

/// Names accepted by [`resources`] besides the [`DatasetName`]s: the binary CIFAR versions and the
/// corruption benchmarks.
pub const EXTRA_NAMES: [&str; 4] = [
    "cifar10-binary",
    "cifar100-binary",
    "cifar10-c",
    "cifar100-c",
];

/// The official files of a dataset by name (`cifar10`, `cifar10-binary`, `cifar100`, `cifar100-binary`,
/// `svhn`, `tiny-imagenet`, `mnist`, `fashion-mnist`, `cifar10-c`, `cifar100-c`).
pub fn resources(name: &str) -> Result<Vec<Resource>> {
    const TORONTO: [&str; 2] = [
        "https://www.cs.toronto.edu/~kriz/",
        "https://cave.cs.toronto.edu/kriz/",
    ];
    let toronto = |f: &str, md5: &str| {
        let urls: Vec<String> = TORONTO.iter().map(|b| format!("{b}{f}")).collect();
        Resource {
            urls,
            filename: f.into(),
            md5: md5.into(),
            extract: Extract::TarGz,
        }
    };
    let mnist_like = |bases: &[&str], files: &[(&str, &str)]| -> Vec<Resource> {
        files
            .iter()
            .map(|(f, md5)| Resource {
                urls: bases.iter().map(|b| format!("{b}{f}")).collect(),
                filename: f.to_string(),
                md5: md5.to_string(),
                extract: Extract::None,
            })
            .collect()
    };
    Ok(match name {
        "cifar10" => vec![toronto(
            "cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
        )],
        "cifar10-binary" => vec![toronto(
            "cifar-10-binary.tar.gz",
            "c32a1d4ab5d03f1284b67883e8d87530",
        )],
        "cifar100" => vec![toronto(
            "cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
        )],
        "cifar100-binary" => vec![toronto(
            "cifar-100-binary.tar.gz",
            "03b5dce01913d631647c71ecec9e9cb8",
        )],
        "svhn" => ["train", "test"]
            .iter()
            .zip([
                "e26dedcc434d2e4c54c9b2d4a06d8373",
                "eb5a983be6a315427106f1b164d9cef3",
            ])
            .map(|(s, md5)| {
                let f = format!("{s}_32x32.mat");
                res(
                    &[&format!("http://ufldl.stanford.edu/housenumbers/{f}")],
                    &f,
                    md5,
                    Extract::None,
                )
            })
            .collect(),
        "tiny-imagenet" => vec![res(
            &["http://cs231n.stanford.edu/tiny-imagenet-200.zip"],
            "tiny-imagenet-200.zip",
            "90528d7ca1a48142e341f4ef8d21d0de",
            Extract::Zip,
        )],
        "mnist" => mnist_like(
            &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ],
            &[
                (
                    "train-images-idx3-ubyte.gz",
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "9fb629c4189551a2d022fa330f9573f3",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
            ],
        ),
        "fashion-mnist" => mnist_like(
            &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
            &[
                (
                    "train-images-idx3-ubyte.gz",
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "25c81989df183df01b3e8a0aad5dffbe",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "bef4ecab320f06d8554ea6380940ec79",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
            ],
        ),
        "cifar10-c" => vec![res(
            &["https://zenodo.org/records/2535967/files/CIFAR-10-C.tar?download=1"],
            "CIFAR-10-C.tar",
            "56bf5dcef84df0e2308c6dcbcbbd8499",
            Extract::Tar,
        )],
        "cifar100-c" => vec![res(
            &["https://zenodo.org/records/3555552/files/CIFAR-100-C.tar?download=1"],
            "CIFAR-100-C.tar",
            "11f0ed0f1191edbf9fa23466ae6021d3",
            Extract::Tar,
        )],
        other => {
            let canonical = DatasetName::parse(other).ok().map(|d| d.as_str());
            match canonical {
                Some(c) if c != other && c != "imagefolder" => return resources(c),
                _ => {
                    let mut names: Vec<&str> = DatasetName::ALL
                        .iter()
                        .map(|d| d.as_str())
                        .filter(|n| *n != "imagefolder")
                        .collect();
                    names.extend(EXTRA_NAMES);
                    return Err(DataError::Invalid(format!(
                        "no download for '{other}'; known: {}",
                        names.join(", ")
                    )));
                }
            }
        }
    })
}

/// Download behaviour.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Read timeout (per socket read).
    pub read_timeout: Duration,
    /// Resume attempts after a dropped connection, per URL.
    pub retries: usize,
    /// Print progress to stderr.
    pub progress: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            retries: 5,
            progress: true,
        }
    }
}

/// MD5 of a file, lowercase hex, streamed.
pub fn md5_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// MD5 of a byte slice, lowercase hex.
pub fn md5_bytes(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why one attempt stopped.
enum Attempt {
    /// The whole body was received.
    Done,
    /// The connection dropped after some bytes; resume.
    Dropped(String),
    /// The server could not be reached at all.
    Unreachable(String),
    /// A definitive HTTP error.
    Failed(String),
}

fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

fn attempt(agent: &ureq::Agent, url: &str, part: &Path, progress: bool) -> Attempt {
    let offset = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url);
    if offset > 0 {
        req = req.set("Range", &format!("bytes={offset}-"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(416, _)) if offset > 0 => return Attempt::Done, // already complete
        Err(ureq::Error::Status(code, r)) => {
            return Attempt::Failed(format!("HTTP {code} {}", r.status_text()))
        }
        Err(ureq::Error::Transport(t)) => {
            return if offset > 0 {
                Attempt::Dropped(t.to_string())
            } else {
                Attempt::Unreachable(t.to_string())
            }
        }
    };
    // 206 continues the partial file; 200 means the server ignored Range: start over.
    let append = offset > 0 && resp.status() == 206;
    let total = resp
        .header("Content-Length")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| n + if append { offset } else { 0 });
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(part);
    let mut file = match file {
        Ok(f) => f,
        Err(e) => return Attempt::Failed(format!("{}: {e}", part.display())),
    };
    let mut done = if append { offset } else { 0 };
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut last_report = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Err(e) = file.write_all(&buf[..n]) {
                    return Attempt::Failed(format!("{}: {e}", part.display()));
                }
                done += n as u64;
                if progress && done - last_report >= 16 << 20 {
                    last_report = done;
                    match total {
                        Some(t) => eprintln!("  {} / {} MiB", done >> 20, t >> 20),
                        None => eprintln!("  {} MiB", done >> 20),
                    }
                }
            }
            Err(e) => {
                let _ = file.sync_all();
                return Attempt::Dropped(e.to_string());
            }
        }
    }
    if let Err(e) = file.sync_all() {
        return Attempt::Failed(format!("{}: {e}", part.display()));
    }
    match total {
        Some(t) if done < t => {
            Attempt::Dropped(format!("connection closed after {done} of {t} bytes"))
        }
        _ => Attempt::Done,
    }
}

/// Downloads `resource` into `dir`, verifying its MD5. Returns the path of the verified file.
pub fn fetch(resource: &Resource, dir: &Path, opts: &DownloadOptions) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let dest = dir.join(&resource.filename);
    if dest.is_file() {
        let got = md5_file(&dest)?;
        if got == resource.md5 {
            if opts.progress {
                eprintln!("{}: present, checksum ok", dest.display());
            }
            return Ok(dest);
        }
        return Err(DataError::Checksum {
            path: dest,
            algorithm: "md5".into(),
            expected: resource.md5.clone(),
            actual: got,
        });
    }
    let part = part_path(&dest);
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(opts.connect_timeout)
        .timeout_read(opts.read_timeout)
        .build();
    let mut errors = Vec::new();
    let mut all_unreachable = true;
    for url in &resource.urls {
        if opts.progress {
            eprintln!("downloading {url}");
        }
        let mut tries = 0;
        let outcome = loop {
            match attempt(&agent, url, &part, opts.progress) {
                Attempt::Done => break Ok(()),
                Attempt::Dropped(why) if tries < opts.retries => {
                    tries += 1;
                    if opts.progress {
                        eprintln!(
                            "  interrupted ({why}); resuming (attempt {tries}/{})",
                            opts.retries
                        );
                    }
                }
                Attempt::Dropped(why) => break Err((false, why)),
                Attempt::Unreachable(why) => break Err((true, why)),
                Attempt::Failed(why) => break Err((false, why)),
            }
        };
        match outcome {
            Ok(()) => {
                let got = md5_file(&part)?;
                if got != resource.md5 {
                    let _ = std::fs::remove_file(&part);
                    return Err(DataError::Checksum {
                        path: dest,
                        algorithm: "md5".into(),
                        expected: resource.md5.clone(),
                        actual: got,
                    });
                }
                std::fs::rename(&part, &dest).map_err(|e| DataError::io(&dest, e))?;
                return Ok(dest);
            }
            Err((unreachable, why)) => {
                all_unreachable &= unreachable;
                errors.push(format!("{url}: {why}"));
            }
        }
    }
    let hint = format!(
        "place {} (md5 {}) in {} and run the command again{}",
        resource.filename,
        resource.md5,
        dir.display(),
        if all_unreachable {
            " (no network?)"
        } else {
            ""
        }
    );
    Err(DataError::Download {
        url: resource.urls.join(" | "),
        message: format!("{}; {hint}", errors.join("; ")),
    })
}

/// Unpacks an archive into `dir`, refusing entries that would escape it.
pub fn extract(archive: &Path, kind: Extract, dir: &Path) -> Result<()> {
    let open = || std::fs::File::open(archive).map_err(|e| DataError::io(archive, e));
    let bad = |e: std::io::Error| DataError::format(archive, format!("cannot extract: {e}"));
    match kind {
        Extract::None => Ok(()),
        Extract::TarGz => tar::Archive::new(flate2::read::GzDecoder::new(open()?))
            .unpack(dir)
            .map_err(bad),
        Extract::Tar => tar::Archive::new(open()?).unpack(dir).map_err(bad),
        Extract::Zip => {
            let mut z = zip::ZipArchive::new(open()?)
                .map_err(|e| DataError::format(archive, e.to_string()))?;
            for i in 0..z.len() {
                let mut f = z
                    .by_index(i)
                    .map_err(|e| DataError::format(archive, e.to_string()))?;
                let Some(rel) = f.enclosed_name() else {
                    return Err(DataError::format(
                        archive,
                        format!("entry {:?} escapes the target directory", f.name()),
                    ));
                };
                let out = dir.join(rel);
                if f.is_dir() {
                    std::fs::create_dir_all(&out).map_err(|e| DataError::io(&out, e))?;
                } else {
                    if let Some(p) = out.parent() {
                        std::fs::create_dir_all(p).map_err(|e| DataError::io(p, e))?;
                    }
                    let mut w = std::fs::File::create(&out).map_err(|e| DataError::io(&out, e))?;
                    std::io::copy(&mut f, &mut w).map_err(|e| DataError::io(&out, e))?;
                }
            }
            Ok(())
        }
    }
}

/// Downloads, verifies and extracts every file of dataset `name` into `dir`. Returns the verified files.
pub fn download(name: &str, dir: &Path, opts: &DownloadOptions) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for r in resources(name)? {
        let p = fetch(&r, dir, opts)?;
        if r.extract != Extract::None {
            if opts.progress {
                eprintln!("extracting {}", p.display());
            }
            extract(&p, r.extract, dir)?;
        }
        out.push(p);
    }
    Ok(out)
}
