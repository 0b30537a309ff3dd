//! Vector scaling (Guo et al. 2017, §4.2): calibrated logits `z′_k = w_k z_k + b_k` with a per-class scale and
//! bias, fitted by minimising the mean validation NLL. The objective is convex in `(w, b)` (log-sum-exp of an
//! affine function minus an affine term), so damped Newton with Armijo backtracking reaches the global optimum.
//! The biases are only identified up to a common shift (adding `c` to every `b_k` leaves the softmax unchanged);
//! a tiny ridge (1e-9 × mean Hessian diagonal) fixes that gauge without moving the optimum measurably.
//! A class that never occurs in the validation labels has no finite optimum (its bias → −∞): fitting then
//! fails with an error naming the classes instead of returning arbitrary parameters marked converged.

use serde::{Deserialize, Serialize};

use crate::error::{check_inputs, CalibError};
use decal_metrics::scoring::softmax_into;

/// Fitted per-class scales and biases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorScaler {
    /// Per-class scale `w_k`.
    pub scale: Vec<f64>,
    /// Per-class bias `b_k`.
    pub bias: Vec<f64>,
    /// Newton iterations used.
    pub iterations: usize,
    /// Whether the gradient norm fell below 1e-9.
    pub converged: bool,
    /// Mean validation NLL with identity parameters.
    pub nll_before: f64,
    /// Mean validation NLL at the fitted parameters.
    pub nll_after: f64,
}

fn objective(logits: &[f64], labels: &[i64], k: usize, w: &[f64], b: &[f64]) -> f64 {
    let mut z2 = vec![0.0; k];
    let mut sum = 0.0;
    for (z, &y) in logits.chunks_exact(k).zip(labels) {
        for j in 0..k {
            z2[j] = w[j] * z[j] + b[j];
        }
        sum += decal_metrics::scoring::logsumexp(&z2) - z2[y as usize];
    }
    sum / labels.len() as f64
}

/// Solves `A x = g` for symmetric positive-definite `A` (row-major n×n) by Cholesky; `None` if not SPD.
fn cholesky_solve(a: &[f64], g: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for p in 0..j {
                s -= l[i * n + p] * l[j * n + p];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut s = g[i];
        for p in 0..i {
            s -= l[i * n + p] * y[p];
        }
        y[i] = s / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for p in i + 1..n {
            s -= l[p * n + i] * x[p];
        }
        x[i] = s / l[i * n + i];
    }
    Some(x)
}

/// Vector scaling has no finite optimum when a class never occurs in the fitting labels: the NLL keeps
/// falling as that class's bias goes to −∞ (its gradient, the mean predicted probability of the class, is
/// positive at every finite point), so Newton would stop at an arbitrary point once the gradient underflows
/// its tolerance and report it as converged.
fn absent_classes_error(labels: &[i64], k: usize) -> Result<(), CalibError> {
    let mut seen = vec![false; k];
    for &y in labels {
        seen[y as usize] = true;
    }
    let absent: Vec<usize> = (0..k).filter(|&c| !seen[c]).collect();
    if absent.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = absent.iter().take(10).map(|c| c.to_string()).collect();
    let more = if absent.len() > 10 {
        format!(" and {} more", absent.len() - 10)
    } else {
        String::new()
    };
    Err(CalibError::Degenerate(format!(
        "vector scaling has no finite optimum: {} of the {k} classes never occur{} in the {} validation labels \
         (class{} {}{more}), and the bias of a class that never occurs is driven to -infinity; use temperature \
         scaling, or validation data that contains every class",
        absent.len(),
        if absent.len() == 1 { "s" } else { "" },
        labels.len(),
        if absent.len() == 1 { "" } else { "es" },
        shown.join(", "),
    )))
}

impl VectorScaler {
    /// Fits scales and biases on validation logits `[N, K]`. Errors ([`CalibError::Degenerate`], naming the
    /// classes) when some class never occurs in `labels`: its bias has no finite optimum.
    pub fn fit(logits: &[f64], labels: &[i64], num_classes: usize) -> Result<Self, CalibError> {
        check_inputs("validation logits", logits, Some(labels), num_classes)?;
        let k = num_classes;
        absent_classes_error(labels, k)?;
        let n = labels.len() as f64;
        let dim = 2 * k;
        let mut w = vec![1.0; k];
        let mut b = vec![0.0; k];
        let nll_before = objective(logits, labels, k, &w, &b);
        let mut f = nll_before;
        let mut p = vec![0.0; k];
        let mut z2 = vec![0.0; k];
        let (mut iterations, mut converged) = (0, false);
        while iterations < 100 {
            iterations += 1;
            // Gradient and Hessian; parameter order (w_0..w_{K-1}, b_0..b_{K-1}); feature x_{w,k} = z_k, x_{b,k} = 1.
            let mut g = vec![0.0; dim];
            let mut h = vec![0.0; dim * dim];
            for (z, &y) in logits.chunks_exact(k).zip(labels) {
                for j in 0..k {
                    z2[j] = w[j] * z[j] + b[j];
                }
                softmax_into(&z2, &mut p);
                for a in 0..k {
                    let r = p[a] - if a == y as usize { 1.0 } else { 0.0 };
                    g[a] += r * z[a];
                    g[k + a] += r;
                    for c in 0..=a {
                        // d²/dz′_a dz′_c of the log-sum-exp = p_a δ_ac − p_a p_c.
                        let hz = if a == c {
                            p[a] - p[a] * p[a]
                        } else {
                            -p[a] * p[c]
                        };
                        h[a * dim + c] += hz * z[a] * z[c];
                        h[(k + a) * dim + (k + c)] += hz;
                        h[a * dim + (k + c)] += hz * z[a];
                        if a != c {
                            h[c * dim + (k + a)] += hz * z[c];
                        }
                    }
                }
            }
            for v in g.iter_mut() {
                *v /= n;
            }
            let gnorm = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if gnorm < 1e-9 {
                converged = true;
                break;
            }
            // Symmetrise (only the lower triangle of each block was filled) and scale.
            for i in 0..dim {
                for j in 0..i {
                    let v = (h[i * dim + j] + h[j * dim + i]) / n;
                    h[i * dim + j] = v;
                    h[j * dim + i] = v;
                }
                h[i * dim + i] /= n;
            }
            let mean_diag = (0..dim).map(|i| h[i * dim + i]).sum::<f64>() / dim as f64;
            let mut ridge = 1e-9 * mean_diag.max(1e-12);
            let step = loop {
                let mut hr = h.clone();
                for i in 0..dim {
                    hr[i * dim + i] += ridge;
                }
                if let Some(s) = cholesky_solve(&hr, &g, dim) {
                    break s;
                }
                ridge *= 10.0;
                if ridge > 1e6 * mean_diag.max(1.0) {
                    return Err(CalibError::Degenerate(
                        "vector scaling: Hessian is not positive definite".into(),
                    ));
                }
            };
            // Armijo backtracking along the Newton direction −step.
            let slope: f64 = -g.iter().zip(&step).map(|(a, b)| a * b).sum::<f64>();
            let mut alpha = 1.0;
            let (w0, b0) = (w.clone(), b.clone());
            loop {
                for j in 0..k {
                    w[j] = w0[j] - alpha * step[j];
                    b[j] = b0[j] - alpha * step[k + j];
                }
                let f_new = objective(logits, labels, k, &w, &b);
                if f_new <= f + 1e-4 * alpha * slope || alpha < 1e-12 {
                    if f_new > f {
                        w.clone_from(&w0);
                        b.clone_from(&b0);
                    } else {
                        f = f_new;
                    }
                    break;
                }
                alpha *= 0.5;
            }
            if alpha < 1e-12 {
                break;
            }
        }
        Ok(VectorScaler {
            scale: w,
            bias: b,
            iterations,
            converged,
            nll_before,
            nll_after: f,
        })
    }

    /// Calibrated probabilities `softmax(w ⊙ z + b)`.
    pub fn apply(&self, logits: &[f64]) -> Result<Vec<f64>, CalibError> {
        let k = self.scale.len();
        check_inputs("logits", logits, None, k)?;
        let mut out = vec![0.0; logits.len()];
        let mut z2 = vec![0.0; k];
        for (z, o) in logits.chunks_exact(k).zip(out.chunks_exact_mut(k)) {
            for j in 0..k {
                z2[j] = self.scale[j] * z[j] + self.bias[j];
            }
            softmax_into(&z2, o);
        }
        Ok(out)
    }
}
