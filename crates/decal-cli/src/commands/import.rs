//! `decal import`: converts a PyTorch state_dict (`torch.save` zip), a Lightning `.ckpt` or a `safetensors` file
//! into a decal checkpoint directory (`model.safetensors` + `config.json`), checking every tensor name and shape
//! against the chosen architecture. Nothing in the source file is executed: pickled classes (a Lightning
//! checkpoint's `hyper_parameters`) are parsed as data and ignored.

use std::path::PathBuf;

use anyhow::Context;
use decal_models::checkpoint::{self, Normalization};
use decal_models::{import, ArchConfig};

/// Arguments of `decal import`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Architectures (--arch): wrn-28-10, wrn-16-4, wrn-10-1 (any wrn-<depth>-<width>), cnn, \
cnn-mnist, resnet18, resnet34, resnet50, efficientnet-b5-seed (the seed's CIFAR \"B5\"), efficientnet-b0-cifar, efficientnet-b0 ... efficientnet-b7 (torchvision layout), vit-b16, vit-tiny.\n\n\
Example (the seed's CNN checkpoint):\n  decal import --from seed-cnn-cifar10-seed1.ckpt --arch cnn --num-classes 10 \
--dataset cifar10 --out runs/seed-cnn"
)]
pub struct Args {
    /// The file to import: a `torch.save` archive (.pt/.pth, PyTorch >= 1.6), a PyTorch Lightning checkpoint
    /// (.ckpt; the `model.` key prefix is stripped) or a safetensors file (e.g. a Hugging Face ViT).
    #[arg(long = "from", value_name = "FILE")]
    pub from: PathBuf,
    /// Architecture preset the weights belong to (see the list below).
    #[arg(
        long,
        value_name = "PRESET",
        required_unless_present = "arch_config",
        conflicts_with = "arch_config"
    )]
    pub arch: Option<String>,
    /// Instead of --arch: a JSON file with a full architecture config (the `arch` object of a decal
    /// checkpoint's config.json).
    #[arg(long, value_name = "JSON")]
    pub arch_config: Option<PathBuf>,
    /// Number of classes K of the classifier head (required with --arch).
    #[arg(long, value_name = "K", required_unless_present = "arch_config")]
    pub num_classes: Option<i64>,
    /// Output directory for the decal checkpoint; must be empty or absent unless --force.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Dataset the model was trained on (cifar10, cifar100, svhn, tiny-imagenet, mnist, fashion-mnist); sets the
    /// input normalisation recorded in the checkpoint (the seed's constants, seed-system.md §4.2). Defaults to
    /// the `dataset` hyper-parameter of a Lightning checkpoint when it has one.
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<String>,
    /// Overwrite the checkpoint files in a non-empty --out directory.
    #[arg(long)]
    pub force: bool,
}

/// The seed's normalisation constants of `dataset` (`decal_data::transforms::Normalize::seed`, seed-system.md
/// §4.2, Q-3 constants included) when they fit the model's `channels`; `None` otherwise. Recorded as the
/// f64 nearest to each constant's shortest decimal form (0.247, not 0.24699999392).
fn seed_normalization(dataset: &str, channels: usize) -> Option<Normalization> {
    let n = decal_data::DatasetName::parse(dataset)
        .ok()
        .and_then(decal_data::transforms::Normalize::seed)
        .filter(|n| n.mean.len() == channels)?;
    let wide = |v: &[f32]| -> Vec<f64> {
        v.iter()
            .map(|x| x.to_string().parse().expect("an f32 prints as a number"))
            .collect()
    };
    Some(Normalization {
        mean: wide(&n.mean),
        std: wide(&n.std),
    })
}

/// Canonical dataset name (decal-data's spelling) from user or seed spellings (`CIFAR10`, `TINYIMAGENET`).
fn canonical_dataset(name: &str) -> anyhow::Result<String> {
    let n = name.to_ascii_lowercase().replace('_', "-");
    let canonical = match n.as_str() {
        "cifar10" | "cifar-10" => "cifar10",
        "cifar100" | "cifar-100" => "cifar100",
        "svhn" => "svhn",
        "tinyimagenet" | "tiny-imagenet" | "tiny-imagenet-200" => "tiny-imagenet",
        "mnist" => "mnist",
        "fashion-mnist" | "fashionmnist" => "fashion-mnist",
        _ => anyhow::bail!(
            "unknown dataset `{name}`; expected cifar10, cifar100, svhn, tiny-imagenet, mnist or fashion-mnist"
        ),
    };
    Ok(canonical.to_string())
}

/// Runs `decal import`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let arch = match (&args.arch, &args.arch_config) {
        (Some(name), _) => {
            let k = args
                .num_classes
                .context("--num-classes is required with --arch")?;
            ArchConfig::preset(name, k)?
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut cfg: ArchConfig = serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid architecture config", path.display()))?;
            if let Some(k) = args.num_classes {
                cfg = cfg.with_num_classes(k);
            }
            cfg.validate()
                .with_context(|| format!("{}", path.display()))?;
            cfg
        }
        (None, None) => anyhow::bail!("give --arch (with --num-classes) or --arch-config"),
    };
    // Refuse to overwrite a finished run before doing any work.
    // Written into a staging sibling, renamed into place once complete (decal_core::output).
    let staged = decal_core::StagedDir::new(&args.out, args.force)?;
    let mut imported = import::import_with_config(&args.from, &arch, tch::Device::Cpu)?;
    let dataset = match (&args.dataset, &imported.meta.dataset) {
        (Some(d), _) | (None, Some(d)) => Some(canonical_dataset(d)?),
        (None, None) => None,
    };
    let channels = arch.input_shape().0 as usize;
    imported.meta.normalization = dataset
        .as_deref()
        .and_then(|d| seed_normalization(d, channels));
    imported.meta.dataset = dataset;
    let written = checkpoint::save(staged.path(), &imported.vs, &imported.meta)?;
    staged.commit()?;

    let source = written
        .source
        .as_ref()
        .expect("import always records its source");
    let weights = written
        .weights
        .as_ref()
        .expect("save always records the weights");
    println!("imported {} ({})", args.from.display(), source.format);
    println!(
        "  architecture: {} (F={}, K={}), {} parameters, {} tensors",
        args.arch.as_deref().unwrap_or(arch.family()),
        arch.feature_dim(),
        arch.num_classes(),
        weights.num_parameters,
        weights.num_tensors
    );
    if let Some(epoch) = written.epoch {
        println!("  epoch: {epoch}");
    }
    if let Some(seed) = written.seed {
        println!("  seed: {seed}");
    }
    if let Some(sel) = &written.selection {
        println!("  selected on: {} = {:.4}", sel.criterion, sel.value);
    }
    match (&written.dataset, &written.normalization) {
        (Some(d), Some(n)) => println!(
            "  dataset: {d}, normalisation mean {:?} std {:?}",
            n.mean, n.std
        ),
        (Some(d), None) => {
            println!("  dataset: {d} (no seed normalisation constants; none recorded)")
        }
        _ => println!("  dataset: unknown (pass --dataset to record the input normalisation)"),
    }
    for note in &imported.notes {
        println!("  note: {note}");
    }
    println!("  wrote {}", args.out.display());
    Ok(())
}
