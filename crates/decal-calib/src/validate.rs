//! Validation of a calibrator read from a file (`decal calibrate --apply`): a loaded calibrator is user
//! input. Every parameter [`Calibrator::apply`] relies on is checked (a positive finite temperature, K ≥ 1
//! and consistent array lengths, finite scales and biases, histogram values in `[0, 1]` with one per bin,
//! isotonic knots strictly increasing with non-decreasing values in `[0, 1]`), and the error names the
//! field (`temperature`, `maps[3].x[17]`, …) so the caller can prefix the file.

use crate::{CalibError, Calibrator};

/// Largest bin count a loaded histogram calibrator may declare (the fitted default is 15).
pub const MAX_HISTOGRAM_BINS: usize = 1 << 20;

fn field(name: impl std::fmt::Display, problem: impl std::fmt::Display) -> CalibError {
    CalibError::Invalid(format!("{name}: {problem}"))
}

fn check_k(name: &str, k: usize) -> Result<(), CalibError> {
    if k == 0 {
        return Err(field(name, "must be at least 1"));
    }
    Ok(())
}

fn check_finite(name: &str, values: &[f64]) -> Result<(), CalibError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(field(
            format!("{name}[{i}]"),
            format!("{} is not finite", values[i]),
        )),
        None => Ok(()),
    }
}

fn check_unit(name: &str, values: &[f64]) -> Result<(), CalibError> {
    match values
        .iter()
        .position(|v| !(v.is_finite() && (0.0..=1.0).contains(v)))
    {
        Some(i) => Err(field(
            format!("{name}[{i}]"),
            format!("{} is not a probability in [0, 1]", values[i]),
        )),
        None => Ok(()),
    }
}

impl Calibrator {
    /// Checks that every parameter is usable (see the module doc). Field names are relative to the
    /// calibrator object (`temperature`, `values[2][4]`, …).
    pub fn validate(&self) -> Result<(), CalibError> {
        match self {
            Calibrator::Temperature(t) => {
                if !(t.temperature.is_finite() && t.temperature > 0.0) {
                    return Err(field(
                        "temperature",
                        format!("{} is not a positive finite number", t.temperature),
                    ));
                }
                check_k("num_classes", t.num_classes)?;
                if t.num_samples == 0 {
                    return Err(field("num_samples", "must be at least 1"));
                }
            }
            Calibrator::Vector(v) => {
                check_k("scale (its length, K)", v.scale.len())?;
                if v.bias.len() != v.scale.len() {
                    return Err(field(
                        "bias",
                        format!("{} values for {} scales", v.bias.len(), v.scale.len()),
                    ));
                }
                check_finite("scale", &v.scale)?;
                check_finite("bias", &v.bias)?;
            }
            Calibrator::Histogram(h) => {
                check_k("num_classes", h.num_classes)?;
                if h.num_bins == 0 || h.num_bins > MAX_HISTOGRAM_BINS {
                    return Err(field(
                        "num_bins",
                        format!("{} is not in [1, {MAX_HISTOGRAM_BINS}]", h.num_bins),
                    ));
                }
                if h.values.len() != h.num_classes {
                    return Err(field(
                        "values",
                        format!(
                            "{} rows for num_classes = {}",
                            h.values.len(),
                            h.num_classes
                        ),
                    ));
                }
                for (k, row) in h.values.iter().enumerate() {
                    if row.len() != h.num_bins {
                        return Err(field(
                            format!("values[{k}]"),
                            format!("{} bins for num_bins = {}", row.len(), h.num_bins),
                        ));
                    }
                    check_unit(&format!("values[{k}]"), row)?;
                }
                if h.counts.len() != h.num_classes || h.counts.iter().any(|r| r.len() != h.num_bins)
                {
                    return Err(field(
                        "counts",
                        format!("not {} rows of {} bins", h.num_classes, h.num_bins),
                    ));
                }
            }
            Calibrator::Isotonic(c) => {
                check_k("num_classes", c.num_classes)?;
                if c.maps.len() != c.num_classes {
                    return Err(field(
                        "maps",
                        format!("{} maps for num_classes = {}", c.maps.len(), c.num_classes),
                    ));
                }
                for (k, m) in c.maps.iter().enumerate() {
                    if m.x.is_empty() || m.x.len() != m.y.len() {
                        return Err(field(
                            format!("maps[{k}]"),
                            format!(
                                "needs as many knots x as values y, at least one ({} x, {} y)",
                                m.x.len(),
                                m.y.len()
                            ),
                        ));
                    }
                    check_finite(&format!("maps[{k}].x"), &m.x)?;
                    check_unit(&format!("maps[{k}].y"), &m.y)?;
                    if let Some(i) = m.x.windows(2).position(|w| w[1] <= w[0]) {
                        return Err(field(
                            format!("maps[{k}].x[{}]", i + 1),
                            format!(
                                "{} does not increase on the previous knot {} (knots must be strictly increasing)",
                                m.x[i + 1],
                                m.x[i]
                            ),
                        ));
                    }
                    if let Some(i) = m.y.windows(2).position(|w| w[1] < w[0]) {
                        return Err(field(
                            format!("maps[{k}].y[{}]", i + 1),
                            format!(
                                "{} is below the previous value {} (an isotonic map is non-decreasing)",
                                m.y[i + 1],
                                m.y[i]
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Method;

    fn fitted(method: Method) -> Calibrator {
        // Two of six rows misclassified, so every method has a finite optimum.
        let logits = [
            2.0, 0.1, -1.0, 0.3, 1.5, 0.2, -0.5, 0.4, 2.2, 1.0, 0.9, -0.2, 0.1, 0.2, 0.3, -1.0,
            2.0, 0.5,
        ];
        let labels = [0, 1, 2, 1, 2, 0];
        Calibrator::fit(method, &logits, &labels, 3).unwrap()
    }

    fn err(c: &Calibrator) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn fitted_calibrators_are_valid() {
        for m in [
            Method::Temperature,
            Method::TemperatureLbfgs,
            Method::Vector,
            Method::Histogram,
            Method::Isotonic,
        ] {
            fitted(m).validate().unwrap();
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        let mut c = fitted(Method::Temperature);
        for t in [0.0, -1.5, f64::NAN, f64::INFINITY] {
            if let Calibrator::Temperature(s) = &mut c {
                s.temperature = t;
            }
            assert!(err(&c).starts_with("temperature: "), "{}", err(&c));
        }
        let mut c = fitted(Method::Vector);
        if let Calibrator::Vector(v) = &mut c {
            v.bias.pop();
        }
        assert!(
            err(&c).starts_with("bias: 2 values for 3 scales"),
            "{}",
            err(&c)
        );
        let mut c = fitted(Method::Histogram);
        if let Calibrator::Histogram(h) = &mut c {
            h.values[1][3] = 1.5;
        }
        assert!(err(&c).starts_with("values[1][3]: 1.5"), "{}", err(&c));
        if let Calibrator::Histogram(h) = &mut c {
            h.num_bins = usize::MAX;
        }
        assert!(err(&c).starts_with("num_bins: "), "{}", err(&c));
        let mut c = fitted(Method::Isotonic);
        if let Calibrator::Isotonic(i) = &mut c {
            let m = &mut i.maps[2];
            m.x = vec![0.1, 0.5, 0.4];
            m.y = vec![0.0, 0.5, 0.6];
        }
        assert!(
            err(&c).starts_with("maps[2].x[2]: 0.4 does not increase"),
            "{}",
            err(&c)
        );
        if let Calibrator::Isotonic(i) = &mut c {
            let m = &mut i.maps[2];
            m.x = vec![0.1, 0.4, 0.5];
            m.y = vec![0.0, 0.7, 0.6];
        }
        assert!(
            err(&c).starts_with("maps[2].y[2]: 0.6 is below"),
            "{}",
            err(&c)
        );
    }
}
