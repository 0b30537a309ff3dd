//! Concise metric definitions for table captions and figure captions.
//!
//! Records carry long, exact definition strings (e.g. the ECE's "top-label, equal-width, 15 bins, bins
//! [lo,hi) on float32 torch.linspace edges plus an extra bin for confidence == 1.0 (torchmetrics 1.1.2);
//! fraction (x100 when rendered: false); profile default"). Captions show them shorter but still exact,
//! so a reader can tell which definition produced each number (metric, bins, membership, units,
//! profile):
//!
//! 1. [`shorten`] replaces known long phrases by the names `metrics.md` gives them ("torchmetrics
//!    membership", "MSP score", ...) and drops the "fraction (x100 when rendered: …)" clause of a
//!    percent column (the header's "(%)" states the unit). Text it does not know is kept verbatim.
//! 2. [`caption_entries`] lays out a table's columns: a profile named by every column that names one is
//!    stated once; columns with the same definition share one entry; a definition that extends an
//!    earlier one reads `as ECE; <the extra clauses>`; one that ends like an earlier one (at least 40
//!    characters in common) reads `<its own clauses>; rest as OOD AUROC`.
//!
//! The full strings stay in the records and in `tables/aggregates.csv`; only captions change.

use crate::format;

/// Long phrases of decal's definition strings and their short exact names (ASCII only, so LaTeX
/// captions need no extra packages). Order matters only where one contains another.
const PHRASES: [(&str, &str); 17] = [
    (
        "bins [lo,hi) on float32 torch.linspace edges plus an extra bin for confidence == 1.0 (torchmetrics 1.1.2)",
        "torchmetrics membership",
    ),
    (
        "bins (lo,hi] on float32 torch.linspace edges (Guo et al. 2017, gpleiss _ECELoss)",
        "guo membership",
    ),
    (
        "bins [lo,hi), last bin closed, on float64 numpy.linspace edges (netcal)",
        "histogram membership",
    ),
    (
        "fraction with argmax_k p_k == y (ties -> lowest index)",
        "top-1 (argmax ties -> lowest index)",
    ),
    (
        "max over non-empty bins of |acc - conf|, same bins as ece",
        "max |acc - conf| over non-empty bins, ECE's bins",
    ),
    ("same bins as ece", "ECE's bins"),
    (
        "exact: mean -log softmax(z)_y via log-softmax (or -ln p_y of given probabilities), nats",
        "exact mean -ln p_y (log-softmax), nats",
    ),
    (
        "sklearn 1.1.3 log_loss: clip to [1e-15, 1-1e-15], renormalise rows, mean -ln p_y, nats",
        "sklearn 1.1.3 log_loss (p clipped to [1e-15, 1-1e-15]), nats",
    ),
    (
        "canonical: mean_i sum_k (p_ik - 1[y_i=k])^2, in [0, 2]",
        "canonical (sum over classes, in [0, 2])",
    ),
    (
        "brier / K (the seed's sklearn mean_squared_error on one-hot targets)",
        "Brier / K (the seed's)",
    ),
    ("AUROC (Mann-Whitney, ties count 1/2)", "exact AUROC, ties 1/2"),
    (
        "FPR at 95% TPR, ID positive, exact k-th largest ID score threshold",
        "fpr95_idpos, exact",
    ),
    (
        "FPR at 95% TPR, ID positive, np.interp on the ROC (ood_metrics; the paper)",
        "fpr95_idpos, ROC-interpolated (the paper)",
    ),
    (
        "score: maximum softmax probability (MSP) of the predictive distribution",
        "MSP score",
    ),
    (
        "score: negative entropy of the predictive distribution",
        "neg-entropy score",
    ),
    ("score: maximum logit", "max-logit score"),
    (
        "score: negative mutual information (BALD) over the MC samples",
        "neg-MI (BALD) score",
    ),
];

/// `definition` shortened for a caption of a column of `metric` (see the module docs).
pub fn shorten(metric: &str, definition: &str) -> String {
    let mut text = definition.to_string();
    for (long, short) in PHRASES {
        text = text.replace(long, short);
    }
    text = bins_first(&text);
    // The stored value is a fraction; the flag says how decal's CLI prints it. A table shows percent
    // columns as percent (header "(%)"), so the clause only misleads there.
    for flag in ["true", "false"] {
        let clause = format!("fraction (x100 when rendered: {flag})");
        if format::is_percent(metric) {
            text = text
                .replace(&format!("; {clause}"), "")
                .replace(&clause, "");
        } else {
            text = text.replace(&clause, "fraction");
        }
    }
    text
}

/// "equal-width, 15 bins, torchmetrics membership" → "15 equal-width bins, torchmetrics membership".
fn bins_first(text: &str) -> String {
    const KEY: &str = "equal-width, ";
    let Some(at) = text.find(KEY) else {
        return text.to_string();
    };
    let rest = &text[at + KEY.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() || !rest[digits.len()..].starts_with(" bins") {
        return text.to_string();
    }
    format!(
        "{}{digits} equal-width bins{}",
        &text[..at],
        &rest[digits.len() + " bins".len()..]
    )
}

/// One caption entry per column or group of columns: `(label, text)`. `columns` holds per column its
/// header, metric key and definition (empty definitions are skipped). See the module docs.
pub fn caption_entries(columns: &[(String, String, String)]) -> Vec<(String, String)> {
    // (headers, clauses)
    let mut cols: Vec<(String, Vec<String>)> = columns
        .iter()
        .filter(|(_, _, d)| !d.trim().is_empty())
        .map(|(h, m, d)| {
            let clauses = shorten(m, d)
                .split("; ")
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect();
            (h.clone(), clauses)
        })
        .collect();
    let mut entries: Vec<(String, String)> = Vec::new();

    // A profile clause shared by every column that has one is stated once.
    let is_profile = |c: &str| c.starts_with("profile ") && !c[8..].contains(' ');
    let profiles: Vec<(&String, &String)> = cols
        .iter()
        .filter_map(|(h, cl)| cl.iter().find(|c| is_profile(c)).map(|c| (h, c)))
        .collect();
    let shared_profile = match profiles.as_slice() {
        [(_, first), _, ..] if profiles.iter().all(|(_, p)| p == first) => {
            let which = if profiles.len() == cols.len() {
                "every column".to_string()
            } else {
                profiles
                    .iter()
                    .map(|(h, _)| h.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Some((first[8..].to_string(), which))
        }
        _ => None,
    };
    if let Some((name, which)) = &shared_profile {
        entries.push(("Profile".to_string(), format!("{name} ({which})")));
        for (_, cl) in cols.iter_mut() {
            cl.retain(|c| !is_profile(c));
        }
    }

    // Columns with the same definition share an entry.
    let mut groups: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for (h, cl) in cols {
        match groups.iter_mut().find(|(_, c)| *c == cl) {
            Some((hs, _)) => hs.push(h),
            None => groups.push((vec![h], cl)),
        }
    }

    for (i, (headers, clauses)) in groups.iter().enumerate() {
        let earlier = &groups[..i];
        // Extends an earlier definition: "as X; extra".
        let prefix = earlier
            .iter()
            .filter(|(_, c)| !c.is_empty() && c.len() < clauses.len() && clauses.starts_with(c))
            .max_by_key(|(_, c)| c.len());
        // Ends like an earlier definition: "own; rest as X".
        let suffix = earlier
            .iter()
            .map(|(h, c)| {
                let k = c
                    .iter()
                    .rev()
                    .zip(clauses.iter().rev())
                    .take_while(|(a, b)| a == b)
                    .count();
                (h, k)
            })
            .filter(|(_, k)| {
                *k > 0
                    && *k < clauses.len()
                    && clauses[clauses.len() - k..]
                        .iter()
                        .map(|c| c.len() + 2)
                        .sum::<usize>()
                        >= 40
            })
            .max_by_key(|(_, k)| *k);
        let text = if let Some((h, c)) = prefix {
            let mut parts = vec![format!("as {}", h[0])];
            parts.extend(clauses[c.len()..].iter().cloned());
            parts.join("; ")
        } else if let Some((h, k)) = suffix {
            let mut parts: Vec<String> = clauses[..clauses.len() - k].to_vec();
            parts.push(format!("rest as {}", h[0]));
            parts.join("; ")
        } else {
            clauses.join("; ")
        };
        entries.push((headers.join(", "), text));
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECE: &str = "top-label, equal-width, 15 bins, bins [lo,hi) on float32 torch.linspace edges plus an extra bin for confidence == 1.0 (torchmetrics 1.1.2); fraction (x100 when rendered: false); profile default";

    #[test]
    fn phrases_and_units() {
        assert_eq!(
            shorten("ece", ECE),
            "top-label, 15 equal-width bins, torchmetrics membership; profile default"
        );
        // Not a percent column: the unit stays, as "fraction".
        assert_eq!(
            shorten(
                "calibration_gap",
                "top-label; fraction (x100 when rendered: true)"
            ),
            "top-label; fraction"
        );
        assert_eq!(
            shorten("ece", "top-label, equal-width, 10 bins, bins (lo,hi] on float32 torch.linspace edges (Guo et al. 2017, gpleiss _ECELoss)"),
            "top-label, 10 equal-width bins, guo membership"
        );
        // Unknown text is kept.
        assert_eq!(
            shorten("x", "equal-width, many bins"),
            "equal-width, many bins"
        );
        // Every replacement is ASCII (LaTeX captions).
        assert!(PHRASES.iter().all(|(_, s)| s.is_ascii()));
    }

    #[test]
    fn shared_profile_same_prefix_and_suffix() {
        let col = |h: &str, m: &str, d: &str| (h.to_string(), m.to_string(), d.to_string());
        let ood = "MSP score; ID = 2000 test images positive, OOD = 2000 images of mnist";
        let entries = caption_entries(&[
            col("Acc", "accuracy", "top-1; profile default"),
            col("ECE", "ece", ECE),
            col("Train NLL", "nll", "exact; profile default; 10000 training images"),
            col("NLL", "nll", "exact; profile default"),
            col("Shift Acc", "accuracy", "top-1; profile default"),
            col("OOD AUROC", "auroc", "AUROC (Mann-Whitney, ties count 1/2); score: maximum softmax probability (MSP) of the predictive distribution; ID = 2000 test images positive, OOD = 2000 images of mnist"),
            col("FPR95", "fpr95", &format!("FPR at 95% TPR, ID positive, exact k-th largest ID score threshold; {ood}")),
        ]);
        let text: Vec<String> = entries.iter().map(|(h, d)| format!("{h}: {d}")).collect();
        assert_eq!(
            text,
            [
                "Profile: default (Acc, ECE, Train NLL, NLL, Shift Acc)",
                "Acc, Shift Acc: top-1",
                "ECE: top-label, 15 equal-width bins, torchmetrics membership",
                // Train NLL comes before NLL: no "as" (only earlier entries are referred to).
                "Train NLL: exact; 10000 training images",
                "NLL: exact",
                "OOD AUROC: exact AUROC, ties 1/2; MSP score; ID = 2000 test images positive, OOD = 2000 images of mnist",
                "FPR95: fpr95_idpos, exact; rest as OOD AUROC",
            ]
        );
        // Different profiles are not merged.
        let entries = caption_entries(&[
            col("ECE", "ece", "a; profile default"),
            col("ECE (paper)", "ece_paper", "b; profile paper"),
        ]);
        assert_eq!(
            entries[0],
            ("ECE".to_string(), "a; profile default".to_string())
        );
        let entries = caption_entries(&[
            col("NLL", "nll", "exact; profile default"),
            col(
                "Train NLL",
                "nll",
                "exact; profile default; 10000 training images",
            ),
        ]);
        assert_eq!(entries[2].1, "as NLL; 10000 training images");
    }
}
