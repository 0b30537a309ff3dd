//! Mean absolute pixel change per corruption × severity, and a comparison with the Python recipe.
//!
//! Run from the repository root:
//! `scripts/cargo run --release -p decal-corrupt --example corrupt_stats -- SOURCE_NPY OUT_JSON [REFERENCE_JSON] [REPEATS]`
//!
//! - `SOURCE_NPY`: uint8 `[N, 32, 32, 3]`. If it does not exist it is created from the first 10
//!   images (sorted file names) of every class of `../shared/datasets/cifar10-jpeg/test`.
//! - `OUT_JSON`: our statistics, in the format of `bench/corrupt/reference_stats.py`.
//! - `REFERENCE_JSON`: that script's output on the same `SOURCE_NPY`; when given, a Markdown
//!   comparison table is printed to stdout (the table of `docs/corruptions/README.md`).
//! - `REPEATS`: corrupt every image this many times with different seeds (default 1).

use decal_corrupt::frost::locate_frost_dir;
use decal_corrupt::rng::image_rng;
use decal_corrupt::{corrupt_image, Assets, Corruption, FrostTextures};
use decal_io::npy::{self, NpyArray, NpyData};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err("usage: corrupt_stats SOURCE_NPY OUT_JSON [REFERENCE_JSON] [REPEATS]".into());
    }
    let source_path = PathBuf::from(&args[0]);
    let repeats: u64 = args.get(3).map_or(Ok(1), |s| s.parse())?;
    if !source_path.exists() {
        write_source(
            &source_path,
            Path::new("../shared/datasets/cifar10-jpeg/test"),
            10,
        )?;
    }
    let source = npy::read(&source_path)?;
    let NpyData::U8(pixels) = &source.data else {
        return Err("source must be uint8".into());
    };
    if source.shape.len() != 4 || source.shape[1..] != [32, 32, 3] {
        return Err(format!("source shape {:?}, expected [N, 32, 32, 3]", source.shape).into());
    }
    let n = source.shape[0];
    let exe = std::env::current_exe().ok();
    let frost = locate_frost_dir(None, exe.as_deref())
        .map(|d| FrostTextures::load(&d))
        .transpose()?;
    let assets = Assets { frost };
    let mut stats = serde_json::Map::new();
    for c in Corruption::ALL {
        if c == Corruption::Frost && assets.frost.is_none() {
            eprintln!("warning: frost textures not found; skipping frost");
            continue;
        }
        let mut per_sev = Vec::new();
        for severity in 1..=5u8 {
            let (abs_sum, signed_sum) = (0..n * repeats as usize)
                .into_par_iter()
                .map(|job| {
                    let (rep, idx) = (job / n, job % n);
                    let clean = &pixels[idx * 3072..(idx + 1) * 3072];
                    let mut rng = image_rng(rep as u64, c, severity, idx as u64);
                    let out = corrupt_image(c, severity, clean, 32, 32, &mut rng, &assets)
                        .expect("corruption of a valid 32×32 image should succeed");
                    out.iter()
                        .zip(clean)
                        .fold((0.0f64, 0.0f64), |(a, s), (&o, &i)| {
                            let d = f64::from(o) - f64::from(i);
                            (a + d.abs(), s + d)
                        })
                })
                .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
            let count = (n * 3072) as f64 * repeats as f64;
            per_sev.push(serde_json::json!({
                "severity": severity, "mean_abs_change": abs_sum / count, "mean_change": signed_sum / count
            }));
        }
        eprintln!(
            "{}: {}",
            c.name(),
            per_sev
                .iter()
                .map(|s| format!("{:.2}", s["mean_abs_change"].as_f64().unwrap_or(0.0)))
                .collect::<Vec<_>>()
                .join(" ")
        );
        stats.insert(c.name().to_string(), serde_json::Value::Array(per_sev));
    }
    let ours = serde_json::json!({
        "meta": { "source": source_path.display().to_string(), "num_images": n, "repeats": repeats,
                  "seeds": format!("0..{repeats}"), "decal_version": env!("CARGO_PKG_VERSION") },
        "stats": stats,
    });
    decal_core::write_json_atomic(Path::new(&args[1]), &ours)?;
    if let Some(reference) = args.get(2) {
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(reference)?)?;
        print_table(&ours["stats"], &reference["stats"]);
    }
    Ok(())
}

/// Markdown table: one row per corruption, `ours / reference` per severity, and the mean ratio.
fn print_table(ours: &serde_json::Value, reference: &serde_json::Value) {
    println!("| corruption | sev 1 | sev 2 | sev 3 | sev 4 | sev 5 | mean ratio |");
    println!("|---|---|---|---|---|---|---|");
    for c in Corruption::ALL {
        let (Some(o), Some(r)) = (ours[c.name()].as_array(), reference[c.name()].as_array()) else {
            continue;
        };
        let mut cells = Vec::new();
        let mut ratios = Vec::new();
        for (a, b) in o.iter().zip(r) {
            let (a, b) = (
                a["mean_abs_change"].as_f64().unwrap_or(f64::NAN),
                b["mean_abs_change"].as_f64().unwrap_or(f64::NAN),
            );
            cells.push(format!("{a:.2} / {b:.2}"));
            ratios.push(a / b);
        }
        let mean_ratio = ratios.iter().sum::<f64>() / ratios.len() as f64;
        println!("| {} | {} | {mean_ratio:.3} |", c.name(), cells.join(" | "));
    }
}

/// Writes the first `per_class` images (sorted names) of every class folder under `root` as uint8
/// `[N, 32, 32, 3]`.
fn write_source(
    path: &Path,
    root: &Path,
    per_class: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    let mut pixels = Vec::new();
    let mut count = 0;
    for class in classes {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&class)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for f in files.iter().take(per_class) {
            let img = image::open(f)?.to_rgb8();
            if img.dimensions() != (32, 32) {
                return Err(format!("{} is not 32×32", f.display()).into());
            }
            pixels.extend_from_slice(img.as_raw());
            count += 1;
        }
    }
    npy::write(path, &NpyArray::from_u8(vec![count, 32, 32, 3], pixels))?;
    eprintln!("wrote {count} source images to {}", path.display());
    Ok(())
}
