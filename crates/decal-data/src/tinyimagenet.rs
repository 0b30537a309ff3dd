//! Tiny ImageNet-200 (seed spec §4.7): the official layout (`wnids.txt`, `train/<wnid>/images/*.JPEG`,
//! `val/images/*.JPEG` + `val/val_annotations.txt`) and the seed's re-organisation (`val/<wnid>/`,
//! `test/<wnid>/`, made by `split_val_to_val_test`). Classes are the sorted wnids (the seed's label order);
//! about 2 % of the images are greyscale and are converted to RGB like PIL's `convert("RGB")`.
//!
//! The seed's split of the official val set, reproduced without moving files: for each wnid, its val images
//! in annotation-file order; the first `ceil(n/2)` go to `seed-val`, the rest to `seed-test`; each split is
//! then read in ImageFolder order (wnid, then file name sorted as a string).
//! Hazard BUG-19 is an error here: an unlabelled official `test/images/` folder is never read as class 0.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::imagefolder::{self, ColorMode, ImageFolderOptions};
use crate::resize::Filter;
use crate::{ImageSet, SplitName};

/// Finds the dataset root (`dir` itself or `dir/tiny-imagenet-200`).
pub fn root(dir: &Path) -> Result<PathBuf> {
    for r in [dir.to_path_buf(), dir.join("tiny-imagenet-200")] {
        if r.join("train").is_dir() || r.join("val").is_dir() {
            return Ok(r);
        }
    }
    Err(DataError::NotFound {
        dataset: "Tiny ImageNet".into(),
        dir: dir.into(),
        hint: "expected tiny-imagenet-200/{wnids.txt,train/<wnid>/images,val/images,val/val_annotations.txt}; \
               `decal data download tiny-imagenet --dir DIR` fetches it"
            .into(),
    })
}

/// Sorted class wnids: from `wnids.txt` when present, else the `train/` sub-folders.
pub fn classes(root: &Path) -> Result<Vec<String>> {
    let p = root.join("wnids.txt");
    let mut w: Vec<String> = if p.is_file() {
        let text = std::fs::read_to_string(&p).map_err(|e| DataError::io(&p, e))?;
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    } else {
        let (c, _) = imagefolder::list(&root.join("train"))?;
        c
    };
    w.sort();
    w.dedup();
    if w.is_empty() {
        return Err(DataError::format(p, "no class ids"));
    }
    Ok(w)
}

/// `(file name, wnid)` pairs of `val/val_annotations.txt`, in file order.
pub fn val_annotations(root: &Path) -> Result<Vec<(String, String)>> {
    let p = root.join("val").join("val_annotations.txt");
    let text = std::fs::read_to_string(&p).map_err(|e| DataError::io(&p, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut f = line.split_whitespace();
        match (f.next(), f.next()) {
            (Some(file), Some(wnid)) => out.push((file.to_string(), wnid.to_string())),
            _ => {
                return Err(DataError::Record {
                    path: p,
                    index: i,
                    message: format!("malformed line {line:?}"),
                })
            }
        }
    }
    Ok(out)
}

/// Reads a split at its native 64×64 size.
pub fn load_tinyimagenet(dir: &Path, split: SplitName) -> Result<ImageSet> {
    load_tinyimagenet_resized(dir, split, None)
}

/// Reads a split, optionally resized to `size × size` with Pillow's bilinear filter (torchvision's default
/// `Resize` on PIL images), e.g. 32 for OOD evaluation against CIFAR.
pub fn load_tinyimagenet_resized(
    dir: &Path,
    split: SplitName,
    size: Option<usize>,
) -> Result<ImageSet> {
    let root = root(dir)?;
    let classes = classes(&root)?;
    let name = format!("tiny-imagenet/{split}");
    let files: Vec<(PathBuf, u32)> = match split {
        SplitName::Train => {
            let train = root.join("train");
            let (found, files) = imagefolder::list(&train)?;
            if found != classes {
                return Err(DataError::format(
                    &train,
                    imagefolder::class_mismatch(&found, &classes),
                ));
            }
            files
        }
        SplitName::Val | SplitName::SeedVal | SplitName::SeedTest | SplitName::Test => {
            let seed_layout_dir = match split {
                SplitName::SeedVal => Some(root.join("val")),
                SplitName::SeedTest | SplitName::Test => Some(root.join("test")),
                _ => None,
            };
            // Already re-organised by the seed: read the per-class folders as ImageFolder.
            if let Some(d) =
                seed_layout_dir.filter(|d| classes.first().is_some_and(|c| d.join(c).is_dir()))
            {
                let o = ImageFolderOptions {
                    class_names: Some(classes.clone()),
                    name: Some(name),
                    resize: size.map(|s| (s, s, Filter::BilinearAntialias)),
                    ..Default::default()
                };
                return imagefolder::read_with(&d, &o);
            }
            if split == SplitName::Test {
                return Err(DataError::format(
                    root.join("test"),
                    "the official Tiny ImageNet test set is unlabelled (BUG-19: the seed would label every image \
                     class 0); use --split seed-test (the seed's labelled half of val) or val",
                ));
            }
            let ann = val_annotations(&root)?;
            let index: BTreeMap<&str, u32> = classes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i as u32))
                .collect();
            let mut by_class: Vec<Vec<String>> = vec![Vec::new(); classes.len()];
            for (i, (file, wnid)) in ann.iter().enumerate() {
                let Some(&l) = index.get(wnid.as_str()) else {
                    return Err(DataError::Record {
                        path: root.join("val/val_annotations.txt"),
                        index: i,
                        message: format!("wnid {wnid} is not in wnids.txt"),
                    });
                };
                by_class[l as usize].push(file.clone());
            }
            let images = root.join("val").join("images");
            let mut files = Vec::new();
            if split == SplitName::Val {
                for (file, wnid) in &ann {
                    files.push((images.join(file), index[wnid.as_str()]));
                }
            } else {
                for (l, list) in by_class.iter().enumerate() {
                    let half = list.len().div_ceil(2);
                    let part = if split == SplitName::SeedVal {
                        &list[..half]
                    } else {
                        &list[half..]
                    };
                    let mut part: Vec<&String> = part.iter().collect();
                    part.sort();
                    files.extend(part.into_iter().map(|f| (images.join(f), l as u32)));
                }
            }
            files
        }
        SplitName::Extra => {
            return Err(DataError::Invalid(
                "tiny-imagenet has no 'extra' split".into(),
            ))
        }
    };
    let resize = size.map(|s| (s, s, Filter::BilinearAntialias));
    imagefolder::decode_files(&files, classes, ColorMode::Rgb, resize, name)
}
