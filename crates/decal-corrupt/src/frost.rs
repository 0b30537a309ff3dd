//! Frost textures for the `frost` corruption.
//!
//! The recipe reads `frost{1..6}` with `cv2.imread` (alpha dropped), shrinks each by
//! `cv2.resize(fx=0.2, fy=0.2)` and overlays a random 32×32 crop. It draws the texture with
//! `np.random.randint(5)`, so only `frost1.png` … `frost5.jpg` are ever used; we keep that.

use crate::error::CorruptError;
use crate::ops::cv2_resize_linear_u8;
use std::path::{Path, PathBuf};

/// The five texture files the CIFAR recipe draws from, in its order.
pub const FROST_FILES: [&str; 5] = [
    "frost1.png",
    "frost2.png",
    "frost3.png",
    "frost4.jpg",
    "frost5.jpg",
];

/// Scale the recipe applies to the textures for CIFAR (`cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)`).
pub const FROST_SCALE: f64 = 0.2;

/// One texture after the recipe's resize, RGB HWC.
#[derive(Debug, Clone, PartialEq)]
pub struct FrostTexture {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `height * width * 3` RGB bytes.
    pub pixels: Vec<u8>,
}

/// The resized textures, in [`FROST_FILES`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct FrostTextures {
    /// Where they were read from.
    pub dir: PathBuf,
    /// One per file of [`FROST_FILES`].
    pub textures: Vec<FrostTexture>,
    /// SHA-256 of each file, for the manifest.
    pub sha256: Vec<String>,
}

impl FrostTextures {
    /// Reads and resizes the five textures from `dir`. Each must be at least 33 pixels in both
    /// dimensions after resizing (the recipe's `randint(0, size - 32)` needs a non-empty range).
    pub fn load(dir: &Path) -> Result<FrostTextures, CorruptError> {
        let mut textures = Vec::new();
        let mut sha256 = Vec::new();
        for name in FROST_FILES {
            let path = dir.join(name);
            let err = |detail: String| CorruptError::FrostTexture {
                path: path.clone(),
                detail,
            };
            let bytes = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
            let decoded = image::load_from_memory(&bytes)
                .map_err(|e| err(e.to_string()))?
                .to_rgb8();
            let (w, h) = (decoded.width() as usize, decoded.height() as usize);
            let (pixels, rh, rw) = cv2_resize_linear_u8(decoded.as_raw(), h, w, 3, FROST_SCALE);
            if rh <= 32 || rw <= 32 {
                return Err(err(format!(
                    "is {w}×{h}; after the recipe's 0.2 resize it must exceed 32×32 pixels"
                )));
            }
            textures.push(FrostTexture {
                height: rh,
                width: rw,
                pixels,
            });
            sha256.push(decal_core::sha256_bytes(&bytes));
        }
        Ok(FrostTextures {
            dir: dir.to_path_buf(),
            textures,
            sha256,
        })
    }
}

/// Finds the frost directory: an explicit `--frost-dir`, else
/// `../shared/datasets/corruption-assets/frost` relative to the current directory, else the same
/// path relative to the repository that holds the running executable (`<repo>/target/<profile>/`).
pub fn locate_frost_dir(explicit: Option<&Path>, exe: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = explicit {
        return Some(dir.to_path_buf());
    }
    let rel = Path::new("../shared/datasets/corruption-assets/frost");
    if rel.join(FROST_FILES[0]).is_file() {
        return Some(rel.to_path_buf());
    }
    // target/<profile>/decal → repo root is three levels up; also try deps/ (test binaries).
    let exe = exe?;
    for ancestor in exe.ancestors().skip(1).take(5) {
        let candidate = ancestor.join(rel);
        if candidate.join(FROST_FILES[0]).is_file() {
            return Some(candidate);
        }
    }
    None
}
