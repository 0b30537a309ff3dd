//! Temperature scaling of the baseline's logits (seed-system.md §9; metrics.md §3.8).
//!
//! Minimises the validation NLL `L(β) = (1/N) Σ_i [logsumexp_k(β z_ik) − β z_{i,y_i}]` over β = 1/T > 0.
//! L is convex in β, so bisection on `L′(β) = (1/N) Σ_i [Σ_k softmax(β z_i)_k z_ik − z_{i,y_i}]` finds the
//! global minimiser; this is the "exact" fit (the seed's single LBFGS step from T = 1.5 is an approximation
//! of it).
// Stand-in until `decal_calib::TemperatureScaler::fit_exact` (engineer A) is in the tree; same definition.

/// The fitted temperature T = 1/β* for logits `[N, K]` (row-major) and labels.
pub fn fit_temperature(logits: &[f64], labels: &[i64], num_classes: usize) -> Result<f64, String> {
    let k = num_classes;
    if k == 0 || logits.len() != labels.len() * k || labels.is_empty() {
        return Err(format!(
            "temperature fit: {} logits for {} labels and {k} classes",
            logits.len(),
            labels.len()
        ));
    }
    let derivative = |beta: f64| -> f64 {
        let mut sum = 0.0;
        for (row, &y) in logits.chunks(k).zip(labels) {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = row.iter().map(|z| (beta * (z - max)).exp()).collect();
            let total: f64 = w.iter().sum();
            let expected: f64 = w.iter().zip(row).map(|(w, z)| w * z).sum::<f64>() / total;
            sum += expected - row[y as usize];
        }
        sum / labels.len() as f64
    };
    // Bracket the root of L′ (increasing in β): β from 1e-4 to 1e4.
    let (mut lo, mut hi) = (1e-4f64, 1e4f64);
    if derivative(lo) >= 0.0 {
        return Ok(1.0 / lo);
    }
    if derivative(hi) <= 0.0 {
        return Ok(1.0 / hi);
    }
    // Bisection in log β: 100 halvings of a 18.4-nat interval reach f64 resolution.
    for _ in 0..100 {
        let mid = (lo * hi).sqrt();
        if derivative(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(2.0 / (lo + hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes, logits (z, 0): the NLL-optimal β solves mean(p_β(correct)) relation; for a single
    /// example with the correct class at logit 0 and the other at 1, the NLL keeps falling as β → 0 (T → ∞
    /// end of the bracket); a mixture gives an interior optimum that sets the derivative to zero.
    #[test]
    fn interior_optimum_zeroes_the_derivative() {
        // 3 correct at margin 2, 1 wrong at margin 2: optimal p(correct) = 3/4 → β·2 = ln 3 → T = 2/ln 3.
        let logits = [2.0, 0.0, 2.0, 0.0, 2.0, 0.0, 2.0, 0.0];
        let labels = [0, 0, 0, 1];
        let t = fit_temperature(&logits, &labels, 2).unwrap();
        assert!((t - 2.0 / 3f64.ln()).abs() < 1e-9, "{t}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(fit_temperature(&[1.0, 2.0, 3.0], &[0], 2).is_err());
    }
}
