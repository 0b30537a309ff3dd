//! Errors for invalid prediction inputs; each names the offending row or element.

/// Invalid input to a metric (the message names the row, element or option at fault).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// No predictions at all.
    #[error("no predictions (empty input)")]
    Empty,
    /// The score matrix does not hold N × K values.
    #[error("{what} holds {len} values, which is not {rows} rows × {num_classes} classes")]
    Shape {
        /// Which array.
        what: &'static str,
        /// Number of values present.
        len: usize,
        /// Rows expected (number of labels).
        rows: usize,
        /// Classes K.
        num_classes: usize,
    },
    /// A label is outside `[0, K)`.
    #[error("label of row {row} is {label}, outside [0, {num_classes})")]
    LabelOutOfRange {
        /// Row index (0-based, counted over the whole input).
        row: usize,
        /// The label.
        label: i64,
        /// Classes K.
        num_classes: usize,
    },
    /// NaN or infinite score.
    #[error("{what} row {row}, column {col} is {value} (must be finite)")]
    NonFinite {
        /// Which array.
        what: &'static str,
        /// Row index.
        row: usize,
        /// Column index.
        col: usize,
        /// The value.
        value: f64,
    },
    /// A probability row is not a distribution.
    #[error("{what} row {row} is not a probability vector: {problem} (pass logits instead, or renormalise)")]
    NotProbabilities {
        /// Which array.
        what: &'static str,
        /// Row index.
        row: usize,
        /// What is wrong (sum, negative entry, ...).
        problem: String,
    },
    /// An option that cannot be honoured with this input (e.g. energy score from probabilities).
    #[error("{0}")]
    Unsupported(String),
}
