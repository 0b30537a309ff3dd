//! Sample grids: every severity of a corruption on a few images, upscaled with nearest-neighbour
//! so that 32×32 images are visible. Used to eyeball the generator against the published look of
//! CIFAR-10-C (`docs/corruptions/`).
//!
//! Layout of [`write_grid`]: one row per image; column 0 is the clean image, columns 1.. are the
//! requested severities in order; a 2-pixel white gap (before upscaling) separates cells.

use crate::corruption::Corruption;
use crate::error::CorruptError;
use crate::generate::SourceImages;
use crate::recipe::{corrupt_image, Assets};
use crate::rng::image_rng;
use std::path::Path;

/// Gap between cells, in source pixels.
const GAP: usize = 2;

/// Renders `corruption` at `severities` on every image of `source` (rows) and writes a PNG to
/// `path` atomically. Each image uses the same random stream as in [`crate::generate::generate`]
/// (its index in `source`), so the grid shows exactly what the dataset contains.
pub fn write_grid(
    path: &Path,
    source: &SourceImages<'_>,
    corruption: Corruption,
    severities: &[u8],
    seed: u64,
    assets: &Assets,
    scale: usize,
) -> Result<(), CorruptError> {
    source.validate()?;
    let mut rows = Vec::new();
    for idx in 0..source.len() {
        let size = source.height * source.width * 3;
        let clean = &source.pixels[idx * size..(idx + 1) * size];
        let mut row = vec![clean.to_vec()];
        for &severity in severities {
            let mut rng = image_rng(seed, corruption, severity, idx as u64);
            row.push(corrupt_image(
                corruption,
                severity,
                clean,
                source.height,
                source.width,
                &mut rng,
                assets,
            )?);
        }
        rows.push(row);
    }
    write_cells(path, &rows, source.height, source.width, scale)
}

/// Writes a grid of equally sized RGB cells (`rows[r][c]`, HWC bytes) as a PNG, upscaled by
/// `scale` with nearest-neighbour.
pub fn write_cells(
    path: &Path,
    rows: &[Vec<Vec<u8>>],
    height: usize,
    width: usize,
    scale: usize,
) -> Result<(), CorruptError> {
    let num_cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let grid_w = (num_cols * (width + GAP) + GAP) * scale;
    let grid_h = (rows.len() * (height + GAP) + GAP) * scale;
    let mut canvas = vec![255u8; grid_w * grid_h * 3];
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let (top, left) = (GAP + r * (height + GAP), GAP + c * (width + GAP));
            for y in 0..height * scale {
                for x in 0..width * scale {
                    let src = ((y / scale) * width + x / scale) * 3;
                    let dst = ((top * scale + y) * grid_w + left * scale + x) * 3;
                    canvas[dst..dst + 3].copy_from_slice(&cell[src..src + 3]);
                }
            }
        }
    }
    let err = |detail: String| CorruptError::ImageWrite {
        path: path.to_path_buf(),
        detail,
    };
    let buffer = image::RgbImage::from_raw(grid_w as u32, grid_h as u32, canvas)
        .ok_or_else(|| err("canvas size mismatch".into()))?;
    let mut png = std::io::Cursor::new(Vec::new());
    buffer
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| err(e.to_string()))?;
    decal_core::write_atomic(path, png.get_ref())?;
    Ok(())
}
