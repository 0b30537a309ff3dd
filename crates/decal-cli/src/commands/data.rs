//! `decal data …`: download, inspect, verify and split datasets (decal-data), and generate corruption
//! benchmarks (`decal data corrupt`, in `corrupt.rs`).

use std::path::PathBuf;

use anyhow::Context;
use decal_data::{DatasetName, SplitName};

/// `decal data` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Generate a CIFAR-10-C style corruption benchmark from a 32×32 dataset ("generated corruptions").
    Corrupt(super::corrupt::Args),
    /// Counts, image sizes and statistics of a dataset.
    Inspect(InspectArgs),
    /// Download a dataset from its official location, verify its checksum and extract it.
    Download(DownloadArgs),
    /// Check a dataset's files against their published MD5 checksums.
    Verify(VerifyArgs),
    /// Write the train/validation split manifest of a training set (the seed's split by default).
    Split(SplitArgs),
}

/// Arguments of `decal data inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Dataset: cifar10, cifar100, svhn, tiny-imagenet, mnist, fashion-mnist or imagefolder.
    #[arg(long)]
    pub dataset: String,
    /// Folder holding the dataset (the dataset's own folder or a folder above it, e.g. `data/`).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Split(s) to inspect: train, test, val, extra, seed-val, seed-test. Repeat or comma-separate;
    /// default: train and test (train and val for tiny-imagenet).
    #[arg(long, value_delimiter = ',')]
    pub split: Vec<String>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Print every class count (default: only when there are at most 20 classes).
    #[arg(long)]
    pub all_classes: bool,
    /// Replace an existing --json file (without it an existing file is refused before any work).
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `decal data download`.
#[derive(clap::Args, Debug)]
pub struct DownloadArgs {
    /// What to download: cifar10, cifar10-binary, cifar100, cifar100-binary, svhn, tiny-imagenet, mnist,
    /// fashion-mnist, cifar10-c, cifar100-c.
    pub name: String,
    /// Target folder (created if needed). Files already there with the right checksum are kept.
    #[arg(long)]
    pub dir: PathBuf,
    /// Keep archives packed (do not extract .tar/.tar.gz/.zip).
    #[arg(long)]
    pub no_extract: bool,
    /// Resume attempts after a dropped connection.
    #[arg(long, default_value_t = 5)]
    pub retries: usize,
}

/// Arguments of `decal data verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Dataset: cifar10, cifar100, svhn, tiny-imagenet, mnist or fashion-mnist.
    #[arg(long)]
    pub dataset: String,
    /// Folder holding the dataset's files (or a folder above it).
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// Arguments of `decal data split`.
#[derive(clap::Args, Debug)]
pub struct SplitArgs {
    /// Dataset whose training split is divided.
    #[arg(long)]
    pub dataset: String,
    /// Folder holding the dataset.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Output JSON manifest (written atomically; refuses to overwrite without --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Fraction of the training split used for training (default: the seed's, 0.8; 0.95 for cifar100).
    #[arg(long)]
    pub train_fraction: Option<f64>,
    /// Seed of the torch.Generator (the seed uses 1).
    #[arg(long, default_value_t = 1)]
    pub generator_seed: u64,
    /// Stratified split (each class keeps its proportion; index lists sorted) instead of the seed's
    /// random_split.
    #[arg(long)]
    pub stratified: bool,
    /// Overwrite an existing manifest.
    #[arg(long)]
    pub force: bool,
}

/// Runs a `decal data` subcommand.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Corrupt(a) => super::corrupt::run(a),
        DataCommand::Inspect(a) => inspect(a),
        DataCommand::Download(a) => download(a),
        DataCommand::Verify(a) => verify(a),
        DataCommand::Split(a) => split(a),
    }
}

fn inspect(a: InspectArgs) -> anyhow::Result<()> {
    let dataset = DatasetName::parse(&a.dataset)?;
    let mut outputs = decal_core::OutputFiles::new(a.force);
    if let Some(p) = &a.json {
        outputs.claim(p)?;
    }
    let splits: Vec<SplitName> = if a.split.is_empty() {
        match dataset {
            DatasetName::TinyImagenet => vec![SplitName::Train, SplitName::Val],
            _ => vec![SplitName::Train, SplitName::Test],
        }
    } else {
        a.split
            .iter()
            .map(|s| SplitName::parse(s))
            .collect::<Result<_, _>>()?
    };
    let mut sets = Vec::new();
    let mut reports = Vec::new();
    for s in &splits {
        let t = std::time::Instant::now();
        let set = decal_data::load(dataset, &a.data_dir, *s)?;
        let secs = t.elapsed().as_secs_f64();
        let r = decal_data::inspect::report(&set);
        println!("{} ({} images, read in {secs:.1} s)", r.name, r.images);
        println!(
            "  image size   {}×{}, {} channel(s)",
            r.shape[0], r.shape[1], r.shape[2]
        );
        let counts: Vec<usize> = r.class_counts.iter().map(|c| c.1).collect();
        println!(
            "  classes      {} (per class: min {}, max {})",
            counts.len(),
            counts.iter().min().unwrap_or(&0),
            counts.iter().max().unwrap_or(&0)
        );
        if a.all_classes || counts.len() <= 20 {
            for (name, n) in &r.class_counts {
                println!("    {name:<24} {n}");
            }
        }
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.4}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("  mean         ({})   [pixel/255]", fmt(&r.mean));
        println!("  std          ({})   [population]", fmt(&r.std));
        println!(
            "  duplicates   {} group(s), {} redundant image(s), {} group(s) with conflicting labels",
            r.duplicate_groups, r.duplicate_images, r.conflicting_label_groups
        );
        reports.push(r);
        sets.push(set);
    }
    let mut shared = Vec::new();
    for i in 0..sets.len() {
        for j in i + 1..sets.len() {
            let n = decal_data::inspect::shared_images(&sets[i], &sets[j]).len();
            println!(
                "{} images of {} also occur in {}",
                n, sets[i].name, sets[j].name
            );
            shared.push(
                serde_json::json!({"split": sets[i].name, "also_in": sets[j].name, "images": n}),
            );
        }
    }
    if let Some(p) = a.json {
        let doc = serde_json::json!({"dataset": dataset.as_str(), "data_dir": a.data_dir, "splits": reports, "shared": shared});
        decal_core::write_json_atomic(&outputs.staged(&p)?, &doc)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    for p in outputs.commit()? {
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn download(a: DownloadArgs) -> anyhow::Result<()> {
    let opts = decal_data::download::DownloadOptions {
        retries: a.retries,
        ..Default::default()
    };
    let resources = decal_data::download::resources(&a.name)?;
    for r in resources {
        let p = decal_data::download::fetch(&r, &a.dir, &opts)?;
        println!("{}  md5 ok", p.display());
        if !a.no_extract && r.extract != decal_data::download::Extract::None {
            decal_data::download::extract(&p, r.extract, &a.dir)?;
            println!("extracted into {}", a.dir.display());
        }
    }
    Ok(())
}

fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let dataset = DatasetName::parse(&a.dataset)?;
    let checks = decal_data::verify::verify(dataset, &a.data_dir)?;
    let mut bad = 0;
    for c in &checks {
        println!(
            "{:<8} {}  (expected md5 {}{})",
            c.status,
            c.path.display(),
            c.expected,
            if c.actual.is_empty() || c.status == "ok" {
                String::new()
            } else {
                format!(", got {}", c.actual)
            }
        );
        bad += (c.status != "ok") as usize;
    }
    if bad > 0 {
        anyhow::bail!(
            "{}: {bad} of {} file(s) missing or not matching their published checksum",
            a.data_dir.display(),
            checks.len()
        );
    }
    println!(
        "all {} file(s) match their published checksums",
        checks.len()
    );
    Ok(())
}

fn split(a: SplitArgs) -> anyhow::Result<()> {
    let dataset = DatasetName::parse(&a.dataset)?;
    let mut outputs = decal_core::OutputFiles::new(a.force);
    outputs.claim(&a.out)?;
    let set = decal_data::load(dataset, &a.data_dir, SplitName::Train)?;
    let f = a
        .train_fraction
        .unwrap_or_else(|| decal_data::split::seed_train_fraction(dataset));
    let m = if a.stratified {
        decal_data::split::SplitManifest::stratified(
            dataset.as_str(),
            &set.labels,
            f,
            a.generator_seed,
        )?
    } else {
        decal_data::split::SplitManifest::seed(dataset.as_str(), set.len(), f, a.generator_seed)?
    };
    m.save(&outputs.staged(&a.out)?)
        .with_context(|| format!("writing {}", a.out.display()))?;
    outputs.commit()?;
    println!(
        "{}: {} train / {} valid of {} ({}), sha256 {}",
        a.out.display(),
        m.train_indices.len(),
        m.valid_indices.len(),
        m.n,
        if a.stratified {
            "stratified"
        } else {
            "seed random_split"
        },
        m.sha256
    );
    Ok(())
}
