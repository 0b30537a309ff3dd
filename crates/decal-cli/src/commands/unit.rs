//! `decal unit run --store DIR ID`: run one unit of a planned experiment (what `decal run --jobs N` and the
//! Slurm executor start, one process per unit). The unit's spec comes from `DIR/plan.json`; its inputs must
//! have completed; its completion record is written last.

use std::path::PathBuf;

use anyhow::Context;
use decal_eval::plan::exec::run_one;
use decal_eval::plan::store::Store;
use decal_eval::units::{ExecOptions, Resources};

/// `decal unit …`.
#[derive(clap::Subcommand, Debug)]
pub enum UnitCommand {
    /// Run one unit of a run directory's plan (written by `decal run`).
    Run(RunArgs),
}

/// Arguments of `decal unit run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The run directory (it holds plan.json and units/).
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// The unit's id (or a unique prefix of at least 8 hex digits).
    pub id: String,
    /// Device: cpu, cuda, cuda:<index>, mps or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// libtorch CPU threads for device units [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// libtorch CPU threads for head, temperature and scoring units.
    #[arg(long, default_value_t = 1)]
    pub head_threads: usize,
    /// Run even though some inputs have not completed (only kinds that allow it: the report).
    #[arg(long)]
    pub allow_missing: bool,
}

/// Runs `decal unit`.
pub fn run(command: UnitCommand) -> anyhow::Result<()> {
    let UnitCommand::Run(args) = command;
    let store = Store::new(&args.store);
    let plan = store.last_plan().with_context(|| {
        format!(
            "{}: no readable plan.json (run `decal run CONFIG --out {}` to plan it)",
            args.store.display(),
            args.store.display()
        )
    })?;
    let unit = plan.find(&args.id).with_context(|| {
        format!(
            "{}: no unit {} in its plan.json",
            args.store.display(),
            args.id
        )
    })?;
    let device = decal_models::device::parse(&args.device)?;
    let threads = decal_models::device::set_threads(args.threads);
    let options = ExecOptions {
        device,
        threads: Some(threads),
        head_threads: Some(args.head_threads),
        batch_siblings: false,
    };
    let started = std::time::Instant::now();
    let mut log = |line: &str| eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
    log(&format!(
        "unit {} ({}): {}",
        unit.name,
        unit.kind(),
        unit.id
    ));
    let mut resources = Resources::default();
    let record = run_one(
        &plan,
        &store,
        unit,
        &options,
        args.allow_missing,
        &mut resources,
        &mut log,
    )?;
    log(&format!(
        "unit {}: {} in {:.1}s",
        unit.name,
        serde_json::to_value(&record.outcome)?["outcome"],
        record.seconds
    ));
    Ok(())
}
