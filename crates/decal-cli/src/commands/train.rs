//! `decal train`: stage 1, train a classifier (backbone + linear head) end to end.
//!
//! Resolution order of the run's settings: built-in defaults (the seed's recipe with its bugs fixed)
//! → dataset defaults (CIFAR-100 trains on 95 %, crop+flip only for CIFAR) → `--config FILE` → flags →
//! `--compat` switches. The result is written as the run's `config.toml` with every setting explicit,
//! and `--print-config` shows it without training.

use anyhow::{bail, Context};
use decal_train::checkpoint::EpochRecord;
use decal_train::losses::{AdaptiveMode, LossConfig};
use decal_train::optim::OptimizerConfig;
use decal_train::schedule::ScheduleConfig;
use decal_train::stage1::{self, Compat, Progress, Selection, Stage1Data, Stage1Plan, StepInfo};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `decal train`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  decal train --config configs/stage1/cnn-cifar10.toml --data-dir ../shared/datasets/cifar10-jpeg\n  \
decal train --model wrn-16-4 --dataset cifar10 --data-dir DATA --epochs 5 --limit-train 5000 --name quick\n  \
decal train --resume runs/quick            # continue after an interruption\n\n\
The run directory <out>/<name>/ receives config.toml (resolved settings), provenance.json, metrics.jsonl, \
metrics.csv, last/ (resumable state, replaced atomically every epoch), best/ (the classifier with the lowest \
validation NLL; see --selection) and summary.json when finished."
)]
pub struct Args {
    /// TOML file with any subset of the run settings (same keys as a run's config.toml); unknown keys are errors.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Architecture preset: cnn, wrn-28-10, wrn-16-4, wrn-<depth>-<width>, resnet18, resnet50,
    /// efficientnet-b5-seed, vit-b16, … [default: cnn]
    #[arg(long, alias = "arch", value_name = "PRESET")]
    pub model: Option<String>,
    /// Dataset: cifar10, cifar100, svhn, tiny-imagenet, mnist, fashion-mnist, imagefolder [default: cifar10].
    #[arg(long)]
    pub dataset: Option<String>,
    /// Folder holding the dataset in one of its official layouts (for CIFAR-10 also an ImageFolder tree
    /// with train/ and test/).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Training loss: ce (cross-entropy), fl (focal, fixed gamma), fla (adaptive focal), ls (label smoothing)
    /// [default: ce].
    #[arg(long, value_enum)]
    pub loss: Option<LossKind>,
    /// Focal-loss gammas (fl uses the first; fla one per threshold), e.g. `--gammas 5 3`.
    #[arg(long, num_args = 1.., value_name = "G")]
    pub gammas: Option<Vec<f64>>,
    /// Adaptive-focal thresholds on p_t, parallel to --gammas, e.g. `--probs 0.2 1` (seed FLSD-53).
    #[arg(long, num_args = 1.., value_name = "P")]
    pub probs: Option<Vec<f64>>,
    /// Label-smoothing epsilon in [0, 1) for `--loss ls` (PyTorch cross_entropy label_smoothing semantics).
    #[arg(long, value_name = "EPS")]
    pub label_smoothing: Option<f64>,
    /// Number of epochs [default: 10; the seed trains bases for 600].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Training batch size [default: 256, the seed's].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate [default: 1e-4, the seed's].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimiser: adam (seed; coupled L2 decay), adamw (decoupled decay, default 0.01), sgd (momentum 0.9,
    /// decay 5e-4 unless given) [default: adam].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Use Nesterov momentum (SGD).
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay of the optimiser (coupled for adam/sgd, decoupled for adamw).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Explicit L2 penalty lambda·sum(theta^2) added to the loss (equivalent to coupled decay 2·lambda).
    #[arg(long, value_name = "LAMBDA")]
    pub l2: Option<f64>,
    /// Learning-rate schedule: constant (seed), cosine (per step, to --min-lr), multi-step (x --lr-gamma at
    /// each of --milestones epochs).
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleKind>,
    /// Final learning rate of the cosine schedule [default: 0].
    #[arg(long)]
    pub min_lr: Option<f64>,
    /// Epochs (0-based) at which multi-step decays, comma-separated, e.g. `100,150`.
    #[arg(long, value_delimiter = ',')]
    pub milestones: Option<Vec<usize>>,
    /// Decay factor of multi-step [default: 0.1].
    #[arg(long)]
    pub lr_gamma: Option<f64>,
    /// Linear learning-rate warm-up in epochs before the schedule (fractions allowed) [default: 0].
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// Clip gradients to this global L2 norm (0 = off, the seed's behaviour).
    #[arg(long, value_name = "NORM")]
    pub clip_grad: Option<f64>,
    /// Checkpoint selection: val-nll (default; the authors' recommendation), val-loss (the seed's criterion) or
    /// last (no selection: best/ holds the final epoch's weights).
    #[arg(long, value_enum)]
    pub selection: Option<SelectionKind>,
    /// Early stopping: stop after this many epochs without improvement (0 = never, the seed's behaviour).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Training seed: weight init, shuffling, augmentation, dropout [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Device: cpu, cuda, cuda:<i>, auto [default: cpu].
    #[arg(long)]
    pub device: Option<String>,
    /// libtorch CPU threads (0 = all cores) [default: 0].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Training precision: fp32 (the seed's), bf16 (bfloat16 autocast of the forward pass: about 2.5x
    /// faster on CPUs with AMX and on recent GPUs), fp16 (float16 autocast with dynamic loss scaling; CUDA
    /// only). Parameters, optimiser state, loss, validation and evaluation stay float32 [default: fp32].
    #[arg(long, value_name = "P")]
    pub precision: Option<String>,
    /// Root folder of run directories [default: runs].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run name; the run directory is <out>/<name> [default: <model>-<dataset>-<loss>-seed<seed>].
    #[arg(long)]
    pub name: Option<String>,
    /// Continue the run in this directory from its last complete epoch (after Ctrl-C, kill -9, a crash).
    /// Settings come from its config.toml; only --epochs (to extend), --device and --threads may be given.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "force"])]
    pub resume: Option<PathBuf>,
    /// Overwrite an existing run directory.
    #[arg(long)]
    pub force: bool,
    /// Train on only N images of the training part, evenly spaced over its random order (quick runs); 0 = all.
    #[arg(long, value_name = "N")]
    pub limit_train: Option<usize>,
    /// Validate on only N images of the validation part, chosen the same way; 0 = all.
    #[arg(long, value_name = "N")]
    pub limit_val: Option<usize>,
    /// Reproduce seed behaviours, comma-separated: seed-unshuffled (BUG-5), seed-augmented-val (BUG-6),
    /// seed-val-loss (select on validation loss), seed-focal (BUG-10 kept), seed (all).
    #[arg(long, value_name = "LIST")]
    pub compat: Option<String>,
    /// Print the resolved config.toml and exit without training.
    #[arg(long)]
    pub print_config: bool,
}

/// `--loss` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Cross-entropy.
    Ce,
    /// Focal loss with a fixed gamma.
    Fl,
    /// Adaptive focal loss.
    Fla,
    /// Label smoothing.
    Ls,
}

/// `--optimizer` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    /// Adam (coupled L2 weight decay).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
    /// SGD with momentum.
    Sgd,
}

/// `--schedule` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleKind {
    /// Constant learning rate.
    Constant,
    /// Cosine annealing per step.
    Cosine,
    /// Step decay at milestone epochs.
    MultiStep,
}

/// `--selection` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectionKind {
    /// Validation negative log-likelihood.
    ValNll,
    /// Validation value of the training criterion.
    ValLoss,
    /// The final epoch (no selection).
    Last,
}

/// Runs `decal train`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (plan, run_dir, resume) = match &args.resume {
        Some(dir) => resume_plan(&args, dir)?,
        None => {
            let plan = resolve_plan(&args)?;
            let run_dir = args
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs"))
                .join(&plan.name);
            (plan, run_dir, false)
        }
    };
    // Fail before working: the whole plan (keys, dataset, model, data directory) is checked before any
    // directory is created or data loaded; errors name the config file (or flag) and the key.
    let origin = match (&args.resume, &args.config) {
        (Some(dir), _) => dir.join(stage1::files::CONFIG).display().to_string(),
        (None, Some(config)) => config.display().to_string(),
        (None, None) => format!("run {}", run_dir.display()),
    };
    plan.validate()
        .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    if args.print_config {
        print!("{}", plan.to_toml()?);
        return Ok(());
    }
    check_plan_inputs(&plan, &args, &origin)?;
    // Device and precision are checked before anything is written.
    let device = decal_models::device::parse(&plan.device)?;
    plan.precision
        .check_device(device)
        .map_err(|e| anyhow::anyhow!("run {}: {e}", run_dir.display()))?;
    // A run directory this command creates is removed again if it fails before writing anything into it
    // (e.g. the data cannot be read): no empty directories are left behind.
    let mut created = decal_core::output::CreatedDirs::default();
    if !resume {
        decal_core::output::check_output_dir(&run_dir, args.force)?;
        created.create_all(&run_dir)?;
        decal_core::prepare_output_dir(&run_dir, args.force)?;
        if args.force {
            remove_previous_outputs(&run_dir)?;
        }
    }
    let threads = decal_models::device::set_threads(if plan.threads == 0 {
        None
    } else {
        Some(plan.threads)
    });
    let mut progress = CliProgress::new();
    progress.message(&format!(
        "decal train: {} on {} ({}), device {:?}, precision {}, {} CPU threads, run dir {}",
        plan.model,
        plan.dataset,
        plan.data_dir.display(),
        device,
        plan.precision,
        threads,
        run_dir.display()
    ));
    let data = Stage1Data::load(&plan)
        .with_context(|| format!("loading {} from {}", plan.dataset, plan.data_dir.display()))?;
    progress.message(&format!(
        "data: {} training images, {} validation images, {} classes",
        data.train_indices.len(),
        data.val_indices.len(),
        data.set.num_classes()
    ));
    let summary = stage1::train(&plan, &data, &run_dir, device, resume, &mut progress)?;
    created.keep();
    progress.finish();
    println!(
        "done: best epoch {}/{} ({} {:.4}), val accuracy {:.2} %, val NLL {:.4}, val ECE {:.2} %; best checkpoint {}",
        summary.best_epoch + 1,
        summary.epochs_run,
        match summary.selection {
            Selection::ValNll => "val NLL",
            Selection::ValLoss => "val loss",
            Selection::Last => "final epoch, val NLL",
        },
        summary.best_value,
        100.0 * summary.best.val_accuracy,
        summary.best.val_nll,
        100.0 * summary.best.val_ece,
        run_dir.join(stage1::files::BEST).display()
    );
    Ok(())
}

/// Checks what `Stage1Plan::validate` cannot without the file system or the model zoo: the dataset name,
/// the model preset (its architecture), and that the data directory exists. A key set by a flag is named
/// as the flag, one from the config file as `FILE: key`.
fn check_plan_inputs(plan: &Stage1Plan, args: &Args, origin: &str) -> anyhow::Result<()> {
    let name = |flag_given: bool, flag: &str, key: &str| {
        if flag_given {
            flag.to_string()
        } else {
            format!("{origin}: {key}")
        }
    };
    decal_data::DatasetName::parse(&plan.dataset).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}",
            name(args.dataset.is_some(), "--dataset", "dataset")
        )
    })?;
    decal_models::ArchConfig::preset(&plan.model, 10)
        .map_err(|e| anyhow::anyhow!("{}: {e}", name(args.model.is_some(), "--model", "model")))?;
    if !plan.data_dir.is_dir() {
        bail!(
            "{}: {} does not exist or is not a directory",
            name(args.data_dir.is_some(), "--data-dir", "data_dir"),
            plan.data_dir.display()
        );
    }
    Ok(())
}

/// Removes what a previous run wrote into `run_dir` (only decal's own file names), for `--force`.
fn remove_previous_outputs(run_dir: &Path) -> anyhow::Result<()> {
    for name in [
        "last",
        "last.prev",
        ".last.tmp",
        "best",
        "best.prev",
        ".best.tmp",
    ] {
        let p = run_dir.join(name);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    for name in [
        stage1::files::SUMMARY,
        stage1::files::METRICS_JSONL,
        stage1::files::METRICS_CSV,
    ] {
        let p = run_dir.join(name);
        if p.is_file() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

fn resume_plan(args: &Args, dir: &Path) -> anyhow::Result<(Stage1Plan, PathBuf, bool)> {
    let config = dir.join(stage1::files::CONFIG);
    if !config.is_file() {
        bail!(
            "{}: not a decal stage-1 run directory (no config.toml)",
            dir.display()
        );
    }
    if args.out.is_some() {
        bail!(
            "{}: cannot change --out when resuming (the run directory is the one given to --resume)",
            dir.display()
        );
    }
    // A run directory from another decal version is refused (its files may mean something else).
    let provenance = dir.join(stage1::files::PROVENANCE);
    if provenance.is_file() {
        decal_core::run_version::check_file(&provenance, "/decal_version")
            .map_err(anyhow::Error::msg)?;
    }
    let mut plan = Stage1Plan::read(&config)?;
    // What the given flags would make of the run's plan: any key outside stage1::RESUMABLE_KEYS that they
    // change is refused (derived from the plan's fields, not a list of flags).
    let mut probe = plan.clone();
    apply_flags(&mut probe, args)?;
    if args.data_dir.is_some() {
        if let Ok(abs) = std::fs::canonicalize(&probe.data_dir) {
            probe.data_dir = abs;
        }
    }
    if let Some(list) = &args.compat {
        let compat = Compat::parse_list(list).map_err(|e| anyhow::anyhow!("--compat: {e}"))?;
        probe.apply_compat(&compat);
    }
    let changed = plan.changed_keys(&probe)?;
    if !changed.is_empty() {
        let flags = flag_names();
        let named: Vec<String> = changed
            .iter()
            .map(|k| {
                let flag = format!("--{}", k.replace('_', "-"));
                if flags.contains(&flag) {
                    flag
                } else {
                    format!("{k} (via --compat)")
                }
            })
            .collect();
        bail!(
            "{}: cannot change {} when resuming (only {}); start a new run instead",
            dir.display(),
            named.join(", "),
            stage1::RESUMABLE_KEYS
                .iter()
                .map(|k| format!("--{k}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let finished = dir.join(stage1::files::SUMMARY).is_file();
    if let Some(epochs) = args.epochs {
        if epochs < plan.epochs {
            bail!(
                "{}: --epochs {epochs} is fewer than the run's {} epochs",
                dir.display(),
                plan.epochs
            );
        }
        if epochs > plan.epochs {
            plan.epochs = epochs;
            decal_core::write_atomic(&config, plan.to_toml()?.as_bytes())?;
            if finished {
                std::fs::remove_file(dir.join(stage1::files::SUMMARY))?;
            }
        }
    } else if finished {
        bail!(
            "{}: the run already finished ({} epochs); pass --epochs N (N > {}) to extend it",
            dir.display(),
            plan.epochs,
            plan.epochs
        );
    }
    if let Some(d) = &args.device {
        plan.device = d.clone();
    }
    if let Some(t) = args.threads {
        plan.threads = t;
    }
    Ok((plan, dir.to_path_buf(), true))
}

/// The long flags of `decal train` (`--lr`, …), from its clap definition.
fn flag_names() -> Vec<String> {
    use clap::CommandFactory;
    #[derive(clap::Parser)]
    struct Train {
        #[command(flatten)]
        args: Args,
    }
    Train::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect()
}

/// Builds the plan: defaults → dataset defaults → config file (`Stage1Plan::resolve`) → flags → compat
/// switches.
pub fn resolve_plan(args: &Args) -> anyhow::Result<Stage1Plan> {
    let file_table: Option<toml::Table> =
        match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Some(toml::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("{}: {}", path.display(), one_line(&e.to_string()))
                })?)
            }
            None => None,
        };
    let file_has_name = file_table.as_ref().is_some_and(|t| t.contains_key("name"));
    let mut plan = Stage1Plan::default();
    if let Some(ds) = args.dataset.clone().or_else(|| {
        file_table
            .as_ref()
            .and_then(|t| t.get("dataset"))
            .and_then(|v| v.as_str().map(String::from))
    }) {
        plan.dataset = ds;
    }
    // The one resolution shared with `decal run` (defaults → dataset defaults → the config file).
    let origin = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("(command line)"));
    plan = Stage1Plan::resolve(&plan.dataset, file_table.unwrap_or_default(), &origin)?;
    apply_flags(&mut plan, args)?;
    // An absolute data path keeps `--resume` working from any working directory.
    if let Ok(abs) = std::fs::canonicalize(&plan.data_dir) {
        plan.data_dir = abs;
    }
    if let Some(list) = &args.compat {
        let compat = Compat::parse_list(list).map_err(|e| anyhow::anyhow!("--compat: {e}"))?;
        plan.apply_compat(&compat);
    }
    if args.name.is_none() && !file_has_name {
        plan.name = format!(
            "{}-{}-{}-seed{}",
            plan.model,
            stage1::canonical_dataset(&plan.dataset),
            plan.loss.short_name(),
            plan.seed
        );
    }
    Ok(plan)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn apply_flags(plan: &mut Stage1Plan, a: &Args) -> anyhow::Result<()> {
    // The flag wins over a `dataset` key of the config file (whose dataset defaults it already chose).
    if let Some(v) = &a.dataset {
        plan.dataset = v.clone();
    }
    if let Some(v) = &a.model {
        plan.model = v.clone();
    }
    if let Some(v) = &a.data_dir {
        plan.data_dir = v.clone();
    }
    if let Some(v) = a.epochs {
        plan.epochs = v;
    }
    if let Some(v) = a.batch_size {
        plan.batch_size = v;
    }
    if let Some(v) = a.lr {
        plan.lr = v;
    }
    if let Some(v) = a.seed {
        plan.seed = v;
    }
    if let Some(v) = &a.device {
        plan.device = v.clone();
    }
    if let Some(v) = a.threads {
        plan.threads = v;
    }
    if let Some(v) = &a.precision {
        plan.precision = decal_train::precision::Precision::parse(v)
            .map_err(|e| anyhow::anyhow!("--precision: {e}"))?;
    }
    if let Some(v) = &a.name {
        plan.name = v.clone();
    }
    if let Some(v) = a.limit_train {
        plan.limit_train = v;
    }
    if let Some(v) = a.limit_val {
        plan.limit_val = v;
    }
    if let Some(v) = a.warmup_epochs {
        plan.warmup_epochs = v;
    }
    if let Some(v) = a.clip_grad {
        plan.clip_grad = v;
    }
    if let Some(v) = a.l2 {
        plan.l2 = v;
    }
    if let Some(v) = a.patience {
        plan.patience = v;
    }
    if let Some(v) = a.selection {
        plan.selection = match v {
            SelectionKind::ValLoss => Selection::ValLoss,
            SelectionKind::ValNll => Selection::ValNll,
            SelectionKind::Last => Selection::Last,
        };
    }
    // Loss.
    if let Some(kind) = a.loss {
        plan.loss = match kind {
            LossKind::Ce => LossConfig::CrossEntropy,
            LossKind::Fl => {
                let g = a.gammas.as_ref().and_then(|g| g.first().copied());
                let gamma = g.context("--loss fl needs --gammas (e.g. --gammas 3 --probs 1)")?;
                LossConfig::Focal { gamma }
            }
            LossKind::Fla => {
                let gammas = a.gammas.clone().context(
                    "--loss fla needs --gammas and --probs (e.g. --gammas 5 3 --probs 0.2 1)",
                )?;
                let probs = a
                    .probs
                    .clone()
                    .context("--loss fla needs --probs (e.g. --probs 0.2 1)")?;
                LossConfig::AdaptiveFocal {
                    gammas,
                    probs,
                    mode: AdaptiveMode::Fixed,
                }
            }
            LossKind::Ls => {
                let epsilon = a
                    .label_smoothing
                    .context("--loss ls needs --label-smoothing EPS")?;
                LossConfig::LabelSmoothing { epsilon }
            }
        };
    } else if a.gammas.is_some() || a.probs.is_some() || a.label_smoothing.is_some() {
        bail!("--gammas, --probs and --label-smoothing need --loss fl, fla or ls");
    }
    // Optimiser.
    if let Some(kind) = a.optimizer {
        plan.optimizer = match kind {
            OptimizerKind::Adam => OptimizerConfig::seed_adam(),
            OptimizerKind::Adamw => OptimizerConfig::adamw(0.01),
            OptimizerKind::Sgd => OptimizerConfig::sgd(0.9, false, 5e-4),
        };
    }
    match &mut plan.optimizer {
        OptimizerConfig::Sgd {
            momentum,
            nesterov,
            weight_decay,
            ..
        } => {
            if let Some(m) = a.momentum {
                *momentum = m;
            }
            if a.nesterov {
                *nesterov = true;
            }
            if let Some(w) = a.weight_decay {
                *weight_decay = w;
            }
        }
        OptimizerConfig::Adam { weight_decay, .. }
        | OptimizerConfig::AdamW { weight_decay, .. } => {
            if a.momentum.is_some() || a.nesterov {
                bail!("--momentum and --nesterov apply to --optimizer sgd only");
            }
            if let Some(w) = a.weight_decay {
                *weight_decay = w;
            }
        }
    }
    // Schedule.
    if let Some(kind) = a.schedule {
        plan.schedule = match kind {
            ScheduleKind::Constant => ScheduleConfig::Constant,
            ScheduleKind::Cosine => ScheduleConfig::Cosine { min_lr: 0.0 },
            ScheduleKind::MultiStep => ScheduleConfig::MultiStep {
                milestones: Vec::new(),
                gamma: 0.1,
            },
        };
    }
    match &mut plan.schedule {
        ScheduleConfig::Cosine { min_lr } => {
            if let Some(v) = a.min_lr {
                *min_lr = v;
            }
        }
        ScheduleConfig::MultiStep { milestones, gamma } => {
            if let Some(v) = &a.milestones {
                *milestones = v.clone();
            }
            if let Some(v) = a.lr_gamma {
                *gamma = v;
            }
            if milestones.is_empty() {
                bail!("--schedule multi-step needs --milestones (e.g. --milestones 100,150)");
            }
        }
        ScheduleConfig::Constant => {}
    }
    if a.min_lr.is_some() && !matches!(plan.schedule, ScheduleConfig::Cosine { .. }) {
        bail!("--min-lr applies to --schedule cosine only");
    }
    if (a.milestones.is_some() || a.lr_gamma.is_some())
        && !matches!(plan.schedule, ScheduleConfig::MultiStep { .. })
    {
        bail!("--milestones and --lr-gamma apply to --schedule multi-step only");
    }
    Ok(())
}

/// Live progress bar on a terminal; plain log lines otherwise.
struct CliProgress {
    tty: bool,
    started: Instant,
    last_draw: Option<Instant>,
    epochs_done_in_session: usize,
    steps_done_in_session: u64,
    next_log_step: usize,
}

impl CliProgress {
    fn new() -> Self {
        CliProgress {
            tty: std::io::stdout().is_terminal(),
            started: Instant::now(),
            last_draw: None,
            epochs_done_in_session: 0,
            steps_done_in_session: 0,
            next_log_step: 0,
        }
    }

    fn finish(&mut self) {
        let _ = std::io::stdout().flush();
    }
}

fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

impl Progress for CliProgress {
    fn message(&mut self, text: &str) {
        println!("{text}");
    }

    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, steps: usize) {
        self.next_log_step = (steps / 4).max(1);
    }

    fn step(&mut self, s: &StepInfo) {
        self.steps_done_in_session += 1;
        let elapsed = self.started.elapsed().as_secs_f64();
        let per_step = elapsed / self.steps_done_in_session as f64;
        let remaining_steps =
            (s.steps - s.step - 1) as f64 + ((s.epochs - s.epoch - 1) * s.steps) as f64;
        let eta = per_step * remaining_steps;
        let line = format!(
            "epoch {}/{} step {}/{} loss {:.4} acc {:.2}% lr {:.3e} {:.0} img/s ETA {}",
            s.epoch + 1,
            s.epochs,
            s.step + 1,
            s.steps,
            s.loss,
            100.0 * s.accuracy,
            s.lr,
            s.images_per_sec,
            hms(eta)
        );
        if self.tty {
            let now = Instant::now();
            if self
                .last_draw
                .is_none_or(|t| now.duration_since(t).as_millis() >= 100)
                || s.step + 1 == s.steps
            {
                let width = 30usize;
                let filled = ((s.step + 1) * width) / s.steps.max(1);
                print!(
                    "\r[{}{}] {line}\x1b[K",
                    "#".repeat(filled),
                    "-".repeat(width - filled)
                );
                let _ = std::io::stdout().flush();
                self.last_draw = Some(now);
            }
        } else if s.step + 1 >= self.next_log_step && s.step + 1 < s.steps {
            println!("{line}");
            self.next_log_step += (s.steps / 4).max(1);
        }
    }

    fn epoch_end(&mut self, r: &EpochRecord) {
        self.epochs_done_in_session += 1;
        if self.tty {
            print!("\r\x1b[K");
        }
        println!(
            "epoch {} done: train loss {:.4} acc {:.2}% | val loss {:.4} NLL {:.4} acc {:.2}% ECE {:.2}% | {:.1}s, {:.0} img/s{}",
            r.epoch + 1,
            r.train_loss,
            100.0 * r.train_accuracy,
            r.val_loss,
            r.val_nll,
            100.0 * r.val_accuracy,
            100.0 * r.val_ece,
            r.seconds,
            r.train_images_per_sec,
            if r.is_best { " (best)" } else { "" }
        );
    }
}
