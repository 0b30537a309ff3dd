//! `decal calibrate`: fit a post-hoc calibrator on validation logits, apply it to test logits, and report
//! test metrics before and after (same profile and definitions as `decal metrics`).
//!
//! With `--out DIR` it writes `calibrator.json` (the fitted calibrator, re-appliable, plus its inputs),
//! `test_probs.npy` (calibrated test probabilities, float64 `[N, K]`), `metrics.json` (`before` and `after`
//! summaries with their definitions) and a before/after reliability diagram `reliability.{svg,png,csv}`.
//! `--apply DIR/calibrator.json` re-applies a saved calibrator to new test logits instead of fitting.
//! A non-empty `DIR` is refused before any work without `--force`; the files are written into a temporary
//! sibling of `DIR` that is renamed into place once all of them are there (`decal_core::StagedDir`), so `DIR`
//! appears complete or not at all. A calibrator read with `--apply` is validated like user input
//! (`Calibrator::validate`; errors name the file and the field).

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
    #[arg(long, value_parser = ["temperature", "temperature-lbfgs", "vector", "histogram", "isotonic"],
          required_unless_present = "apply", conflicts_with = "apply")]
    pub method: Option<String>,
    /// Instead of fitting, re-apply a calibrator saved by an earlier `decal calibrate --out DIR`
    /// (DIR/calibrator.json) to --test-logits.
    #[arg(long, value_name = "CALIBRATOR.json")]
    pub apply: Option<PathBuf>,
    /// Validation logits [N_val, K] (.npy, .npz or .csv) to fit on; must be disjoint from the test set.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "apply",
        conflicts_with = "apply"
    )]
    pub val_logits: Option<PathBuf>,
    /// Validation labels [N_val].
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "apply",
        conflicts_with = "apply"
    )]
    pub val_labels: Option<PathBuf>,
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
    /// Replace a non-empty --out directory (the new one is built in a temporary sibling and swapped in
    /// only once complete).
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
    let profile = build_profile(&args.profile, args.bins, args.membership.as_deref())?;
    let (test_z, test_y, k) = load_split(
        &args.test_logits,
        &args.test_labels,
        args.key.as_deref(),
        args.labels_key.as_deref(),
    )?;
    // The output policy (decal_core::output): a non-empty --out is refused before any work; everything is
    // written into a staging sibling that is renamed into place only once every file is there.
    let staged = match &args.out {
        Some(out) => Some(decal_core::StagedDir::new(out, args.force)?),
        None => None,
    };
    let (calibrator, provenance, method_name) = match (
        &args.apply,
        &args.method,
        &args.val_logits,
        &args.val_labels,
    ) {
        (Some(path), _, _, _) => {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON", path.display()))?;
            let cal = load_calibrator(path, &value, k)?;
            let name = match &cal {
                Calibrator::Temperature(t) => format!("temperature ({})", t.fit_method),
                Calibrator::Vector(_) => "vector".to_string(),
                Calibrator::Histogram(_) => "histogram".to_string(),
                Calibrator::Isotonic(_) => "isotonic".to_string(),
            };
            let prov = serde_json::json!({ "applied_from": path.display().to_string() });
            (cal, prov, name)
        }
        (None, Some(method), Some(val_logits), Some(val_labels)) => {
            let m =
                Method::by_name(method).with_context(|| format!("unknown method '{method}'"))?;
            let (val_z, val_y, k_val) = load_split(
                val_logits,
                val_labels,
                args.key.as_deref(),
                args.labels_key.as_deref(),
            )?;
            if k_val != k {
                bail!(
                    "{} has {k_val} classes but {} has {k}",
                    val_logits.display(),
                    args.test_logits.display()
                );
            }
            let cal = Calibrator::fit(m, &val_z, &val_y, k)
                .with_context(|| format!("fitting {method} on {}", val_logits.display()))?;
            let prov = serde_json::json!({
                "fitted_on": { "logits": val_logits.display().to_string(), "labels": val_labels.display().to_string(), "rows": val_y.len() }
            });
            (cal, prov, method.clone())
        }
        _ => bail!("give --method with --val-logits and --val-labels, or --apply CALIBRATOR.json"),
    };
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
    let origin = match (&args.apply, &args.val_logits) {
        (Some(p), _) => format!("loaded from {}", p.display()),
        (None, Some(v)) => format!("fitted on {}", v.display()),
        (None, None) => String::new(),
    };
    println!(
        "{origin}; applied to {} ({} rows); metrics on the test set, profile {}",
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

    if let (Some(out), Some(staged)) = (&args.out, staged) {
        let dir = staged.path().to_path_buf();
        let mut record = serde_json::json!({
            "calibrator": &calibrator,
            "num_classes": k,
            "apply": "decal calibrate --apply calibrator.json, or decal_calib::Calibrator::apply(logits [N, K]) -> probabilities [N, K]",
            "decal_version": env!("CARGO_PKG_VERSION"),
        });
        if let (Some(obj), Some(prov)) = (record.as_object_mut(), provenance.as_object()) {
            for (key, value) in prov {
                obj.insert(key.clone(), value.clone());
            }
        }
        decal_core::write_json_atomic(&dir.join("calibrator.json"), &record)?;
        decal_io::npy::write(
            &dir.join("test_probs.npy"),
            &NpyArray::from_f64(vec![test_y.len(), k], test_probs),
        )?;
        decal_core::write_json_atomic(
            &dir.join("metrics.json"),
            &serde_json::json!({ "before": before, "after": after }),
        )?;
        let label = |s: &str| format!("{s} {method_name}");
        let files = decal_report::reliability::write_reliability_diagram(
            &dir.join("reliability"),
            &[
                reliability_series(&before, &label("before")),
                reliability_series(&after, &label("after")),
            ],
            &format!("Reliability before/after {method_name} ({})", profile.name),
        )?;
        if let Ok(step) = std::env::var("DECAL_TEST_FAIL_OUTPUT") {
            // Test hook (crates/decal-cli/tests/output_policy_cli.rs): a write failing after some files
            // were written must leave nothing behind.
            if step == "calibrate" {
                bail!(
                    "{}: simulated write failure (DECAL_TEST_FAIL_OUTPUT)",
                    out.display()
                );
            }
        }
        staged.commit()?;
        println!("wrote {}", out.join("calibrator.json").display());
        println!("wrote {}", out.join("test_probs.npy").display());
        println!("wrote {}", out.join("metrics.json").display());
        for f in files {
            if let Some(name) = f.file_name() {
                println!("wrote {}", out.join(name).display());
            }
        }
    }
    Ok(())
}

/// Reads a saved calibrator (the record written by `--out`, `{"calibrator": {...}, "num_classes": K, ...}`,
/// or a bare calibrator object) and validates it like user input: every error names the file and the field.
fn load_calibrator(
    path: &Path,
    value: &serde_json::Value,
    test_k: usize,
) -> anyhow::Result<Calibrator> {
    let (inner, prefix) = match value.get("calibrator") {
        Some(inner) => (inner.clone(), "calibrator."),
        None => (value.clone(), ""),
    };
    let cal: Calibrator = serde_json::from_value(inner).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}not a decal calibrator: {e}",
            path.display(),
            prefix.trim_end_matches('.')
        )
    })?;
    cal.validate()
        .map_err(|e| anyhow::anyhow!("{}: {prefix}{e}", path.display()))?;
    if let Some(recorded) = value.get("num_classes") {
        if recorded.as_u64() != Some(cal.num_classes() as u64) {
            bail!(
                "{}: num_classes: {recorded} does not match the calibrator's {} classes",
                path.display(),
                cal.num_classes()
            );
        }
    }
    if cal.num_classes() != test_k {
        bail!(
            "{}: {prefix}num_classes: the calibrator was fitted for {} classes but the test logits have {test_k}",
            path.display(),
            cal.num_classes()
        );
    }
    Ok(cal)
}
