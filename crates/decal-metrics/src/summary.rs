//! One entry point for every command that reports metrics (`decal metrics`, `decal eval`, the experiment
//! runner): [`evaluate`] a [`PredictionInput`] under a [`Profile`] and get a serialisable [`Summary`] whose
//! top-level `accuracy, ece, mce, nll, brier, brier_div_k` are fractions and whose `definitions` name every
//! definition used. [`SummaryAccumulator`] computes the same summary from chunks (streaming; mergeable), and
//! [`evaluate`] is implemented with it, so the one-shot and streaming paths cannot drift apart.
//!
//! Memory: binned metrics, accuracy, NLL and Brier use O(M·K) memory whatever N. Equal-mass ECE keeps the
//! confidences (9 bytes/row), bootstrap keeps 5 values per row, and OOD metrics keep one score per ID row.

use serde::{Deserialize, Serialize};

use crate::binning::Bins;
use crate::bootstrap::{bootstrap, BootstrapConfig, BootstrapRows, BootstrapSummary};
use crate::calibration::{
    ece_equal_mass_in_place, BinnedAccumulator, ClasswiseAccumulator, ReliabilityBins,
};
use crate::error::MetricsError;
use crate::ood::{self, PrEstimator};
use crate::profile::{Definitions, Fpr95Convention, OodScore, Profile, SoftmaxPrecision};
use crate::scoring::{
    argmax, row_brier, row_nll_sklearn, softmax_into, NllVariant, ScoreAccumulator, SKLEARN_EPS,
};

/// A borrowed row-major `[N, K]` matrix in f32 or f64 (f32 values are widened exactly).
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    /// float32 storage.
    F32(&'a [f32]),
    /// float64 storage.
    F64(&'a [f64]),
}

impl<'a> Values<'a> {
    /// Number of stored values.
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
        }
    }

    /// Whether no values are stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values `lo..hi` (element indices).
    pub fn slice(&self, lo: usize, hi: usize) -> Values<'a> {
        match *self {
            Values::F32(v) => Values::F32(&v[lo..hi]),
            Values::F64(v) => Values::F64(&v[lo..hi]),
        }
    }

    #[inline]
    fn row_into(&self, row: usize, k: usize, out: &mut [f64]) {
        match self {
            Values::F32(v) => out
                .iter_mut()
                .zip(&v[row * k..(row + 1) * k])
                .for_each(|(o, &x)| *o = f64::from(x)),
            Values::F64(v) => out.copy_from_slice(&v[row * k..(row + 1) * k]),
        }
    }
}

/// Whether a matrix holds logits or probabilities. Never guessed: the caller says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// Unnormalised logits.
    Logits,
    /// Probabilities (rows sum to 1 within the profile's tolerance).
    Probabilities,
}

impl ScoreKind {
    fn name(self) -> &'static str {
        match self {
            ScoreKind::Logits => "logits",
            ScoreKind::Probabilities => "probabilities",
        }
    }
}

/// OOD input: the OOD set's predictions (scored with the profile's OOD score), or precomputed scores
/// for both sets (e.g. negative mutual information of a V-TST head).
#[derive(Debug, Clone)]
pub enum OodInput<'a> {
    /// Predictions on the OOD set, same K as the ID predictions.
    Predictions {
        /// Logits or probabilities.
        kind: ScoreKind,
        /// Row-major `[N_ood, K]`.
        values: Values<'a>,
    },
    /// Precomputed scores, larger = more in-distribution.
    Scores {
        /// Score name recorded in `definitions`.
        name: String,
        /// Scores of the in-distribution examples.
        id: Vec<f64>,
        /// Scores of the OOD examples.
        ood: Vec<f64>,
    },
}

/// Validated predictions, labels and optional OOD input. Construct with [`PredictionInput::new`], which checks
/// shapes, label range, finiteness and (for probabilities) that rows are distributions.
#[derive(Debug, Clone)]
pub struct PredictionInput<'a> {
    kind: ScoreKind,
    values: Values<'a>,
    num_classes: usize,
    labels: &'a [i64],
    ood: Option<OodInput<'a>>,
}

/// Checks `values` (rows `row_offset..`) for shape, finiteness and, for probabilities, that each row is a
/// distribution within `tolerance`; checks labels when given.
pub fn validate_rows(
    what: &'static str,
    kind: ScoreKind,
    values: Values<'_>,
    num_classes: usize,
    labels: Option<&[i64]>,
    row_offset: usize,
    tolerance: f64,
) -> Result<(), MetricsError> {
    if num_classes == 0 {
        return Err(MetricsError::Unsupported(
            "number of classes must be at least 1".into(),
        ));
    }
    let rows = values.len() / num_classes;
    if values.len() % num_classes != 0 || labels.is_some_and(|l| l.len() != rows) {
        return Err(MetricsError::Shape {
            what,
            len: values.len(),
            rows: labels.map_or(rows, |l| l.len()),
            num_classes,
        });
    }
    if let Some(labels) = labels {
        if let Some(i) = labels
            .iter()
            .position(|&y| y < 0 || y as u64 >= num_classes as u64)
        {
            return Err(MetricsError::LabelOutOfRange {
                row: row_offset + i,
                label: labels[i],
                num_classes,
            });
        }
    }
    if kind == ScoreKind::Logits {
        // Fast path: one vectorisable pass; the row-by-row scan below only runs to name a bad value.
        let all_finite = match values {
            Values::F32(v) => v.iter().fold(true, |ok, x| ok & x.is_finite()),
            Values::F64(v) => v.iter().fold(true, |ok, x| ok & x.is_finite()),
        };
        if all_finite {
            return Ok(());
        }
    }
    let mut row = vec![0.0; num_classes];
    for i in 0..rows {
        values.row_into(i, num_classes, &mut row);
        if let Some(col) = row.iter().position(|x| !x.is_finite()) {
            return Err(MetricsError::NonFinite {
                what,
                row: row_offset + i,
                col,
                value: row[col],
            });
        }
        if kind == ScoreKind::Probabilities {
            if let Some(col) = row.iter().position(|&p| !(0.0..=1.0).contains(&p)) {
                return Err(MetricsError::NotProbabilities {
                    what,
                    row: row_offset + i,
                    problem: format!("entry {col} is {} (outside [0, 1])", row[col]),
                });
            }
            let s: f64 = row.iter().sum();
            if (s - 1.0).abs() > tolerance {
                return Err(MetricsError::NotProbabilities {
                    what,
                    row: row_offset + i,
                    problem: format!("sums to {s} (tolerance {tolerance})"),
                });
            }
        }
    }
    Ok(())
}

impl<'a> PredictionInput<'a> {
    /// Validated input with the default probability-sum tolerance (1e-3).
    pub fn new(
        kind: ScoreKind,
        values: Values<'a>,
        num_classes: usize,
        labels: &'a [i64],
    ) -> Result<Self, MetricsError> {
        Self::with_tolerance(kind, values, num_classes, labels, 1e-3)
    }

    /// Validated input with an explicit tolerance on `|Σ_k p_k − 1|`.
    pub fn with_tolerance(
        kind: ScoreKind,
        values: Values<'a>,
        num_classes: usize,
        labels: &'a [i64],
        tolerance: f64,
    ) -> Result<Self, MetricsError> {
        if labels.is_empty() || values.is_empty() {
            return Err(MetricsError::Empty);
        }
        validate_rows(
            kind.name(),
            kind,
            values,
            num_classes,
            Some(labels),
            0,
            tolerance,
        )?;
        Ok(PredictionInput {
            kind,
            values,
            num_classes,
            labels,
            ood: None,
        })
    }

    /// Logits `[N, K]` in f32.
    pub fn logits_f32(
        logits: &'a [f32],
        num_classes: usize,
        labels: &'a [i64],
    ) -> Result<Self, MetricsError> {
        Self::new(ScoreKind::Logits, Values::F32(logits), num_classes, labels)
    }

    /// Logits `[N, K]` in f64.
    pub fn logits_f64(
        logits: &'a [f64],
        num_classes: usize,
        labels: &'a [i64],
    ) -> Result<Self, MetricsError> {
        Self::new(ScoreKind::Logits, Values::F64(logits), num_classes, labels)
    }

    /// Probabilities `[N, K]` in f32.
    pub fn probs_f32(
        probs: &'a [f32],
        num_classes: usize,
        labels: &'a [i64],
    ) -> Result<Self, MetricsError> {
        Self::new(
            ScoreKind::Probabilities,
            Values::F32(probs),
            num_classes,
            labels,
        )
    }

    /// Probabilities `[N, K]` in f64.
    pub fn probs_f64(
        probs: &'a [f64],
        num_classes: usize,
        labels: &'a [i64],
    ) -> Result<Self, MetricsError> {
        Self::new(
            ScoreKind::Probabilities,
            Values::F64(probs),
            num_classes,
            labels,
        )
    }

    /// Adds OOD predictions (validated: same K, finite, distributions when probabilities, non-empty).
    pub fn with_ood(mut self, kind: ScoreKind, values: Values<'a>) -> Result<Self, MetricsError> {
        if values.is_empty() {
            return Err(MetricsError::Empty);
        }
        validate_rows("ood", kind, values, self.num_classes, None, 0, 1e-3)?;
        self.ood = Some(OodInput::Predictions { kind, values });
        Ok(self)
    }

    /// Adds precomputed OOD scores for both sets (`id` must have one score per ID row).
    pub fn with_ood_scores(
        mut self,
        name: &str,
        id: Vec<f64>,
        ood: Vec<f64>,
    ) -> Result<Self, MetricsError> {
        if id.len() != self.labels.len() {
            return Err(MetricsError::Shape {
                what: "id scores",
                len: id.len(),
                rows: self.labels.len(),
                num_classes: 1,
            });
        }
        if ood.is_empty() {
            return Err(MetricsError::Empty);
        }
        for (what, v) in [("id scores", &id), ("ood scores", &ood)] {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(MetricsError::NonFinite {
                    what,
                    row: i,
                    col: 0,
                    value: v[i],
                });
            }
        }
        self.ood = Some(OodInput::Scores {
            name: name.to_string(),
            id,
            ood,
        });
        Ok(self)
    }

    /// Number of predictions N.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always false for a validated input.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes K.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Logits or probabilities.
    pub fn kind(&self) -> ScoreKind {
        self.kind
    }
}

/// All OOD metrics, each under its convention's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OodSummary {
    /// Number of in-distribution examples.
    pub n_id: usize,
    /// Number of OOD examples.
    pub n_ood: usize,
    /// The score used.
    pub score: String,
    /// AUROC (ID positive, ties half).
    pub auroc: f64,
    /// AUPR-In, average precision.
    pub aupr_in_ap: f64,
    /// AUPR-In, trapezoid.
    pub aupr_in_trapz: f64,
    /// AUPR-Out, average precision.
    pub aupr_out_ap: f64,
    /// AUPR-Out, trapezoid.
    pub aupr_out_trapz: f64,
    /// FPR@95TPR, ID positive, exact threshold.
    pub fpr95_idpos: f64,
    /// FPR@95TPR, ID positive, interpolated (ood_metrics; the paper).
    pub fpr95_idpos_interp: f64,
    /// FPR@95TPR, OOD positive (OpenOOD).
    pub fpr95_oodpos: f64,
}

/// Other definitions of the headline numbers, for cross-checking against other papers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Alternatives {
    /// NLL without clipping, in nats. From logits: `logsumexp(z) − z_y` in float64 (never through the
    /// profile's float32-rounded softmax, so a saturated float32 probability of 1.0 still costs its true NLL).
    /// From probabilities: `−ln p_y` of the probabilities the profile uses — as given under `default`, rounded to
    /// float32 under `paper` — and `+∞` when that `p_y` is 0 (written to JSON as the string `"inf"`, see
    /// [`crate::json`]).
    #[serde(with = "crate::json::float")]
    pub nll_exact: f64,
    /// sklearn-1.1.3 clipped NLL of the profile's probabilities (float32-rounded softmax or float32-rounded
    /// given probabilities under `paper`, float64 under `default`); always finite.
    #[serde(with = "crate::json::float")]
    pub nll_sklearn_clipped: f64,
}

/// Metric results under one profile. Fractions throughout (ECE ×100 only when rendered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of predictions N.
    pub n: u64,
    /// Number of classes K.
    pub num_classes: usize,
    /// Accuracy (fraction).
    #[serde(with = "crate::json::float")]
    pub accuracy: f64,
    /// Top-label equal-width ECE (fraction).
    #[serde(with = "crate::json::float")]
    pub ece: f64,
    /// MCE (fraction).
    #[serde(with = "crate::json::float")]
    pub mce: f64,
    /// RMS calibration error (fraction).
    #[serde(with = "crate::json::float")]
    pub rmsce: f64,
    /// Equal-mass ECE (fraction), when the profile computes it.
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        with = "crate::json::opt_float"
    )]
    pub ece_em: Option<f64>,
    /// Classwise ECE (fraction).
    #[serde(with = "crate::json::float")]
    pub classwise_ece: f64,
    /// NLL under the profile's variant (nats).
    #[serde(with = "crate::json::float")]
    pub nll: f64,
    /// Canonical Brier score.
    #[serde(with = "crate::json::float")]
    pub brier: f64,
    /// Brier / K.
    #[serde(with = "crate::json::float")]
    pub brier_div_k: f64,
    /// AUROC when OOD input was given.
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        with = "crate::json::opt_float"
    )]
    pub auroc: Option<f64>,
    /// FPR@95TPR under the profile's convention when OOD input was given.
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        with = "crate::json::opt_float"
    )]
    pub fpr95: Option<f64>,
    /// AUPR-In under the profile's estimator when OOD input was given.
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        with = "crate::json::opt_float"
    )]
    pub aupr_in: Option<f64>,
    /// AUPR-Out under the profile's estimator when OOD input was given.
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        with = "crate::json::opt_float"
    )]
    pub aupr_out: Option<f64>,
    /// Other definitions of the same quantities.
    pub alternatives: Alternatives,
    /// Every OOD metric under every convention.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ood: Option<OodSummary>,
    /// Bootstrap intervals, when requested.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bootstrap: Option<BootstrapSummary>,
    /// Reliability-diagram bins (the ECE bins).
    pub reliability: ReliabilityBins,
    /// The definitions that produced every number.
    pub definitions: Definitions,
    /// Notes about options that could not be honoured (empty normally).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub warnings: Vec<String>,
}

/// Extra work beyond the point estimates.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EvalOptions {
    /// Bootstrap intervals.
    pub bootstrap: Option<BootstrapConfig>,
}

/// Streaming, mergeable computation of a [`Summary`]: feed row chunks with [`SummaryAccumulator::add`],
/// combine partial accumulators with [`SummaryAccumulator::merge`], then [`SummaryAccumulator::finish`].
#[derive(Debug, Clone)]
pub struct SummaryAccumulator {
    profile: Profile,
    kind: ScoreKind,
    num_classes: usize,
    binned: BinnedAccumulator,
    classwise: ClasswiseAccumulator,
    scores: ScoreAccumulator,
    sum_nll_exact: f64,
    sum_nll_sklearn: f64,
    keep_conf: bool,
    keep_bootstrap: bool,
    keep_id_scores: bool,
    // (confidence, correct) per row, kept only for equal-mass ECE.
    em_rows: Vec<(f64, bool)>,
    boot: BootstrapRows,
    id_scores: Vec<f64>,
    rows: usize,
    ood_score: OodScore,
    warnings: Vec<String>,
}

/// Rows per block of [`SummaryAccumulator::add_blocked`] and [`evaluate`]: each block is summed on its own
/// and the block sums are merged in row order, which fixes the floating-point summation order independently of
/// threads and chunking.
pub const BLOCK_ROWS: usize = 8192;

/// What a [`SummaryAccumulator`] must keep per row beyond the O(1) state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepRows {
    /// Keep ID OOD-scores (needed when OOD metrics will be computed).
    pub ood_scores: bool,
    /// Keep per-row values for the bootstrap.
    pub bootstrap: bool,
}

#[cfg(test)]
struct RowOut {
    conf: f64,
    correct: bool,
    nll_exact: f64,
    nll_sklearn: f64,
    brier: f64,
    score: f64,
}

/// Softmax evaluated the way `torch.softmax` does on float32 logits: logits rounded to f32, `z − max` in
/// f32, `exp` rounded to f32, the sum accumulated in f32, each probability `e_k / sum` rounded to f32. In
/// particular a row saturates to confidence exactly 1.0 whenever the other classes' float32 sum is below
/// half an ulp of 1 (2^-24), as on the seed's GPU, which a correctly rounded softmax would not do.
/// (torch's own summation order and `expf` may differ from this in the last ulp of some entries.)
///
/// Each float32 exponential is libm's `exp` of the float32 difference rounded to float32, obtained without a
/// second `exp` call from the float64 one ([`exp_f32_near`]). Returns the exact `logsumexp(z)` in f64 as well
/// (for the exact NLL), from [`crate::fastmath::exp`] of the f64 differences.
#[inline]
pub fn softmax_f32_into(z: &[f64], out: &mut [f64]) -> f64 {
    let m64 = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let m32 = z
        .iter()
        .map(|&v| v as f32)
        .fold(f32::NEG_INFINITY, f32::max);
    let (mut sum32, mut sum64) = (0.0f32, 0.0f64);
    for (o, &v) in out.iter_mut().zip(z) {
        let d64 = v - m64;
        let e64 = crate::fastmath::exp(d64);
        sum64 += e64;
        let d32 = f64::from(v as f32 - m32);
        let e32 = exp_f32_near(d32, d64, e64);
        *o = f64::from(e32);
        sum32 += e32;
    }
    for o in out.iter_mut() {
        *o = f64::from(*o as f32 / sum32);
    }
    m64 + sum64.ln()
}

/// `d32.exp() as f32` (libm) for `d32` = `d64` rounded through float32, given `e64` = [`crate::fastmath::exp`]
/// of `d64` (≤ 1.5 ulp from the truth), without a second `exp` call in all but a few cases in 10^7, and with
/// the same result bit for bit.
///
/// `exp(d32) = e64 · exp(δ)` with `δ = d32 − d64` (exact in f64, `|δ| ≤ 2^-17` for the `d` that do not
/// underflow float32; 0 when the float32 difference is exact), and the cubic Taylor polynomial of `exp(δ)` is
/// exact to 2^-68. So `c` is within ~3 ulp (f64) of the true `exp(d32)`, and libm's `exp(d32)` within 1 ulp:
/// both round to the same float32 unless a float32 rounding midpoint lies between them. `c` is used only when
/// it is more than 256 ulp (f64) away from every midpoint and in float32's normal range; otherwise `exp` is
/// called.
#[inline(always)]
fn exp_f32_near(d32: f64, d64: f64, e64: f64) -> f32 {
    let e32 = exp_f32_near_fast(d32, d64, e64);
    if e32.is_nan() {
        d32.exp() as f32
    } else {
        e32
    }
}

/// Rows per [`LogitTile`]: the SIMD lanes of its loops run across rows.
const TILE: usize = 16;

/// One row's quantities, as the accumulators take them.
#[derive(Debug, Clone, Copy, Default)]
struct TileOut {
    conf: f64,
    correct: bool,
    nll_exact: f64,
    nll_sklearn: f64,
    brier: f64,
}

/// Softmax, argmax, NLL and Brier of up to [`TILE`] rows of logits at once, stored class-major (`[K][TILE]`)
/// so that every loop over classes runs the rows in SIMD lanes while each row still sees exactly the
/// operations, in the same order, of [`softmax_into`] / [`softmax_f32_into`], [`argmax`],
/// [`row_nll_sklearn`] and [`row_brier`] (so the same bits; pinned by the tests against [`process_row`]).
/// The exponentials come from [`crate::fastmath::exp_slice`], as in those functions.
struct LogitTile {
    k: usize,
    softmax: SoftmaxPrecision,
    z: Vec<f64>,
    d: Vec<f64>,
    e: Vec<f64>,
    p: Vec<f64>,
    out: [TileOut; TILE],
}

impl LogitTile {
    fn new(k: usize, softmax: SoftmaxPrecision) -> Self {
        LogitTile {
            k,
            softmax,
            z: vec![0.0; k * TILE],
            d: vec![0.0; k * TILE],
            e: vec![0.0; k * TILE],
            p: vec![0.0; k * TILE],
            out: [TileOut::default(); TILE],
        }
    }

    /// Row `r`'s probabilities into `out`.
    #[inline(always)]
    fn probs_row(&self, r: usize, out: &mut [f64]) {
        for (c, o) in out.iter_mut().enumerate() {
            *o = self.p[c * TILE + r];
        }
    }

    /// Computes `self.out[r]` and the probabilities of the `labels.len()` rows in `rows` (row-major, `K`
    /// values a row). Lanes past the last row hold zeros and are ignored. (The loops index lanes by `r` on
    /// purpose: that is the form the compiler turns into SIMD across rows.)
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn compute<T: Copy + Into<f64>>(&mut self, rows: &[T], labels: &[i64]) {
        let (k, n) = (self.k, labels.len());
        if n < TILE {
            self.z.fill(0.0);
        }
        for (r, row) in rows.chunks_exact(k).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                self.z[c * TILE + r] = v.into();
            }
        }
        let mut y = [0usize; TILE];
        for (o, &l) in y.iter_mut().zip(labels) {
            *o = l as usize;
        }
        // Row maxima (f64, and of the float32 roundings for the float32 softmax).
        let mut m64 = [f64::NEG_INFINITY; TILE];
        let mut m32 = [f32::NEG_INFINITY; TILE];
        for col in self.z.chunks_exact(TILE) {
            for r in 0..TILE {
                m64[r] = m64[r].max(col[r]);
                m32[r] = m32[r].max(col[r] as f32);
            }
        }
        for (dcol, zcol) in self.d.chunks_exact_mut(TILE).zip(self.z.chunks_exact(TILE)) {
            for r in 0..TILE {
                dcol[r] = zcol[r] - m64[r];
            }
        }
        crate::fastmath::exp_slice_inline(&self.d, &mut self.e);
        let mut sum64 = [0.0f64; TILE];
        for ecol in self.e.chunks_exact(TILE) {
            for r in 0..TILE {
                sum64[r] += ecol[r];
            }
        }
        match self.softmax {
            SoftmaxPrecision::F64 => {
                for (pcol, ecol) in self.p.chunks_exact_mut(TILE).zip(self.e.chunks_exact(TILE)) {
                    for r in 0..TILE {
                        pcol[r] = ecol[r] / sum64[r];
                    }
                }
            }
            SoftmaxPrecision::F32 => {
                // e32 per entry as softmax_f32_into: the (corrected) f64 exponential rounded to float32;
                // the rare entries near a float32 rounding midpoint (marked NaN here) call libm's exp
                // afterwards, as exp_f32_near does.
                let mut any_slow = false;
                for c in 0..k {
                    let at = c * TILE;
                    for r in 0..TILE {
                        let (z, d64, e64) = (self.z[at + r], self.d[at + r], self.e[at + r]);
                        let d32 = f64::from(z as f32 - m32[r]);
                        let e32 = exp_f32_near_fast(d32, d64, e64);
                        any_slow |= e32.is_nan();
                        self.p[at + r] = f64::from(e32);
                    }
                }
                if any_slow {
                    for c in 0..k {
                        for r in 0..TILE {
                            if self.p[c * TILE + r].is_nan() {
                                let d32 = f64::from(self.z[c * TILE + r] as f32 - m32[r]);
                                self.p[c * TILE + r] = f64::from(d32.exp() as f32);
                            }
                        }
                    }
                }
                let mut sum32 = [0.0f32; TILE];
                for pcol in self.p.chunks_exact(TILE) {
                    for r in 0..TILE {
                        sum32[r] += pcol[r] as f32;
                    }
                }
                for pcol in self.p.chunks_exact_mut(TILE) {
                    for r in 0..TILE {
                        pcol[r] = f64::from(pcol[r] as f32 / sum32[r]);
                    }
                }
            }
        }
        // argmax (first maximum), the clipped sum of sklearn's NLL, Brier.
        let mut best = [0u64; TILE];
        let mut conf = [0.0f64; TILE];
        let mut clip_total = [0.0f64; TILE];
        let mut brier = [0.0f64; TILE];
        let mut y64 = [0u64; TILE];
        for (o, &v) in y64.iter_mut().zip(&y) {
            *o = v as u64;
        }
        for (c, pcol) in self.p.chunks_exact(TILE).enumerate() {
            let (c64, first) = (c as u64, c == 0);
            for r in 0..TILE {
                let p = pcol[r];
                let take = first || p > conf[r];
                conf[r] = if take { p } else { conf[r] };
                best[r] = if take { c64 } else { best[r] };
                clip_total[r] += p.clamp(SKLEARN_EPS, 1.0 - SKLEARN_EPS);
                let dd = p - if c64 == y64[r] { 1.0 } else { 0.0 };
                brier[r] += dd * dd;
            }
        }
        for r in 0..n {
            let lse = m64[r] + sum64[r].ln();
            let py = self.p[y[r] * TILE + r];
            self.out[r] = TileOut {
                conf: conf[r],
                correct: best[r] == y64[r],
                nll_exact: lse - self.z[y[r] * TILE + r],
                nll_sklearn: -(py.clamp(SKLEARN_EPS, 1.0 - SKLEARN_EPS) / clip_total[r]).ln(),
                brier: brier[r],
            };
        }
    }
}

/// [`exp_f32_near`] without its fallback (branch-free, for SIMD loops): NaN where it would call `exp`.
#[inline(always)]
fn exp_f32_near_fast(d32: f64, d64: f64, e64: f64) -> f32 {
    let delta = d32 - d64;
    let c = e64 + e64 * (delta * (1.0 + delta * (0.5 + delta * (1.0 / 6.0))));
    // f64 has 29 more fraction bits than f32: the low 29 bits say where `c` sits between two float32 values.
    let low = c.to_bits() & ((1 << 29) - 1);
    if e64 >= 1e-37 && delta.abs() <= 1.0 / 65536.0 && low.abs_diff(1 << 28) > 256 {
        c as f32
    } else {
        f32::NAN
    }
}

/// The profile's probabilities of one row `z` into `probs`; returns the exact NLL of class `y` (see
/// [`Alternatives::nll_exact`]).
#[inline(always)]
fn row_probabilities(
    kind: ScoreKind,
    softmax: SoftmaxPrecision,
    z: &[f64],
    probs: &mut [f64],
    y: usize,
) -> f64 {
    match kind {
        ScoreKind::Logits => {
            let lse = match softmax {
                SoftmaxPrecision::F64 => softmax_into(z, probs),
                SoftmaxPrecision::F32 => softmax_f32_into(z, probs),
            };
            lse - z[y]
        }
        ScoreKind::Probabilities => {
            match softmax {
                SoftmaxPrecision::F64 => probs.copy_from_slice(z),
                // The seed's probabilities are float32 and torchmetrics casts confidences to float32 before
                // bucketizing: a float64 0.3 sits below the float32 edge 0.3f (bin [0.2, 0.3)), its float32
                // rounding on it (bin [0.3, 0.4)).
                SoftmaxPrecision::F32 => probs
                    .iter_mut()
                    .zip(z)
                    .for_each(|(p, &v)| *p = f64::from(v as f32)),
            }
            -probs[y].ln()
        }
    }
}

/// The OOD score of one row (`z` the input row, `probs` the profile's probabilities, `conf` their maximum).
#[inline]
fn row_score(score: OodScore, z: &[f64], probs: &[f64], conf: f64) -> f64 {
    match score {
        OodScore::Msp => conf,
        OodScore::MaxLogit => z.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        OodScore::Energy { temperature } => {
            let scaled: Vec<f64> = z.iter().map(|v| v / temperature).collect();
            temperature * crate::scoring::logsumexp(&scaled)
        }
        OodScore::NegEntropy => ood::scores::neg_entropy_row(probs),
    }
}

/// Computes probabilities and per-row quantities of one row `z` under `profile`: the per-row loop before
/// [`SummaryAccumulator::add_rows`], kept as the reference the fast loop is pinned to.
#[cfg(test)]
fn process_row(
    kind: ScoreKind,
    profile: &Profile,
    score: OodScore,
    z: &[f64],
    probs: &mut [f64],
    label: Option<usize>,
) -> RowOut {
    let nll_exact = match kind {
        ScoreKind::Logits => {
            let lse = match profile.softmax {
                SoftmaxPrecision::F64 => softmax_into(z, probs),
                SoftmaxPrecision::F32 => softmax_f32_into(z, probs),
            };
            label.map_or(0.0, |y| lse - z[y])
        }
        ScoreKind::Probabilities => {
            match profile.softmax {
                SoftmaxPrecision::F64 => probs.copy_from_slice(z),
                // The seed's probabilities are float32 and torchmetrics casts confidences to float32 before
                // bucketizing: a float64 0.3 sits below the float32 edge 0.3f (bin [0.2, 0.3)), its float32
                // rounding on it (bin [0.3, 0.4)).
                SoftmaxPrecision::F32 => probs
                    .iter_mut()
                    .zip(z)
                    .for_each(|(p, &v)| *p = f64::from(v as f32)),
            }
            label.map_or(0.0, |y| -probs[y].ln())
        }
    };
    let pred = argmax(probs);
    let conf = probs[pred];
    let (correct, nll_sklearn, brier) = match label {
        Some(y) => (pred == y, row_nll_sklearn(probs, y), row_brier(probs, y)),
        None => (false, 0.0, 0.0),
    };
    let s = row_score(score, z, probs, conf);
    RowOut {
        conf,
        correct,
        nll_exact,
        nll_sklearn,
        brier,
        score: s,
    }
}

impl SummaryAccumulator {
    /// An empty accumulator for K classes of `kind` predictions under `profile`.
    pub fn new(profile: &Profile, kind: ScoreKind, num_classes: usize, keep: KeepRows) -> Self {
        let bins = Bins::new(profile.num_bins, profile.membership);
        let mut warnings = Vec::new();
        let mut ood_score = profile.ood_score;
        if ood_score.needs_logits() && kind == ScoreKind::Probabilities {
            warnings.push(format!(
                "OOD score {} needs logits; used msp because probabilities were given",
                ood_score.describe()
            ));
            ood_score = OodScore::Msp;
        }
        SummaryAccumulator {
            profile: profile.clone(),
            kind,
            num_classes,
            binned: BinnedAccumulator::new(bins.clone()),
            classwise: ClasswiseAccumulator::new(bins, num_classes),
            scores: ScoreAccumulator::new(num_classes),
            sum_nll_exact: 0.0,
            sum_nll_sklearn: 0.0,
            keep_conf: profile.equal_mass,
            keep_bootstrap: keep.bootstrap,
            keep_id_scores: keep.ood_scores,
            em_rows: Vec::new(),
            boot: BootstrapRows::default(),
            id_scores: Vec::new(),
            rows: 0,
            ood_score,
            warnings,
        }
    }

    /// Number of rows added so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Validates and adds a chunk of rows; error row numbers count from the first row ever added.
    pub fn add(&mut self, values: Values<'_>, labels: &[i64]) -> Result<(), MetricsError> {
        validate_rows(
            self.kind.name(),
            self.kind,
            values,
            self.num_classes,
            Some(labels),
            self.rows,
            self.profile.prob_sum_tolerance,
        )?;
        self.add_unchecked(values, labels);
        Ok(())
    }

    /// Like [`Self::add`], but error messages number rows from `first_row` (for callers that split one input
    /// across several accumulators and merge them afterwards).
    pub fn add_at(
        &mut self,
        values: Values<'_>,
        labels: &[i64],
        first_row: usize,
    ) -> Result<(), MetricsError> {
        validate_rows(
            self.kind.name(),
            self.kind,
            values,
            self.num_classes,
            Some(labels),
            first_row,
            self.profile.prob_sum_tolerance,
        )?;
        self.add_unchecked(values, labels);
        Ok(())
    }

    fn add_unchecked(&mut self, values: Values<'_>, labels: &[i64]) {
        match values {
            Values::F32(v) => self.add_rows(v, labels),
            Values::F64(v) => self.add_rows(v, labels),
        }
    }

    /// The per-row loop: the same operations in the same order as [`process_row`] (so the same bits), without
    /// its per-row overheads (row copies through [`Values::row_into`], OOD scores nobody keeps, bin lookups
    /// through a non-inlined call). Pinned bit-for-bit against the [`process_row`] loop by unit tests.
    /// Logits go through [`LogitTile`] (SIMD across rows, the same operations per row).
    fn add_rows<T: Copy + Into<f64>>(&mut self, values: &[T], labels: &[i64]) {
        let k = self.num_classes;
        if self.kind == ScoreKind::Logits {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above), the only requirement of the call.
                    #[allow(unsafe_code)]
                    unsafe {
                        self.add_logit_rows_avx2(values, labels)
                    };
                    return;
                }
            }
            self.add_logit_rows(values, labels);
            return;
        }
        let mut z = vec![0.0f64; k];
        let mut probs = vec![0.0f64; k];
        let softmax = self.profile.softmax;
        for (row, &y) in values.chunks_exact(k).zip(labels) {
            for (o, &x) in z.iter_mut().zip(row) {
                *o = x.into();
            }
            let y = y as usize;
            let nll_exact = row_probabilities(ScoreKind::Probabilities, softmax, &z, &mut probs, y);
            let pred = argmax(&probs);
            let out = TileOut {
                conf: probs[pred],
                correct: pred == y,
                nll_exact,
                nll_sklearn: row_nll_sklearn(&probs, y),
                brier: row_brier(&probs, y),
            };
            self.classwise.add_row(&probs, y);
            self.add_row_out(&z, &probs, out);
        }
        self.rows += labels.len();
    }

    /// [`Self::add_logit_rows`] compiled for AVX2 (the same operations, so the same bits).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn add_logit_rows_avx2<T: Copy + Into<f64>>(&mut self, values: &[T], labels: &[i64]) {
        self.add_logit_rows(values, labels);
    }

    /// Rows of logits, [`TILE`] at a time through [`LogitTile`] and [`ClasswiseAccumulator::add_tile`].
    #[inline(always)]
    fn add_logit_rows<T: Copy + Into<f64>>(&mut self, values: &[T], labels: &[i64]) {
        let k = self.num_classes;
        let mut tile = LogitTile::new(k, self.profile.softmax);
        let (mut probs, mut z) = (vec![0.0f64; k], vec![0.0f64; k]);
        let need_rows = self.keep_id_scores && self.ood_score != OodScore::Msp;
        let mut ys = [0usize; TILE];
        let mut pending = Vec::with_capacity(k * TILE);
        for (rows, ls) in values.chunks(k * TILE).zip(labels.chunks(TILE)) {
            tile.compute(rows, ls);
            for (o, &l) in ys.iter_mut().zip(ls) {
                *o = l as usize;
            }
            self.classwise
                .add_tile(&tile.p, TILE, &ys[..ls.len()], &mut pending);
            for r in 0..ls.len() {
                if need_rows {
                    tile.probs_row(r, &mut probs);
                    for (o, &x) in z.iter_mut().zip(&rows[r * k..(r + 1) * k]) {
                        *o = x.into();
                    }
                }
                self.add_row_out(&z, &probs, tile.out[r]);
            }
        }
        self.rows += labels.len();
    }

    /// Accumulates one row's quantities except the classwise bins (the row's input `z` and probabilities
    /// `probs` are used only for OOD scores other than MSP).
    #[inline(always)]
    fn add_row_out(&mut self, z: &[f64], probs: &[f64], out: TileOut) {
        let TileOut {
            conf,
            correct,
            nll_exact,
            nll_sklearn,
            brier,
        } = out;
        let nll = match self.profile.nll {
            NllVariant::Exact => nll_exact,
            NllVariant::SklearnClipped => nll_sklearn,
        };
        let slot = self.binned.add_slot(conf, correct);
        self.scores.add(correct, nll, brier);
        self.sum_nll_exact += nll_exact;
        self.sum_nll_sklearn += nll_sklearn;
        if self.keep_conf {
            self.em_rows.push((conf, correct));
        }
        if self.keep_bootstrap {
            self.boot.slot.push(slot.map_or(u32::MAX, |s| s as u32));
            self.boot.conf.push(conf);
            self.boot.correct.push(correct);
            self.boot.nll.push(nll);
            self.boot.brier.push(brier);
        }
        if self.keep_id_scores {
            let score = match self.ood_score {
                OodScore::Msp => conf,
                other => row_score(other, z, probs, conf),
            };
            self.id_scores.push(score);
        }
    }

    /// Validates and adds rows like [`Self::add`], in blocks of [`BLOCK_ROWS`] rows on the rayon thread pool.
    ///
    /// Summation order is fixed by the rows alone: block `b` (rows `b·BLOCK_ROWS ..` counted from this call's
    /// first row) is summed sequentially into a fresh accumulator, and the blocks are merged into `self` in row
    /// order. So the result is bit-identical for any number of threads, and identical to [`evaluate`] on the
    /// same rows when every call but the last adds a multiple of [`BLOCK_ROWS`] rows (as `decal metrics` does).
    /// It differs from one sequential [`Self::add`] over the same rows only by f64 re-association of the
    /// per-bin and NLL/Brier sums (relative ~1e-15 per block boundary; counts and bins are exact).
    /// On error nothing is added.
    pub fn add_blocked(&mut self, values: Values<'_>, labels: &[i64]) -> Result<(), MetricsError> {
        let k = self.num_classes;
        let first_row = self.rows;
        let (kind, tolerance) = (self.kind, self.profile.prob_sum_tolerance);
        if k == 0 || values.len() != labels.len() * k {
            // Shape errors are reported by the sequential check with the usual message.
            return validate_rows(
                kind.name(),
                kind,
                values,
                k,
                Some(labels),
                first_row,
                tolerance,
            );
        }
        use rayon::prelude::*;
        let blocks = labels.len().div_ceil(BLOCK_ROWS);
        (0..blocks)
            .into_par_iter()
            .try_for_each(|b| {
                let (lo, hi) = (b * BLOCK_ROWS, ((b + 1) * BLOCK_ROWS).min(labels.len()));
                validate_rows(
                    kind.name(),
                    kind,
                    values.slice(lo * k, hi * k),
                    k,
                    Some(&labels[lo..hi]),
                    first_row + lo,
                    tolerance,
                )
            })
            .map_err(|_| {
                // Some block failed: report the first failing row, as the sequential check does.
                validate_rows(
                    kind.name(),
                    kind,
                    values,
                    k,
                    Some(labels),
                    first_row,
                    tolerance,
                )
                .expect_err("a block failed validation, so the whole input does")
            })?;
        self.add_blocked_unchecked(values, labels);
        Ok(())
    }

    fn add_blocked_unchecked(&mut self, values: Values<'_>, labels: &[i64]) {
        use rayon::prelude::*;
        let k = self.num_classes;
        let blocks = labels.len().div_ceil(BLOCK_ROWS);
        // Waves of a few blocks per thread bound the memory of the not-yet-merged partial accumulators.
        let wave = (4 * rayon::current_num_threads()).max(1);
        let mut b0 = 0;
        while b0 < blocks {
            let b1 = (b0 + wave).min(blocks);
            let parts: Vec<SummaryAccumulator> = (b0..b1)
                .into_par_iter()
                .map(|b| {
                    let (lo, hi) = (b * BLOCK_ROWS, ((b + 1) * BLOCK_ROWS).min(labels.len()));
                    let mut part = self.empty_like();
                    part.add_unchecked(values.slice(lo * k, hi * k), &labels[lo..hi]);
                    part
                })
                .collect();
            for part in parts {
                self.merge(part);
            }
            b0 = b1;
        }
    }

    /// An accumulator with the same settings and nothing added.
    fn empty_like(&self) -> SummaryAccumulator {
        SummaryAccumulator {
            profile: self.profile.clone(),
            kind: self.kind,
            num_classes: self.num_classes,
            binned: BinnedAccumulator::new(self.binned.bins().clone()),
            classwise: ClasswiseAccumulator::new(self.binned.bins().clone(), self.num_classes),
            scores: ScoreAccumulator::new(self.num_classes),
            sum_nll_exact: 0.0,
            sum_nll_sklearn: 0.0,
            keep_conf: self.keep_conf,
            keep_bootstrap: self.keep_bootstrap,
            keep_id_scores: self.keep_id_scores,
            em_rows: Vec::new(),
            boot: BootstrapRows::default(),
            id_scores: Vec::new(),
            rows: 0,
            ood_score: self.ood_score,
            warnings: Vec::new(),
        }
    }

    /// The loop [`Self::add_rows`] replaced (one [`process_row`] call per row), kept to pin it bit-for-bit.
    #[cfg(test)]
    fn add_unchecked_reference(&mut self, values: Values<'_>, labels: &[i64]) {
        let k = self.num_classes;
        let mut z = vec![0.0; k];
        let mut probs = vec![0.0; k];
        let slots_bins = self.binned.bins().clone();
        for (i, &y) in labels.iter().enumerate() {
            values.row_into(i, k, &mut z);
            let y = y as usize;
            let r = process_row(
                self.kind,
                &self.profile,
                self.ood_score,
                &z,
                &mut probs,
                Some(y),
            );
            let nll = match self.profile.nll {
                NllVariant::Exact => r.nll_exact,
                NllVariant::SklearnClipped => r.nll_sklearn,
            };
            self.binned.add(r.conf, r.correct);
            self.classwise.add_row(&probs, y);
            self.scores.add(r.correct, nll, r.brier);
            self.sum_nll_exact += r.nll_exact;
            self.sum_nll_sklearn += r.nll_sklearn;
            if self.keep_conf {
                self.em_rows.push((r.conf, r.correct));
            }
            if self.keep_bootstrap {
                self.boot
                    .slot
                    .push(slots_bins.slot(r.conf).map_or(u32::MAX, |s| s as u32));
                self.boot.conf.push(r.conf);
                self.boot.correct.push(r.correct);
                self.boot.nll.push(nll);
                self.boot.brier.push(r.brier);
            }
            if self.keep_id_scores {
                self.id_scores.push(r.score);
            }
        }
        self.rows += labels.len();
    }

    /// Adds everything from `other` (same profile, kind and K). Kept per-row data are appended in the order
    /// `self` then `other`.
    ///
    /// # Panics
    /// When the two accumulators were built with different settings (a programming error).
    pub fn merge(&mut self, other: SummaryAccumulator) {
        assert!(
            self.profile == other.profile
                && self.kind == other.kind
                && self.num_classes == other.num_classes,
            "merged accumulators should share profile, input kind and K"
        );
        self.binned.merge(&other.binned);
        self.classwise.merge(&other.classwise);
        self.scores.merge(&other.scores);
        self.sum_nll_exact += other.sum_nll_exact;
        self.sum_nll_sklearn += other.sum_nll_sklearn;
        self.em_rows.extend(other.em_rows);
        self.boot.slot.extend(other.boot.slot);
        self.boot.conf.extend(other.boot.conf);
        self.boot.correct.extend(other.boot.correct);
        self.boot.nll.extend(other.boot.nll);
        self.boot.brier.extend(other.boot.brier);
        self.id_scores.extend(other.id_scores);
        self.rows += other.rows;
    }

    /// OOD scores of a chunk of OOD predictions under this accumulator's profile (validated).
    pub fn ood_scores(
        &self,
        kind: ScoreKind,
        values: Values<'_>,
        row_offset: usize,
    ) -> Result<Vec<f64>, MetricsError> {
        validate_rows(
            "ood",
            kind,
            values,
            self.num_classes,
            None,
            row_offset,
            self.profile.prob_sum_tolerance,
        )?;
        let score = if self.ood_score.needs_logits() && kind == ScoreKind::Probabilities {
            OodScore::Msp
        } else {
            self.ood_score
        };
        let k = self.num_classes;
        let mut z = vec![0.0; k];
        let mut probs = vec![0.0; k];
        let softmax = self.profile.softmax;
        Ok((0..values.len() / k)
            .map(|i| {
                values.row_into(i, k, &mut z);
                row_probabilities(kind, softmax, &z, &mut probs, 0);
                let conf = probs[argmax(&probs)];
                row_score(score, &z, &probs, conf)
            })
            .collect())
    }

    /// Description of the OOD score actually used (msp when the profile's score needs logits but
    /// probabilities were given).
    pub fn ood_score_name(&self) -> String {
        self.ood_score.describe()
    }

    /// The profile this accumulator computes.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The kept ID scores (in row order), when `KeepRows::ood_scores` was set.
    pub fn id_scores(&self) -> &[f64] {
        &self.id_scores
    }

    /// Final summary. `ood` = scores of the OOD set (from [`Self::ood_scores`]) with the score's name;
    /// the ID scores are those kept while adding rows (or given explicitly in `id_override`).
    pub fn finish(
        mut self,
        ood: Option<(String, Option<Vec<f64>>, Vec<f64>)>,
        options: EvalOptions,
    ) -> Summary {
        let mut warnings = self.warnings;
        let errors = self.binned.errors();
        let n = self.scores.count;
        let nf = n as f64;
        let ece_em = self.keep_conf.then(|| {
            ece_equal_mass_in_place(
                &mut self.em_rows,
                self.profile.num_bins,
                self.profile.equal_mass_tie_safe,
            )
        });
        let mut definitions = self.profile.definitions(self.kind.name());
        let ood_summary = ood.and_then(|(name, id_override, ood_scores)| {
            let id = id_override.unwrap_or(self.id_scores);
            if id.is_empty() || ood_scores.is_empty() {
                warnings.push(
                    "OOD metrics skipped: no ID scores were kept or the OOD set is empty".into(),
                );
                return None;
            }
            definitions.ood_score = name.clone();
            Some(OodSummary {
                n_id: id.len(),
                n_ood: ood_scores.len(),
                score: name,
                auroc: ood::auroc(&id, &ood_scores),
                aupr_in_ap: ood::aupr_in(&id, &ood_scores, PrEstimator::AveragePrecision),
                aupr_in_trapz: ood::aupr_in(&id, &ood_scores, PrEstimator::Trapezoid),
                aupr_out_ap: ood::aupr_out(&id, &ood_scores, PrEstimator::AveragePrecision),
                aupr_out_trapz: ood::aupr_out(&id, &ood_scores, PrEstimator::Trapezoid),
                fpr95_idpos: ood::fpr95_idpos(&id, &ood_scores),
                fpr95_idpos_interp: ood::fpr95_idpos_interp(&id, &ood_scores),
                fpr95_oodpos: ood::fpr95_oodpos(&id, &ood_scores),
            })
        });
        let (auroc, fpr95, aupr_in, aupr_out) = match &ood_summary {
            Some(o) => (
                Some(o.auroc),
                Some(match self.profile.fpr95 {
                    Fpr95Convention::IdposExact => o.fpr95_idpos,
                    Fpr95Convention::IdposInterp => o.fpr95_idpos_interp,
                    Fpr95Convention::OodposFirst => o.fpr95_oodpos,
                }),
                Some(match self.profile.aupr {
                    PrEstimator::AveragePrecision => o.aupr_in_ap,
                    PrEstimator::Trapezoid => o.aupr_in_trapz,
                }),
                Some(match self.profile.aupr {
                    PrEstimator::AveragePrecision => o.aupr_out_ap,
                    PrEstimator::Trapezoid => o.aupr_out_trapz,
                }),
            ),
            None => (None, None, None, None),
        };
        let bootstrap = options.bootstrap.and_then(|cfg| {
            if !self.keep_bootstrap || self.boot.conf.is_empty() || cfg.resamples == 0 {
                warnings.push(
                    "bootstrap skipped: per-row values were not kept or no resamples requested"
                        .into(),
                );
                return None;
            }
            Some(bootstrap(
                &self.boot,
                self.binned.bins().num_slots(),
                self.num_classes,
                cfg,
            ))
        });
        Summary {
            n,
            num_classes: self.num_classes,
            accuracy: self.scores.accuracy(),
            ece: errors.ece,
            mce: errors.mce,
            rmsce: errors.rmsce,
            ece_em,
            classwise_ece: self.classwise.value(),
            nll: self.scores.nll(),
            brier: self.scores.brier(),
            brier_div_k: self.scores.brier_div_k(),
            auroc,
            fpr95,
            aupr_in,
            aupr_out,
            alternatives: Alternatives {
                nll_exact: self.sum_nll_exact / nf,
                nll_sklearn_clipped: self.sum_nll_sklearn / nf,
            },
            ood: ood_summary,
            bootstrap,
            reliability: self.binned.reliability(),
            definitions,
            warnings,
        }
    }
}

/// Runs `f` with the blocked metric computation ([`SummaryAccumulator::add_blocked`], [`evaluate`]) on a
/// dedicated pool of `threads` worker threads. Results do not depend on the number of threads.
pub fn with_threads<R: Send>(
    threads: usize,
    f: impl FnOnce() -> R + Send,
) -> Result<R, MetricsError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| {
            MetricsError::Unsupported(format!("cannot start {threads} worker threads: {e}"))
        })?;
    Ok(pool.install(f))
}

/// Evaluates validated predictions under `profile` (see [`evaluate_with`]).
pub fn evaluate(input: &PredictionInput, profile: &Profile) -> Summary {
    evaluate_with(input, profile, EvalOptions::default())
}

/// Evaluates validated predictions under `profile`, with optional bootstrap intervals.
pub fn evaluate_with(input: &PredictionInput, profile: &Profile, options: EvalOptions) -> Summary {
    let keep = KeepRows {
        ood_scores: matches!(input.ood, Some(OodInput::Predictions { .. })),
        bootstrap: options.bootstrap.is_some(),
    };
    let mut acc = SummaryAccumulator::new(profile, input.kind, input.num_classes, keep);
    acc.add_blocked_unchecked(input.values, input.labels);
    let ood = match &input.ood {
        None => None,
        Some(OodInput::Predictions { kind, values }) => {
            let name = if acc.ood_score.needs_logits() && *kind == ScoreKind::Probabilities {
                acc.warnings
                    .push("OOD set given as probabilities: scored with msp".into());
                OodScore::Msp.describe()
            } else {
                acc.ood_score.describe()
            };
            // Validated by with_ood, so scoring cannot fail; an error here would be a bug.
            let scores = acc.ood_scores(*kind, *values, 0).unwrap_or_default();
            Some((name, None, scores))
        }
        Some(OodInput::Scores { name, id, ood }) => {
            Some((name.clone(), Some(id.clone()), ood.clone()))
        }
    };
    acc.finish(ood, options)
}

/// Evaluates and returns errors instead of requiring a pre-validated input: convenience for callers holding
/// raw slices.
pub fn try_evaluate(
    kind: ScoreKind,
    values: Values<'_>,
    num_classes: usize,
    labels: &[i64],
    profile: &Profile,
) -> Result<Summary, MetricsError> {
    let input = PredictionInput::with_tolerance(
        kind,
        values,
        num_classes,
        labels,
        profile.prob_sum_tolerance,
    )?;
    Ok(evaluate(&input, profile))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluate_hand_example_paper_profile() {
        let probs = [0.8, 0.2, 0.3, 0.7];
        let labels = [0, 1];
        let input = PredictionInput::probs_f64(&probs, 2, &labels).unwrap();
        let s = evaluate(&input, &Profile::paper());
        assert_eq!(s.accuracy, 1.0);
        // The paper profile rounds the float64 probabilities to float32 first (as the seed's are): 0.13 up to
        // float32 rounding; the default profile uses them as given.
        assert!((s.brier - 0.13).abs() < 1e-7);
        assert!((s.brier_div_k - 0.065).abs() < 1e-7);
        let d = evaluate(&input, &Profile::default_profile());
        assert!((d.brier - 0.13).abs() < 1e-12);
        assert_eq!(s.definitions.profile, "paper");
        let json = serde_json::to_value(&s).unwrap();
        for key in [
            "accuracy",
            "ece",
            "mce",
            "nll",
            "brier",
            "brier_div_k",
            "definitions",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert!(json.get("auroc").is_none());
    }

    #[test]
    fn input_validation_names_rows() {
        let labels = [0, 3];
        let err = PredictionInput::probs_f64(&[0.5, 0.5, 0.5, 0.5], 2, &labels).unwrap_err();
        assert_eq!(
            err,
            MetricsError::LabelOutOfRange {
                row: 1,
                label: 3,
                num_classes: 2
            }
        );
        let err = PredictionInput::probs_f64(&[0.5, 0.5, 0.9, 0.5], 2, &[0, 1]).unwrap_err();
        assert!(
            err.to_string().contains("row 1") && err.to_string().contains("sums to 1.4"),
            "{err}"
        );
        let err = PredictionInput::logits_f64(&[0.5, f64::NAN], 2, &[0]).unwrap_err();
        assert!(err.to_string().contains("row 0, column 1"), "{err}");
        assert_eq!(
            PredictionInput::logits_f64(&[], 2, &[]).unwrap_err(),
            MetricsError::Empty
        );
        assert!(matches!(
            PredictionInput::logits_f64(&[1.0, 2.0, 3.0], 2, &[0, 1]).unwrap_err(),
            MetricsError::Shape { .. }
        ));
    }

    #[test]
    fn paper_profile_rounds_softmax_to_f32() {
        // Logit gap 20: p_max = 1 − 2.06e-9 in f64, exactly 1.0 after float32 rounding → torchmetrics' extra bin.
        let logits = [20.0, 0.0];
        let s = evaluate(
            &PredictionInput::logits_f64(&logits, 2, &[0]).unwrap(),
            &Profile::paper(),
        );
        assert_eq!(s.reliability.bins[10].count, 1);
        let d = evaluate(
            &PredictionInput::logits_f64(&logits, 2, &[0]).unwrap(),
            &Profile::default_profile(),
        );
        assert_eq!(d.reliability.bins[14].count, 1);
        assert_eq!(d.reliability.bins[15].count, 0);
    }

    /// xorshift rows: logits with saturating rows (|z| up to 200), exact ties, and probabilities with zeros.
    fn rows(n: usize, k: usize, seed: u64) -> (Vec<f64>, Vec<f32>, Vec<f64>, Vec<i64>) {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut z64, mut z32, mut p, mut y) = (vec![], vec![], vec![], vec![]);
        for i in 0..n {
            let scale = [1.0, 3.0, 30.0, 200.0][i % 4];
            let row: Vec<f32> = (0..k)
                .map(|j| {
                    if i % 7 == 0 && j < 2 {
                        1.5
                    } else {
                        ((next() - 0.5) * scale) as f32
                    }
                })
                .collect();
            z32.extend_from_slice(&row);
            z64.extend(row.iter().map(|&v| f64::from(v) + (next() - 0.5) * 1e-9));
            let mut q: Vec<f64> = (0..k)
                .map(|j| if i % 5 == 0 && j == 1 { 0.0 } else { next() })
                .collect();
            let t: f64 = q.iter().sum();
            q.iter_mut().for_each(|v| *v /= t);
            p.extend(q);
            y.push((next() * k as f64) as i64 % k as i64);
        }
        (z64, z32, p, y)
    }

    fn same(a: &Summary, b: &Summary) {
        assert_eq!(
            serde_json::to_string(a).unwrap(),
            serde_json::to_string(b).unwrap()
        );
    }

    #[test]
    fn fast_row_loop_is_bit_identical_to_process_row() {
        let (k, n) = (7, 3000);
        let (z64, z32, p, y) = rows(n, k, 7);
        let keep = KeepRows {
            ood_scores: true,
            bootstrap: true,
        };
        for mut profile in [Profile::paper(), Profile::default_profile()] {
            for score in [OodScore::Msp, OodScore::NegEntropy, OodScore::MaxLogit] {
                profile.ood_score = score;
                profile.equal_mass = true;
                for (kind, values) in [
                    (ScoreKind::Logits, Values::F32(&z32)),
                    (ScoreKind::Logits, Values::F64(&z64)),
                    (ScoreKind::Probabilities, Values::F64(&p)),
                ] {
                    let mut fast = SummaryAccumulator::new(&profile, kind, k, keep);
                    fast.add_unchecked(values, &y);
                    let mut reference = SummaryAccumulator::new(&profile, kind, k, keep);
                    reference.add_unchecked_reference(values, &y);
                    assert_eq!(fast.id_scores, reference.id_scores);
                    assert_eq!(fast.boot.nll, reference.boot.nll);
                    assert_eq!(fast.boot.slot, reference.boot.slot);
                    let boot = Some(BootstrapConfig {
                        resamples: 3,
                        seed: 1,
                        confidence: 0.9,
                    });
                    same(
                        &fast.finish(None, EvalOptions { bootstrap: boot }),
                        &reference.finish(None, EvalOptions { bootstrap: boot }),
                    );
                }
            }
        }
    }

    #[test]
    fn the_logit_tile_matches_process_row_on_extreme_rows() {
        // Ties, saturated rows (float32 confidence exactly 1), differences below exp's fast range (-707) and
        // float32 underflow, one class, and a partial last tile.
        let k = 10;
        let mut z = Vec::new();
        for i in 0..37 {
            let s = [0.0, 1.0, 30.0, 120.0, 900.0, 1e4][i % 6];
            for c in 0..k {
                z.push(((c * 7 + i * 3) % 11) as f64 * s - if c == i % k { 5.0 * s } else { 0.0 });
            }
        }
        let y: Vec<i64> = (0..37).map(|i| (i * 3 % k) as i64).collect();
        let z32: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        let keep = KeepRows {
            ood_scores: true,
            bootstrap: true,
        };
        for profile in [Profile::paper(), Profile::default_profile()] {
            for values in [Values::F32(&z32), Values::F64(&z)] {
                let mut fast = SummaryAccumulator::new(&profile, ScoreKind::Logits, k, keep);
                fast.add_unchecked(values, &y);
                let mut reference = SummaryAccumulator::new(&profile, ScoreKind::Logits, k, keep);
                reference.add_unchecked_reference(values, &y);
                assert_eq!(fast.id_scores, reference.id_scores);
                assert_eq!(fast.boot.nll, reference.boot.nll);
                assert_eq!(fast.boot.brier, reference.boot.brier);
                same(
                    &fast.finish(None, EvalOptions::default()),
                    &reference.finish(None, EvalOptions::default()),
                );
            }
        }
        let one: Vec<f32> = vec![3.0; 5];
        let mut fast = SummaryAccumulator::new(&Profile::paper(), ScoreKind::Logits, 1, keep);
        fast.add_unchecked(Values::F32(&one), &[0; 5]);
        let mut reference = SummaryAccumulator::new(&Profile::paper(), ScoreKind::Logits, 1, keep);
        reference.add_unchecked_reference(Values::F32(&one), &[0; 5]);
        assert_eq!(fast.boot.nll, reference.boot.nll);
    }

    #[test]
    fn blocked_sums_do_not_depend_on_threads_or_chunking() {
        let k = 5;
        let n = 3 * BLOCK_ROWS + 123;
        let (_, z32, p, y) = rows(n, k, 11);
        for profile in [Profile::paper(), Profile::default_profile()] {
            for (kind, values) in [
                (ScoreKind::Logits, Values::F32(&z32)),
                (ScoreKind::Probabilities, Values::F64(&p)),
            ] {
                let one = evaluate(
                    &PredictionInput::new(kind, values, k, &y).unwrap(),
                    &profile,
                );
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    for window in [BLOCK_ROWS, 2 * BLOCK_ROWS, n] {
                        let mut acc =
                            SummaryAccumulator::new(&profile, kind, k, KeepRows::default());
                        pool.install(|| {
                            for lo in (0..n).step_by(window) {
                                let hi = (lo + window).min(n);
                                acc.add_blocked(values.slice(lo * k, hi * k), &y[lo..hi])
                                    .unwrap();
                            }
                        });
                        same(&acc.finish(None, EvalOptions::default()), &one);
                    }
                }
                // One sequential pass differs only by the re-association of the f64 sums.
                let mut seq = SummaryAccumulator::new(&profile, kind, k, KeepRows::default());
                seq.add(values, &y).unwrap();
                let seq = seq.finish(None, EvalOptions::default());
                assert_eq!(seq.accuracy, one.accuracy);
                let bins = |s: &Summary| {
                    s.reliability
                        .bins
                        .iter()
                        .map(|b| b.count)
                        .collect::<Vec<_>>()
                };
                assert_eq!(bins(&seq), bins(&one));
                for (a, b) in [
                    (seq.ece, one.ece),
                    (seq.mce, one.mce),
                    (seq.nll, one.nll),
                    (seq.brier, one.brier),
                    (seq.classwise_ece, one.classwise_ece),
                    (seq.alternatives.nll_exact, one.alternatives.nll_exact),
                ] {
                    assert!(
                        a == b || (a - b).abs() <= 1e-13 * a.abs().max(b.abs()),
                        "{a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn blocked_add_reports_the_first_bad_row_and_adds_nothing() {
        let k = 3;
        let n = 2 * BLOCK_ROWS + 10;
        let (mut z, _, _, y) = rows(n, k, 3);
        z[(BLOCK_ROWS + 5) * k + 2] = f64::NAN;
        z[(2 * BLOCK_ROWS + 1) * k] = f64::INFINITY;
        let mut acc =
            SummaryAccumulator::new(&Profile::paper(), ScoreKind::Logits, k, KeepRows::default());
        acc.add_blocked(Values::F64(&z[..BLOCK_ROWS * k]), &y[..BLOCK_ROWS])
            .unwrap();
        let err = acc
            .add_blocked(Values::F64(&z[BLOCK_ROWS * k..]), &y[BLOCK_ROWS..])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "logits row {}, column 2 is NaN (must be finite)",
                BLOCK_ROWS + 5
            )
        );
        assert_eq!(acc.rows(), BLOCK_ROWS);
    }

    #[test]
    fn infinite_nll_is_written_as_the_string_inf_and_reads_back() {
        // Exact NLL of a given probability of 0 for the true class is +inf; serde_json alone would write null.
        let input = PredictionInput::probs_f64(&[1.0, 0.0, 0.5, 0.5], 2, &[1, 0]).unwrap();
        let s = evaluate(&input, &Profile::default_profile());
        assert_eq!(s.nll, f64::INFINITY);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["nll"], "inf");
        assert_eq!(v["alternatives"]["nll_exact"], "inf");
        assert!(v["alternatives"]["nll_sklearn_clipped"].is_f64());
        let back: Summary = serde_json::from_value(v).unwrap();
        assert_eq!(back.nll, f64::INFINITY);
        assert!(s.definitions.nll.contains("\"inf\""));
    }

    #[test]
    fn paper_profile_bins_a_float64_probability_as_its_float32_rounding() {
        // 0.3 (f64) < 0.3f = 0.30000001192..., the float32 edge between bins 2 and 3; torchmetrics and the seed
        // see 0.3f, which lies on the edge and so in bin 3 ([0.3, 0.4)).
        let probs = [0.3, 0.25, 0.25, 0.2];
        let input = PredictionInput::probs_f64(&probs, 4, &[0]).unwrap();
        let paper = evaluate(&input, &Profile::paper());
        assert_eq!(
            paper.reliability.bins[3].count, 1,
            "{:?}",
            paper.reliability.bins
        );
        assert_eq!(paper.reliability.bins[3].mean_confidence, f64::from(0.3f32));
        let default = evaluate(&input, &Profile::default_profile());
        // Default: 15 bins on float32 edges, no rounding: 0.3 sits in bin 4 = [4/15, 5/15).
        assert_eq!(default.reliability.bins[4].mean_confidence, 0.3);
    }

    /// [`softmax_f32_into`] by definition: every float32 exponential is libm's `exp` of the float32 difference,
    /// rounded to float32; the exact log-sum-exp sums [`crate::fastmath::exp`] of the f64 differences.
    fn softmax_f32_reference(z: &[f64], out: &mut [f64]) -> f64 {
        let m64 = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let m32 = z
            .iter()
            .map(|&v| v as f32)
            .fold(f32::NEG_INFINITY, f32::max);
        let (mut sum32, mut sum64) = (0.0f32, 0.0f64);
        for (o, &v) in out.iter_mut().zip(z) {
            let d64 = v - m64;
            sum64 += crate::fastmath::exp(d64);
            let d32 = f64::from(v as f32 - m32);
            let e32 = d32.exp() as f32;
            *o = f64::from(e32);
            sum32 += e32;
        }
        for o in out.iter_mut() {
            *o = f64::from(*o as f32 / sum32);
        }
        m64 + sum64.ln()
    }

    #[test]
    fn float32_softmax_without_the_second_exp_is_bit_identical() {
        // 1 million rows of 10 float32 (and some float64) logits at scales from 0.1 to 300, where the float32
        // difference z - max is inexact about half the time.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut a, mut b) = ([0.0; 10], [0.0; 10]);
        let mut z = [0.0f64; 10];
        let mut inexact = 0usize;
        for i in 0..1_000_000 {
            let scale = [0.1, 3.0, 24.0, 300.0][i % 4];
            for v in z.iter_mut() {
                let x = (next() - 0.5) * scale;
                *v = if i % 8 == 7 { x } else { f64::from(x as f32) };
            }
            let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            inexact += z
                .iter()
                .filter(|&&v| f64::from(v as f32 - m as f32) != v - m)
                .count();
            let la = softmax_f32_into(&z, &mut a);
            let lb = softmax_f32_reference(&z, &mut b);
            assert_eq!(la.to_bits(), lb.to_bits());
            for k in 0..10 {
                assert_eq!(a[k].to_bits(), b[k].to_bits(), "row {i} {z:?}");
            }
        }
        assert!(inexact > 2_500_000, "{inexact}");
    }
}
