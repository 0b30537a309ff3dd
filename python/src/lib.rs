//! `decal._native`: the Rust half of the `decal` Python package (the Python half, `python/decal/`, turns
//! NumPy arrays and torch tensors into C-contiguous float32/float64 score matrices and int64 labels, and
//! documents the API).
//!
//! Every number comes from the same library calls as the `decal` CLI: [`SummaryAccumulator`] (what
//! `decal metrics` streams its chunks through), [`Calibrator::fit`] / [`Calibrator::apply`] (what
//! `decal calibrate` calls) and [`write_reliability_diagram`] (what `--reliability` writes). Nothing here
//! re-implements a metric; this file only converts arguments, chooses the profile the way the CLI's flags do,
//! and turns every library error into a Python exception that names the argument (never a panic).

use std::path::PathBuf;

use decal_calib::{Calibrator, Method};
use decal_metrics::binning::Membership;
use decal_metrics::bootstrap::BootstrapConfig;
use decal_metrics::profile::{Fpr95Convention, OodScore, Profile};
use decal_metrics::summary::{
    EvalOptions, KeepRows, ScoreKind, Summary, SummaryAccumulator, Values,
};
use decal_metrics::MetricsError;
use decal_report::reliability::{write_reliability_diagram, ReliabilitySeries};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;

/// The `apply` hint stored in calibrator records (the same text as `decal calibrate --out`).
const APPLY_HINT: &str = "decal calibrate --apply calibrator.json, or decal_calib::Calibrator::apply(logits [N, K]) -> probabilities [N, K]";

fn value_error(arg: &str, message: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{arg}: {message}"))
}

/// A borrowed `[N, K]` score matrix from NumPy: float32 or float64, C-contiguous (zero-copy).
enum ScoreArray<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

impl<'py> ScoreArray<'py> {
    fn extract(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<Self> {
        if let Ok(a) = obj.extract::<PyReadonlyArray2<'py, f32>>() {
            return Ok(ScoreArray::F32(a));
        }
        if let Ok(a) = obj.extract::<PyReadonlyArray2<'py, f64>>() {
            return Ok(ScoreArray::F64(a));
        }
        Err(PyTypeError::new_err(format!(
            "{arg}: expected a 2-D float32 or float64 NumPy array, got {}",
            obj.get_type().name()?
        )))
    }

    fn shape(&self) -> (usize, usize) {
        let s = match self {
            ScoreArray::F32(a) => a.shape(),
            ScoreArray::F64(a) => a.shape(),
        };
        (s[0], s[1])
    }

    fn values(&self, arg: &str) -> PyResult<Values<'_>> {
        let not_contiguous = || {
            value_error(
                arg,
                "the array is not C-contiguous (pass numpy.ascontiguousarray(x))",
            )
        };
        Ok(match self {
            ScoreArray::F32(a) => Values::F32(a.as_slice().map_err(|_| not_contiguous())?),
            ScoreArray::F64(a) => Values::F64(a.as_slice().map_err(|_| not_contiguous())?),
        })
    }

    /// The values widened to f64 (exact for float32), as decal-calib takes them.
    fn to_f64(&self, arg: &str) -> PyResult<Vec<f64>> {
        Ok(match self.values(arg)? {
            Values::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Values::F64(v) => v.to_vec(),
        })
    }
}

fn labels_slice<'a>(labels: &'a PyReadonlyArray1<'_, i64>, arg: &str) -> PyResult<&'a [i64]> {
    labels
        .as_slice()
        .map_err(|_| value_error(arg, "the array is not contiguous"))
}

fn score_kind(name: &str, arg: &str) -> PyResult<ScoreKind> {
    match name {
        "logits" => Ok(ScoreKind::Logits),
        "probabilities" | "probs" => Ok(ScoreKind::Probabilities),
        other => Err(value_error(
            arg,
            format!("'{other}' is neither 'logits' nor 'probabilities'"),
        )),
    }
}

/// Names the Python argument a metrics error is about: label errors are the labels' fault, the rest the
/// scores'.
fn metrics_error(err: MetricsError, scores_arg: &str, labels_arg: &str) -> PyErr {
    match err {
        MetricsError::LabelOutOfRange { .. } => value_error(labels_arg, err),
        MetricsError::Shape {
            len,
            rows,
            num_classes,
            ..
        } => value_error(
            scores_arg,
            format!(
                "holds {len} values, which is not {rows} rows x {num_classes} classes (one row per label in {labels_arg})"
            ),
        ),
        other => value_error(scores_arg, other),
    }
}

/// The profile `decal metrics` builds from `--profile`, `--bins`, `--membership`, `--ood-score`, `--fpr95`,
/// `--no-ece-em` and `--prob-tolerance` (same names, same recorded profile name).
#[allow(clippy::too_many_arguments)]
fn build_profile(
    name: &str,
    bins: Option<usize>,
    membership: Option<&str>,
    ood_score: Option<&str>,
    fpr95: Option<&str>,
    ece_em: bool,
    prob_tolerance: Option<f64>,
) -> PyResult<Profile> {
    let mut profile = Profile::by_name(name).ok_or_else(|| {
        value_error(
            "profile",
            format!("unknown profile '{name}' (use 'paper' or 'default')"),
        )
    })?;
    let mut overrides = Vec::new();
    if let Some(m) = bins {
        if m == 0 {
            return Err(value_error("bins", "must be at least 1"));
        }
        profile.num_bins = m;
        overrides.push(format!("bins={m}"));
    }
    if let Some(m) = membership {
        profile.membership = Membership::by_name(m).ok_or_else(|| {
            value_error(
                "membership",
                format!("unknown membership '{m}' (use 'torchmetrics', 'guo' or 'histogram')"),
            )
        })?;
        overrides.push(format!("membership={m}"));
    }
    if !overrides.is_empty() {
        profile.name = format!("{name}({})", overrides.join(","));
    }
    if let Some(s) = ood_score {
        profile.ood_score = OodScore::by_name(s).ok_or_else(|| {
            value_error(
                "ood_score",
                format!(
                    "unknown OOD score '{s}' (use 'msp', 'max-logit', 'energy' or 'neg-entropy')"
                ),
            )
        })?;
    }
    if let Some(f) = fpr95 {
        profile.fpr95 = match f {
            "idpos-exact" => Fpr95Convention::IdposExact,
            "idpos-interp" => Fpr95Convention::IdposInterp,
            "oodpos-first" => Fpr95Convention::OodposFirst,
            other => {
                return Err(value_error(
                    "fpr95",
                    format!("unknown convention '{other}' (use 'idpos-exact', 'idpos-interp' or 'oodpos-first')"),
                ))
            }
        };
    }
    if !ece_em {
        profile.equal_mass = false;
    }
    if let Some(t) = prob_tolerance {
        if !(t > 0.0 && t.is_finite()) {
            return Err(value_error("prob_tolerance", "must be a positive number"));
        }
        profile.prob_sum_tolerance = t;
    }
    Ok(profile)
}

/// Streaming metric state: the `SummaryAccumulator` that `decal metrics` feeds its chunks through.
/// Documented in Python as `decal.MetricAccumulator`.
#[pyclass(module = "decal._native")]
struct Accumulator {
    acc: SummaryAccumulator,
    num_classes: usize,
    kind_name: &'static str,
    keep_ood: bool,
    ood_scores: Vec<f64>,
    ood_rows: usize,
    options: EvalOptions,
}

#[pymethods]
impl Accumulator {
    #[new]
    #[pyo3(signature = (num_classes, kind, profile, bins, membership, ood_score, fpr95, ece_em,
                        prob_tolerance, ood, bootstrap, seed, confidence))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        num_classes: usize,
        kind: &str,
        profile: &str,
        bins: Option<usize>,
        membership: Option<&str>,
        ood_score: Option<&str>,
        fpr95: Option<&str>,
        ece_em: bool,
        prob_tolerance: Option<f64>,
        ood: bool,
        bootstrap: Option<usize>,
        seed: u64,
        confidence: f64,
    ) -> PyResult<Self> {
        if num_classes == 0 {
            return Err(value_error("num_classes", "must be at least 1"));
        }
        let kind = score_kind(kind, "kind")?;
        let profile = build_profile(
            profile,
            bins,
            membership,
            ood_score,
            fpr95,
            ece_em,
            prob_tolerance,
        )?;
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err(value_error(
                "confidence",
                format!("must be in (0, 1), got {confidence}"),
            ));
        }
        if bootstrap == Some(0) {
            return Err(value_error("bootstrap", "needs at least 1 resample"));
        }
        let keep = KeepRows {
            ood_scores: ood,
            bootstrap: bootstrap.is_some(),
        };
        Ok(Accumulator {
            acc: SummaryAccumulator::new(&profile, kind, num_classes, keep),
            num_classes,
            kind_name: if kind == ScoreKind::Logits {
                "logits"
            } else {
                "probabilities"
            },
            keep_ood: ood,
            ood_scores: Vec::new(),
            ood_rows: 0,
            options: EvalOptions {
                bootstrap: bootstrap.map(|resamples| BootstrapConfig {
                    resamples,
                    seed,
                    confidence,
                }),
            },
        })
    }

    /// Adds a chunk of rows `[n, K]` with their labels `[n]` (validated; row numbers in errors count from
    /// the first row ever added).
    #[pyo3(signature = (values, labels, values_arg = "logits", labels_arg = "labels"))]
    fn update(
        &mut self,
        py: Python<'_>,
        values: &Bound<'_, PyAny>,
        labels: PyReadonlyArray1<'_, i64>,
        values_arg: &str,
        labels_arg: &str,
    ) -> PyResult<()> {
        let scores = ScoreArray::extract(values, values_arg)?;
        let (rows, k) = scores.shape();
        let k_acc = self.num_classes;
        if k != k_acc {
            return Err(value_error(
                values_arg,
                format!("has {k} columns but the accumulator was made for {k_acc} classes"),
            ));
        }
        let y = labels_slice(&labels, labels_arg)?;
        if y.len() != rows {
            return Err(value_error(
                labels_arg,
                format!("has {} labels but {values_arg} has {rows} rows", y.len()),
            ));
        }
        let v = scores.values(values_arg)?;
        let acc = &mut self.acc;
        py.detach(|| acc.add(v, y))
            .map_err(|e| metrics_error(e, values_arg, labels_arg))
    }

    /// Adds a chunk of out-of-distribution predictions `[n, K]` (scored with the profile's OOD score).
    #[pyo3(signature = (kind, values, values_arg = "ood_logits"))]
    fn update_ood(
        &mut self,
        py: Python<'_>,
        kind: &str,
        values: &Bound<'_, PyAny>,
        values_arg: &str,
    ) -> PyResult<()> {
        if !self.keep_ood {
            return Err(value_error(
                values_arg,
                "this accumulator was made without ood=True, so it kept no in-distribution scores",
            ));
        }
        let kind = score_kind(kind, "kind")?;
        let scores = ScoreArray::extract(values, values_arg)?;
        let (_, k) = scores.shape();
        let k_acc = self.num_classes;
        if k != k_acc {
            return Err(value_error(
                values_arg,
                format!("has {k} classes but the in-distribution predictions have {k_acc}"),
            ));
        }
        let v = scores.values(values_arg)?;
        let (acc, offset) = (&self.acc, self.ood_rows);
        let s = py
            .detach(|| acc.ood_scores(kind, v, offset))
            .map_err(|e| metrics_error(e, values_arg, values_arg))?;
        self.ood_rows += s.len();
        self.ood_scores.extend(s);
        Ok(())
    }

    /// The summary as JSON text (the object `decal metrics --json` writes, without `inputs`).
    fn compute_json(&self, py: Python<'_>) -> PyResult<String> {
        let summary = self.summary(py)?;
        serde_json::to_string(&summary).map_err(|e| value_error("compute", e))
    }

    /// Writes the reliability diagram `stem.svg`, `stem.png` and `stem.csv`; returns the paths.
    fn write_reliability(
        &self,
        py: Python<'_>,
        stem: PathBuf,
        label: &str,
        title: &str,
    ) -> PyResult<Vec<String>> {
        let summary = self.summary(py)?;
        let series = ReliabilitySeries::from_metrics(
            label,
            &summary.reliability,
            Some(summary.ece),
            &summary.definitions.ece,
        );
        let files = py
            .detach(|| write_reliability_diagram(&stem, &[series], title))
            .map_err(|e| PyOSError::new_err(format!("path: {e}")))?;
        Ok(files.into_iter().map(|p| p.display().to_string()).collect())
    }

    /// Rows added so far.
    #[getter]
    fn rows(&self) -> usize {
        self.acc.rows()
    }

    /// OOD rows added so far.
    #[getter]
    fn ood_rows(&self) -> usize {
        self.ood_rows
    }

    /// Number of classes K.
    #[getter]
    fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// `logits` or `probabilities`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind_name
    }

    /// The profile's recorded name (e.g. `paper` or `default(bins=20)`).
    #[getter]
    fn profile(&self) -> String {
        self.acc.profile().name.clone()
    }
}

impl Accumulator {
    /// Finishes a copy of the state (so `compute` can be called again after more updates), exactly as
    /// `decal metrics` finishes its merged accumulator.
    fn summary(&self, py: Python<'_>) -> PyResult<Summary> {
        if self.acc.rows() == 0 {
            return Err(PyValueError::new_err(
                "no predictions were added (call update(logits, labels) first)",
            ));
        }
        if self.keep_ood && self.ood_scores.is_empty() {
            return Err(PyValueError::new_err(
                "ood=True but no out-of-distribution predictions were added (call update_ood first)",
            ));
        }
        let acc = self.acc.clone();
        let ood = self
            .keep_ood
            .then(|| (acc.ood_score_name(), None, self.ood_scores.clone()));
        let options = self.options;
        Ok(py.detach(move || acc.finish(ood, options)))
    }
}

/// A fitted post-hoc calibrator (the `decal_calib::Calibrator` that `decal calibrate` fits and saves).
/// Documented in Python as `decal.Calibrator`.
#[pyclass(module = "decal._native", name = "NativeCalibrator")]
struct NativeCalibrator {
    cal: Calibrator,
    fitted_rows: Option<usize>,
}

#[pymethods]
impl NativeCalibrator {
    /// Calibrated probabilities `[N, K]` (float64) for logits `[N, K]`.
    #[pyo3(signature = (logits, arg = "logits"))]
    fn apply<'py>(
        &self,
        py: Python<'py>,
        logits: &Bound<'py, PyAny>,
        arg: &str,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let scores = ScoreArray::extract(logits, arg)?;
        let (rows, k) = scores.shape();
        let z = scores.to_f64(arg)?;
        let cal = &self.cal;
        let probs = py
            .detach(|| cal.apply(&z, k))
            .map_err(|e| value_error(arg, e))?;
        let array = Array2::from_shape_vec((rows, k), probs)
            .map_err(|e| value_error(arg, format!("internal shape error: {e}")))?;
        Ok(array.into_pyarray(py))
    }

    /// The record `decal calibrate --out DIR` writes as `DIR/calibrator.json` (pretty JSON).
    fn to_json(&self) -> PyResult<String> {
        let mut record = serde_json::json!({
            "calibrator": &self.cal,
            "num_classes": self.cal.num_classes(),
            "apply": APPLY_HINT,
            "decal_version": env!("CARGO_PKG_VERSION"),
        });
        if let (Some(rows), Some(obj)) = (self.fitted_rows, record.as_object_mut()) {
            obj.insert(
                "fitted_on".into(),
                serde_json::json!({ "logits": "decal.calibrate (Python)", "labels": "decal.calibrate (Python)", "rows": rows }),
            );
        }
        serde_json::to_string_pretty(&record).map_err(|e| value_error("to_json", e))
    }

    /// Reads a calibrator record (as `to_json` and `decal calibrate --out` write it) or a bare calibrator,
    /// validated (`Calibrator::validate`: positive finite temperature, consistent K, bins, knots).
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| value_error("text", format!("not valid JSON: {e}")))?;
        let inner = value.get("calibrator").cloned().unwrap_or(value);
        let cal: Calibrator = serde_json::from_value(inner)
            .map_err(|e| value_error("text", format!("not a decal calibrator: {e}")))?;
        // Checked like user input, as `decal calibrate --apply` does.
        cal.validate().map_err(|e| value_error("text", e))?;
        Ok(NativeCalibrator {
            cal,
            fitted_rows: None,
        })
    }

    /// Writes `to_json()` to `path` atomically.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        let text = self.to_json()? + "\n";
        decal_core::write_atomic(&path, text.as_bytes())
            .map_err(|e| PyOSError::new_err(e.to_string()))
    }

    /// The method tag: temperature, vector, histogram or isotonic.
    #[getter]
    fn method(&self) -> &'static str {
        match &self.cal {
            Calibrator::Temperature(_) => "temperature",
            Calibrator::Vector(_) => "vector",
            Calibrator::Histogram(_) => "histogram",
            Calibrator::Isotonic(_) => "isotonic",
        }
    }

    /// Number of classes K it was fitted for.
    #[getter]
    fn num_classes(&self) -> usize {
        self.cal.num_classes()
    }

    /// The fitted temperature T (temperature scaling only; None otherwise).
    #[getter]
    fn temperature(&self) -> Option<f64> {
        match &self.cal {
            Calibrator::Temperature(t) => Some(t.temperature),
            _ => None,
        }
    }

    /// The calibrator alone (without the record around it) as JSON text.
    fn params_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.cal).map_err(|e| value_error("params", e))
    }

    /// One line: method and key parameters (as `decal calibrate` prints it).
    fn describe(&self) -> String {
        self.cal.describe()
    }
}

/// Fits `method` on validation logits `[N, K]` (float32/float64) and labels `[N]`.
#[pyfunction]
fn fit_calibrator(
    py: Python<'_>,
    method: &str,
    val_logits: &Bound<'_, PyAny>,
    val_labels: PyReadonlyArray1<'_, i64>,
) -> PyResult<NativeCalibrator> {
    let m = Method::by_name(method).ok_or_else(|| {
        value_error(
            "method",
            format!("unknown method '{method}' (use 'temperature', 'temperature-lbfgs', 'vector', 'histogram' or 'isotonic')"),
        )
    })?;
    let scores = ScoreArray::extract(val_logits, "val_logits")?;
    let (rows, k) = scores.shape();
    let y = labels_slice(&val_labels, "val_labels")?;
    if y.len() != rows {
        return Err(value_error(
            "val_labels",
            format!("has {} labels but val_logits has {rows} rows", y.len()),
        ));
    }
    let z = scores.to_f64("val_logits")?;
    let cal = py
        .detach(|| Calibrator::fit(m, &z, y, k))
        .map_err(|e| match e {
            decal_calib::CalibError::LabelOutOfRange { .. } => value_error("val_labels", e),
            decal_calib::CalibError::SingleClass { .. } => value_error("val_labels", e),
            other => value_error(&format!("val_logits (fitting {method})"), other),
        })?;
    Ok(NativeCalibrator {
        cal,
        fitted_rows: Some(rows),
    })
}

/// The native module behind `import decal`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Accumulator>()?;
    m.add_class::<NativeCalibrator>()?;
    m.add_function(wrap_pyfunction!(fit_calibrator, m)?)?;
    Ok(())
}
