//! OOD score histograms: the distribution of an OOD score (e.g. maximum softmax probability) on the
//! in-distribution test set against each OOD set, one panel per method.
//!
//! Histograms are stored pre-binned ([`ScoreHistogram`]): evaluation can bin millions of scores once and
//! leave a small CSV for the report. [`ScoreHistogram::from_scores`] bins raw scores with shared
//! equal-width edges. Bars show the **fraction** of each distribution per bin, so sets of different
//! sizes (10,000 ID vs 26,032 SVHN) are comparable.
//!
//! # CSV format
//! Header `method,score,distribution,role,bin,lower,upper,count`; `role` is `id` or `ood`; one row per
//! method × distribution × bin; edges printed losslessly.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::plot::{self, de, font, px, Figure};
use crate::record::{format_value, parse_value};
use crate::{csv, ReportError};

/// One distribution's counts over the panel's bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreCounts {
    /// Dataset name, e.g. `cifar10 (test)` or `svhn`.
    pub name: String,
    /// Counts per bin (`edges.len() - 1` of them).
    pub counts: Vec<u64>,
}

/// One method's score histograms: the in-distribution set and one or more OOD sets over shared bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreHistogram {
    /// Method (panel title).
    pub method: String,
    /// Score name, e.g. `MSP` (x-axis label).
    pub score: String,
    /// Bin edges, increasing; bin i is `[edges[i], edges[i+1])`, the last bin closed.
    pub edges: Vec<f64>,
    /// The in-distribution set.
    pub id: ScoreCounts,
    /// The OOD sets.
    pub ood: Vec<ScoreCounts>,
}

impl ScoreHistogram {
    /// Bins raw scores with `num_bins` equal-width bins spanning the finite min..max of all scores
    /// (0..1 is widened to include both ends). Non-finite scores are an error.
    pub fn from_scores(
        method: &str,
        score: &str,
        id_name: &str,
        id_scores: &[f64],
        ood: &[(&str, &[f64])],
        num_bins: usize,
    ) -> Result<ScoreHistogram, ReportError> {
        let all = id_scores
            .iter()
            .chain(ood.iter().flat_map(|(_, s)| s.iter()));
        if let Some(bad) = all.clone().find(|v| !v.is_finite()) {
            return Err(ReportError::Invalid(format!(
                "{method}: non-finite {score} score {bad}"
            )));
        }
        if id_scores.is_empty() || ood.iter().any(|(_, s)| s.is_empty()) || num_bins == 0 {
            return Err(ReportError::Invalid(format!(
                "{method}: empty score set or zero bins for the {score} histogram"
            )));
        }
        let lo = all.clone().copied().fold(f64::INFINITY, f64::min);
        let mut hi = all.copied().fold(f64::NEG_INFINITY, f64::max);
        if hi <= lo {
            hi = lo + 1.0;
        }
        let edges: Vec<f64> = (0..=num_bins)
            .map(|i| {
                if i == num_bins {
                    hi
                } else {
                    lo + (hi - lo) * i as f64 / num_bins as f64
                }
            })
            .collect();
        let bin = |v: f64| (((v - lo) / (hi - lo) * num_bins as f64) as usize).min(num_bins - 1);
        let count = |name: &str, scores: &[f64]| {
            let mut counts = vec![0u64; num_bins];
            for &v in scores {
                counts[bin(v)] += 1;
            }
            ScoreCounts {
                name: name.to_string(),
                counts,
            }
        };
        Ok(ScoreHistogram {
            method: method.to_string(),
            score: score.to_string(),
            id: count(id_name, id_scores),
            ood: ood.iter().map(|(n, s)| count(n, s)).collect(),
            edges,
        })
    }

    fn validate(&self) -> Result<(), String> {
        let bins = self.edges.len().saturating_sub(1);
        if bins == 0
            || self
                .edges
                .windows(2)
                .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
        {
            return Err(format!(
                "{}: histogram edges must be at least two increasing numbers",
                self.method
            ));
        }
        for c in std::iter::once(&self.id).chain(&self.ood) {
            if c.counts.len() != bins {
                return Err(format!(
                    "{}: {} has {} counts for {bins} bins",
                    self.method,
                    c.name,
                    c.counts.len()
                ));
            }
            if c.counts.iter().sum::<u64>() == 0 {
                return Err(format!("{}: {} has no samples", self.method, c.name));
            }
        }
        Ok(())
    }
}

/// CSV of histograms.
pub fn histograms_to_csv(panels: &[ScoreHistogram]) -> String {
    let mut out = String::new();
    csv::write_row(
        &mut out,
        &[
            "method",
            "score",
            "distribution",
            "role",
            "bin",
            "lower",
            "upper",
            "count",
        ],
    );
    for p in panels {
        for (role, c) in std::iter::once(("id", &p.id)).chain(p.ood.iter().map(|c| ("ood", c))) {
            for (i, n) in c.counts.iter().enumerate() {
                csv::write_row(
                    &mut out,
                    &[
                        p.method.clone(),
                        p.score.clone(),
                        c.name.clone(),
                        role.to_string(),
                        i.to_string(),
                        format_value(p.edges[i]),
                        format_value(p.edges[i + 1]),
                        n.to_string(),
                    ],
                );
            }
        }
    }
    out
}

/// Parses histogram CSV (as written by [`histograms_to_csv`]). Rows of one (method, score) panel must
/// be contiguous; distributions within a panel must share the bin edges.
pub fn parse_histogram_csv(text: &str, path: &Path) -> Result<Vec<ScoreHistogram>, ReportError> {
    let rows = csv::parse(text).map_err(|(line, m)| ReportError::parse(path, line, m))?;
    let Some((header, body)) = rows.split_first() else {
        return Err(ReportError::parse(
            path,
            1,
            "empty file: expected a score-histogram CSV header",
        ));
    };
    const COLS: [&str; 8] = [
        "method",
        "score",
        "distribution",
        "role",
        "bin",
        "lower",
        "upper",
        "count",
    ];
    let index = csv::column_indices(header, COLS, path)?;
    let mut panels: Vec<ScoreHistogram> = Vec::new();
    for row in body {
        csv::check_row_width(row, header, path)?;
        let err = |m: String| ReportError::parse(path, row.line, m);
        let get = |i: usize| row.fields[index[i]].as_str();
        let num = |i: usize| {
            parse_value(get(i))
                .ok_or_else(|| err(format!("{} {:?} is not a number", COLS[i], get(i))))
        };
        let (method, score, dist, role) = (get(0), get(1), get(2), get(3));
        let bin: usize = get(4)
            .parse()
            .map_err(|_| err(format!("bin {:?} is not an index", get(4))))?;
        let (lower, upper) = (num(5)?, num(6)?);
        let count: u64 = get(7)
            .parse()
            .map_err(|_| err(format!("count {:?} is not a count", get(7))))?;
        if role != "id" && role != "ood" {
            return Err(err(format!("role {role:?} must be `id` or `ood`")));
        }
        let new_panel = panels
            .last()
            .is_none_or(|p| p.method != method || p.score != score);
        if new_panel {
            if panels
                .iter()
                .any(|p| p.method == method && p.score == score)
            {
                return Err(err(format!(
                    "rows of panel {method:?}/{score:?} are not contiguous"
                )));
            }
            if role != "id" {
                return Err(err(format!(
                    "panel {method:?}/{score:?} must start with its `id` distribution"
                )));
            }
            panels.push(ScoreHistogram {
                method: method.into(),
                score: score.into(),
                edges: vec![lower],
                id: ScoreCounts {
                    name: dist.into(),
                    counts: Vec::new(),
                },
                ood: Vec::new(),
            });
        }
        let panel = panels.last_mut().expect("a panel was pushed above");
        let counts = if role == "id" {
            if panel.id.name != dist {
                return Err(err(format!("panel {method:?} has two `id` distributions")));
            }
            &mut panel.id
        } else {
            if panel.ood.last().is_none_or(|c| c.name != dist) {
                panel.ood.push(ScoreCounts {
                    name: dist.into(),
                    counts: Vec::new(),
                });
            }
            panel.ood.last_mut().expect("pushed above")
        };
        if bin != counts.counts.len() {
            return Err(err(format!(
                "{dist}: bin {bin} out of order, expected {}",
                counts.counts.len()
            )));
        }
        // The id rows define the edges; the ood rows must repeat them.
        if role == "id" {
            if panel.edges.last().map(|e| e.to_bits()) != Some(lower.to_bits()) {
                return Err(err(format!(
                    "bin {bin} starts at {lower}, the previous bin ended elsewhere"
                )));
            }
            panel.edges.push(upper);
        } else if panel.edges.get(bin).map(|e| e.to_bits()) != Some(lower.to_bits())
            || panel.edges.get(bin + 1).map(|e| e.to_bits()) != Some(upper.to_bits())
        {
            return Err(err(format!(
                "{dist}: bin {bin} edges differ from the id distribution's"
            )));
        }
        counts.counts.push(count);
    }
    for p in &panels {
        p.validate().map_err(|m| ReportError::parse(path, 0, m))?;
    }
    Ok(panels)
}

/// Reads a histogram CSV file.
pub fn read_histogram_csv(path: &Path) -> Result<Vec<ScoreHistogram>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(ReportError::io(path))?;
    parse_histogram_csv(&text, path)
}

/// Draws one panel per method and writes `stem.svg`, `stem.png`, `stem.csv`.
pub fn write_score_histograms(
    stem: &Path,
    panels: &[ScoreHistogram],
    title: &str,
) -> Result<Vec<PathBuf>, ReportError> {
    if panels.is_empty() {
        return Err(ReportError::Invalid(format!(
            "{}: no score histograms to draw",
            stem.display()
        )));
    }
    for p in panels {
        p.validate()
            .map_err(|m| ReportError::Invalid(format!("{}: {m}", stem.display())))?;
    }
    let figure = HistogramFigure { panels, title };
    let mut paths = plot::write_figure(stem, &figure)?;
    let csv_path = plot::with_suffix(stem, "csv");
    decal_core::write_atomic(&csv_path, histograms_to_csv(panels).as_bytes())?;
    paths.push(csv_path);
    Ok(paths)
}

struct HistogramFigure<'a> {
    panels: &'a [ScoreHistogram],
    title: &'a str,
}

impl HistogramFigure<'_> {
    fn grid(&self) -> (usize, usize) {
        let cols = self.panels.len().min(2);
        (cols, self.panels.len().div_ceil(cols))
    }
}

impl Figure for HistogramFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let (cols, rows) = self.grid();
        (560 * cols as u32, 38 + 360 * rows as u32)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        scale: f64,
    ) -> Result<(), String> {
        let root = plot::draw_title(root, self.title, scale)?;
        let (cols, rows) = self.grid();
        let areas = root.split_evenly((rows, cols));
        for (panel, area) in self.panels.iter().zip(areas.iter()) {
            let frac = |c: &ScoreCounts| {
                let total = c.counts.iter().sum::<u64>() as f64;
                c.counts
                    .iter()
                    .map(|&n| n as f64 / total)
                    .collect::<Vec<_>>()
            };
            let dists: Vec<(&ScoreCounts, Vec<f64>)> = std::iter::once(&panel.id)
                .chain(&panel.ood)
                .map(|c| (c, frac(c)))
                .collect();
            let y_top = dists
                .iter()
                .flat_map(|(_, f)| f.iter().copied())
                .fold(0.0f64, f64::max)
                * 1.15;
            let (x0, x1) = (
                panel.edges[0],
                *panel.edges.last().expect("validated: at least two edges"),
            );
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.method, plot::bold_font(14.0, scale))
                .margin(px(10.0, scale))
                .x_label_area_size(px(40.0, scale))
                .y_label_area_size(px(56.0, scale))
                .build_cartesian_2d(x0..x1, 0.0..y_top.max(1e-9))
                .map_err(de)?;
            chart
                .configure_mesh()
                .x_labels(6)
                .y_labels(5)
                .x_label_formatter(&|x| crate::format::fixed(*x, 2))
                .y_label_formatter(&|y| crate::format::fixed(*y, 2))
                .light_line_style(WHITE.mix(0.0))
                .bold_line_style(BLACK.mix(0.08))
                .axis_style(BLACK.stroke_width(px(1.0, scale)))
                .x_desc(panel.score.as_str())
                .y_desc("Fraction of samples")
                .label_style(font(12.0, scale))
                .axis_desc_style(font(13.0, scale))
                .draw()
                .map_err(de)?;
            for (j, (c, f)) in dists.iter().enumerate() {
                let color = plot::series_color(j);
                chart
                    .draw_series(f.iter().enumerate().map(|(i, &y)| {
                        Rectangle::new(
                            [(panel.edges[i], 0.0), (panel.edges[i + 1], y)],
                            color.mix(0.25).filled(),
                        )
                    }))
                    .map_err(de)?
                    .label(if j == 0 {
                        format!("{} (ID)", c.name)
                    } else {
                        format!("{} (OOD)", c.name)
                    })
                    .legend(move |(x, y)| plot::legend_box(x, y, color.mix(0.6).filled(), scale));
                // The outline as a step line, so overlapping distributions stay distinguishable.
                let mut step = vec![(panel.edges[0], 0.0)];
                for (i, &y) in f.iter().enumerate() {
                    step.push((panel.edges[i], y));
                    step.push((panel.edges[i + 1], y));
                }
                step.push((x1, 0.0));
                chart
                    .draw_series(LineSeries::new(step, color.stroke_width(px(1.5, scale))))
                    .map_err(de)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .margin(px(8.0, scale))
                .label_font(font(12.0, scale))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(de)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binning_and_csv_round_trip() {
        let id = [0.99, 0.95, 0.9, 0.5, 1.0];
        let svhn = [0.3, 0.6, 0.99];
        let h = ScoreHistogram::from_scores("TST", "MSP", "cifar10", &id, &[("svhn", &svhn)], 7)
            .unwrap();
        assert_eq!(h.edges.len(), 8);
        assert_eq!(h.edges[0], 0.3);
        assert_eq!(h.edges[7], 1.0);
        assert_eq!(h.id.counts.iter().sum::<u64>(), 5);
        // 1.0 (the maximum) lands in the last, closed bin.
        assert_eq!(h.id.counts[6], 4);
        assert_eq!(h.ood[0].counts, [1, 0, 0, 1, 0, 0, 1]);
        let text = histograms_to_csv(std::slice::from_ref(&h));
        assert_eq!(
            parse_histogram_csv(&text, Path::new("h.csv")).unwrap(),
            vec![h]
        );
        let err = ScoreHistogram::from_scores("m", "MSP", "id", &[f64::NAN], &[("o", &[0.1])], 3)
            .unwrap_err();
        assert!(err.to_string().contains("non-finite"));
    }
}
