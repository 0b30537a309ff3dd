//! Temperature scaling (Guo et al. 2017; metrics.md §3.8; seed-system.md §9): calibrated probabilities are
//! `softmax(z / T)`, with one scalar `T > 0` fitted on validation logits by minimising the mean NLL.
//!
//! Two fitting procedures:
//! - [`TemperatureScaler::fit_exact`]: the global optimum. `L(β) = mean_i [logsumexp(β z_i) − β z_{i,y_i}]` is
//!   convex in `β = 1/T` with `L′(β) = mean_i (E_{softmax(βz_i)}[z_i] − z_{i,y_i})` and
//!   `L″(β) = mean_i Var_{softmax(βz_i)}[z_i] ≥ 0`, so Newton steps safeguarded by a bisection bracket on `L′`
//!   converge to the unique root.
//! - [`TemperatureScaler::fit_seed_lbfgs`]: the seed's procedure, reproducing PyTorch's `torch.optim.LBFGS`
//!   (lr 0.01, max_iter 50, max_eval 62, history 100, no line search, tolerance_grad 1e-7,
//!   tolerance_change 1e-9) on the scalar `T` initialised at 1.5, one `step` call (gpleiss
//!   `ModelWithTemperature.set_temperature`). With lr 0.01 it usually stops well short of the optimum; that
//!   is what the paper's "TS" rows used.
//! - [`TemperatureScaler::fit_sampled`]: temperature scaling of a Monte-Carlo predictive such as V-TST's
//!   (seed-system.md §9, BUG-16 fixed). T divides every sample's logits before the softmax average,
//!   `p_T(y|x) = (1/m) Σ_s softmax(z_s / T)`, and is fitted by minimising the validation NLL of that
//!   m-sample predictive. For m > 1 this NLL is not guaranteed convex in `1/T` (it is a log of a sum of
//!   softmaxes), so the fit scans a grid on `u = log T` for the best point, brackets a sign change of
//!   `dL/du` next to it, and solves `dL/du = 0` by Newton steps safeguarded by bisection. With m = 1 it
//!   reaches the same optimum as `fit_exact`.

use serde::{Deserialize, Serialize};

use crate::error::{check_inputs, CalibError};
use decal_metrics::scoring::logsumexp;

/// A fitted temperature, with how it was obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemperatureScaler {
    /// The temperature T (calibrated logits are `z / T`).
    pub temperature: f64,
    /// Number of classes K it was fitted on.
    pub num_classes: usize,
    /// `exact-newton` or `seed-lbfgs`.
    pub fit_method: String,
    /// Newton iterations, or LBFGS iterations.
    pub iterations: usize,
    /// Objective evaluations (closure calls for LBFGS).
    pub function_evals: usize,
    /// Whether the procedure met its own convergence criterion (for LBFGS: stopped by a tolerance rather than by
    /// max_iter / max_eval).
    pub converged: bool,
    /// Mean validation NLL at T = 1.
    pub nll_before: f64,
    /// Mean validation NLL at the fitted T.
    pub nll_after: f64,
    /// Why the fit stopped, in words.
    pub stop_reason: String,
    /// Samples m of the predictive T was fitted on (1 for ordinary logits; see
    /// [`TemperatureScaler::fit_sampled`]). Calibrators saved before this field existed read as 1.
    #[serde(default = "one_sample")]
    pub num_samples: usize,
}

fn one_sample() -> usize {
    1
}

/// Mean NLL and its derivative with respect to β (the logits are multiplied by β).
fn loss_and_dbeta(logits: &[f64], labels: &[i64], k: usize, beta: f64) -> (f64, f64, f64) {
    let mut scaled = vec![0.0; k];
    let (mut loss, mut d1, mut d2) = (0.0, 0.0, 0.0);
    for (z, &y) in logits.chunks_exact(k).zip(labels) {
        for (s, &v) in scaled.iter_mut().zip(z) {
            *s = beta * v;
        }
        let lse = logsumexp(&scaled);
        loss += lse - scaled[y as usize];
        // Moments of z under softmax(βz).
        let (mut m1, mut m2) = (0.0, 0.0);
        for (&s, &v) in scaled.iter().zip(z) {
            let p = (s - lse).exp();
            m1 += p * v;
            m2 += p * v * v;
        }
        d1 += m1 - z[y as usize];
        d2 += (m2 - m1 * m1).max(0.0);
    }
    let n = labels.len() as f64;
    (loss / n, d1 / n, d2 / n)
}

/// Mean NLL of `softmax(z / t)`.
pub fn nll_at_temperature(logits: &[f64], labels: &[i64], k: usize, t: f64) -> f64 {
    loss_and_dbeta(logits, labels, k, 1.0 / t).0
}

impl TemperatureScaler {
    /// A given temperature, not fitted (`fit_method = "fixed"`): to apply a T chosen elsewhere, e.g. one read
    /// from a paper or another run, to `num_classes`-class logits of a `num_samples`-sample predictive. Its
    /// NLL fields are NaN (there was no fit), which JSON cannot carry: apply it in code, don't save it.
    pub fn fixed(temperature: f64, num_classes: usize, num_samples: usize) -> TemperatureScaler {
        TemperatureScaler {
            temperature,
            num_classes,
            fit_method: "fixed".into(),
            iterations: 0,
            function_evals: 0,
            converged: true,
            nll_before: f64::NAN,
            nll_after: f64::NAN,
            stop_reason: "given, not fitted".into(),
            num_samples,
        }
    }

    /// Fits the NLL-optimal temperature exactly (see module docs). Errors on empty/single-class/invalid input,
    /// and when no finite positive optimum exists (validation logits anti-correlated with labels, or a
    /// perfectly separable set where NLL keeps falling as T → 0).
    pub fn fit_exact(
        logits: &[f64],
        labels: &[i64],
        num_classes: usize,
    ) -> Result<Self, CalibError> {
        check_inputs("validation logits", logits, Some(labels), num_classes)?;
        let k = num_classes;
        let nll_before = loss_and_dbeta(logits, labels, k, 1.0).0;
        let mut evals = 1;
        let (_, d_zero, _) = loss_and_dbeta(logits, labels, k, 0.0);
        evals += 1;
        if d_zero >= 0.0 {
            return Err(CalibError::Degenerate(
                "validation logits carry no information about the labels (NLL is minimised at T = infinity)".into(),
            ));
        }
        // Bracket: L′(lo) < 0 ≤ L′(hi).
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        loop {
            let (_, d, _) = loss_and_dbeta(logits, labels, k, hi);
            evals += 1;
            // Strictly positive: on a separable set L′ stays negative and merely underflows to 0 at large β.
            if d > 0.0 {
                break;
            }
            lo = hi;
            hi *= 2.0;
            if hi > 1e12 {
                return Err(CalibError::Degenerate(
                    "validation set is perfectly separated by the logits: NLL keeps decreasing as T -> 0".into(),
                ));
            }
        }
        let mut beta = if lo < 1.0 && 1.0 < hi {
            1.0
        } else {
            0.5 * (lo + hi)
        };
        let mut iterations = 0;
        let mut converged = false;
        let mut reason = String::from("max iterations (200) reached");
        while iterations < 200 {
            iterations += 1;
            let (_, d1, d2) = loss_and_dbeta(logits, labels, k, beta);
            evals += 1;
            if d1.abs() <= 1e-13 * (1.0 + d2.abs()) {
                converged = true;
                reason = "|dL/dbeta| below 1e-13".into();
                break;
            }
            if d1 < 0.0 {
                lo = beta;
            } else {
                hi = beta;
            }
            let newton = if d2 > 0.0 { beta - d1 / d2 } else { f64::NAN };
            // Take the Newton step when it stays strictly inside the bracket, else bisect.
            beta = if newton.is_finite() && newton > lo && newton < hi {
                newton
            } else {
                0.5 * (lo + hi)
            };
            if (hi - lo) <= 4.0 * f64::EPSILON * hi {
                converged = true;
                reason = "bracket on beta narrowed to machine precision".into();
                break;
            }
        }
        let nll_after = loss_and_dbeta(logits, labels, k, beta).0;
        Ok(TemperatureScaler {
            temperature: 1.0 / beta,
            num_classes: k,
            fit_method: "exact-newton".into(),
            iterations,
            function_evals: evals + 1,
            converged,
            nll_before,
            nll_after,
            stop_reason: reason,
            num_samples: 1,
        })
    }

    /// Fits T with the seed's LBFGS settings (see module docs); a faithful scalar port of
    /// `torch.optim.LBFGS.step` (torch 2.x) with `line_search_fn=None`.
    pub fn fit_seed_lbfgs(
        logits: &[f64],
        labels: &[i64],
        num_classes: usize,
    ) -> Result<Self, CalibError> {
        Self::fit_lbfgs(logits, labels, num_classes, &LbfgsConfig::seed())
    }

    /// LBFGS on T with explicit settings.
    pub fn fit_lbfgs(
        logits: &[f64],
        labels: &[i64],
        num_classes: usize,
        cfg: &LbfgsConfig,
    ) -> Result<Self, CalibError> {
        check_inputs("validation logits", logits, Some(labels), num_classes)?;
        let k = num_classes;
        // Objective and gradient in T: L(T) = f(1/T), dL/dT = −f′(1/T)/T².
        let closure = |t: f64| -> (f64, f64) {
            let (l, d, _) = loss_and_dbeta(logits, labels, k, 1.0 / t);
            (l, -d / (t * t))
        };
        let nll_before = closure(1.0).0;
        let out = lbfgs_scalar(closure, cfg.init, cfg);
        if !out.x.is_finite() || out.x <= 0.0 {
            return Err(CalibError::Degenerate(format!(
                "LBFGS ended at a non-positive temperature T = {}",
                out.x
            )));
        }
        let nll_after = closure(out.x).0;
        Ok(TemperatureScaler {
            temperature: out.x,
            num_classes: k,
            fit_method: "seed-lbfgs".into(),
            iterations: out.n_iter,
            function_evals: out.func_evals,
            converged: out.converged,
            nll_before,
            nll_after,
            stop_reason: out.reason,
            num_samples: 1,
        })
    }

    /// Logits divided by T (same shape).
    pub fn scale_logits(&self, logits: &[f64]) -> Vec<f64> {
        logits.iter().map(|z| z / self.temperature).collect()
    }

    /// Calibrated probabilities `softmax(z / T)`, row-major `[N, K]`.
    pub fn apply(&self, logits: &[f64]) -> Result<Vec<f64>, CalibError> {
        check_inputs("logits", logits, None, self.num_classes)?;
        Ok(crate::softmax_rows(
            &self.scale_logits(logits),
            self.num_classes,
        ))
    }
}

/// Checks per-sample logits `[m, N, K]` (sample-major, row-major within a sample) and, when given, their
/// labels `[N]`; returns N.
fn check_sampled(
    logits: &[f64],
    num_samples: usize,
    labels: Option<&[i64]>,
    num_classes: usize,
) -> Result<usize, CalibError> {
    if num_samples == 0 {
        return Err(CalibError::Invalid(
            "number of samples m must be at least 1".into(),
        ));
    }
    if num_classes == 0 {
        return Err(CalibError::Invalid(
            "number of classes must be at least 1".into(),
        ));
    }
    if logits.is_empty() || labels.is_some_and(|l| l.is_empty()) {
        return Err(CalibError::Empty);
    }
    let rows = labels.map_or(logits.len() / (num_samples * num_classes), <[i64]>::len);
    if logits.len() != num_samples * rows * num_classes {
        return Err(CalibError::Shape {
            what: "per-sample logits",
            len: logits.len(),
            rows: num_samples * rows,
            num_classes,
        });
    }
    // Labels (and the first sample's values) as for ordinary logits, then every sample's values; rows of
    // a non-finite value are counted over all samples (row `s·N + i`).
    check_inputs(
        "per-sample logits",
        &logits[..rows * num_classes],
        labels,
        num_classes,
    )?;
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        return Err(CalibError::NonFinite {
            what: "per-sample logits",
            row: i / num_classes,
            col: i % num_classes,
            value: logits[i],
        });
    }
    Ok(rows)
}

/// Mean NLL of the m-sample predictive `(1/m) Σ_s softmax(β z_s)` and its first two derivatives with
/// respect to β. `logits` is `[m, N, K]`.
///
/// Per example, with `a_s = log softmax(β z_s)[y]`, `g_s = da_s/dβ = z_{s,y} − E_s[z]` and
/// `v_s = Var_s[z]` (moments under `softmax(β z_s)`), the log predictive is `LSE_s(a_s) − log m`, whose
/// derivatives are `G = Σ_s w_s g_s` and `H = Σ_s w_s (g_s² − v_s) − G²` with `w_s = softmax_s(a)`.
fn sampled_loss_and_dbeta(
    logits: &[f64],
    num_samples: usize,
    labels: &[i64],
    k: usize,
    beta: f64,
) -> (f64, f64, f64) {
    let n = labels.len();
    let mut scaled = vec![0.0; k];
    let mut a = vec![0.0; num_samples];
    let mut g = vec![0.0; num_samples];
    let mut v = vec![0.0; num_samples];
    let ln_m = (num_samples as f64).ln();
    let (mut loss, mut d1, mut d2) = (0.0, 0.0, 0.0);
    for (i, &y) in labels.iter().enumerate() {
        let y = y as usize;
        for s in 0..num_samples {
            let z = &logits[(s * n + i) * k..(s * n + i + 1) * k];
            for (sc, &zv) in scaled.iter_mut().zip(z) {
                *sc = beta * zv;
            }
            let lse = logsumexp(&scaled);
            let (mut m1, mut m2) = (0.0, 0.0);
            for (&sc, &zv) in scaled.iter().zip(z) {
                let p = (sc - lse).exp();
                m1 += p * zv;
                m2 += p * zv * zv;
            }
            a[s] = scaled[y] - lse;
            g[s] = z[y] - m1;
            v[s] = (m2 - m1 * m1).max(0.0);
        }
        let lse_a = logsumexp(&a);
        let (mut big_g, mut second) = (0.0, 0.0);
        for s in 0..num_samples {
            let w = (a[s] - lse_a).exp();
            big_g += w * g[s];
            second += w * (g[s] * g[s] - v[s]);
        }
        loss -= lse_a - ln_m;
        d1 -= big_g;
        d2 -= second - big_g * big_g;
    }
    let nf = n as f64;
    (loss / nf, d1 / nf, d2 / nf)
}

/// Loss and its first two derivatives with respect to `u = log T` (β = e^{−u}).
fn sampled_loss_du(
    logits: &[f64],
    num_samples: usize,
    labels: &[i64],
    k: usize,
    u: f64,
) -> (f64, f64, f64) {
    let beta = (-u).exp();
    let (l, d1, d2) = sampled_loss_and_dbeta(logits, num_samples, labels, k, beta);
    // dβ/du = −β and d²β/du² = β.
    (l, -beta * d1, beta * beta * d2 + beta * d1)
}

/// Mean NLL of the m-sample predictive `(1/m) Σ_s softmax(z_s / t)`; `logits` is `[m, N, K]`.
pub fn sampled_nll_at_temperature(
    logits: &[f64],
    num_samples: usize,
    labels: &[i64],
    k: usize,
    t: f64,
) -> f64 {
    sampled_loss_and_dbeta(logits, num_samples, labels, k, 1.0 / t).0
}

/// Grid of the bracketing scan on `u = log T`: T from 1/64 to 64 in steps of 2^{1/4}.
const GRID_HALF_WIDTH: i32 = 24;
const GRID_STEP: f64 = std::f64::consts::LN_2 / 4.0;
/// The scan extends beyond the grid up to T ∈ [1e-12, 1e12] before declaring the optimum degenerate.
const LOG_T_LIMIT: f64 = 27.631_021_115_928_547; // ln(1e12)

impl TemperatureScaler {
    /// Fits T on the m-sample predictive `p_T(y|x) = (1/m) Σ_s softmax(z_s / T)` (module docs), where
    /// `logits` holds the per-sample logits `[m, N, K]` (sample `s` of example `i` at row `s·N + i`).
    ///
    /// Errors like [`TemperatureScaler::fit_exact`] on empty, single-class or invalid input, and when the
    /// NLL keeps decreasing towards T → 0 or T → ∞ within `[1e-12, 1e12]`.
    pub fn fit_sampled(
        logits: &[f64],
        num_samples: usize,
        labels: &[i64],
        num_classes: usize,
    ) -> Result<Self, CalibError> {
        check_sampled(logits, num_samples, Some(labels), num_classes)?;
        let k = num_classes;
        let eval = |u: f64| sampled_loss_du(logits, num_samples, labels, k, u);
        let mut evals = 0usize;
        // 1. Scan: the best grid point, with the derivative at every point.
        let mut grid: Vec<(f64, f64, f64)> = (-GRID_HALF_WIDTH..=GRID_HALF_WIDTH)
            .map(|j| {
                let u = j as f64 * GRID_STEP;
                let (l, d, _) = eval(u);
                (u, l, d)
            })
            .collect();
        evals += grid.len();
        let nll_before = grid[GRID_HALF_WIDTH as usize].1;
        let best = grid
            .iter()
            .enumerate()
            .fold(0, |b, (j, p)| if p.1 < grid[b].1 { j } else { b });
        // An objective flat over the whole scan (T from 1/64 to 64) means the logits do not depend on the
        // class in a way T could sharpen or soften (e.g. equal logits): there is no optimum to report.
        let worst = grid.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        if worst - grid[best].1 <= 1e-12 * (1.0 + worst.abs()) {
            return Err(CalibError::Degenerate(
                "validation predictions carry no information about the labels (NLL does not change with T)"
                    .into(),
            ));
        }
        // 2. Bracket a sign change of dL/du (− then +) next to the best point, extending the scan outwards
        //    (steps doubling) when it runs off the grid.
        // A derivative of exactly 0 at the scan's edge is underflow (e.g. a separable set at tiny T), not
        // an optimum: the scan continues outwards there.
        let d_best = grid[best].2;
        let last = grid.len() - 1;
        let (mut lo, mut hi) = if d_best == 0.0 && best != 0 && best != last {
            (grid[best].0, grid[best].0)
        } else if d_best < 0.0 || (d_best == 0.0 && best == last) {
            let mut j = best;
            loop {
                if j + 1 == grid.len() {
                    let (u_last, _, _) = grid[j];
                    let step = (u_last - grid[j - 1].0) * 2.0;
                    let u = u_last + step;
                    if u > LOG_T_LIMIT {
                        return Err(CalibError::Degenerate(
                            "validation predictions carry no information about the labels (NLL keeps decreasing as T -> infinity)".into(),
                        ));
                    }
                    let (l, d, _) = eval(u);
                    evals += 1;
                    grid.push((u, l, d));
                }
                j += 1;
                if grid[j].2 >= 0.0 {
                    break (grid[j - 1].0, grid[j].0);
                }
            }
        } else {
            let mut j = best;
            loop {
                if j == 0 {
                    let step = (grid[1].0 - grid[0].0) * 2.0;
                    let u = grid[0].0 - step;
                    if u < -LOG_T_LIMIT {
                        return Err(CalibError::Degenerate(
                            "validation set is perfectly separated by the predictions: NLL keeps decreasing as T -> 0".into(),
                        ));
                    }
                    let (l, d, _) = eval(u);
                    evals += 1;
                    grid.insert(0, (u, l, d));
                    j = 1;
                }
                j -= 1;
                if grid[j].2 < 0.0 {
                    break (grid[j].0, grid[j + 1].0);
                }
            }
        };
        let grid_best = grid
            .iter()
            .map(|p| (p.0, p.1))
            .fold((0.0, f64::INFINITY), |b, p| if p.1 < b.1 { p } else { b });
        // 3. Safeguarded Newton on dL/du inside [lo, hi] (dL/du(lo) < 0 < dL/du(hi)).
        let mut u = if lo == hi { lo } else { 0.5 * (lo + hi) };
        let mut iterations = 0;
        let mut converged = lo == hi;
        let mut reason = if converged {
            "dL/dlogT is exactly 0 at a grid point".to_string()
        } else {
            "max iterations (200) reached".to_string()
        };
        while !converged && iterations < 200 {
            iterations += 1;
            let (_, d1, d2) = eval(u);
            evals += 1;
            if d1.abs() <= 1e-14 * (1.0 + d2.abs()) {
                converged = true;
                reason = "|dL/dlogT| below 1e-14".into();
                break;
            }
            if d1 < 0.0 {
                lo = u;
            } else {
                hi = u;
            }
            let newton = if d2 > 0.0 { u - d1 / d2 } else { f64::NAN };
            u = if newton.is_finite() && newton > lo && newton < hi {
                newton
            } else {
                0.5 * (lo + hi)
            };
            if (hi - lo) <= 4.0 * f64::EPSILON * (1.0 + u.abs()) {
                converged = true;
                reason = "bracket on log T narrowed to machine precision".into();
                break;
            }
        }
        let (mut nll_after, _, _) = eval(u);
        evals += 1;
        // The root is a local minimum next to the best grid point; should the objective's shape make it
        // worse than that grid point, keep the grid point (and say so).
        if nll_after > grid_best.1 {
            u = grid_best.0;
            nll_after = grid_best.1;
            converged = false;
            reason =
                "local optimum worse than the best scanned point; kept the scanned point".into();
        }
        Ok(TemperatureScaler {
            temperature: u.exp(),
            num_classes: k,
            fit_method: "sampled-log-t-newton".into(),
            iterations,
            function_evals: evals,
            converged,
            nll_before,
            nll_after,
            stop_reason: reason,
            num_samples,
        })
    }

    /// Calibrated m-sample predictive `(1/m) Σ_s softmax(z_s / T)` for per-sample logits `[m, N, K]`,
    /// returned as `[N, K]`.
    pub fn apply_sampled(
        &self,
        logits: &[f64],
        num_samples: usize,
    ) -> Result<Vec<f64>, CalibError> {
        let rows = check_sampled(logits, num_samples, None, self.num_classes)?;
        let k = self.num_classes;
        let mut out = vec![0.0; rows * k];
        let mut row = vec![0.0; k];
        for (s, sample) in logits.chunks_exact(rows * k).enumerate() {
            debug_assert!(s < num_samples);
            for (z, o) in sample.chunks_exact(k).zip(out.chunks_exact_mut(k)) {
                let scaled: Vec<f64> = z.iter().map(|v| v / self.temperature).collect();
                decal_metrics::scoring::softmax_into(&scaled, &mut row);
                for (acc, p) in o.iter_mut().zip(&row) {
                    *acc += p / num_samples as f64;
                }
            }
        }
        Ok(out)
    }
}

/// Settings of PyTorch's `torch.optim.LBFGS` (defaults as in torch 2.x) plus the initial value.
#[derive(Debug, Clone, PartialEq)]
pub struct LbfgsConfig {
    /// Initial parameter value (the seed: T = 1.5).
    pub init: f64,
    /// Learning rate.
    pub lr: f64,
    /// Maximum iterations per `step`.
    pub max_iter: usize,
    /// Maximum closure evaluations per `step` (torch default `max_iter · 5 / 4`).
    pub max_eval: usize,
    /// Stop when `max |grad| ≤ tolerance_grad`.
    pub tolerance_grad: f64,
    /// Stop when the step or the loss change is below this.
    pub tolerance_change: f64,
    /// Number of curvature pairs kept.
    pub history_size: usize,
}

impl LbfgsConfig {
    /// The seed's settings: `LBFGS([T], lr=0.01, max_iter=50)`, T initialised to 1.5.
    pub fn seed() -> Self {
        LbfgsConfig {
            init: 1.5,
            lr: 0.01,
            max_iter: 50,
            max_eval: 50 * 5 / 4,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            history_size: 100,
        }
    }
}

/// Result of [`lbfgs_scalar`].
#[derive(Debug, Clone, PartialEq)]
pub struct LbfgsOutcome {
    /// Final parameter.
    pub x: f64,
    /// Iterations performed (`state['n_iter']`).
    pub n_iter: usize,
    /// Closure evaluations (`state['func_evals']`).
    pub func_evals: usize,
    /// Whether a tolerance (not max_iter / max_eval) stopped it.
    pub converged: bool,
    /// Why it stopped.
    pub reason: String,
}

/// One `torch.optim.LBFGS.step(closure)` call with `line_search_fn=None` on a single scalar parameter; a line-
/// by-line port of torch/optim/lbfgs.py (torch 2.x). `closure(x)` returns `(loss, dloss/dx)`.
pub fn lbfgs_scalar(
    mut closure: impl FnMut(f64) -> (f64, f64),
    x0: f64,
    cfg: &LbfgsConfig,
) -> LbfgsOutcome {
    let mut x = x0;
    let (mut loss, mut grad) = closure(x);
    let mut current_evals = 1;
    let mut func_evals = 1;
    if grad.abs() <= cfg.tolerance_grad {
        return LbfgsOutcome {
            x,
            n_iter: 0,
            func_evals,
            converged: true,
            reason: "initial gradient below tolerance_grad".into(),
        };
    }
    let mut d = 0.0f64;
    let mut t = 0.0f64;
    let mut old_dirs: Vec<f64> = Vec::new();
    let mut old_stps: Vec<f64> = Vec::new();
    let mut ro: Vec<f64> = Vec::new();
    let mut h_diag = 1.0f64;
    let mut prev_grad = 0.0f64;
    let mut n_iter = 0;
    let mut opt_cond = false;
    let reason;
    loop {
        n_iter += 1;
        if n_iter == 1 {
            d = -grad;
            old_dirs.clear();
            old_stps.clear();
            ro.clear();
            h_diag = 1.0;
        } else {
            let y = grad - prev_grad;
            let s = d * t;
            let ys = y * s;
            if ys > 1e-10 {
                if old_dirs.len() == cfg.history_size {
                    old_dirs.remove(0);
                    old_stps.remove(0);
                    ro.remove(0);
                }
                old_dirs.push(y);
                old_stps.push(s);
                ro.push(1.0 / ys);
                h_diag = ys / (y * y);
            }
            // Two-loop recursion.
            let num_old = old_dirs.len();
            let mut al = vec![0.0; num_old];
            let mut q = -grad;
            for i in (0..num_old).rev() {
                al[i] = old_stps[i] * q * ro[i];
                q += -al[i] * old_dirs[i];
            }
            let mut r = q * h_diag;
            for i in 0..num_old {
                let be_i = old_dirs[i] * r * ro[i];
                r += (al[i] - be_i) * old_stps[i];
            }
            d = r;
        }
        prev_grad = grad;
        let prev_loss = loss;
        t = if n_iter == 1 {
            (1.0f64).min(1.0 / grad.abs()) * cfg.lr
        } else {
            cfg.lr
        };
        let gtd = grad * d;
        if gtd > -cfg.tolerance_change {
            reason = "directional derivative above -tolerance_change".to_string();
            opt_cond = true;
            break;
        }
        let mut ls_func_evals = 0;
        x += t * d;
        if n_iter != cfg.max_iter {
            let (l, g) = closure(x);
            loss = l;
            grad = g;
            opt_cond = grad.abs() <= cfg.tolerance_grad;
            ls_func_evals = 1;
        }
        current_evals += ls_func_evals;
        func_evals += ls_func_evals;
        if n_iter == cfg.max_iter {
            reason = format!("max_iter = {} reached", cfg.max_iter);
            break;
        }
        if current_evals >= cfg.max_eval {
            reason = format!("max_eval = {} reached", cfg.max_eval);
            break;
        }
        if opt_cond {
            reason = "gradient below tolerance_grad".into();
            break;
        }
        if (d * t).abs() <= cfg.tolerance_change {
            reason = "step below tolerance_change".into();
            opt_cond = true;
            break;
        }
        if (loss - prev_loss).abs() < cfg.tolerance_change {
            reason = "loss change below tolerance_change".into();
            opt_cond = true;
            break;
        }
    }
    LbfgsOutcome {
        x,
        n_iter,
        func_evals,
        converged: opt_cond,
        reason,
    }
}
