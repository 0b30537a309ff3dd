//! Writes the sample grids of `docs/corruptions/`: every corruption × severity on the first CIFAR-10
//! test images (the lossless PNGs in `../shared/datasets/samples`), upscaled ×4.
//!
//! Run from the repository root:
//! `scripts/cargo run --release -p decal-corrupt --example corrupt_grids -- [SAMPLES_DIR] [OUT_DIR] [NUM_IMAGES]`
//! (defaults: `../shared/datasets/samples`, `docs/corruptions`, 4). Also writes `overview.png`
//! (one image, one row per corruption, columns clean + severities 1–5).

use decal_corrupt::frost::locate_frost_dir;
use decal_corrupt::grid::{write_cells, write_grid};
use decal_corrupt::rng::image_rng;
use decal_corrupt::{corrupt_image, Assets, Corruption, FrostTextures, SourceImages};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let samples = PathBuf::from(
        args.first()
            .map_or("../shared/datasets/samples", String::as_str),
    );
    let out = PathBuf::from(args.get(1).map_or("docs/corruptions", String::as_str));
    let num_images: usize = args.get(2).map_or(Ok(4), |s| s.parse())?;
    let seed = 0;

    // cifar10_<idx>_<label>.png, official test order.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&samples)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cifar10_"))
        })
        .collect();
    files.sort();
    files.truncate(num_images);
    if files.is_empty() {
        return Err(format!("no cifar10_*.png samples in {}", samples.display()).into());
    }
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in &files {
        pixels.extend_from_slice(image::open(f)?.to_rgb8().as_raw());
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        labels.push(stem.rsplit('_').next().unwrap_or("0").parse()?);
    }
    let source = SourceImages {
        name: "cifar10/test samples",
        height: 32,
        width: 32,
        channels: 3,
        pixels: &pixels,
        labels: &labels,
    };
    let exe = std::env::current_exe().ok();
    let frost = locate_frost_dir(None, exe.as_deref())
        .map(|d| FrostTextures::load(&d))
        .transpose()?;
    if frost.is_none() {
        eprintln!("warning: frost textures not found; skipping frost");
    }
    let assets = Assets { frost };
    std::fs::create_dir_all(&out)?;
    let severities = [1, 2, 3, 4, 5];
    let mut overview = Vec::new();
    for c in Corruption::ALL {
        if c == Corruption::Frost && assets.frost.is_none() {
            continue;
        }
        write_grid(
            &out.join(format!("{}.png", c.name())),
            &source,
            c,
            &severities,
            seed,
            &assets,
            4,
        )?;
        let clean = &pixels[..32 * 32 * 3];
        let mut row = vec![clean.to_vec()];
        for s in severities {
            let mut rng = image_rng(seed, c, s, 0);
            row.push(corrupt_image(c, s, clean, 32, 32, &mut rng, &assets)?);
        }
        overview.push(row);
        println!("{}", out.join(format!("{}.png", c.name())).display());
    }
    write_cells(&out.join("overview.png"), &overview, 32, 32, 3)?;
    println!("{}", out.join("overview.png").display());
    Ok(())
}
