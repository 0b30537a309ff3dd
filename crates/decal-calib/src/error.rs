//! Errors of calibrator fitting and application; each names the row, class or option at fault.

/// Why a calibrator could not be fitted or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibError {
    /// No examples.
    #[error("cannot fit a calibrator on an empty set")]
    Empty,
    /// Every label is the same class: a calibrator fitted on it would only learn "always this class".
    #[error("all {n} labels are class {class}; a calibrator needs at least two classes in the fitting set")]
    SingleClass {
        /// Number of examples.
        n: usize,
        /// The only class present.
        class: i64,
    },
    /// Matrix/label sizes disagree.
    #[error("{what}: {len} values are not {rows} rows x {num_classes} classes")]
    Shape {
        /// Which input.
        what: &'static str,
        /// Values present.
        len: usize,
        /// Rows expected.
        rows: usize,
        /// Classes K.
        num_classes: usize,
    },
    /// A label outside `[0, K)`.
    #[error("label of row {row} is {label}, outside [0, {num_classes})")]
    LabelOutOfRange {
        /// Row.
        row: usize,
        /// Label.
        label: i64,
        /// Classes K.
        num_classes: usize,
    },
    /// NaN or infinite input.
    #[error("{what} row {row}, column {col} is {value} (must be finite)")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Row.
        row: usize,
        /// Column.
        col: usize,
        /// Value.
        value: f64,
    },
    /// The calibrator was fitted for a different number of classes.
    #[error("calibrator was fitted for {fitted} classes but the input has {given}")]
    ClassMismatch {
        /// K at fit time.
        fitted: usize,
        /// K of the input.
        given: usize,
    },
    /// The optimum does not exist (e.g. validation predictions carry no signal, so NLL is minimised at T = inf).
    #[error("{0}")]
    Degenerate(String),
    /// Invalid option value.
    #[error("{0}")]
    Invalid(String),
}

/// Checks `[N, K]` values and labels; returns N.
pub(crate) fn check_inputs(
    what: &'static str,
    values: &[f64],
    labels: Option<&[i64]>,
    num_classes: usize,
) -> Result<usize, CalibError> {
    if num_classes == 0 {
        return Err(CalibError::Invalid(
            "number of classes must be at least 1".into(),
        ));
    }
    let rows = values.len() / num_classes;
    if values.is_empty() || labels.is_some_and(|l| l.is_empty()) {
        return Err(CalibError::Empty);
    }
    if values.len() % num_classes != 0 || labels.is_some_and(|l| l.len() != rows) {
        return Err(CalibError::Shape {
            what,
            len: values.len(),
            rows: labels.map_or(rows, |l| l.len()),
            num_classes,
        });
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(CalibError::NonFinite {
            what,
            row: i / num_classes,
            col: i % num_classes,
            value: values[i],
        });
    }
    if let Some(labels) = labels {
        if let Some(i) = labels
            .iter()
            .position(|&y| y < 0 || y as u64 >= num_classes as u64)
        {
            return Err(CalibError::LabelOutOfRange {
                row: i,
                label: labels[i],
                num_classes,
            });
        }
        if labels.iter().all(|&y| y == labels[0]) {
            return Err(CalibError::SingleClass {
                n: labels.len(),
                class: labels[0],
            });
        }
    }
    Ok(rows)
}
