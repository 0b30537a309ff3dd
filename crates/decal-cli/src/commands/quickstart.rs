//! `decal quickstart`: the offline end-to-end demo on the bundled data (data/quickstart): a small CNN on a
//! 10,000-image Fashion-MNIST subset, then temperature scaling, TST and V-TST heads over several seeds,
//! evaluated in distribution and against an MNIST out-of-distribution set; prints the comparison table and
//! the report path.

use std::path::{Path, PathBuf};

use anyhow::bail;
use anyhow::Context;
use decal_eval::experiment::{
    BackboneConfig, DataConfig, EvalConfig, ExperimentConfig, FeaturesConfig, HeadSpec, OodSpec,
};
use decal_eval::runner::{self, Executor, RunnerOptions};
use decal_eval::units::ExecOptions;
use decal_models::heads::HeadKind;
use decal_train::losses::LossConfig;
use decal_train::stage1::Stage1Plan;
use decal_train::stage2::Selection;

/// Arguments of `decal quickstart`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Runs offline in a few minutes on a laptop CPU. Re-running reuses finished work; \
--force recomputes everything. The data and its licences are described in data/quickstart/README.md."
)]
pub struct Args {
    /// Output directory.
    #[arg(long, default_value = "runs/quickstart", value_name = "DIR")]
    pub out: PathBuf,
    /// Recompute everything, overwriting an earlier quickstart in --out.
    #[arg(long)]
    pub force: bool,
    /// Number of stage-2 seeds (each head is trained once per seed; tables show mean ± std over them).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub seeds: u64,
    /// Device: cpu, cuda, cuda:<index>, mps or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Folder with the bundled data [default: data/quickstart in the current directory or the source tree].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// libtorch CPU threads for stage 1 and feature extraction [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// libtorch CPU threads for head training and evaluation (small matrices: 1 is usually fastest on a CPU).
    #[arg(long, default_value_t = 1)]
    pub head_threads: usize,
    /// Stage-1 epochs of the CNN.
    #[arg(long, default_value_t = 12)]
    pub epochs: usize,
}

/// The bundled data folder: `--data`, else `./data/quickstart`, else the source tree's copy.
fn locate_data(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => vec![
            PathBuf::from("data/quickstart"),
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../data/quickstart"
            )),
        ],
    };
    for c in &candidates {
        if c.join("fashion-mnist")
            .join("train-images-idx3-ubyte.gz")
            .exists()
        {
            return Ok(c.clone());
        }
    }
    bail!(
        "bundled quickstart data not found (looked in {}); run from the repository root or pass --data DIR",
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
    )
}

/// The quickstart experiment.
pub fn quickstart_config(data: &Path, seeds: u64, epochs: usize) -> ExperimentConfig {
    let head = |name: &str, kind: HeadKind| HeadSpec {
        name: name.into(),
        kind,
        feature_dim: None,
        latent_dim: 128,
        mlp_size: 3,
        epochs: 40,
        batch_size: 256,
        lr: 1e-3,
        loss: LossConfig::CrossEntropy,
        train_samples: 1,
        val_samples: 10,
        selection: Selection::ValNll,
        shuffle: true,
        eval_samples: vec![1, 10],
        // The printed quickstart table keeps its rows; configs/experiments/quickstart-ts-heads.toml adds
        // the temperature-scaled head rows on the same data.
        temperature_scaling: false,
        temperature_scaling_seed_lbfgs: false,
    };
    let plan = Stage1Plan {
        model: "cnn-mnist".into(),
        epochs,
        batch_size: 128,
        lr: 1e-3,
        seed: 1,
        augment: false,
        ..Stage1Plan::default()
    };
    ExperimentConfig {
        name: "quickstart".into(),
        description: "decal quickstart: CNN on 10,000 Fashion-MNIST images (8,000 train / 2,000 validation, seed split), \
2,000 test images; OOD = 2,000 MNIST test digits. Bundled data, see data/quickstart/README.md."
            .into(),
        seeds: (0..seeds).collect(),
        data: DataConfig {
            dataset: "fashion-mnist".into(),
            dir: data.join("fashion-mnist"),
            train_fraction: None,
            split_seed: 1,
            limit_train: 0,
            limit_val: 0,
            limit_test: 0,
            allow_subset: true,
            validation: Default::default(),
            holdout_fraction: 0.2,
        },
        backbone: BackboneConfig { checkpoint: None, train: Some(plan), features: None },
        features: FeaturesConfig::default(),
        heads: vec![head("TST", HeadKind::Tst), head("V-TST", HeadKind::Vtst)],
        temperature_scaling: true,
        calibrators: Vec::new(),
        ood: vec![OodSpec {
            name: "mnist".into(),
            dataset: "mnist".into(),
            dir: data.join("mnist"),
            split: "test".into(),
            limit: 0,
            allow_subset: true,
        }],
        shift: None,
        eval: EvalConfig { bootstrap: 200, ..EvalConfig::default() },
        recipe: Default::default(),
    }
}

/// Runs `decal quickstart`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let data = locate_data(args.data.as_deref())?;
    let device = decal_models::device::parse(&args.device)?;
    let threads = decal_models::device::set_threads(args.threads);
    let config = quickstart_config(&data, args.seeds, args.epochs);
    eprintln!(
        "decal quickstart: data {}, device {}, {threads} CPU threads, {} seeds, output {}",
        data.display(),
        args.device,
        args.seeds,
        args.out.display()
    );
    let options = RunnerOptions {
        force: args.force,
        exec: ExecOptions {
            device,
            threads: Some(threads),
            head_threads: Some(args.head_threads),
            batch_siblings: true,
        },
        exe: std::env::current_exe().context("locating the decal executable")?,
        unit_args: Vec::new(),
        executor: Executor::Serial,
        keep_going: false,
    };
    let started = std::time::Instant::now();
    let mut log = |line: &str| eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
    let summary = runner::run(
        &config,
        Path::new("decal quickstart"),
        &args.out,
        &options,
        &mut log,
    )?;
    println!();
    println!("{}", summary.table_markdown);
    for w in &summary.warnings {
        println!("warning: {w}");
    }
    println!("Lower ECE / NLL / Brier is better; OOD AUROC: higher is better (MSP score, MNIST digits as OOD).");
    println!("records: {}", summary.metrics.display());
    println!("report:  {}", summary.report.display());
    println!("finished in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}
