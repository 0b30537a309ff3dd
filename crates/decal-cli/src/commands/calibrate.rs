//! `decal calibrate`: fit a post-hoc calibrator on validation logits, apply it to test logits, and report
//! test metrics before and after (same profile and definitions as `decal metrics`).
//!
//! With `--out DIR` it writes `calibrator.json` (the fitted calibrator, re-appliable, plus its inputs),
//! `test_probs.npy` (calibrated test probabilities, float64 `[N, K]`), `metrics.json` (`before` and `after`
//! summaries with their definitions) and a before/after reliability diagram `reliability.{svg,png,csv}`.
//! Nothing is written until every number has been computed; each file is written atomically, and a non-empty
//! `DIR` is refused without `--force`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use decal_calib::{Calibrator, Method};
use decal_io::npy::NpyArray;
use decal_metrics::summary::{evaluate, PredictionInput, ScoreKind, Summary, Values};

use super::metrics::{build_profile, reliability_series};

/// Arguments of `decal calibrate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Calibration method: `temperature` (exact NLL-optimal T), `temperature-lbfgs` (the seed's LBFGS: T0 1.5,
    /// lr 0.01, 50 iterations), `vector` (per-class scale and bias), `histogram` (one-vs-rest, 15 bins),
    /// `isotonic` (one-vs-rest, scikit-learn semantics).
    #[arg(long, value_parser = ["temperature", "temperature-lbfgs", "vector", "histogram", "isotonic"])]
    pub method: String,
    /// Validation logits [N_val, K] (.npy, .npz or .csv) to fit on; must be disjoint from the test set.
    #[arg(long, value_name = "FILE")]
    pub val_logits: PathBuf,
    /// Validation labels [N_val].
    #[arg(long, value_name = "FILE")]
    pub val_labels: PathBuf,
    /// Test logits [N_test, K] to calibrate.
    #[arg(long, value_name = "FILE")]
    pub test_logits: PathBuf,
    /// Test labels [N_test] (for the before/after metrics).
    #[arg(long, value_name = "FILE")]
    pub test_labels: PathBuf,
    /// Array name for logits inside .npz inputs.
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// Array name for labels inside .npz inputs.
    #[arg(long, value_name = "NAME")]
    pub labels_key: Option<String>,
    /// Metric profile for the before/after table: `paper` or `default`.
    #[arg(long, default_value = "default", value_parser = ["paper", "default"])]
    pub profile: String,
    /// Override the number of ECE bins of the profile.
    #[arg(long, value_name = "M")]
    pub bins: Option<usize>,
    /// Override the bin-membership convention (torchmetrics, guo, histogram).
    #[arg(long, value_parser = ["torchmetrics", "guo", "histogram"])]
    pub membership: Option<String>,
    /// Output directory for the calibrator, calibrated test probabilities, metrics and reliability diagram.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Allow writing into a non-empty --out directory (files are replaced one by one, atomically).
    #[arg(long)]
    pub force: bool,
}

/// Loads logits `[N, K]` and labels in `[0, K)`, checking that they match.
fn load_split(
    logits: &Path,
    labels: &Path,
    key: Option<&str>,
    labels_key: Option<&str>,
) -> anyhow::Result<(Vec<f64>, Vec<i64>, usize)> {
    let m = decal_io::matrix::load_matrix(logits, key)?;
    let y = decal_io::matrix::load_labels(labels, labels_key)?;
    if y.len() != m.rows {
        bail!(
            "{} has {} labels but {} has {} rows of logits",
            labels.display(),
            y.len(),
            logits.display(),
            m.rows
        );
    }
    decal_io::matrix::check_labels(&y, m.cols, labels)?;
    Ok((m.data, y, m.cols))
}

fn row(name: &str, before: f64, after: f64, percent: bool) -> String {
    let f = |v: f64| {
        if percent {
            format!("{:.4} %", v * 100.0)
        } else {
            format!("{v:.6}")
        }
    };
    format!(
        "  {name:<14} {:>14} {:>14} {:>+14.6}\n",
        f(before),
        f(after),
        after - before
    )
}

/// Runs `decal calibrate`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let method = Method::by_name(&args.method)
        .with_context(|| format!("unknown method '{}'", args.method))?;
    let profile = build_profile(&args.profile, args.bins, args.membership.as_deref())?;
    let (val_z, val_y, k) = load_split(
        &args.val_logits,
        &args.val_labels,
        args.key.as_deref(),
        args.labels_key.as_deref(),
    )?;
    let (test_z, test_y, k_test) = load_split(
        &args.test_logits,
        &args.test_labels,
        args.key.as_deref(),
        args.labels_key.as_deref(),
    )?;
    if k != k_test {
        bail!(
            "{} has {k} classes but {} has {k_test}",
            args.val_logits.display(),
            args.test_logits.display()
        );
    }
    if let Some(out) = &args.out {
        // Refuse a finished run before spending time on fitting.
        if out.exists()
            && std::fs::read_dir(out)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
            && !args.force
        {
            bail!("{} already exists and is not empty; pass --force to overwrite it, or choose another directory", out.display());
        }
    }
    let calibrator = Calibrator::fit(method, &val_z, &val_y, k)
        .with_context(|| format!("fitting {} on {}", args.method, args.val_logits.display()))?;
    let test_probs = calibrator
        .apply(&test_z, k)
        .with_context(|| format!("applying the calibrator to {}", args.test_logits.display()))?;

    let before_input = PredictionInput::new(ScoreKind::Logits, Values::F64(&test_z), k, &test_y)
        .with_context(|| args.test_logits.display().to_string())?;
    let before: Summary = evaluate(&before_input, &profile);
    let after_input = PredictionInput::new(
        ScoreKind::Probabilities,
        Values::F64(&test_probs),
        k,
        &test_y,
    )
    .context("calibrated test probabilities")?;
    let after: Summary = evaluate(&after_input, &profile);

    println!("decal calibrate: {}", calibrator.describe());
    println!(
        "fitted on {} ({} rows), applied to {} ({} rows); metrics on the test set, profile {}",
        args.val_logits.display(),
        val_y.len(),
        args.test_logits.display(),
        test_y.len(),
        before.definitions.profile
    );
    let pct = profile.render_ece_percent;
    let mut table = format!(
        "  {:<14} {:>14} {:>14} {:>14}\n",
        "metric", "before", "after", "change"
    );
    table.push_str(&row("accuracy", before.accuracy, after.accuracy, false));
    table.push_str(&row("ece", before.ece, after.ece, pct));
    table.push_str(&row("mce", before.mce, after.mce, pct));
    table.push_str(&row(
        "classwise_ece",
        before.classwise_ece,
        after.classwise_ece,
        pct,
    ));
    table.push_str(&row("nll", before.nll, after.nll, false));
    table.push_str(&row("brier", before.brier, after.brier, false));
    table.push_str(&row(
        "brier_div_k",
        before.brier_div_k,
        after.brier_div_k,
        false,
    ));
    print!("{table}");
    println!("  ece: {}", before.definitions.ece);
    println!(
        "  nll: before = {}; after = {}",
        before.definitions.nll, after.definitions.nll
    );

    if let Some(out) = &args.out {
        decal_core::prepare_output_dir(out, args.force)?;
        let record = serde_json::json!({
            "calibrator": &calibrator,
            "fitted_on": { "logits": args.val_logits.display().to_string(), "labels": args.val_labels.display().to_string(), "rows": val_y.len() },
            "num_classes": k,
            "apply": "Calibrator::apply(logits [N, K]) -> probabilities [N, K] (decal_calib)",
            "decal_version": env!("CARGO_PKG_VERSION"),
        });
        decal_core::write_json_atomic(&out.join("calibrator.json"), &record)?;
        decal_io::npy::write(
            &out.join("test_probs.npy"),
            &NpyArray::from_f64(vec![test_y.len(), k], test_probs),
        )?;
        decal_core::write_json_atomic(
            &out.join("metrics.json"),
            &serde_json::json!({ "before": before, "after": after }),
        )?;
        let label = |s: &str| format!("{s} {}", args.method);
        let files = decal_report::reliability::write_reliability_diagram(
            &out.join("reliability"),
            &[
                reliability_series(&before, &label("before")),
                reliability_series(&after, &label("after")),
            ],
            &format!(
                "Reliability before/after {} ({})",
                args.method, profile.name
            ),
        )?;
        println!("wrote {}", out.join("calibrator.json").display());
        println!("wrote {}", out.join("test_probs.npy").display());
        println!("wrote {}", out.join("metrics.json").display());
        for f in files {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}
