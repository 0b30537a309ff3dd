//! `decal heads`: TST / V-TST / REINIT heads over several seeds, temperature-scaled, on features saved from
//! any model (`.npy`, `.npz`, safetensors), evaluated like `decal run`, exported for PyTorch.
//!
//! The command builds an experiment config with `[backbone] features = { … }` (every head option is a key
//! of `[[heads]]`, [`decal_eval::experiment::HeadSpec`], with its defaults) and runs it as a plan of units
//! ([`decal_eval::runner`], serially) into a staging sibling of `--out`; then it exports every seed's head
//! ([`decal_models::export`]: `head/seed-<s>/model.safetensors` + `head/model.py`) and renames the
//! directory into place. `--save-probs` and `--json` are written at the same time, all or nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use decal_core::{OutputFiles, StagedDir};
use decal_eval::experiment::{self, slug, ExperimentConfig};
use decal_eval::feature_files::FeatureFiles;
use decal_eval::plan::store::Store;
use decal_eval::plan::Plan;
use decal_eval::runner::{self, Executor, RunnerOptions};
use decal_eval::units::ExecOptions;
use decal_models::heads::HeadKind;

/// Arguments of `decal heads`.
#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Training features [N, F] (float16/32/64): F.npy, F.npz[:name] or F.safetensors[:name].
    #[arg(long, value_name = "FILE")]
    pub train_features: PathBuf,
    /// Training labels [N] (integers in [0, K)).
    #[arg(long, value_name = "FILE")]
    pub train_labels: PathBuf,
    /// Validation features: head checkpoint selection and temperature fits.
    #[arg(long, value_name = "FILE")]
    pub val_features: PathBuf,
    /// Validation labels.
    #[arg(long, value_name = "FILE")]
    pub val_labels: PathBuf,
    /// Test features.
    #[arg(long, value_name = "FILE")]
    pub test_features: PathBuf,
    /// Test labels.
    #[arg(long, value_name = "FILE")]
    pub test_labels: PathBuf,
    /// Out-of-distribution features, NAME=FILE (repeatable).
    #[arg(long, value_name = "NAME=FILE")]
    pub ood_features: Vec<String>,
    /// The model's own test logits [N, K]: adds the Baseline row (the features' own linear classifier).
    #[arg(long, value_name = "FILE")]
    pub test_logits: Option<PathBuf>,
    /// The model's validation logits: adds the baseline's TS and TS (seed LBFGS) rows.
    #[arg(long, value_name = "FILE")]
    pub val_logits: Option<PathBuf>,
    /// The model's training logits (the baseline's train NLL, with --val-logits).
    #[arg(long, value_name = "FILE")]
    pub train_logits: Option<PathBuf>,
    /// The model's logits on an OOD set, NAME=FILE (the baseline's OOD detection; repeatable).
    #[arg(long, value_name = "NAME=FILE")]
    pub ood_logits: Vec<String>,
    /// Augmented views of the training features: a stack [A, N, F] (.npy, .npz:name, .safetensors:name), a
    /// folder of per-view [N, F] .npy files, or a decal view cache; each epoch every training row is
    /// replaced by one of its views.
    #[arg(long, value_name = "DIR_OR_FILE")]
    pub train_views: Option<PathBuf>,
    /// K [default: the logits' width, else the largest label + 1].
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Dataset name in records and the report.
    #[arg(long, default_value = "features")]
    pub dataset: String,
    /// Which head: tst, vtst or reinit.
    #[arg(long, value_parser = ["tst", "vtst", "reinit"])]
    pub head: String,
    /// Row name in tables [default: TST, V-TST or REINIT].
    #[arg(long)]
    pub name: Option<String>,
    /// Stage-2 seeds, comma-separated.
    #[arg(long, default_value = "0,1,2", value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Z, the latent width [[heads] default: 128].
    #[arg(long)]
    pub latent_dim: Option<i64>,
    /// Linear layers of the whole head: 3, 4 or 5 [default: 3].
    #[arg(long)]
    pub mlp_size: Option<usize>,
    /// Epochs [default: 40].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size [default: 256].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Adam learning rate [default: 1e-4].
    #[arg(long)]
    pub lr: Option<f64>,
    /// V-TST training samples S [default: 1].
    #[arg(long)]
    pub train_samples: Option<usize>,
    /// V-TST samples of the validation predictive used for checkpoint selection [default: 10].
    #[arg(long)]
    pub val_samples: Option<usize>,
    /// V-TST test-time sample counts m, one row each; 0 = decode the mean latent [default: 1,10].
    #[arg(long, value_delimiter = ',')]
    pub eval_samples: Option<Vec<usize>>,
    /// Checkpoint selection: val-nll or seed-loss [default: val-nll].
    #[arg(long)]
    pub selection: Option<String>,
    /// Keep the training order fixed across epochs (the seed's BUG-5).
    #[arg(long)]
    pub no_shuffle: bool,
    /// Stage-2 loss as a TOML value, e.g. 'ce', '{ fl = { gamma = 3.0 } }' (as `loss` in [[heads]]).
    #[arg(long)]
    pub loss: Option<String>,
    /// Do not temperature-scale the head (by default every row also gets a "TS + <row>" row).
    #[arg(long)]
    pub no_temperature_scaling: bool,
    /// Also the seed's single-sample LBFGS temperature fit for TST / REINIT / V-TST m=1.
    #[arg(long)]
    pub ts_seed_lbfgs: bool,
    /// Any other [[heads]] key, KEY=TOML-VALUE (repeatable), e.g. --head-option 'latent_dim=64'.
    #[arg(long, value_name = "KEY=VALUE")]
    pub head_option: Vec<String>,
    /// Metric profiles, the first primary.
    #[arg(long, default_value = "default,paper", value_delimiter = ',')]
    pub profiles: Vec<String>,
    /// Bootstrap resamples for the in-distribution intervals (0 = none).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Base seed of V-TST evaluation sampling and of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub eval_seed: u64,
    /// Output directory [default: runs/heads-<head>]; refused when not empty unless --force.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write the test probabilities of the head's calibrated row (TS + the last row; without TS the
    /// last row) as float32 [seeds, N, K] .npy.
    #[arg(long, value_name = "FILE")]
    pub save_probs: Option<PathBuf>,
    /// Also write a JSON summary: the table's rows (mean ± std, n), the exported heads and temperatures.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Replace existing outputs.
    #[arg(long)]
    pub force: bool,
    /// Device: cpu, cuda, cuda:<index>, mps or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// libtorch CPU threads for head training and evaluation.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Only print the experiment config the command runs, and exit.
    #[arg(long)]
    pub print_config: bool,
}

const AFTER_HELP: &str = "\
Example (the seed CNN's features, extracted in PyTorch by scripts/extract_features.py; README \"Any model's features\"):
  decal heads --train-features F/train_features.npy --train-labels F/train_labels.npy \\
      --val-features F/val_features.npy --val-labels F/val_labels.npy \\
      --test-features F/test_features.npy --test-labels F/test_labels.npy \\
      --test-logits F/test_logits.npy --val-logits F/val_logits.npy \\
      --ood-features tinyimagenet=F/ood_tinyimagenet_features.npy \\
      --ood-logits tinyimagenet=F/ood_tinyimagenet_logits.npy \\
      --head vtst --seeds 0,1,2 --out runs/heads-vtst

Writes into DIR what `decal run` writes (heads/, eval/, metrics.jsonl, metrics.csv, results.json, reliability/, \
ood_histograms/, predictions/<row>-seed<s>/test_probs.npy, report/index.html) plus the exported heads:
  DIR/head/model.py                      self-contained PyTorch module file (needs only torch)
  DIR/head/seed-<s>/model.safetensors    the head of seed s, PyTorch parameter names, architecture and fitted
                                         temperatures in the safetensors metadata
  DIR/head/heads.json                    seeds, rows, temperatures
In Python: `from model import load; head = load('DIR/head/seed-0/model.safetensors'); head(features)` gives \
logits (TST, REINIT; V-TST: the mean latent), `head.predict_proba(features, num_samples=10, seed=0)` the \
(temperature-scaled) predictive.

Rows: Baseline = the model's own logits (--test-logits), TS / TS (seed LBFGS) = fitted on --val-logits; \
TST / REINIT / V-TST m=<m> (V-TST mean for m=0) per seed, and TS + <row> with T fitted per seed on the \
validation features' predictive of that row (V-TST: T divides every sample's logits). The table shows mean ± \
sample std over seeds with n. Every metric carries its definition in metrics.jsonl; both profiles (default, \
paper), OOD AUROC/FPR95/AUPR for every score, and bootstrap intervals on the primary profile.

Measured (README \"Any model's features\"): on the seed CNN's CIFAR-10 features extracted in PyTorch, the Baseline \
row equals decal's own evaluation of the imported checkpoint (69.60 %, ECE 1.48 %); TST 70.30 ± 0.17 %, ECE 2.65 % \
(2.22 % with TS); V-TST m=10 70.01 ± 0.26 %, ECE 3.02 % (2.20 % with TS), 3 seeds; the exported TST heads give \
decal's test probabilities in PyTorch to 3.6e-7.

Bad input (rows that disagree with the labels, different feature widths, NaN/Inf, labels outside [0, K), \
logits of the wrong shape) is one error naming the argument and file, before any work; nothing is written.";

fn name_value(arg: &str, flag: &str) -> anyhow::Result<(String, PathBuf)> {
    match arg.split_once('=') {
        Some((n, p)) if !n.is_empty() && !p.is_empty() => Ok((n.to_string(), PathBuf::from(p))),
        _ => bail!("{flag} {arg:?}: expected NAME=FILE"),
    }
}

/// The `[[heads]]` table of the command line: only the keys given, so every other key keeps its default.
fn head_table(args: &Args, kind: HeadKind) -> anyhow::Result<toml::Table> {
    let mut t = toml::Table::new();
    let default_name = match kind {
        HeadKind::Tst => "TST",
        HeadKind::Vtst => "V-TST",
        HeadKind::Reinit => "REINIT",
    };
    t.insert(
        "name".into(),
        args.name.clone().unwrap_or(default_name.into()).into(),
    );
    t.insert("kind".into(), kind.name().into());
    let mut put = |k: &str, v: Option<toml::Value>| {
        if let Some(v) = v {
            t.insert(k.into(), v);
        }
    };
    put("latent_dim", args.latent_dim.map(toml::Value::from));
    put(
        "mlp_size",
        args.mlp_size.map(|v| toml::Value::from(v as i64)),
    );
    put("epochs", args.epochs.map(|v| toml::Value::from(v as i64)));
    put(
        "batch_size",
        args.batch_size.map(|v| toml::Value::from(v as i64)),
    );
    put("lr", args.lr.map(toml::Value::from));
    put(
        "train_samples",
        args.train_samples.map(|v| toml::Value::from(v as i64)),
    );
    put(
        "val_samples",
        args.val_samples.map(|v| toml::Value::from(v as i64)),
    );
    put(
        "eval_samples",
        args.eval_samples
            .as_ref()
            .map(|v| toml::Value::Array(v.iter().map(|&m| toml::Value::from(m as i64)).collect())),
    );
    put("selection", args.selection.clone().map(toml::Value::from));
    put("shuffle", args.no_shuffle.then_some(false.into()));
    put(
        "temperature_scaling",
        Some((!args.no_temperature_scaling).into()),
    );
    put(
        "temperature_scaling_seed_lbfgs",
        args.ts_seed_lbfgs.then_some(true.into()),
    );
    if let Some(loss) = &args.loss {
        put("loss", Some(parse_value(loss, "--loss")?));
    }
    for opt in &args.head_option {
        let Some((k, v)) = opt.split_once('=') else {
            bail!("--head-option {opt:?}: expected KEY=VALUE (a [[heads]] key and a TOML value)");
        };
        t.insert(
            k.trim().to_string(),
            parse_value(v.trim(), &format!("--head-option {k}"))?,
        );
    }
    Ok(t)
}

/// A TOML value; a bare word is a string (`ce`, `val-nll`).
fn parse_value(text: &str, what: &str) -> anyhow::Result<toml::Value> {
    let doc = format!("v = {text}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => Ok(t.remove("v").expect("parsed key")),
        Err(_)
            if text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            Ok(toml::Value::String(text.to_string()))
        }
        Err(e) => bail!(
            "{what}: {text:?} is not a TOML value: {}",
            e.to_string().trim()
        ),
    }
}

/// The experiment config `decal heads` runs.
pub fn heads_config(args: &Args) -> anyhow::Result<ExperimentConfig> {
    let kind = match args.head.as_str() {
        "tst" => HeadKind::Tst,
        "vtst" => HeadKind::Vtst,
        _ => HeadKind::Reinit,
    };
    let mut ood = BTreeMap::new();
    for a in &args.ood_features {
        let (n, p) = name_value(a, "--ood-features")?;
        if ood.insert(n.clone(), p).is_some() {
            bail!("--ood-features: the name {n:?} is given twice");
        }
    }
    let mut ood_logits = BTreeMap::new();
    for a in &args.ood_logits {
        let (n, p) = name_value(a, "--ood-logits")?;
        ood_logits.insert(n, p);
    }
    let files = FeatureFiles {
        train: args.train_features.clone(),
        train_labels: args.train_labels.clone(),
        val: args.val_features.clone(),
        val_labels: args.val_labels.clone(),
        test: args.test_features.clone(),
        test_labels: args.test_labels.clone(),
        ood,
        test_logits: args.test_logits.clone(),
        val_logits: args.val_logits.clone(),
        train_logits: args.train_logits.clone(),
        ood_logits,
        train_views: args.train_views.clone(),
        num_classes: args.num_classes,
        dataset: args.dataset.clone(),
    };
    let mut doc = toml::Table::new();
    doc.insert("name".into(), format!("heads-{}", kind.name()).into());
    doc.insert(
        "description".into(),
        format!(
            "decal heads: {} heads on features from {}",
            kind.name(),
            args.train_features.display()
        )
        .into(),
    );
    doc.insert(
        "seeds".into(),
        toml::Value::Array(
            args.seeds
                .iter()
                .map(|&s| toml::Value::from(s as i64))
                .collect(),
        ),
    );
    let mut backbone = toml::Table::new();
    backbone.insert(
        "features".into(),
        toml::Value::try_from(&files).context("feature files as TOML")?,
    );
    doc.insert("backbone".into(), backbone.into());
    doc.insert(
        "heads".into(),
        toml::Value::Array(vec![head_table(args, kind)?.into()]),
    );
    doc.insert(
        "temperature_scaling".into(),
        args.val_logits.is_some().into(),
    );
    let mut eval = toml::Table::new();
    eval.insert(
        "profiles".into(),
        toml::Value::Array(args.profiles.iter().map(|p| p.as_str().into()).collect()),
    );
    eval.insert("bootstrap".into(), (args.bootstrap as i64).into());
    eval.insert("eval_seed".into(), (args.eval_seed as i64).into());
    doc.insert("eval".into(), eval.into());
    let config: ExperimentConfig =
        toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| {
                anyhow::anyhow!("head options: {}", e.to_string().trim().replace('\n', " "))
            })?;
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}

/// The table rows of a head spec for one seed: `(row, temperature rule)`.
fn head_rows(spec: &experiment::HeadSpec) -> Vec<(String, String)> {
    match spec.kind {
        HeadKind::Vtst => spec
            .eval_samples
            .iter()
            .map(|&m| {
                if m == 0 {
                    (format!("{} mean", spec.name), "mean".to_string())
                } else {
                    (format!("{} m={m}", spec.name), format!("m={m}"))
                }
            })
            .collect(),
        _ => vec![(spec.name.clone(), "logits".to_string())],
    }
}

/// The directory of the head unit of `seed` (`units/<id>/`, `head/<slug>/seed-<s>` in the plan) in the
/// store `run`, which must hold its completion record.
fn head_dir(
    plan: &Plan,
    run: &Path,
    spec: &experiment::HeadSpec,
    seed: u64,
) -> anyhow::Result<PathBuf> {
    let name = format!("head/{}/seed-{seed}", slug(&spec.name));
    let unit = plan
        .units
        .iter()
        .find(|u| u.name == name)
        .with_context(|| format!("the plan has no unit {name}"))?;
    let store = Store::new(run);
    if store.record(&unit.id).is_none() {
        bail!(
            "{name} did not complete (no record in {})",
            store.unit_dir(&unit.id).display()
        );
    }
    Ok(store.unit_dir(&unit.id))
}

/// Runs the experiment of `config` as a plan of units (serially) into `work`.
fn run_units(
    config: &ExperimentConfig,
    args: &Args,
    work: &Path,
) -> anyhow::Result<(Plan, runner::RunSummary)> {
    let device = decal_models::device::parse(&args.device)?;
    let options = RunnerOptions {
        force: false,
        exec: ExecOptions {
            device,
            threads: Some(args.threads),
            head_threads: Some(args.threads),
            batch_siblings: true,
        },
        exe: std::env::current_exe().context("locating the decal executable")?,
        unit_args: Vec::new(),
        executor: Executor::Serial,
        keep_going: false,
    };
    let started = std::time::Instant::now();
    let mut log = |line: &str| eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
    let origin = Path::new("decal heads");
    let plan = runner::plan(config, origin, device)?;
    let summary = runner::run(config, origin, work, &options, &mut log)?;
    Ok((plan, summary))
}

/// Exports every seed's head for PyTorch into `work/head/` (paths in `heads.json` name `out`, where `work`
/// is moved); returns `heads.json`.
fn export_heads(
    plan: &Plan,
    config: &ExperimentConfig,
    work: &Path,
    out: &Path,
) -> anyhow::Result<serde_json::Value> {
    let spec = &config.heads[0];
    let results_path = work.join("results.json");
    let results_text = std::fs::read_to_string(&results_path)
        .with_context(|| format!("{}", results_path.display()))?;
    let results: serde_json::Value = serde_json::from_str(&results_text)
        .with_context(|| format!("{}", results_path.display()))?;
    let rows = head_rows(spec);
    let export_dir = work.join("head");
    decal_models::export::write_model_py(&export_dir)?;
    let mut exported = Vec::new();
    for &seed in &config.seeds {
        let dir = head_dir(plan, work, spec, seed)?;
        let (vs, head, meta) = decal_train::stage2::load_head(&dir, tch::Device::Cpu)
            .with_context(|| format!("loading head {}", dir.display()))?;
        let mut temperatures = BTreeMap::new();
        for (row, rule) in &rows {
            let key = format!("TS + {row} seed {seed}");
            if let Some(t) = results["calibration"][&key]["temperature"].as_f64() {
                temperatures.insert(rule.clone(), t);
            }
        }
        let extra = BTreeMap::from([
            ("name".to_string(), spec.name.clone()),
            ("seed".to_string(), seed.to_string()),
            ("best_epoch".to_string(), meta.best_epoch.to_string()),
            (
                "decal_version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            (
                "stage2".to_string(),
                serde_json::to_string(&meta.config).unwrap_or_default(),
            ),
        ]);
        let path = export_dir
            .join(format!("seed-{seed}"))
            .join("model.safetensors");
        decal_models::export::export_head(&path, &vs, head.config(), &temperatures, &extra)?;
        exported.push(serde_json::json!({
            "seed": seed, "path": out.join("head").join(format!("seed-{seed}")).join("model.safetensors"),
            "temperatures": temperatures, "best_epoch": meta.best_epoch,
        }));
    }
    let heads_json = serde_json::json!({
        "format": decal_models::export::FORMAT, "head": spec, "rows": rows.iter().map(|(r, _)| r).collect::<Vec<_>>(),
        "seeds": exported,
        "usage": "from model import load; head = load('seed-0/model.safetensors'); head(features) -> logits; head.predict_proba(features, num_samples=m, seed=s)",
    });
    decal_core::write_json_atomic(&export_dir.join("heads.json"), &heads_json)?;
    Ok(heads_json)
}

/// The row `--save-probs` exports: the head's last row, temperature-scaled when every seed has its fit.
fn calibrated_row(config: &ExperimentConfig, work: &Path) -> String {
    let rows = head_rows(&config.heads[0]);
    let last = &rows.last().expect("a head has at least one row").0;
    let ts = format!("TS + {last}");
    let every_seed = config.seeds.iter().all(|s| {
        work.join("predictions")
            .join(format!("{}-seed{s}", slug(&ts)))
            .exists()
    });
    if every_seed {
        ts
    } else {
        last.clone()
    }
}

/// `--save-probs` (the calibrated row's test probabilities of every seed, `[seeds, N, K]`).
fn save_probs(
    path: &Path,
    files: &mut OutputFiles,
    config: &ExperimentConfig,
    work: &Path,
    row: &str,
) -> anyhow::Result<()> {
    let mut shape = Vec::new();
    let mut values = Vec::new();
    for s in &config.seeds {
        let f = work
            .join("predictions")
            .join(format!("{}-seed{s}", slug(row)))
            .join("test_probs.npy");
        let a = decal_io::npy::read(&f)?;
        shape = a.shape.clone();
        values.extend(a.to_f64_vec().into_iter().map(|v| v as f32));
    }
    let mut full = vec![config.seeds.len()];
    full.extend(shape);
    let arr = decal_io::NpyArray::from_f32(full, values);
    files.write(path, &decal_io::npy::to_bytes(&arr)?)?;
    Ok(())
}

/// Runs `decal heads`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = heads_config(&args)?;
    if args.print_config {
        print!(
            "{}",
            toml::to_string_pretty(&config).context("serialising the config")?
        );
        return Ok(());
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&config.name));
    // Every output is checked before any work: the directory (built in a staging sibling) and the files.
    let staged = StagedDir::new(&out, args.force)?;
    let mut files = OutputFiles::new(args.force);
    for p in args.save_probs.iter().chain(args.json.iter()) {
        files.claim(p)?;
    }
    let work = staged.path().to_path_buf();
    let (plan, summary) = run_units(&config, &args, &work)?;
    let heads_json = export_heads(&plan, &config, &work, &out)?;
    let calibrated_row = calibrated_row(&config, &work);
    if let Some(p) = &args.save_probs {
        save_probs(p, &mut files, &config, &work, &calibrated_row)?;
    }
    if let Some(p) = &args.json {
        let records = decal_report::record::read_jsonl(&work.join("metrics.jsonl"))?;
        let aggregates = decal_report::table::aggregate(&records)?;
        let value = serde_json::json!({
            "command": "decal heads",
            "out": out, "report": out.join("report").join("index.html"),
            "table_markdown": summary.table_markdown,
            "aggregates": aggregates,
            "exported_heads": heads_json,
            "save_probs": args.save_probs.as_ref().map(|p| serde_json::json!({"path": p, "row": calibrated_row, "shape": "[seeds, N, K]", "seeds": config.seeds})),
            "warnings": summary.warnings,
            "definitions": "every aggregate's definition is in its records (metrics.jsonl, field `definition`); ± is the sample std over seeds, n the number of seeds",
        });
        let mut text = serde_json::to_string_pretty(&value)?;
        text.push('\n');
        files.write(p, text.as_bytes())?;
    }
    staged.commit()?;
    files.commit()?;

    println!("{}", summary.table_markdown);
    for w in &summary.warnings {
        println!("warning: {w}");
    }
    println!("records: {}", out.join("metrics.jsonl").display());
    println!(
        "report:  {}",
        out.join("report").join("index.html").display()
    );
    println!(
        "heads:   {}/seed-<s>/model.safetensors + model.py (PyTorch: from model import load)",
        out.join("head").display()
    );
    if let Some(p) = &args.save_probs {
        println!("probs:   {} ({calibrated_row}, [seeds, N, K])", p.display());
    }
    Ok(())
}
