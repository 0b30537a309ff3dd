//! Metric (usually ECE) against corruption severity: one line per method, the mean over seeds with
//! error bars of the chosen spread (seed-system.md §10.5 "SHIFT Intensity", metrics.md §3.6).
//!
//! [`severity_lines`] builds the lines from records. Per method it uses, in this order:
//! 1. pooled per-severity records (`corruption = None`, `severity = Some(s)`), one value per run; or
//! 2. per-cell records (`corruption = Some(c)`, `severity = Some(s)`): for each run, the mean over the
//!    corruptions at severity s (the seed's and UB's per-severity aggregate), then mean ± spread over
//!    runs. Every run must cover the same corruptions at a severity, so that no mean is taken over
//!    different sets.
//!
//! The figure's CSV (`stem.csv`) holds the plotted numbers in the metric's stored unit (fractions for
//! ECE, printed losslessly; the plot shows percent): `method,severity,mean,spread,n` with `spread`
//! empty for n = 1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::format;
use crate::plot::{self, de, font, px, Figure};
use crate::record::MetricRecord;
use crate::table::{aggregate, Spread};
use crate::{csv, ReportError};

/// One point of a severity line, in the metric's stored unit (fractions for ECE).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeverityPoint {
    /// Corruption severity (x).
    pub severity: u8,
    /// Mean over runs.
    pub mean: f64,
    /// Error-bar half-length (std or SE over runs); `None` for n = 1.
    pub spread: Option<f64>,
    /// Number of runs.
    pub n: usize,
}

/// One method's line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityLine {
    /// Legend label (method).
    pub label: String,
    /// Points in increasing severity.
    pub points: Vec<SeverityPoint>,
}

/// Builds one line per method (in order of first appearance) for `metric` on `split` (see the module
/// docs for how per-cell records are reduced). Methods without per-severity data are left out.
pub fn severity_lines(
    records: &[MetricRecord],
    split: &str,
    metric: &str,
    spread: Spread,
) -> Result<Vec<SeverityLine>, ReportError> {
    let relevant: Vec<&MetricRecord> = records
        .iter()
        .filter(|r| r.split == split && r.metric == metric && r.severity.is_some())
        .collect();
    let mut methods: Vec<&str> = Vec::new();
    for r in &relevant {
        if !methods.contains(&r.method.as_str()) {
            methods.push(&r.method);
        }
    }
    let mut lines = Vec::new();
    for method in methods {
        let pooled: Vec<MetricRecord> = relevant
            .iter()
            .filter(|r| r.method == method && r.corruption.is_none())
            .map(|r| (*r).clone())
            .collect();
        let per_run = if !pooled.is_empty() {
            pooled
        } else {
            mean_over_corruptions(relevant.iter().copied().filter(|r| r.method == method))?
        };
        let mut points: Vec<SeverityPoint> = aggregate(&per_run)?
            .into_iter()
            .map(|a| SeverityPoint {
                severity: a
                    .severity
                    .expect("records were filtered to those with a severity"),
                mean: a.mean,
                spread: a.spread(spread),
                n: a.n,
            })
            .collect();
        points.sort_by_key(|p| p.severity);
        if points.windows(2).any(|w| w[0].severity == w[1].severity) {
            return Err(ReportError::Invalid(format!(
                "method {method:?}: {split}/{metric} per-severity records come from several datasets; filter them first"
            )));
        }
        lines.push(SeverityLine {
            label: method.to_string(),
            points,
        });
    }
    Ok(lines)
}

/// Per (run, seed, dataset, severity): one record whose value is the mean over the run's corruptions.
fn mean_over_corruptions<'a>(
    cells: impl Iterator<Item = &'a MetricRecord>,
) -> Result<Vec<MetricRecord>, ReportError> {
    type Key = (String, Option<u64>, String, u8);
    let mut by_run: BTreeMap<Key, Vec<&MetricRecord>> = BTreeMap::new();
    let mut order: Vec<Key> = Vec::new();
    for r in cells {
        let key = (
            r.run.clone(),
            r.seed,
            r.dataset.clone(),
            r.severity.unwrap_or(0),
        );
        by_run.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            Vec::new()
        });
        by_run.get_mut(&key).expect("inserted above").push(r);
    }
    // Every run must cover the same corruptions at a given severity.
    let mut sets: BTreeMap<(String, u8), (Vec<String>, String)> = BTreeMap::new();
    let mut out = Vec::new();
    for key in order {
        let cells = &by_run[&key];
        let mut names: Vec<String> = cells.iter().filter_map(|c| c.corruption.clone()).collect();
        names.sort();
        names.dedup();
        if names.len() != cells.len() {
            return Err(ReportError::Invalid(format!(
                "run {} has several values for one corruption at severity {} ({}/{})",
                key.0, key.3, cells[0].split, cells[0].metric
            )));
        }
        let set_key = (key.2.clone(), key.3);
        match sets.get(&set_key) {
            Some((prev, prev_run)) if *prev != names => {
                return Err(ReportError::Invalid(format!(
                    "runs {prev_run} and {} cover different corruptions at severity {} ({} vs {} corruptions); refusing to average over different sets",
                    key.0,
                    key.3,
                    prev.len(),
                    names.len()
                )));
            }
            Some(_) => {}
            None => {
                sets.insert(set_key, (names.clone(), key.0.clone()));
            }
        }
        let mean = cells.iter().map(|c| c.value).sum::<f64>() / cells.len() as f64;
        let first = cells[0];
        out.push(MetricRecord {
            corruption: None,
            value: mean,
            definition: format!(
                "{} (mean over {} corruptions)",
                first.definition,
                cells.len()
            ),
            ..first.clone()
        });
    }
    Ok(out)
}

/// CSV of severity lines (stored units, lossless).
pub fn severity_csv(lines: &[SeverityLine]) -> String {
    let mut out = String::new();
    csv::write_row(&mut out, &["method", "severity", "mean", "spread", "n"]);
    for l in lines {
        for p in &l.points {
            csv::write_row(
                &mut out,
                &[
                    l.label.clone(),
                    p.severity.to_string(),
                    crate::record::format_value(p.mean),
                    p.spread
                        .map(crate::record::format_value)
                        .unwrap_or_default(),
                    p.n.to_string(),
                ],
            );
        }
    }
    out
}

/// Draws `lines` and writes `stem.svg`, `stem.png`, `stem.csv`. `metric` picks the unit (percent for
/// ECE), `y_label` names the axis (e.g. `ECE`), `note` is a footnote (definition, spread, n).
pub fn write_severity_plot(
    stem: &Path,
    lines: &[SeverityLine],
    metric: &str,
    y_label: &str,
    title: &str,
    note: &str,
) -> Result<Vec<PathBuf>, ReportError> {
    if lines.iter().all(|l| l.points.is_empty()) {
        return Err(ReportError::Invalid(format!(
            "{}: no per-severity points to plot",
            stem.display()
        )));
    }
    let figure = SeverityFigure {
        lines,
        metric,
        y_label,
        title,
        note,
    };
    let mut paths = plot::write_figure(stem, &figure)?;
    let csv_path = plot::with_suffix(stem, "csv");
    decal_core::write_atomic(&csv_path, severity_csv(lines).as_bytes())?;
    paths.push(csv_path);
    Ok(paths)
}

struct SeverityFigure<'a> {
    lines: &'a [SeverityLine],
    metric: &'a str,
    y_label: &'a str,
    title: &'a str,
    note: &'a str,
}

impl Figure for SeverityFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (720, 500)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        scale: f64,
    ) -> Result<(), String> {
        let fmt = format::metric_format(self.metric);
        let root = plot::draw_title(root, self.title, scale)?;
        let foot_h = if self.note.is_empty() {
            px(4.0, scale)
        } else {
            px(24.0, scale)
        };
        let (body, foot) = root.split_vertically(root.dim_in_pixel().1 - foot_h);
        let points = self.lines.iter().flat_map(|l| l.points.iter());
        let s_min = points.clone().map(|p| p.severity).min().unwrap_or(1) as f64;
        let s_max = points.clone().map(|p| p.severity).max().unwrap_or(5) as f64;
        let y_hi = points
            .clone()
            .map(|p| fmt.scaled(p.mean + p.spread.unwrap_or(0.0)))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let y_lo = points
            .map(|p| fmt.scaled(p.mean - p.spread.unwrap_or(0.0)))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::min);
        let y_top = if y_hi > 0.0 { y_hi * 1.12 } else { 1.0 };
        let unit = if fmt.percent { " (%)" } else { "" };
        let mut chart = ChartBuilder::on(&body)
            .margin_left(px(10.0, scale))
            .margin_right(px(24.0, scale))
            .margin_top(px(6.0, scale))
            .x_label_area_size(px(44.0, scale))
            .y_label_area_size(px(62.0, scale))
            .build_cartesian_2d((s_min - 0.3)..(s_max + 0.3), y_lo..y_top)
            .map_err(de)?;
        let n_ticks = (s_max - s_min) as usize + 1;
        chart
            .configure_mesh()
            .x_labels(n_ticks.max(2))
            .y_labels(8)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format::fixed(*y, if fmt.percent { 0 } else { 2 }))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.08))
            .axis_style(BLACK.stroke_width(px(1.0, scale)))
            .x_desc("Corruption severity")
            .y_desc(format!("{}{unit}", self.y_label))
            .label_style(font(13.0, scale))
            .axis_desc_style(font(15.0, scale))
            .draw()
            .map_err(de)?;
        let n_lines = self.lines.len().max(1);
        for (j, line) in self.lines.iter().enumerate() {
            let color = plot::series_color(j);
            // Offset lines slightly in x so overlapping error bars stay readable.
            let dx = (j as f64 - (n_lines as f64 - 1.0) / 2.0) * 0.06;
            // Non-finite means (e.g. an undefined metric) are left out of the line rather than drawn at 0.
            let pts: Vec<(f64, f64)> = line
                .points
                .iter()
                .filter(|p| p.mean.is_finite())
                .map(|p| (p.severity as f64 + dx, fmt.scaled(p.mean)))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    pts.clone(),
                    color.stroke_width(px(2.0, scale)),
                ))
                .map_err(de)?
                .label(line.label.clone())
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(
                            vec![(-(px(2.0, scale) as i32), 0), (px(10.0, scale) as i32, 0)],
                            color.stroke_width(px(2.5, scale)),
                        )
                        + plot::series_marker(
                            j,
                            (px(4.0, scale) as i32, 0),
                            px(3.5, scale) as i32,
                            color,
                        )
                });
            chart
                .draw_series(
                    pts.iter().map(|&(x, y)| {
                        plot::series_marker(j, (x, y), px(3.5, scale) as i32, color)
                    }),
                )
                .map_err(de)?;
            chart
                .draw_series(line.points.iter().filter_map(|p| {
                    let s = p.spread.filter(|s| s.is_finite() && p.mean.is_finite())?;
                    let x = p.severity as f64 + dx;
                    Some(ErrorBar::new_vertical(
                        x,
                        fmt.scaled(p.mean - s),
                        fmt.scaled(p.mean),
                        fmt.scaled(p.mean + s),
                        color.stroke_width(px(1.5, scale)),
                        px(8.0, scale),
                    ))
                }))
                .map_err(de)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .margin(px(10.0, scale))
            .label_font(font(13.0, scale))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(de)?;
        if !self.note.is_empty() {
            foot.draw(&Text::new(
                self.note.to_string(),
                (px(14.0, scale) as i32, px(4.0, scale) as i32),
                font(11.5, scale).color(&BLACK.mix(0.75)),
            ))
            .map_err(de)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(
        method: &str,
        seed: u64,
        corruption: Option<&str>,
        severity: u8,
        value: f64,
    ) -> MetricRecord {
        MetricRecord {
            run: format!("{method}/seed-{seed}"),
            seed: Some(seed),
            method: method.into(),
            split: "shift".into(),
            dataset: "cifar10-generated".into(),
            corruption: corruption.map(Into::into),
            severity: Some(severity),
            metric: "ece".into(),
            value,
            definition: "ECE 10 bins".into(),
        }
    }

    #[test]
    fn per_cell_records_are_averaged_over_corruptions_then_seeds() {
        let mut records = Vec::new();
        for seed in 1..=2u64 {
            for s in 1..=3u8 {
                records.push(cell(
                    "TST",
                    seed,
                    Some("fog"),
                    s,
                    0.01 * s as f64 + 0.001 * seed as f64,
                ));
                records.push(cell(
                    "TST",
                    seed,
                    Some("snow"),
                    s,
                    0.03 * s as f64 + 0.001 * seed as f64,
                ));
            }
        }
        let lines = severity_lines(&records, "shift", "ece", Spread::Std).unwrap();
        assert_eq!(lines.len(), 1);
        let p = lines[0].points[1];
        // Severity 2: per-seed means 0.041 and 0.042, so mean 0.0415, std 0.0007071.
        assert_eq!(p.severity, 2);
        assert_eq!(p.n, 2);
        assert!((p.mean - 0.0415).abs() < 1e-15, "{p:?}");
        assert!(
            (p.spread.unwrap() - 0.001 / 2f64.sqrt()).abs() < 1e-15,
            "{p:?}"
        );
        // A run missing a corruption at a severity is refused.
        records.retain(|r| {
            !(r.seed == Some(2) && r.severity == Some(3) && r.corruption.as_deref() == Some("snow"))
        });
        let err = severity_lines(&records, "shift", "ece", Spread::Std)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cover different corruptions at severity 3"),
            "{err}"
        );
    }

    #[test]
    fn non_finite_points_do_not_break_the_figure() {
        let dir = tempfile::tempdir().unwrap();
        let lines = vec![SeverityLine {
            label: "TST".into(),
            points: vec![
                SeverityPoint {
                    severity: 1,
                    mean: 0.05,
                    spread: Some(f64::NAN),
                    n: 2,
                },
                SeverityPoint {
                    severity: 2,
                    mean: f64::NAN,
                    spread: None,
                    n: 1,
                },
                SeverityPoint {
                    severity: 3,
                    mean: 0.09,
                    spread: Some(0.01),
                    n: 2,
                },
            ],
        }];
        let paths =
            write_severity_plot(&dir.path().join("s"), &lines, "ece", "ECE", "t", "").unwrap();
        let csv = std::fs::read_to_string(&paths[2]).unwrap();
        assert!(csv.contains("\nTST,2,NaN,,1\n"), "{csv}");
    }

    #[test]
    fn pooled_per_severity_records_are_preferred() {
        let records = vec![
            cell("TS", 1, None, 1, 0.0879),
            cell("TS", 1, Some("fog"), 1, 0.5),
            cell("TS", 1, None, 2, 0.1105),
        ];
        let lines = severity_lines(&records, "shift", "ece", Spread::Se).unwrap();
        assert_eq!(
            lines[0].points.iter().map(|p| p.mean).collect::<Vec<_>>(),
            [0.0879, 0.1105]
        );
        assert_eq!(
            severity_csv(&lines),
            "method,severity,mean,spread,n\nTS,1,0.0879,,1\nTS,2,0.1105,,1\n"
        );
    }
}
