//! `decal data corrupt`: generate a CIFAR-10-C style corruption benchmark ("generated corruptions")
//! from a 32×32 RGB dataset with the recipe of Hendrycks & Dietterich (2019), and/or write sample
//! grids of every corruption × severity. The work is done by `decal_corrupt`; this file parses
//! flags, loads the dataset, finds the frost textures and prints one progress line per corruption.

use anyhow::{bail, Context};
use decal_corrupt::frost::locate_frost_dir;
use decal_corrupt::{
    generate, parse_corruption_list, parse_severity_list, Assets, Corruption, FrostTextures,
    GenerateOptions, SourceImages,
};
use std::path::PathBuf;

/// Arguments of `decal data corrupt`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Output (--out): <corruption>.npy uint8 [S·N, 32, 32, 3] with the S severities \
stacked in ascending order (severity 1 first, as in CIFAR-10-C), labels.npy uint8 [S·N] (labels tiled S \
times) and manifest.json (source checksums, seed, parameters, \"kind\": \"generated corruptions\"). \
Random streams are seeded per image and differ from NumPy's, so the files are statistically matched \
to CIFAR-10-C, not byte-identical to it: report them as generated corruptions.\n\n\
Examples:\n  decal data corrupt --dataset cifar10 --data-dir ../shared/datasets/cifar10-jpeg --out cifar10-c-gen\n  \
decal data corrupt --dataset cifar10 --data-dir data --corruptions fog,snow --severities 5 --limit 1000 --out small\n  \
decal data corrupt --dataset cifar10 --data-dir data --grid docs/corruptions --limit 4"
)]
pub struct Args {
    /// Source dataset: cifar10, cifar100, svhn, imagefolder, … (images must be 32×32 RGB; the
    /// recipe's parameters are in pixels of a 32×32 image, so other sizes are refused — resize first).
    #[arg(long, default_value = "cifar10")]
    pub dataset: String,

    /// Directory holding the dataset in one of its official layouts (e.g. the folder that contains
    /// cifar-10-batches-bin, or an ImageFolder root with train/ and test/).
    #[arg(long)]
    pub data_dir: PathBuf,

    /// Split to corrupt (CIFAR-10-C corrupts the test split).
    #[arg(long, default_value = "test")]
    pub split: String,

    /// Output directory for the .npy files and manifest.json. Refused when it is non-empty, unless it
    /// holds an unfinished or partial run of the same request (same source, seed and severities),
    /// which is resumed: corruptions whose files match the manifest's checksums are skipped.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Corruptions: all (19), standard (the 15 of CIFAR-10-C), extra (speckle_noise, gaussian_blur,
    /// spatter, saturate) or a comma-separated list of names such as gaussian_noise,fog.
    #[arg(long, default_value = "all")]
    pub corruptions: String,

    /// Comma-separated severities from 1 to 5, stacked in ascending order in every file.
    #[arg(long, default_value = "1,2,3,4,5")]
    pub severities: String,

    /// Use only the first N images of the split, in the reader's order (default: all; with --grid
    /// and no --out: 4). ImageFolder trees are read class by class, so a small N covers few classes.
    #[arg(long)]
    pub limit: Option<usize>,

    /// Base seed of the per-image random streams (same seed ⇒ identical bytes).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Directory with frost1.png … frost5.jpg (the recipe's frost textures). Default:
    /// ../shared/datasets/corruption-assets/frost relative to the current directory, then relative
    /// to the repository holding the decal executable. Without it, frost is skipped with a warning.
    #[arg(long)]
    pub frost_dir: Option<PathBuf>,

    /// Also (or only, without --out) write sample grids: DIR/<corruption>.png with one row per image
    /// (the first --limit images) and columns clean, then each severity; upscaled ×4.
    #[arg(long, value_name = "DIR")]
    pub grid: Option<PathBuf>,

    /// Regenerate into a non-empty --out directory instead of refusing: requested files are
    /// overwritten without resumption; other files already there are left alone and are not listed in
    /// the new manifest.json.
    #[arg(long)]
    pub force: bool,
}

/// Runs `decal data corrupt`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.out.is_none() && args.grid.is_none() {
        bail!("nothing to do: pass --out DIR to generate the dataset and/or --grid DIR for sample grids");
    }
    let mut corruptions = parse_corruption_list(&args.corruptions)?;
    let severities = parse_severity_list(&args.severities)?;
    if args.limit == Some(0) {
        bail!("--limit must be at least 1");
    }

    let frost = load_frost(
        args.frost_dir.as_deref(),
        corruptions.contains(&Corruption::Frost),
    )?;
    if frost.is_none() {
        corruptions.retain(|&c| c != Corruption::Frost);
        if corruptions.is_empty() {
            bail!("frost was the only corruption requested and its textures were not found; pass --frost-dir");
        }
    }
    let assets = Assets { frost };

    // The grids are one output set (decal_core::output): an existing grid is refused before any work unless
    // --force, and the grids are renamed into place together once all are drawn.
    let grids = match &args.grid {
        Some(grid_dir) => {
            let mut grids = decal_core::OutputFiles::new(args.force);
            for &c in &corruptions {
                grids.claim(&grid_dir.join(format!("{}.png", c.name())))?;
            }
            Some(grids)
        }
        None => None,
    };
    let dataset = decal_data::DatasetName::parse(&args.dataset)?;
    let split = decal_data::SplitName::parse(&args.split)?;
    let set = decal_data::load(dataset, &args.data_dir, split).with_context(|| {
        format!(
            "loading {} {} from {}",
            args.dataset,
            args.split,
            args.data_dir.display()
        )
    })?;
    let limit = args
        .limit
        .unwrap_or(if args.out.is_none() { 4 } else { set.len() })
        .min(set.len());
    if let Some(w) = class_coverage_warning(&set.labels, limit) {
        eprintln!("warning: {w}");
    }
    let image_len = set.height * set.width * set.channels;
    let source = SourceImages {
        name: &set.name,
        height: set.height,
        width: set.width,
        channels: set.channels,
        pixels: &set.pixels[..limit * image_len],
        labels: &set.labels[..limit],
    };
    source.validate()?;

    if let Some(grid_dir) = &args.grid {
        let mut grids = grids.expect("claimed with --grid");
        for &c in &corruptions {
            let path = grid_dir.join(format!("{}.png", c.name()));
            let staged = grids.staged(&path)?;
            decal_corrupt::grid::write_grid(
                &staged,
                &source,
                c,
                &severities,
                args.seed,
                &assets,
                4,
            )
            .with_context(|| format!("writing {}", path.display()))?;
        }
        for path in grids.commit()? {
            eprintln!("grid {}", path.display());
        }
    }

    if let Some(out) = &args.out {
        let options = GenerateOptions {
            corruptions,
            severities,
            seed: args.seed,
            force: args.force,
            source_details: serde_json::json!({
                "dataset": dataset.as_str(),
                "split": split.as_str(),
                "data_dir": args.data_dir.display().to_string(),
                "images_in_split": set.len(),
                "limit": args.limit,
                "class_names": set.class_names,
            }),
        };
        eprintln!(
            "corrupting {} images of {} ({} corruptions × {} severities) into {}",
            source.len(),
            set.name,
            options.corruptions.len(),
            options.severities.len(),
            out.display()
        );
        let manifest = generate(out, &source, &options, &assets, &mut |p| {
            if p.skipped {
                eprintln!(
                    "[{}/{}] {}: already generated (checksum verified), skipped",
                    p.position, p.total, p.corruption
                );
            } else {
                eprintln!(
                    "[{}/{}] {}: done in {:.1} s",
                    p.position, p.total, p.corruption, p.seconds
                );
            }
        })?;
        eprintln!(
            "wrote {} corruption files, labels.npy and manifest.json to {}",
            manifest.corruptions.len(),
            out.display()
        );
    }
    Ok(())
}

/// Loads the frost textures when frost is requested: an explicit `--frost-dir` must work; the
/// default location may be absent (then `None` and a warning).
fn load_frost(
    explicit: Option<&std::path::Path>,
    wanted: bool,
) -> anyhow::Result<Option<FrostTextures>> {
    if !wanted {
        return Ok(None);
    }
    let exe = std::env::current_exe().ok();
    match locate_frost_dir(explicit, exe.as_deref()) {
        Some(dir) => Ok(Some(FrostTextures::load(&dir)?)),
        None => {
            eprintln!(
                "warning: frost textures not found (looked for ../shared/datasets/corruption-assets/frost); \
                 skipping frost — pass --frost-dir DIR with frost1.png … frost5.jpg"
            );
            Ok(None)
        }
    }
}

/// A warning when the first `limit` labels cover fewer classes than the whole split: a class-ordered copy
/// (an ImageFolder tree such as the CIFAR-10 JPEG set) would give corruption results for a few classes only.
fn class_coverage_warning(labels: &[u32], limit: usize) -> Option<String> {
    let distinct = |l: &[u32]| l.iter().collect::<std::collections::BTreeSet<_>>().len();
    let (kept, all) = (
        distinct(&labels[..limit.min(labels.len())]),
        distinct(labels),
    );
    (kept < all).then(|| {
        format!(
            "the first {limit} images cover {kept} of the split's {all} classes (the copy is ordered by \
             class); for shift results corrupt the whole split and subsample in `decal run` with \
             `[shift] every = K`"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_when_a_prefix_misses_classes() {
        let ordered: Vec<u32> = (0..100).map(|i| i / 10).collect();
        let w = class_coverage_warning(&ordered, 25).unwrap();
        assert!(w.contains("cover 3 of the split's 10 classes"), "{w}");
        assert!(class_coverage_warning(&ordered, 100).is_none());
        let shuffled: Vec<u32> = (0..100).map(|i| i % 10).collect();
        assert!(class_coverage_warning(&shuffled, 25).is_none());
    }
}
