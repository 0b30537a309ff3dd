//! The single place that decides how numbers are printed in tables, plots and reports (STYLE.md R12).
//!
//! Conventions (seed-system.md §12, the paper's tables): accuracy, error and calibration errors (ECE,
//! MCE, RMSCE and their variants) are stored as fractions and printed in **percent with 2 decimals**
//! (`92.55`); NLL, Brier, AUROC, FPR95 and any other metric are printed with **4 decimals** (`0.2516`),
//! except `brier_div_k` (the seed's Brier/K, values around 0.01) with 5. A mean and its spread are printed
//! with the same number of decimals: `92.55 ± 0.01`. Rounding is Rust's `{:.N}` (correctly rounded
//! from the exact binary value, as C's `printf` and numpy do); `-0.00` is printed as `0.00`.

/// How one metric's numbers are scaled and rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberFormat {
    /// Multiply by 100 before printing (value is a fraction shown in percent).
    pub percent: bool,
    /// Decimals after the point.
    pub decimals: usize,
}

impl NumberFormat {
    /// Percent, 2 decimals.
    pub const PERCENT: NumberFormat = NumberFormat {
        percent: true,
        decimals: 2,
    };
    /// Plain, 4 decimals.
    pub const PLAIN4: NumberFormat = NumberFormat {
        percent: false,
        decimals: 4,
    };
    /// Plain, 5 decimals (Brier/K).
    pub const PLAIN5: NumberFormat = NumberFormat {
        percent: false,
        decimals: 5,
    };

    /// The value as printed (before rounding): ×100 for percent formats.
    pub fn scaled(&self, value: f64) -> f64 {
        if self.percent {
            value * 100.0
        } else {
            value
        }
    }
}

/// The format used for a metric key (see the module docs for the rules). A key is split into tokens at
/// `_`, `-` and `/`; it is a percent metric when any token names accuracy, error or a calibration error
/// (`ece`, `mce`, `rmsce`, …), so `ece_paper`, `classwise_ece` and `accuracy_ci_lower` are percent too.
pub fn metric_format(metric: &str) -> NumberFormat {
    if metric == "brier_div_k" || metric.starts_with("brier_div_k_") {
        return NumberFormat::PLAIN5;
    }
    let percent = metric.split(['_', '-', '/']).any(|token| {
        matches!(
            token,
            "accuracy" | "acc" | "error" | "ece" | "mce" | "rmsce" | "cwece" | "sece"
        )
    });
    if percent {
        NumberFormat::PERCENT
    } else {
        NumberFormat::PLAIN4
    }
}

/// Whether a metric is rendered in percent (for axis labels and captions).
pub fn is_percent(metric: &str) -> bool {
    metric_format(metric).percent
}

/// `value` rounded to `decimals`, with `NaN`, `inf`, `-inf` spelled out and negative zero suppressed.
pub fn fixed(value: f64, decimals: usize) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let text = format!("{value:.decimals$}");
    // A tiny negative number rounds to "-0.00"; print it as zero.
    if text.starts_with('-') && text[1..].chars().all(|c| c == '0' || c == '.') {
        text[1..].to_string()
    } else {
        text
    }
}

/// Markup of a rendered cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    /// Plain text / Markdown / CSV: `92.55 ± 0.01`.
    Text,
    /// LaTeX: `92.55 $\pm$ 0.01`.
    Latex,
    /// HTML: `92.55&nbsp;±&nbsp;0.01`.
    Html,
}

/// A mean and optional spread in one format: `92.55 ± 0.01`, or `92.55` when there is no spread.
pub fn mean_spread(mean: f64, spread: Option<f64>, fmt: NumberFormat, markup: Markup) -> String {
    let m = fixed(fmt.scaled(mean), fmt.decimals);
    match spread {
        None => m,
        Some(s) => {
            let s = fixed(fmt.scaled(s), fmt.decimals);
            match markup {
                Markup::Text => format!("{m} ± {s}"),
                Markup::Latex => format!("{m} $\\pm$ {s}"),
                Markup::Html => format!("{m}&nbsp;±&nbsp;{s}"),
            }
        }
    }
}

/// A single value in a metric's format (no spread).
pub fn value(metric: &str, value: f64) -> String {
    let fmt = metric_format(metric);
    fixed(fmt.scaled(value), fmt.decimals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_rules() {
        assert_eq!(metric_format("accuracy"), NumberFormat::PERCENT);
        assert_eq!(metric_format("ece"), NumberFormat::PERCENT);
        assert_eq!(metric_format("ece_em"), NumberFormat::PERCENT);
        assert_eq!(metric_format("cw_ece"), NumberFormat::PERCENT);
        assert_eq!(metric_format("classwise_ece"), NumberFormat::PERCENT);
        assert_eq!(metric_format("ece_paper"), NumberFormat::PERCENT);
        assert_eq!(metric_format("accuracy_ci_lower"), NumberFormat::PERCENT);
        assert_eq!(metric_format("mean_cell_accuracy"), NumberFormat::PERCENT);
        assert_eq!(metric_format("nll_paper"), NumberFormat::PLAIN4);
        assert_eq!(metric_format("brier_div_k_paper"), NumberFormat::PLAIN5);
        assert_eq!(metric_format("mce"), NumberFormat::PERCENT);
        assert_eq!(metric_format("nll"), NumberFormat::PLAIN4);
        assert_eq!(metric_format("brier"), NumberFormat::PLAIN4);
        assert_eq!(metric_format("brier_div_k"), NumberFormat::PLAIN5);
        assert_eq!(metric_format("auroc"), NumberFormat::PLAIN4);
        assert_eq!(metric_format("fpr95_idpos"), NumberFormat::PLAIN4);
    }

    #[test]
    fn cells() {
        let p = NumberFormat::PERCENT;
        assert_eq!(
            mean_spread(0.925_5, Some(0.000_1), p, Markup::Text),
            "92.55 ± 0.01"
        );
        assert_eq!(
            mean_spread(0.925_5, Some(0.000_1), p, Markup::Latex),
            "92.55 $\\pm$ 0.01"
        );
        assert_eq!(
            mean_spread(0.251_6, None, NumberFormat::PLAIN4, Markup::Text),
            "0.2516"
        );
        assert_eq!(fixed(-0.000_4, 2), "0.00");
        assert_eq!(fixed(-0.004, 2), "-0.00".trim_start_matches('-'));
        assert_eq!(fixed(-0.006, 2), "-0.01");
        assert_eq!(fixed(f64::NAN, 2), "NaN");
        assert_eq!(fixed(f64::NEG_INFINITY, 2), "-inf");
        assert_eq!(value("ece", 0.0606), "6.06");
        // Correct rounding of the binary value: 0.125 is exact and ties to even; 2.675 is 2.67499… in binary.
        assert_eq!(fixed(0.125, 2), "0.12");
        assert_eq!(fixed(2.675, 2), "2.67");
    }
}
