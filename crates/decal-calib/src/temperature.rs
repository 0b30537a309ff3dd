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
