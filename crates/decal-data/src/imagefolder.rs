//! `ImageFolder` trees (`<root>/<class>/**/<image>`), read like torchvision's `datasets.ImageFolder`:
//! classes are the sorted sub-folder names, files are walked recursively in sorted order, and every image
//! is converted to RGB (PIL's `convert("RGB")`) unless greyscale is requested.
//!
//! Differences from torchvision, on purpose: an image that cannot be decoded is an error naming the file
//! (never dropped), and all images must share one size unless a resize is requested (a batch needs one
//! shape). Decoding runs in parallel (rayon) straight into the final pixel buffer.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::resize::{resize_u8, Filter};
use crate::ImageSet;

/// File extensions torchvision's `ImageFolder` accepts (compared case-insensitively).
pub const TORCHVISION_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
];

/// The subset of [`TORCHVISION_EXTENSIONS`] decal can decode. A file with one of the other extensions is
/// an error (torchvision would include it, so skipping it would silently shorten the dataset).
pub const DECODABLE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp"];

/// Pixel format of the decoded images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorMode {
    /// Three channels; greyscale and palette images are expanded like PIL's `convert("RGB")`.
    #[default]
    Rgb,
    /// One channel; colour images are reduced with PIL's ITU-R 601-2 luma
    /// (`L = R·299/1000 + G·587/1000 + B·114/1000`, fixed point as in PIL).
    Grey,
}

impl ColorMode {
    /// Number of channels of this mode.
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Rgb => 3,
            ColorMode::Grey => 1,
        }
    }
}

/// `(image file, label)` pairs.
pub type LabelledFiles = Vec<(PathBuf, u32)>;

/// Options of [`read_with`].
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFolderOptions {
    /// Output pixel format.
    pub color: ColorMode,
    /// Resize every image to `(height, width)` with this filter; `None` requires one common size.
    pub resize: Option<(usize, usize, Filter)>,
    /// When set, the class list (in label order) the folders must match exactly as a set; labels follow
    /// this order instead of the sorted folder names. Used to pin, for example, CIFAR-10's official order.
    pub class_names: Option<Vec<String>>,
    /// Name given to the resulting [`ImageSet`]; defaults to the root path.
    pub name: Option<String>,
}

impl Default for ImageFolderOptions {
    fn default() -> Self {
        ImageFolderOptions {
            color: ColorMode::Rgb,
            resize: None,
            class_names: None,
            name: None,
        }
    }
}

/// Reads `<root>/<class>/**/*.{png,jpg,jpeg,bmp}` as RGB images of one common size.
pub fn read(root: &Path) -> Result<ImageSet> {
    read_with(root, &ImageFolderOptions::default())
}

/// Reads an ImageFolder tree with options (colour mode, resize, pinned class order).
pub fn read_with(root: &Path, opts: &ImageFolderOptions) -> Result<ImageSet> {
    let (classes, files) = list(root)?;
    let (class_names, files) = match &opts.class_names {
        None => (classes, files),
        Some(wanted) => {
            let mut sorted_wanted = wanted.clone();
            sorted_wanted.sort();
            if sorted_wanted != classes {
                return Err(DataError::format(root, class_mismatch(&classes, wanted)));
            }
            // Map sorted-folder labels to the requested order.
            let remap: Vec<u32> = classes
                .iter()
                .map(|c| wanted.iter().position(|w| w == c).expect("same set") as u32)
                .collect();
            let files = files
                .into_iter()
                .map(|(p, l)| (p, remap[l as usize]))
                .collect();
            (wanted.clone(), files)
        }
    };
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| root.display().to_string());
    decode_files(&files, class_names, opts.color, opts.resize, name)
}

/// Names what differs between the class folders `found` under a split and the `expected` classes:
/// `missing class folder 'cat' (found 9 of the 10 classes)`, plus unexpected folders.
pub fn class_mismatch(found: &[String], expected: &[String]) -> String {
    let quoted = |v: Vec<&String>| {
        v.iter()
            .map(|c| format!("'{c}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let missing: Vec<&String> = expected.iter().filter(|c| !found.contains(c)).collect();
    let extra: Vec<&String> = found.iter().filter(|c| !expected.contains(c)).collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "missing class folder{} {}",
            if missing.len() == 1 { "" } else { "s" },
            quoted(missing)
        ));
    }
    if !extra.is_empty() {
        parts.push(format!(
            "unexpected folder{} {}",
            if extra.len() == 1 { "" } else { "s" },
            quoted(extra)
        ));
    }
    if parts.is_empty() {
        parts.push("class folders in an unexpected order".into());
    }
    format!(
        "{} (found {} folders, expected the {} classes)",
        parts.join("; "),
        found.len(),
        expected.len()
    )
}

/// Class folder names directly under `dir` (sorted; empty when `dir` is not a directory).
pub fn class_folders(dir: &Path) -> Result<Vec<String>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    Ok(read_dir_sorted(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect())
}

/// Lists an ImageFolder tree: sorted class names and `(file, label)` pairs in torchvision's order
/// (class by class; within a class `os.walk` directories sorted, file names sorted).
pub fn list(root: &Path) -> Result<(Vec<String>, LabelledFiles)> {
    let mut classes = Vec::new();
    for entry in read_dir_sorted(root)? {
        if entry.is_dir() {
            classes.push(
                entry
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
    }
    if classes.is_empty() {
        return Err(DataError::format(
            root,
            "no class sub-folders found (expected <root>/<class>/<image>)",
        ));
    }
    let mut files = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let dir = root.join(class);
        let before = files.len();
        let mut dirs = Vec::new();
        walk_dirs(&dir, &mut dirs)?;
        // os.walk yields (root, files) tuples; torchvision sorts the tuples, i.e. by directory path.
        dirs.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        for d in dirs {
            for f in read_dir_sorted(&d)? {
                if f.is_dir() {
                    continue;
                }
                let ext = f
                    .extension()
                    .map(|e| e.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                if DECODABLE_EXTENSIONS.contains(&ext.as_str()) {
                    files.push((f, label as u32));
                } else if TORCHVISION_EXTENSIONS.contains(&ext.as_str()) {
                    return Err(DataError::Decode {
                        path: f,
                        message: format!(".{ext} images are not supported (convert them to PNG)"),
                    });
                }
            }
        }
        if files.len() == before {
            return Err(DataError::format(
                &dir,
                format!("class folder '{class}' contains no image files"),
            ));
        }
    }
    Ok((classes, files))
}

fn walk_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    out.push(dir.to_path_buf());
    for e in read_dir_sorted(dir)? {
        if e.is_dir() {
            walk_dirs(&e, out)?;
        }
    }
    Ok(())
}

/// Entries of a directory sorted by file name (byte order, like Python's `sorted`).
pub(crate) fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for e in rd {
        out.push(e.map_err(|e| DataError::io(dir, e))?.path());
    }
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(out)
}

/// Decodes one image file's bytes into HWC pixels `(height, width, pixels)` in the given colour mode.
pub fn decode_image_bytes(
    bytes: &[u8],
    path: &Path,
    color: ColorMode,
) -> Result<(usize, usize, Vec<u8>)> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return decode_jpeg(bytes, path, color);
    }
    let decode_err = |e: image::ImageError| DataError::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| decode_err(e.into()))
    };
    // The header's dimensions are checked before the decoder allocates for them.
    let (w, h) = reader()?.into_dimensions().map_err(decode_err)?;
    check_declared_pixels(
        w as u64,
        h as u64,
        max_pixels_deflate(bytes.len()),
        "PNG/BMP",
        path,
    )?;
    let img = reader()?.decode().map_err(decode_err)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let pixels = match color {
        ColorMode::Rgb => img.into_rgb8().into_raw(),
        ColorMode::Grey => match img {
            image::DynamicImage::ImageLuma8(g) => g.into_raw(),
            other => rgb_to_grey_pil(&other.into_rgb8().into_raw()),
        },
    };
    Ok((h, w, pixels))
}

/// Most pixels a deflate-compressed (PNG) or run-length (BMP) image of `len` bytes can hold: deflate expands
/// at most [`decal_core::bounded::MAX_DEFLATE_RATIO`]-fold and a 1-bit image packs 8 pixels per byte.
fn max_pixels_deflate(len: usize) -> u64 {
    decal_core::bounded::deflate_bound(len as u64).saturating_mul(8)
}

/// Pixels per byte a Huffman-coded JPEG can reach at most: every 8×8 block costs at least one bit (its DC
/// code) in some scan, i.e. 512 pixels per byte; twice that is allowed, plus 1 Mpx for tiny files.
const JPEG_PIXELS_PER_BYTE: u64 = 1024;

fn max_pixels_jpeg(len: usize) -> u64 {
    (len as u64)
        .saturating_mul(JPEG_PIXELS_PER_BYTE)
        .saturating_add(1 << 20)
}

/// Refuses an image whose header declares more pixels than its file can encode (the decoder would
/// allocate for the declaration before finding out that the data is missing).
fn check_declared_pixels(w: u64, h: u64, max: u64, format: &str, path: &Path) -> Result<()> {
    let pixels = w.saturating_mul(h);
    if pixels > max {
        return Err(DataError::Decode {
            path: path.to_path_buf(),
            message: format!(
                "{format} header declares {w}×{h} pixels, more than a file of this size can encode \
                 (at most {max} pixels): corrupt or hostile file"
            ),
        });
    }
    Ok(())
}

/// JPEG through libjpeg-turbo's decoder (the `mozjpeg` build of it), with the library defaults Pillow
/// uses (islow IDCT, fancy upsampling): on the CIFAR-10 JPEG test set the pixels are identical to
/// Pillow 13's. A JPEG without its end-of-image marker is reported as truncated (libjpeg would only warn
/// and pad with grey); a decoder error is caught and reported, never propagated as a panic.
fn decode_jpeg(bytes: &[u8], path: &Path, color: ColorMode) -> Result<(usize, usize, Vec<u8>)> {
    let err = |m: String| DataError::Decode {
        path: path.to_path_buf(),
        message: m,
    };
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err(err("truncated JPEG (no end-of-image marker)".into()));
    }
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<(usize, usize, Vec<u8>)> {
        let d = mozjpeg::Decompress::new_mem(bytes)?;
        let (w, h) = (d.width(), d.height());
        // Reading the header allocates little; decompression allocates for the declared size.
        if (w as u64).saturating_mul(h as u64) > max_pixels_jpeg(bytes.len()) {
            return Ok((h, w, Vec::new()));
        }
        // `rgb()` converts greyscale and YCbCr alike, as PIL's convert("RGB") does.
        let mut s = d.rgb()?;
        let px: Vec<[u8; 3]> = s.read_scanlines()?;
        s.finish()?;
        Ok((h, w, px.into_iter().flatten().collect()))
    });
    let (h, w, rgb) = match decoded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(err(e.to_string())),
        Err(_) => return Err(err("corrupt JPEG data".into())),
    };
    check_declared_pixels(
        w as u64,
        h as u64,
        max_pixels_jpeg(bytes.len()),
        "JPEG",
        path,
    )?;
    if rgb.len() != h * w * 3 || h == 0 || w == 0 {
        return Err(err(format!(
            "decoded {} bytes for a {h}×{w} image",
            rgb.len()
        )));
    }
    Ok((
        h,
        w,
        match color {
            ColorMode::Rgb => rgb,
            ColorMode::Grey => rgb_to_grey_pil(&rgb),
        },
    ))
}

/// PIL's `convert("L")` for RGB: `(R·19595 + G·38470 + B·7471 + 0x8000) >> 16`.
pub fn rgb_to_grey_pil(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| {
            ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8
        })
        .collect()
}

/// Reads and decodes `files` in parallel into one [`ImageSet`]. Without `resize` every image must have
/// the size of the first one (an error names the first file that differs).
pub fn decode_files(
    files: &[(PathBuf, u32)],
    class_names: Vec<String>,
    color: ColorMode,
    resize: Option<(usize, usize, Filter)>,
    name: String,
) -> Result<ImageSet> {
    let c = color.channels();
    let (h, w) = match resize {
        Some((h, w, _)) => (h, w),
        None => match files.first() {
            None => (0, 0),
            Some((p, _)) => {
                let bytes = std::fs::read(p).map_err(|e| DataError::io(p, e))?;
                let (h, w, _) = decode_image_bytes(&bytes, p, color)?;
                (h, w)
            }
        },
    };
    let per = h * w * c;
    if per == 0 && !files.is_empty() {
        return Err(DataError::format(&files[0].0, "image has zero size"));
    }
    // `per` comes from the first file's header (bounded by that file's size); the total is checked for
    // overflow and reserved fallibly, so an impossible request is an error, not an abort.
    let total = per.checked_mul(files.len()).ok_or_else(|| {
        DataError::format(
            &files[0].0,
            format!(
                "{} images of {h}×{w}×{c} overflow the address space",
                files.len()
            ),
        )
    })?;
    let mut pixels = Vec::new();
    pixels.try_reserve_exact(total).map_err(|_| {
        DataError::format(
            &files[0].0,
            format!(
                "cannot allocate {total} bytes for {} images of {h}×{w}×{c} (size of the first image)",
                files.len()
            ),
        )
    })?;
    pixels.resize(total, 0);
    pixels.par_chunks_mut(per.max(1)).zip(files.par_iter()).try_for_each(|(dst, (p, _))| -> Result<()> {
        let bytes = std::fs::read(p).map_err(|e| DataError::io(p, e))?;
        let (ih, iw, px) = decode_image_bytes(&bytes, p, color)?;
        match resize {
            Some((_, _, filter)) if (ih, iw) != (h, w) => {
                dst.copy_from_slice(&resize_u8(&px, ih, iw, c, h, w, filter));
            }
            _ if (ih, iw) != (h, w) => {
                return Err(DataError::format(
                    p,
                    format!("image is {ih}×{iw}, but the first image is {h}×{w}; request a resize to mix sizes"),
                ));
            }
            _ => dst.copy_from_slice(&px),
        }
        Ok(())
    })?;
    Ok(ImageSet {
        name,
        height: h,
        width: w,
        channels: c,
        pixels,
        labels: files.iter().map(|(_, l)| *l).collect(),
        class_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, rgb: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::save_buffer(path, rgb, w, h, image::ExtendedColorType::Rgb8).unwrap();
    }

    #[test]
    fn reads_sorted_classes_and_files_with_exact_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let px = |v: u8| vec![v; 2 * 3 * 3];
        write_png(&dir.path().join("b/2.png"), 3, 2, &px(30));
        write_png(&dir.path().join("b/1.png"), 3, 2, &px(20));
        write_png(&dir.path().join("a/x.png"), 3, 2, &px(10));
        std::fs::write(dir.path().join("a/notes.txt"), b"ignored").unwrap();
        let set = read(dir.path()).unwrap();
        assert_eq!(set.class_names, vec!["a", "b"]);
        assert_eq!(set.labels, vec![0, 1, 1]);
        assert_eq!((set.height, set.width, set.channels), (2, 3, 3));
        assert_eq!(set.pixels[0], 10);
        assert_eq!(set.pixels[18], 20);
        assert_eq!(set.pixels[36], 30);
    }

    #[test]
    fn bad_inputs_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path())
            .unwrap_err()
            .to_string()
            .contains("no class sub-folders"));
        write_png(&dir.path().join("a/1.png"), 2, 2, &[0; 12]);
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("'b' contains no image files"), "{e}");
        std::fs::write(dir.path().join("b/broken.jpg"), b"not a jpeg").unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("broken.jpg") && e.contains("cannot decode"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("b/broken.jpg")).unwrap();
        write_png(&dir.path().join("b/big.png"), 4, 4, &[0; 48]);
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("big.png") && e.contains("4×4"), "{e}");
        let opts = ImageFolderOptions {
            resize: Some((2, 2, Filter::Nearest)),
            ..Default::default()
        };
        assert_eq!(read_with(dir.path(), &opts).unwrap().labels, vec![0, 1]);
    }

    #[test]
    fn pinned_class_order_relabels() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a/1.png"), 1, 1, &[1, 1, 1]);
        write_png(&dir.path().join("b/1.png"), 1, 1, &[2, 2, 2]);
        let opts = ImageFolderOptions {
            class_names: Some(vec!["b".into(), "a".into()]),
            ..Default::default()
        };
        let set = read_with(dir.path(), &opts).unwrap();
        assert_eq!(set.labels, vec![1, 0]);
        assert_eq!(set.class_names, vec!["b", "a"]);
        let opts = ImageFolderOptions {
            class_names: Some(vec!["a".into(), "c".into()]),
            ..Default::default()
        };
        assert!(read_with(dir.path(), &opts).is_err());
    }

    #[test]
    fn truncated_and_corrupt_jpegs_are_errors() {
        let p = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/datasets/cifar10-jpeg/test/cat/0000.jpg"
        ));
        if !p.exists() {
            eprintln!("skipping: {} not found", p.display());
            return;
        }
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(
            decode_image_bytes(&bytes, p, ColorMode::Rgb)
                .unwrap()
                .2
                .len(),
            3072
        );
        for cut in [2, 100, bytes.len() / 2, bytes.len() - 2] {
            let e = decode_image_bytes(&bytes[..cut], p, ColorMode::Rgb)
                .unwrap_err()
                .to_string();
            assert!(e.contains("0000.jpg"), "{e}");
        }
        let mut bad = bytes.clone();
        for b in bad[2..40].iter_mut() {
            *b = 0xAA;
        }
        assert!(decode_image_bytes(&bad, p, ColorMode::Rgb).is_err());
    }

    #[test]
    fn bmp_and_grey_jpeg_decode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/x.bmp");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::save_buffer(
            &p,
            &[9, 8, 7, 6, 5, 4],
            2,
            1,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
        let set = read(dir.path()).unwrap();
        assert_eq!(set.pixels, vec![9, 8, 7, 6, 5, 4]);
    }

    #[test]
    fn grey_conversion_matches_pil_formula() {
        // PIL: convert("L") of (255, 0, 0) is 76, of (0, 255, 0) is 150, of (0, 0, 255) is 29.
        assert_eq!(
            rgb_to_grey_pil(&[255, 0, 0, 0, 255, 0, 0, 0, 255]),
            vec![76, 150, 29]
        );
    }
}
