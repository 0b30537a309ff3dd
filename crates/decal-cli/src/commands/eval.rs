//! `decal eval`: evaluate a trained or imported classifier checkpoint on a dataset split.
//!
//! Batched inference (eval mode: BatchNorm on running statistics, dropout off; no gradients), inputs
//! normalised with the constants recorded in the checkpoint (else the seed's for the dataset), then the
//! same metrics and JSON keys as `decal metrics` (`decal_metrics::summary::evaluate` under a named
//! profile) computed from the logits in f64.

use anyhow::{bail, Context};
use decal_metrics::profile::Profile;
use decal_metrics::summary::{evaluate, PredictionInput};
use decal_train::stage1::{predict_logits, DeviceImages};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `decal eval`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  decal eval --checkpoint runs/cnn-cifar10-ce-seed0/best --dataset cifar10 \
--data-dir ../shared/datasets/cifar10-jpeg --profile paper --json test.json --save-logits test_logits.npy"
)]
pub struct Args {
    /// A decal checkpoint directory (config.json + model.safetensors): a run's best/, or the output of
    /// `decal import`.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Dataset (cifar10, cifar100, svhn, tiny-imagenet, mnist, fashion-mnist, imagefolder) [default: the
    /// dataset recorded in the checkpoint].
    #[arg(long)]
    pub dataset: Option<String>,
    /// Folder holding the dataset in one of its official layouts.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Split to evaluate: test, train, val, seed-test, ….
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Metric profile: paper (the seed's definitions: 10 torchmetrics bins, sklearn-clipped NLL, …) or
    /// default (15 bins, exact NLL).
    #[arg(long, default_value = "paper")]
    pub profile: String,
    /// Write the metric summary (the same JSON as `decal metrics`) to this file.
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// Write the logits [N, K] as float32 .npy (row i = image i of the split, in the reader's order).
    #[arg(long, value_name = "OUT.npy")]
    pub save_logits: Option<PathBuf>,
    /// Write the labels [N] as int64 .npy, aligned with --save-logits.
    #[arg(long, value_name = "OUT.npy")]
    pub save_labels: Option<PathBuf>,
    /// Inference batch size (does not change results; the seed uses 512).
    #[arg(long, default_value_t = 512)]
    pub batch_size: usize,
    /// Evaluate only N images of the split, evenly spaced over its order so a class-ordered copy keeps
    /// every class (0 = all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub limit: usize,
    /// Device: cpu, cuda, cuda:<i>, auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// libtorch CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Replace existing --json / --save-logits / --save-labels files (without it an existing file is
    /// refused before any work; the outputs are renamed into place together once all are written).
    #[arg(long)]
    pub force: bool,
}

/// Runs `decal eval`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be >= 1");
    }
    let profile = Profile::by_name(&args.profile).with_context(|| {
        format!(
            "--profile {}: unknown profile (expected paper or default)",
            args.profile
        )
    })?;
    // The output policy (decal_core::output): existing outputs are refused before any work.
    let mut outputs = decal_core::OutputFiles::new(args.force);
    for p in [&args.json, &args.save_logits, &args.save_labels]
        .into_iter()
        .flatten()
    {
        outputs.claim(p)?;
    }
    decal_models::device::set_threads(if args.threads == 0 {
        None
    } else {
        Some(args.threads)
    });
    let device = decal_models::device::parse(&args.device)?;
    let loaded = decal_models::checkpoint::load(&args.checkpoint, device)?;
    let meta = &loaded.meta;
    let dataset_name = match (&args.dataset, &meta.dataset) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => bail!(
            "{}: the checkpoint records no dataset; pass --dataset",
            args.checkpoint.display()
        ),
    };
    let dataset = decal_data::DatasetName::parse(&dataset_name)?;
    let split = decal_data::SplitName::parse(&args.split)?;
    let mut set = decal_data::load(dataset, &args.data_dir, split)
        .with_context(|| format!("loading {dataset} {split} from {}", args.data_dir.display()))?;
    if args.limit > 0 && args.limit < set.len() {
        let idx = decal_data::split::evenly_spaced(set.len(), args.limit);
        set = set.subset(&idx, format!("{} ({} evenly spaced)", set.name, args.limit))?;
    }
    let (mean, std) = match &meta.normalization {
        Some(n) => (
            n.mean.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            n.std.iter().map(|&v| v as f32).collect(),
        ),
        None => {
            // The one rule (decal_data::transforms::Normalize::for_dataset), as `decal run` reads such a
            // checkpoint: what `decal train` would have recorded for this dataset.
            let n = decal_data::transforms::Normalize::for_dataset(
                &dataset_name,
                meta.arch.input_shape().0 as usize,
            );
            eprintln!(
                "note: {} records no input normalisation; using mean {:?} std {:?} ({dataset}, as decal train records it)",
                args.checkpoint.display(),
                n.mean,
                n.std
            );
            (n.mean, n.std)
        }
    };
    let (channels, size) = meta.arch.input_shape();
    if set.channels as i64 != channels || mean.len() != set.channels {
        bail!(
            "{}: the model expects {channels}-channel input (normalisation for {} channels) but {} has {} channels",
            args.checkpoint.display(),
            mean.len(),
            set.name,
            set.channels
        );
    }
    if let Some(s) = size {
        if set.height as i64 != s || set.width as i64 != s {
            bail!(
                "{}: the model expects {s}x{s} images but {} has {}x{}",
                args.checkpoint.display(),
                set.name,
                set.height,
                set.width
            );
        }
    }
    let k = loaded.classifier.num_classes() as usize;
    if set.num_classes() > k {
        bail!(
            "{}: the model has {k} classes but {} has {}",
            args.checkpoint.display(),
            set.name,
            set.num_classes()
        );
    }

    let started = Instant::now();
    let images = DeviceImages::new(&set, &mean, &std, device);
    let indices: Vec<usize> = (0..set.len()).collect();
    let (logits, labels) =
        predict_logits(&loaded.classifier, &images, &indices, args.batch_size, None);
    let secs = started.elapsed().as_secs_f64();
    let logits: Vec<f32> = Vec::<f32>::try_from(&logits.contiguous().view([-1]))?;
    let labels: Vec<i64> = Vec::<i64>::try_from(&labels)?;
    let n = labels.len();
    let input = PredictionInput::logits_f32(&logits, k, &labels).with_context(|| {
        format!(
            "{}: the model produced invalid logits",
            args.checkpoint.display()
        )
    })?;
    let summary = evaluate(&input, &profile);

    println!(
        "{} on {} ({} images, {:.1}s, {:.0} img/s), profile {}:",
        args.checkpoint.display(),
        set.name,
        n,
        secs,
        n as f64 / secs.max(1e-9),
        args.profile
    );
    println!(
        "  accuracy {:.2} %  ECE {:.2} %  MCE {:.2} %  NLL {:.4}  Brier {:.4}  Brier/K {:.5}",
        100.0 * summary.accuracy,
        100.0 * summary.ece,
        100.0 * summary.mce,
        summary.nll,
        summary.brier,
        summary.brier_div_k
    );
    if let Some(path) = &args.json {
        decal_core::write_json_atomic(&outputs.staged(path)?, &summary)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.save_logits {
        let staged = outputs.staged(path)?;
        decal_io::npy::write(
            &staged,
            &decal_io::npy::NpyArray::from_f32(vec![n, k], logits),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.save_labels {
        let staged = outputs.staged(path)?;
        decal_io::npy::write(&staged, &decal_io::npy::NpyArray::from_i64(vec![n], labels))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    for path in outputs.commit()? {
        let what = if Some(&path) == args.json.as_ref() {
            "summary"
        } else if Some(&path) == args.save_logits.as_ref() {
            "logits"
        } else {
            "labels"
        };
        println!("  {what} written to {}", path.display());
    }
    Ok(())
}
